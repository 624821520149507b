"""Mapping of the original frontend's dialects onto protocol 3.0 (docs/protocol.md section 3).

The original Sprint 3 frontend spoke three subscribe dialects. All of them arrive here as a
decoded JSON object and leave as a version-3 command object:

* `{"action": "subscribe" | "unsubscribe" | "ping", ...}`: `action` is the command type;
* `message_type` or `topic` instead of `stream`, and singular stream names (`trade_update`);
* filter fields at the top level (`{"type":"subscribe","stream":"market_data","symbols":[...]}`)
  or the whole request nested in `data` (`{"type":"subscribe","data":{"stream":...}}`).

Pure functions: no I/O, no state.
"""

from __future__ import annotations

from typing import Any

from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import ACCEPTED_VERSIONS, PROTOCOL_VERSION
from tidewire.protocol.streams import (
    KEY_FILTER_OF_FIELD,
    STREAM_ALIASES,
    StreamSpec,
    resolve_stream,
)

_FILTER_NAMES = frozenset(
    {
        "symbols",
        "portfolio_ids",
        "strategy_ids",
        "user_id",
        "severity",
        "min_price",
        "max_price",
        "venue",
        "asset_class",
    }
)
_ACTIONS = frozenset({"subscribe", "unsubscribe", "ping"})
# Commands of the original hooks that Tidewire answers under another name.
_TYPE_ALIASES = {"update_filters": "update_subscription"}
# Commands that name a stream like `subscribe` does (`topic`, `message_type`, loose filters).
_STREAM_COMMANDS = frozenset({"subscribe", "get_snapshot", "get_trade_history"})


def normalize_command(raw: dict[str, Any]) -> dict[str, Any]:
    """Return `raw` as a protocol-3.0 command object (a new dict; `raw` is not changed).

    Raises ProtocolError(unsupported_version) for a version the gateway does not speak, and
    ProtocolError(invalid_message) when the object has neither `type` nor `action`.
    """
    cmd = dict(raw)
    version = cmd.get("version")
    if version is not None:
        if str(version) not in ACCEPTED_VERSIONS:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {version!r} is not supported; use one of "
                f"{', '.join(ACCEPTED_VERSIONS)}",
            )
        cmd["version"] = PROTOCOL_VERSION
    if "type" not in cmd:
        action = cmd.pop("action", None)
        if action is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message has no `type`")
        if not isinstance(action, str) or action not in _ACTIONS:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown action {action!r}")
        cmd["type"] = action
    else:
        cmd.pop("action", None)
    command_type = cmd["type"]
    if not isinstance(command_type, str):
        return cmd  # the codec reports it (`unknown_type`)
    command_type = cmd["type"] = _TYPE_ALIASES.get(command_type, command_type)
    if command_type in _STREAM_COMMANDS:
        _normalize_subscribe(cmd)
    elif command_type == "update_subscription":
        _merge_nested(cmd)
        _gather_filters(cmd)
    elif command_type == "unsubscribe":
        _normalize_unsubscribe(cmd)
    return cmd


def split_topic(name: str) -> tuple[str, str | None]:
    """`market_data.AAPL` -> (`market_data`, `AAPL`); a name without a key suffix (or one
    that is itself a stream name) -> (name, None). Stream names hold no dot; keys may
    (`AAPL.NASDAQ`), so the first dot splits."""
    if resolve_stream(name) is not None or "." not in name:
        return name, None
    stream, _, key = name.partition(".")
    if resolve_stream(stream) is None or not key:
        return name, None
    return stream, key


def _merge_nested(cmd: dict[str, Any]) -> None:
    nested = cmd.get("data")
    if isinstance(nested, dict):
        # The request nested in `data`, in full or only its filters: merge, top level wins.
        del cmd["data"]
        for name, value in nested.items():
            cmd.setdefault(name, value)


def _gather_filters(cmd: dict[str, Any]) -> None:
    loose = {name: cmd.pop(name) for name in list(cmd) if name in _FILTER_NAMES}
    if loose:
        filters = cmd.get("filters")
        if filters is None:
            cmd["filters"] = loose
        elif isinstance(filters, dict):
            cmd["filters"] = {**loose, **filters}


def _normalize_subscribe(cmd: dict[str, Any]) -> None:
    _merge_nested(cmd)
    for alias in ("message_type", "topic", "subscription_type", "channel"):
        if alias in cmd:
            value = cmd.pop(alias)
            cmd.setdefault("stream", value)
    _gather_filters(cmd)
    stream = cmd.get("stream")
    if isinstance(stream, str):
        name, key = split_topic(stream)
        if key is not None:
            cmd["topic"] = stream  # its key filter is added by `topic_filters`
        cmd["stream"] = STREAM_ALIASES.get(name, name)
    since = cmd.get("since")
    if isinstance(since, dict) and "sequence" in since and "seq" not in since:
        since = dict(since)
        since["seq"] = since.pop("sequence")
        cmd["since"] = since


def topic_filters(spec: StreamSpec, topic: str, filters: Any) -> Any:
    """`filters` with the key filter of a topic's suffix (`market_data.AAPL`: `symbols:
    ["AAPL"]`). Raises ProtocolError(invalid_filter) when the stream's key has no filter
    (engine_status, system_health, events) or `filters` names other keys."""
    _, key = split_topic(topic)
    if key is None:
        return filters
    name = KEY_FILTER_OF_FIELD.get(spec.key_field)
    if name is None:
        raise ProtocolError(
            ErrorCode.INVALID_FILTER,
            f"stream {spec.name} is keyed by {spec.key_field}, which no filter selects: "
            f"subscribe to {spec.name} without the suffix of {topic!r}",
            {"topic": topic},
        )
    if filters is None:
        filters = {}
    if not isinstance(filters, dict):
        return filters  # validation reports it
    current = filters.get(name)
    if current not in (None, [], "", [key]):
        raise ProtocolError(
            ErrorCode.INVALID_FILTER,
            f"topic {topic!r} names {key!r} but filters.{name} is {current!r}"[:300],
            {"topic": topic, "filter": name},
        )
    return {**filters, name: [key]}


def _normalize_unsubscribe(cmd: dict[str, Any]) -> None:
    nested = cmd.get("data")
    if isinstance(nested, dict) and "subscription_id" not in cmd and "subscription_ids" not in cmd:
        del cmd["data"]
        for name in ("subscription_id", "subscription_ids"):
            if name in nested:
                cmd[name] = nested[name]
