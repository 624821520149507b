"""The isolation test's world and its oracle: the entitlement rule restated from the docs,
independently of the server's code, and what a subscribe must be answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidewire.protocol.streams import (
    SEVERITIES,
    STREAM_ALIASES,
    STREAM_OF_TYPE,
    STREAMS,
)

# ------------------------------------------------------------------ the world of the test

PORTFOLIOS = ("PF-0", "PF-1", "PF-2", "PF-3", "PF-4")
UNOWNED = "PF-9"
"""Published to, granted to nobody but `["*"]` tokens."""
USER_NAMES = tuple(f"u{i}" for i in range(5))
NOBODY = "u-nobody"
"""User-addressed messages to a user that never connects."""
SYMBOLS = ("AAPL", "MSFT", "EURUSD", "BTCUSD")
STRATEGIES = ("S-1", "S-2", "S-3")
VENUES = ("XNAS", "LSE")
ASSET_CLASSES = ("equity", "fx", "crypto")
SOURCES = ("risk-engine", "oms", "operator")
ENGINES = ("E-1", "E-2", "E-3")
COMPONENTS = ("redis", "oms", "pricer")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
STREAM_NAMES = tuple(STREAMS)
DATA_TYPES = frozenset(STREAM_OF_TYPE)
ALIASES_OF: dict[str, tuple[str, ...]] = {
    name: tuple(sorted(a for a, target in STREAM_ALIASES.items() if target == name))
    for name in STREAMS
}
FIELD_OF_FILTER = {
    "symbols": "symbol",
    "portfolio_ids": "portfolio_id",
    "strategy_ids": "strategy_id",
    "user_id": "user_id",
    "venue": "venue",
    "asset_class": "asset_class",
}


def canonical(stream: str) -> str:
    return stream if stream in STREAMS else STREAM_ALIASES[stream]


# docs/protocol.md, "Who reads what": the streams whose every message names a portfolio,
# where subscriptions are narrowed to the token's portfolios. (Trades and orders may name
# only a user: they are checked message by message.)
PORTFOLIO_KEYED = frozenset(
    {"position_updates", "risk_alerts", "performance_updates", "risk_metrics"}
)


def portfolio_keyed(stream: str) -> bool:
    return stream in PORTFOLIO_KEYED


# ------------------------------------------------------------------ the model: who reads what


@dataclass(frozen=True)
class Grant:
    """What a token entitles its holder to (the rule of core/entitlements.py)."""

    user: str
    portfolios: frozenset[str] | None
    """None: every portfolio (`["*"]`)."""
    streams: frozenset[str] | None
    """Canonical names; None: every stream (no `streams` claim)."""
    roles: frozenset[str]

    @staticmethod
    def of(
        user: str,
        portfolios: tuple[str, ...] | None,
        streams: tuple[str, ...] | None,
        roles: tuple[str, ...] | None,
    ) -> Grant:
        return Grant(
            user=user,
            portfolios=None if portfolios and "*" in portfolios else frozenset(portfolios or ()),
            streams=None if streams is None else frozenset(canonical(s) for s in streams),
            roles=frozenset(roles) if roles is not None else frozenset({"subscriber"}),
        )

    @property
    def admin(self) -> bool:
        return "admin" in self.roles

    def reads_portfolio(self, portfolio: str) -> bool:
        return self.portfolios is None or portfolio in self.portfolios


@dataclass(frozen=True)
class Published:
    """A message as the test published it, with the fields filters and the rule read."""

    stream: str
    seq: int
    message_id: str
    node: int
    portfolio_id: str | None
    user_id: str | None
    symbol: str | None
    strategy_id: str | None
    venue: str | None
    asset_class: str | None
    severity: str | None
    price: float | None


def readable(grant: Grant, message: Published) -> bool:
    """The one rule: streams claim, then portfolio, then user, else everyone."""
    if grant.streams is not None and message.stream not in grant.streams:
        return False
    if message.portfolio_id is not None:
        return grant.reads_portfolio(message.portfolio_id)
    if message.user_id is not None:
        return message.user_id == grant.user or grant.admin
    return True


def matches(filters: dict[str, Any], message: Published) -> bool:
    """Filter semantics of docs/protocol.md: AND of all; a missing field never matches."""
    for name, value in filters.items():
        if name in ("min_price", "max_price"):
            if message.price is None:
                return False
            if name == "min_price" and message.price < value:
                return False
            if name == "max_price" and message.price > value:
                return False
        elif name == "severity":
            rank = SEVERITY_RANK.get(message.severity or "")
            if rank is None or rank < SEVERITY_RANK[value]:
                return False
        else:
            allowed = value if isinstance(value, list) else [value]
            if getattr(message, FIELD_OF_FILTER[name]) not in allowed:
                return False
    return True


def forbidden_reason(grant: Grant, stream: str, filters: dict[str, Any]) -> str | None:
    """Why a subscribe must be refused with `forbidden`, or None when it must be confirmed."""
    if not grant.roles & {"subscriber", "admin"}:
        return "no subscriber role"
    if grant.streams is not None and stream not in grant.streams:
        return "stream outside the streams claim"
    user = filters.get("user_id")
    if user is not None and user != grant.user and not grant.admin:
        return "another user's user_id"
    wanted = filters.get("portfolio_ids")
    if wanted is not None and not all(grant.reads_portfolio(p) for p in wanted):
        return "foreign portfolio"
    if portfolio_keyed(stream) and wanted is None and grant.portfolios == frozenset():
        return "no portfolio, portfolio-keyed stream"
    return None


def narrowed(grant: Grant, stream: str, filters: dict[str, Any]) -> dict[str, Any]:
    """The filters a permitted subscribe is confirmed with: on portfolio-keyed streams,
    none named means the token's portfolios."""
    if portfolio_keyed(stream) and "portfolio_ids" not in filters and grant.portfolios:
        return {**filters, "portfolio_ids": sorted(grant.portfolios)}
    return dict(filters)


def safe_after_refresh(new: Grant, stream: str, filters: dict[str, Any]) -> bool:
    """Whether a portfolio-keyed subscription with these confirmed filters may go on under
    `new`: everything it selects must be readable by `new`."""
    if new.streams is not None and stream not in new.streams:
        return False
    user = filters.get("user_id")
    if user is not None and user != new.user and not new.admin:
        return False
    if new.portfolios is None:
        return True
    wanted = filters.get("portfolio_ids")
    return wanted is not None and set(wanted) <= new.portfolios


# ------------------------------------------------------------------ scenarios (hypothesis)


PortfolioClaim = tuple[str, ...] | None
StreamsClaim = tuple[str, ...] | None
