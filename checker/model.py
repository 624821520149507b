"""What a checker run publishes and subscribes to: streams, portfolios, messages, filters.

Pure. The publishers build messages here, the client specs are drawn here, and `verify`
decides with `matches` whether a published message belongs to a subscription, using the
rules of docs/protocol.md section 3 for the two filters the checker uses (`portfolio_ids`,
`severity`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

RELIABLE_STREAMS: tuple[str, ...] = (
    "order_updates",
    "trade_updates",
    "risk_alerts",
    "position_updates",
)
"""The streams the checker publishes on: every one keeps history and must not lose a message."""

MESSAGE_TYPE: dict[str, str] = {
    "order_updates": "order_update",
    "trade_updates": "trade_updates",
    "risk_alerts": "risk_alert",
    "position_updates": "position_update",
}

SYMBOLS: tuple[str, ...] = ("AAPL", "MSFT", "NVDA")
"""Few symbols, so that position_updates snapshots (one message per portfolio and symbol)
stay small and checkable."""

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}

SNAPSHOT_STREAMS = frozenset({"position_updates"})
"""Reliable streams that send a snapshot (latest message per key) on a fresh subscribe."""


def portfolios(count: int) -> tuple[str, ...]:
    return tuple(f"PF-{index}" for index in range(count))


@dataclass(frozen=True, slots=True)
class Published:
    """One message as the harness built it, before (and whatever) the gateway made of it."""

    message_id: str
    """Unique per message; a retry of the same message re-uses it (idempotent publish)."""
    stream: str
    portfolio: str
    publisher: str
    """Name of the publisher that built it (`p0`, `p1`, ... or `burst`)."""
    number: int
    """The publisher's own sequence number, from 1."""
    severity: str | None = None
    """risk_alerts only."""
    symbol: str | None = None
    """Every stream but risk_alerts; position_updates snapshots are per portfolio and symbol."""

    @property
    def snapshot_key(self) -> tuple[str, str | None]:
        """The unit a position_updates snapshot keeps one message of."""
        return (self.portfolio, self.symbol)


def to_wire(message: Published, pad: int = 0) -> dict[str, Any]:
    """The body of one POST /api/publish item for `message` (`pad`: extra payload bytes),
    in the canonical shape of its type (nothing for the gateway to rename or move)."""
    data: dict[str, Any]
    top: dict[str, Any] = {}
    tag = f"{message.publisher}-{message.number}"
    if message.stream == "order_updates":
        top = {"order_id": f"O-{tag}", "symbol": message.symbol, "order_status": "open"}
        data = {
            "side": "buy",
            "order_type": "limit",
            "quantity": 100,
            "filled_quantity": 0,
            "remaining_quantity": 100,
            "price": 100.0,
        }
    elif message.stream == "trade_updates":
        data = {
            "trade_id": f"T-{tag}",
            "order_id": f"O-{tag}",
            "symbol": message.symbol,
            "side": "sell",
            "quantity": 10,
            "price": 100.5,
            "status": "filled",
        }
    elif message.stream == "risk_alerts":
        top = {"risk_type": "var"}
        data = {
            "metric": "var_95",
            "current_value": 1.5,
            "threshold": 1.0,
            "message": "var_95 above its threshold",
            "timestamp": "2026-01-01T00:00:00Z",
        }
    else:
        top = {"symbol": message.symbol, "position_side": "long"}
        data = {"quantity": 10, "avg_price": 100.0, "unrealized_pnl": 0}
    data["checker"] = {"publisher": message.publisher, "number": message.number}
    if pad:
        data["pad"] = "x" * pad
    wire: dict[str, Any] = {
        "type": MESSAGE_TYPE[message.stream],
        "message_id": message.message_id,
        "portfolio_id": message.portfolio,
        "source": "checker",
        **top,
        "data": data,
    }
    if message.severity is not None:
        wire["severity"] = message.severity
    return wire


def draw_message(
    rng: random.Random,
    message_id: str,
    publisher: str,
    number: int,
    streams: tuple[str, ...],
    portfolio_names: tuple[str, ...],
    severity: str | None = None,
) -> Published:
    """A random message of one of `streams` for one of `portfolio_names`.

    `severity` fixes the severity of a risk alert (random otherwise).
    """
    stream = rng.choice(streams)
    return Published(
        message_id=message_id,
        stream=stream,
        portfolio=rng.choice(portfolio_names),
        publisher=publisher,
        number=number,
        severity=(severity or rng.choice(SEVERITIES)) if stream == "risk_alerts" else None,
        symbol=None if stream == "risk_alerts" else rng.choice(SYMBOLS),
    )


# --------------------------------------------------------------------------- subscriptions


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """One subscription a checker client makes."""

    subscription_id: str
    stream: str
    filters: dict[str, Any]
    """`portfolio_ids` (absent: every portfolio) and, on risk_alerts, maybe `severity`."""
    snapshot: bool | None = None
    """Sent as is; None leaves the stream's default (a snapshot on position_updates)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "stream": self.stream,
            "filters": self.filters,
            "snapshot": self.snapshot,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SubscriptionSpec:
        return cls(raw["subscription_id"], raw["stream"], dict(raw["filters"]), raw["snapshot"])


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What one client slot subscribes to; every incarnation of the slot uses the same."""

    slot: int
    subscriptions: tuple[SubscriptionSpec, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "subscriptions": [s.to_json() for s in self.subscriptions]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ClientSpec:
        return cls(raw["slot"], tuple(SubscriptionSpec.from_json(s) for s in raw["subscriptions"]))


def draw_client(rng: random.Random, slot: int, portfolio_names: tuple[str, ...]) -> ClientSpec:
    """One to three subscriptions on distinct or equal streams, each a random portfolio subset.

    Two subscriptions of one client may share a stream with overlapping portfolios: the SDK
    must route a message to each subscription whose filters match it. Now and then a
    subscription takes every portfolio (no filter), a severity minimum on risk_alerts, or
    refuses the position_updates snapshot.
    """
    subscriptions = []
    for index in range(rng.randint(1, 3)):
        stream = rng.choice(RELIABLE_STREAMS)
        filters: dict[str, Any] = {}
        if rng.random() >= 0.1:
            count = rng.randint(1, max(1, len(portfolio_names) // 2))
            filters["portfolio_ids"] = sorted(rng.sample(portfolio_names, count))
        if stream == "risk_alerts" and rng.random() < 0.4:
            filters["severity"] = rng.choice(("medium", "high"))
        # position_updates: half keep the default (a snapshot first), half refuse it.
        snapshot = False if stream in SNAPSHOT_STREAMS and rng.random() < 0.5 else None
        subscriptions.append(SubscriptionSpec(f"c{slot}-s{index}", stream, filters, snapshot))
    return ClientSpec(slot, tuple(subscriptions))


def matches(filters: dict[str, Any], message: Published) -> bool:
    """Whether `message` belongs to a subscription with `filters` (same stream assumed)."""
    return matches_fields(filters, message.portfolio, message.severity)


def matches_fields(filters: dict[str, Any], portfolio: str | None, severity: str | None) -> bool:
    """`matches` on the two fields the checker filters on, as read from a message."""
    allowed = filters.get("portfolio_ids")
    if allowed is not None and portfolio not in allowed:
        return False
    minimum = filters.get("severity")
    if minimum is not None:
        if severity not in SEVERITY_RANK:
            return False
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]
    return True
