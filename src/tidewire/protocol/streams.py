"""The stream catalogue of docs/protocol.md section 4: names, keys, delivery class and filters.

Everything about a stream that the rest of the gateway needs to know lives here, so that the
hub, the brokers, the schema export and the docs read one table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidewire.protocol.messages import DataMessage


class StreamClass(enum.Enum):
    """How a stream is delivered (docs/protocol.md section 5)."""

    LATEST_VALUE = "latest-value"
    """Only the newest message per key matters: slow readers get conflated updates."""
    RELIABLE = "reliable"
    """Every message matters: history is kept and nothing is dropped silently."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One stream of the catalogue."""

    name: str
    """Canonical (plural) stream name, as it appears in `stream` of every data message."""
    key_field: str
    """Field whose value partitions the stream (the message's `key`)."""
    stream_class: StreamClass
    message_types: tuple[str, ...]
    """Message `type`s published on this stream; the first is the main one."""
    filters: frozenset[str]
    """Filter names a subscription to this stream may use (others are `invalid_filter`)."""
    key_fallback: str | None = None
    """Field that keys a message without `key_field` (the original shapes of trades and
    orders name a user, not a portfolio; engines and components may go unnamed)."""
    snapshot_fields: tuple[str, ...] = ()
    """Fields that, with the key, make the unit of last values and conflation."""
    snapshot: bool | None = None
    """Whether the stream keeps the newest message per unit for snapshots; None: exactly
    when it is latest-value."""

    @property
    def reliable(self) -> bool:
        return self.stream_class is StreamClass.RELIABLE

    @property
    def keeps_last_values(self) -> bool:
        return not self.reliable if self.snapshot is None else self.snapshot


_PORTFOLIO = frozenset({"portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"})
_PRICED = frozenset({"min_price", "max_price"})

STREAMS: dict[str, StreamSpec] = {
    spec.name: spec
    for spec in (
        StreamSpec(
            "market_data",
            "symbol",
            StreamClass.LATEST_VALUE,
            ("market_data",),
            frozenset({"symbols", "venue", "asset_class"}) | _PRICED,
            # A bar must not be replaced by a quote.
            snapshot_fields=("data_type",),
        ),
        StreamSpec(
            "trade_updates",
            "portfolio_id",
            StreamClass.RELIABLE,
            ("trade_updates",),
            _PORTFOLIO | _PRICED | {"asset_class"},
            key_fallback="user_id",
        ),
        StreamSpec(
            "order_updates",
            "portfolio_id",
            StreamClass.RELIABLE,
            ("order_update",),
            _PORTFOLIO | _PRICED | {"asset_class"},
            key_fallback="user_id",
        ),
        StreamSpec(
            "position_updates",
            "portfolio_id",
            StreamClass.RELIABLE,
            ("position_update",),
            _PORTFOLIO | {"asset_class"},
            # A portfolio holds a position per symbol, and per strategy where several
            # strategies trade one symbol in one account (NautilusTrader does).
            snapshot_fields=("strategy_id", "symbol"),
            snapshot=True,
        ),
        StreamSpec(
            "risk_alerts",
            "portfolio_id",
            StreamClass.RELIABLE,
            ("risk_alert", "breach_alert"),
            _PORTFOLIO | {"severity"},
        ),
        StreamSpec(
            "performance_updates",
            "portfolio_id",
            StreamClass.LATEST_VALUE,
            ("performance_update",),
            frozenset({"portfolio_ids", "user_id"}),
        ),
        StreamSpec(
            "strategy_performance",
            "strategy_id",
            StreamClass.LATEST_VALUE,
            ("strategy_performance",),
            frozenset({"strategy_ids", "portfolio_ids", "user_id"}),
        ),
        StreamSpec(
            "execution_analytics",
            "symbol",
            StreamClass.RELIABLE,
            ("execution_analytics",),
            frozenset({"symbols", "portfolio_ids", "strategy_ids", "venue", "user_id"}),
        ),
        StreamSpec(
            "risk_metrics",
            "portfolio_id",
            StreamClass.LATEST_VALUE,
            ("risk_metrics",),
            frozenset({"portfolio_ids", "user_id"}),
            # One message per portfolio and metric: VaR must not replace leverage.
            snapshot_fields=("metric_type",),
        ),
        StreamSpec(
            "engine_status",
            "engine_id",
            StreamClass.LATEST_VALUE,
            ("engine_status",),
            frozenset({"severity"}),
            key_fallback="source",
        ),
        StreamSpec(
            "system_health",
            "component",
            StreamClass.LATEST_VALUE,
            ("system_health",),
            frozenset({"severity"}),
            key_fallback="source",
        ),
        StreamSpec(
            "events",
            "source",
            StreamClass.RELIABLE,
            ("event", "alert", "system_alert", "notification", "command_response"),
            frozenset({"severity", "portfolio_ids", "user_id"}),
        ),
    )
}

# Every message type maps to exactly one stream.
STREAM_OF_TYPE: dict[str, str] = {
    message_type: spec.name for spec in STREAMS.values() for message_type in spec.message_types
}

# The original frontend used singular names and a few aliases; section 3 "Compatibility".
STREAM_ALIASES: dict[str, str] = {
    "trade_update": "trade_updates",
    "trades": "trade_updates",
    "order_update": "order_updates",
    "orders": "order_updates",
    "position_update": "position_updates",
    "positions": "position_updates",
    "risk_alert": "risk_alerts",
    "breach_alert": "risk_alerts",
    "performance_update": "performance_updates",
    "performance": "performance_updates",
    "strategy_performances": "strategy_performance",
    "execution_analytic": "execution_analytics",
    "risk_metric": "risk_metrics",
    "engine_statuses": "engine_status",
    "system_healths": "system_health",
    "event": "events",
    "market_datas": "market_data",
    "quotes": "market_data",
}


# `subscribe {event_types: [...]}` of the original trade-updates hook: event names -> streams
# (a message type or stream name is accepted too).
EVENT_TYPE_STREAMS: dict[str, str] = {
    "trade_executed": "trade_updates",
    "order_status": "order_updates",
    "position_update": "position_updates",
    "pnl_update": "performance_updates",
}


def stream_of_event_type(name: str) -> StreamSpec | None:
    """The stream an `event_types` entry names (event, message type or stream), or None."""
    stream = EVENT_TYPE_STREAMS.get(name) or STREAM_OF_TYPE.get(name)
    return STREAMS[stream] if stream is not None else resolve_stream(name)


def resolve_stream(name: str) -> StreamSpec | None:
    """The stream called `name` (canonical, singular or alias), or None when there is none."""
    spec = STREAMS.get(name)
    if spec is not None:
        return spec
    alias = STREAM_ALIASES.get(name)
    return STREAMS[alias] if alias is not None else None


# Field a filter reads on a message, for filters that compare a single field.
FILTER_FIELDS: dict[str, str] = {
    "symbols": "symbol",
    "portfolio_ids": "portfolio_id",
    "strategy_ids": "strategy_id",
    "user_id": "user_id",
    "venue": "venue",
    "asset_class": "asset_class",
    "severity": "severity",
}

# The filter that selects by a stream's key, when the stream has one; the hub indexes it.
KEY_FILTER_OF_FIELD: dict[str, str] = {
    "symbol": "symbols",
    "portfolio_id": "portfolio_ids",
    "strategy_id": "strategy_ids",
}

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}
# Nautilus and many engines say "info"/"warning"/"error"; map them onto the four levels.
SEVERITY_ALIASES: dict[str, str] = {
    "info": "low",
    "warning": "medium",
    "warn": "medium",
    "error": "high",
    "fatal": "critical",
}


def snapshot_key(spec: StreamSpec, message: DataMessage) -> str:
    """The unit in which a stream keeps last values and conflates: newer replaces older.

    The key, then the stream's `snapshot_fields` (top level first, then `data`).
    """
    if not spec.snapshot_fields:
        return message.key
    parts = [message.key]
    for name in spec.snapshot_fields:
        value = getattr(message, name, None)
        if value is None:
            value = message.data.get(name)
        parts.append("" if value is None else str(value))
    return "\x1f".join(parts)


def keeps_last_values(spec: StreamSpec) -> bool:
    """Whether a stream keeps the newest message per snapshot key (for snapshots)."""
    return spec.keeps_last_values
