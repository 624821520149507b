"""Turn a producer's message (REST, WebSocket `publish`, simulator, Nautilus) into a DataMessage.

One function validates everything a published message must satisfy, so every producer gets
the same errors: the stream exists, the type belongs to it, `data` has the fields its type
requires, the stream's key is present. Pure: no I/O, no clock except for defaults.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import TOP_LEVEL_FIELDS, DataMessage, new_message_id, now_iso
from tidewire.protocol.payloads import MARKET_DATA_PAYLOADS, PAYLOAD_OF_TYPE, Payload
from tidewire.protocol.streams import (
    SEVERITIES,
    SEVERITY_ALIASES,
    STREAM_OF_TYPE,
    resolve_stream,
)

MAX_ID_LENGTH = 200
_json_check = msgspec.json.Encoder()
# Accepted on input and ignored: the broker assigns sequencing, the gateway the version.
_IGNORED = frozenset({"seq", "sequence", "epoch", "version", "key", "message_type", "topic"})
_KNOWN = frozenset(
    {"type", "stream", "timestamp", "message_id", "correlation_id", "priority", "source", "data"}
) | frozenset(TOP_LEVEL_FIELDS)


def build_data_message(raw: Any, default_source: str = "api") -> DataMessage:
    """Validate a producer's message and return it as an unsequenced DataMessage.

    Raises ProtocolError with `invalid_message`, `unknown_type` or `unknown_stream`, and a
    `details` dict naming the offending field.
    """
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
    data = raw.get("data")
    if not isinstance(data, dict):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "`data` must be an object", {"field": "data"}
        )
    fields: dict[str, Any] = {}
    for name in TOP_LEVEL_FIELDS:
        value = raw.get(name)
        if value is None:
            value = data.get(name)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE,
                    f"`{name}` must be a non-empty string",
                    {"field": name},
                )
            fields[name] = value
    if "severity" in fields:
        fields["severity"] = _severity(fields["severity"])
    source = raw.get("source", default_source)
    if not isinstance(source, str) or not source:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "`source` must be a non-empty string", {"field": "source"}
        )
    spec = resolve_stream(stream)
    assert spec is not None  # _type_and_stream checked it
    if message_type == "market_data":
        fields["data_type"] = _market_data_type(fields.get("data_type"), data)
        schema: type[Payload] = MARKET_DATA_PAYLOADS[fields["data_type"]]
    else:
        schema = PAYLOAD_OF_TYPE[message_type]
    try:
        msgspec.convert(data, schema)
    except msgspec.ValidationError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"invalid `data` for {message_type}: {exc}",
            {"field": "data", "type": message_type},
        ) from None
    try:
        # One publish may be encoded for JSON and msgpack subscribers alike: refuse what
        # either cannot carry (a msgpack extension, an object of a Python producer).
        _json_check.encode(data)
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"`data` holds a value JSON cannot carry: {str(exc)[:120]}",
            {"field": "data"},
        ) from None
    key = source if spec.key_field == "source" else fields.get(spec.key_field)
    if key is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"{stream} messages need `{spec.key_field}` (the stream's key)",
            {"field": spec.key_field},
        )
    priority = raw.get("priority", 2)
    if type(priority) is not int or not 1 <= priority <= 4:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            "`priority` must be an integer from 1 to 4",
            {"field": "priority"},
        )
    return DataMessage(
        type=message_type,
        timestamp=_text(raw, "timestamp") or now_iso(),
        message_id=_text(raw, "message_id") or new_message_id(),
        correlation_id=_text(raw, "correlation_id"),
        stream=spec.name,
        key=key,
        source=source,
        priority=priority,
        data=data,
        **fields,
    )


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


def _market_data_type(declared: str | None, data: dict[str, Any]) -> str:
    if declared is not None:
        if declared not in MARKET_DATA_PAYLOADS:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"`data_type` must be one of {', '.join(MARKET_DATA_PAYLOADS)}",
                {"field": "data_type"},
            )
        return declared
    if "bid" in data and "ask" in data:
        return "quote"
    if "open" in data and "close" in data:
        return "bar"
    return "trade"


def _severity(value: str) -> str:
    level = SEVERITY_ALIASES.get(value.lower(), value.lower())
    if level not in SEVERITIES:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"`severity` must be one of {', '.join(SEVERITIES)}",
            {"field": "severity"},
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
