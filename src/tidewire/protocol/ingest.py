"""Turn a producer's message (REST, WebSocket `publish`, simulator, Nautilus) into a DataMessage.

One function validates everything a published message must satisfy, so every producer gets
the same errors: the stream exists, the type belongs to it, `data` has the fields its type
requires, the stream's key is present. Pure: no I/O, no clock except for defaults.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidewire.protocol import derived, legacy
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import DataMessage, new_message_id, now_iso
from tidewire.protocol.shapes import ROUTING_FIELDS, SHAPES, TOP_LEVEL_FIELDS, Shape
from tidewire.protocol.streams import (
    SEVERITIES,
    SEVERITY_ALIASES,
    STREAM_OF_TYPE,
    StreamSpec,
    resolve_stream,
)

MAX_ID_LENGTH = 200
_json_check = msgspec.json.Encoder()
_msgpack_check = msgspec.msgpack.Encoder()
# Accepted on input and ignored: the broker assigns sequencing, the gateway the version.
_IGNORED = frozenset({"seq", "sequence", "epoch", "version", "key", "message_type", "topic"})
_KNOWN = frozenset(
    {"type", "stream", "timestamp", "message_id", "correlation_id", "priority", "source", "data"}
) | frozenset(TOP_LEVEL_FIELDS)
_SEVERITY_FIELDS = ("alert_level", "severity")
_TOP = frozenset(TOP_LEVEL_FIELDS)
_ROUTING = frozenset(ROUTING_FIELDS)


def build_data_message(raw: Any, default_source: str = "api") -> DataMessage:
    """Validate a producer's message and return it as an unsequenced DataMessage.

    Raises ProtocolError with `invalid_message`, `unknown_type` or `unknown_stream`, and a
    `details` dict naming the offending field. A 0.1 message that maps onto several
    canonical ones (risk metrics) is refused here: use `build_data_messages`.
    """
    messages = build_data_messages(raw, default_source)
    if len(messages) != 1:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            "this message holds several risk metrics: publish one per metric_type",
            {"field": "metric_type"},
        )
    return messages[0]


def build_data_messages(raw: Any, default_source: str = "api") -> list[DataMessage]:
    """`build_data_message` for a message that may hold several (Tidewire 0.1's
    `risk_metrics` with `var_95`, `exposure`, ... in one `data`: one message per metric,
    message ids suffixed with `.<metric_type>`)."""
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
    unknown = sorted(str(name) for name in raw if name not in _KNOWN and name not in _IGNORED)
    if unknown:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"unknown top-level field(s): {', '.join(unknown)}",
            {"fields": unknown},
        )
    message_type, stream = _type_and_stream(raw)
    raw_data = raw.get("data")
    if not isinstance(raw_data, dict):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "`data` must be an object", {"field": "data"}
        )
    # Copies: a producer's dicts are never changed (the simulator reuses its own).
    data = dict(raw_data)
    top = {name: value for name, value in raw.items() if name in _TOP and value is not None}
    legacy.upgrade(message_type, top, data)
    source = raw.get("source", default_source)
    if not isinstance(source, str) or not source:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "`source` must be a non-empty string", {"field": "source"}
        )
    priority = raw.get("priority", 2)
    if type(priority) is not int or not 1 <= priority <= 4:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            "`priority` must be an integer from 1 to 4",
            {"field": "priority"},
        )
    timestamp = _text(raw, "timestamp") or _data_timestamp(data) or now_iso()
    message_id = _text(raw, "message_id") or new_message_id()
    correlation_id = _text(raw, "correlation_id")
    spec = resolve_stream(stream)
    assert spec is not None  # _type_and_stream checked it
    parts = [(top, data)]
    if message_type == "risk_metrics":
        parts = legacy.split_risk_metrics(top, data) or parts
    return [
        _complete(
            spec,
            SHAPES[message_type],
            part_top,
            part_data,
            source=source,
            priority=priority,
            timestamp=timestamp,
            message_id=message_id if len(parts) == 1 else f"{message_id}.{part_top['metric_type']}",
            correlation_id=correlation_id,
        )
        for part_top, part_data in parts
    ]


def _complete(
    spec: StreamSpec,
    shape: Shape,
    top: dict[str, Any],
    data: dict[str, Any],
    *,
    source: str,
    priority: int,
    timestamp: str,
    message_id: str,
    correlation_id: str | None,
) -> DataMessage:
    """Check one canonical message, fill what is derivable, and build it."""
    message_type = shape.message_type
    for name in _ROUTING.intersection(data):
        # Filters and entitlements read these at the top level.
        if top.get(name) is None and data[name] is not None:
            top[name] = data[name]
    if message_type == "market_data" and top.get("data_type") is None:
        top["data_type"] = _market_data_type(data)
    derived.fill(message_type, top, data, timestamp, message_id)
    for name, value in top.items():
        if not isinstance(value, str) or not value:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"`{name}` must be a non-empty string",
                {"field": name},
            )
        if name not in _ROUTING and name not in shape.fields:
            # `order_status` on a quote is a mistake, not an extension.
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"`{name}` is not a field of {message_type} messages",
                {"field": name, "type": message_type},
            )
    for name in _SEVERITY_FIELDS:
        if name in top:
            top[name] = _severity(top[name], name)
    for name, allowed in shape.enums.items():
        value = top.get(name)
        if value is not None and value not in allowed:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"`{name}` of {message_type} must be one of {', '.join(allowed)}",
                {"field": name, "type": message_type},
            )
    missing = [name for name in shape.required if top.get(name) is None]
    if missing:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"{message_type} messages need top-level {', '.join(f'`{n}`' for n in missing)}",
            {"field": missing[0], "type": message_type},
        )
    if shape.any_of and all(top.get(name) is None for name in shape.any_of):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"{message_type} messages need `{shape.any_of[0]}` (or `{shape.any_of[1]}`)",
            {"field": shape.any_of[0], "type": message_type},
        )
    try:
        msgspec.convert(data, shape.payload)
    except msgspec.ValidationError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"invalid `data` for {message_type}: {exc}",
            {"field": "data", "type": message_type},
        ) from None
    try:
        # One publish may be encoded for JSON and msgpack subscribers alike: refuse what
        # either cannot carry (a msgpack extension, an object of a Python producer, an
        # integer past 64 bits, which JSON carries and msgpack does not).
        _json_check.encode(data)
        _msgpack_check.encode(data)
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"`data` holds a value JSON cannot carry: {str(exc)[:120]}",
            {"field": "data"},
        ) from None
    key = _key(spec, top, source)
    if key is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"{spec.name} messages need `{spec.key_field}` (the stream's key)",
            {"field": spec.key_field},
        )
    return DataMessage(
        type=message_type,
        timestamp=timestamp,
        message_id=message_id,
        correlation_id=correlation_id,
        stream=spec.name,
        key=key,
        source=source,
        priority=priority,
        data=data,
        **top,
    )


def _key(spec: StreamSpec, top: dict[str, Any], source: str) -> str | None:
    for name in (spec.key_field, spec.key_fallback):
        if name == "source":
            return source
        if name is not None and top.get(name) is not None:
            return str(top[name])
    return None


def _data_timestamp(data: dict[str, Any]) -> str | None:
    value = data.get("timestamp")
    return value if isinstance(value, str) and value else None


def _type_and_stream(raw: dict[str, Any]) -> tuple[str, str]:
    stream_name = raw.get("stream", raw.get("message_type", raw.get("topic")))
    message_type = raw.get("type")
    if stream_name is not None:
        if not isinstance(stream_name, str):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "`stream` must be a string", {"field": "stream"}
            )
        spec = resolve_stream(stream_name)
        if spec is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_STREAM, f"unknown stream {stream_name!r}", {"stream": stream_name}
            )
        if message_type is None:
            return spec.message_types[0], spec.name
        if message_type not in spec.message_types:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE,
                f"type {message_type!r} is not published on stream {spec.name!r} "
                f"(allowed: {', '.join(spec.message_types)})",
                {"type": message_type, "stream": spec.name},
            )
        return message_type, spec.name
    if not isinstance(message_type, str):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "a message needs `type` or `stream`", {"field": "type"}
        )
    stream = STREAM_OF_TYPE.get(message_type)
    if stream is None:
        # The original protocol named some types like their stream (`risk_alerts`, ...).
        spec = resolve_stream(message_type)
        if spec is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE,
                f"unknown message type {message_type!r}",
                {"type": message_type},
            )
        return spec.message_types[0], spec.name
    return message_type, stream


def _market_data_type(data: dict[str, Any]) -> str:
    if "bid_price" in data and "ask_price" in data:
        return "quote"
    if "open" in data and "close" in data:
        return "bar"
    if "last_trade_size" in data or "last_trade_price" in data:
        return "trade"
    return "tick"


def _severity(value: str, name: str) -> str:
    level = SEVERITY_ALIASES.get(value.lower(), value.lower())
    if level not in SEVERITIES:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"`{name}` must be one of {', '.join(SEVERITIES)}",
            {"field": name},
        )
    return level


def _text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"`{name}` must be a non-empty string of at most {MAX_ID_LENGTH} characters",
            {"field": name},
        )
    return value
