"""The top level of every message type: which fields sit beside `data`, required or not.

With `protocol.payloads` (the `data` objects) this is the canonical shape of each message type
of the original frontend (docs/protocol.md, "Message types"). Ingest moves a type's top-level
field found inside `data` (where Tidewire 0.1 put it) to the top level, checks the required
ones and the enums. Pure data, no I/O.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from tidewire.protocol import payloads
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE, Payload


def _values(literal: object) -> tuple[str, ...]:
    return tuple(typing.get_args(literal))


@dataclass(frozen=True, slots=True)
class Shape:
    """The canonical shape of one message type."""

    message_type: str
    required: tuple[str, ...] = ()
    """Top-level fields every message of the type carries."""
    optional: tuple[str, ...] = ()
    """Top-level fields of the original shape that may be absent."""
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Allowed values of top-level fields."""
    any_of: tuple[str, ...] = ()
    """At least one of these must be present (Tidewire's rule where the original shape gives
    no key: see `trade_updates` and `order_update` in docs/protocol.md)."""

    @property
    def payload(self) -> type[Payload]:
        return PAYLOAD_OF_TYPE[self.message_type]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


SEVERITY = _values(payloads.Severity)

SHAPES: dict[str, Shape] = {
    shape.message_type: shape
    for shape in (
        Shape(
            "market_data",
            required=("symbol",),
            optional=("venue", "data_type"),
            enums={"data_type": _values(payloads.DataType)},
        ),
        Shape(
            "trade_updates",
            # The original requires user_id; Tidewire also accepts a trade that names only
            # its portfolio (0.1 producers, engines that know accounts, not people).
            optional=("user_id", "trade_type"),
            enums={"trade_type": _values(payloads.TradeType)},
            any_of=("user_id", "portfolio_id"),
        ),
        Shape(
            "order_update",
            required=("order_id", "symbol", "order_status"),
            optional=("user_id",),
            enums={"order_status": _values(payloads.OrderStatus)},
            any_of=("user_id", "portfolio_id"),
        ),
        Shape(
            "position_update",
            required=("portfolio_id", "symbol", "position_side"),
            enums={"position_side": _values(payloads.PositionSide)},
        ),
        Shape("performance_update", required=("portfolio_id",), optional=("strategy_id",)),
        Shape(
            "risk_alert",
            required=("portfolio_id", "risk_type", "severity"),
            enums={"severity": SEVERITY},
        ),
        Shape(
            "breach_alert",
            required=("portfolio_id", "breach_type", "severity"),
            enums={"severity": SEVERITY},
        ),
        Shape("strategy_performance", required=("strategy_id", "strategy_name")),
        Shape("execution_analytics", required=("execution_id", "symbol")),
        Shape("risk_metrics", required=("portfolio_id", "metric_type")),
        Shape(
            "system_health",
            optional=("component", "status"),
            enums={"status": _values(payloads.HealthStatus)},
        ),
        Shape("engine_status", optional=("engine_id",)),
        Shape("event", required=("event_type", "event_id")),
        Shape(
            "alert",
            required=("alert_level",),
            optional=("alert_category",),
            enums={"alert_level": SEVERITY},
        ),
        Shape(
            "system_alert",
            required=("component", "alert_type", "severity"),
            enums={"severity": SEVERITY},
        ),
        Shape("notification"),
        Shape(
            "command_response",
            required=("command", "status"),
            optional=("command_id",),
            enums={"status": _values(payloads.CommandStatus)},
        ),
    )
}

ROUTING_FIELDS: tuple[str, ...] = (
    "symbol",
    "venue",
    "data_type",
    "asset_class",
    "portfolio_id",
    "strategy_id",
    "user_id",
    "severity",
    "risk_type",
    "engine_id",
    "component",
)
"""Top-level fields any message may carry (filters and entitlements read them); found only
inside `data`, they are copied to the top level."""

TOP_LEVEL_FIELDS: tuple[str, ...] = ROUTING_FIELDS + tuple(
    sorted({name for shape in SHAPES.values() for name in shape.fields} - set(ROUTING_FIELDS))
)
"""Every top-level field a data message may carry beside the envelope."""
