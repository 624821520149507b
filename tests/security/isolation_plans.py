"""What the isolation test draws: users, connections, subscriptions, refreshes, and the
messages published on every stream."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from security.isolation_model import (
    ALIASES_OF,
    ASSET_CLASSES,
    COMPONENTS,
    ENGINES,
    NOBODY,
    PORTFOLIOS,
    SOURCES,
    STRATEGIES,
    STREAM_NAMES,
    SYMBOLS,
    UNOWNED,
    USER_NAMES,
    VENUES,
    PortfolioClaim,
    Published,
    StreamsClaim,
    canonical,
)
from tidewire.protocol.streams import (
    SEVERITIES,
    STREAMS,
)


@dataclass(frozen=True)
class UserPlan:
    name: str
    portfolios: PortfolioClaim
    streams: StreamsClaim
    roles: tuple[str, ...] | None


@dataclass(frozen=True)
class SubPlan:
    stream: str
    """As sent: a canonical name or an alias."""
    filters: dict[str, Any] | None
    explicit_id: bool
    snapshot: bool | None
    rate_limit: float | None
    since: int | str | None
    """None; an index into the positions seen so far for the stream; or "bogus" (an epoch
    that never existed)."""


@dataclass(frozen=True)
class RefreshPlan:
    portfolios: PortfolioClaim
    streams: StreamsClaim


@dataclass(frozen=True)
class ConnPlan:
    user: str
    node: int
    subprotocol: str | None
    batch_ms: int
    decimals: str | None
    opens_in: int
    """Phase 1, or phase 2 (then it subscribes only once, while phase 2 publishes)."""
    first: tuple[SubPlan, ...]
    refresh: RefreshPlan | None
    drop: tuple[int, ...]
    second: tuple[SubPlan, ...]


@dataclass(frozen=True)
class Scenario:
    users: tuple[UserPlan, ...]
    connections: tuple[ConnPlan, ...]
    publishes: tuple[int, int, int]
    """Messages published before anyone connects, during phase 1, during phase 2."""
    seed: int
    """Of the random published messages (too many to draw one by one with hypothesis)."""


@st.composite
def stream_names(draw: st.DrawFn, among: tuple[str, ...] = STREAM_NAMES) -> str:
    name = draw(st.sampled_from(among))
    aliases = ALIASES_OF.get(name, ())
    if aliases and draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from(aliases))
    return name


@st.composite
def portfolio_claims(draw: st.DrawFn) -> PortfolioClaim:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return None  # no claim: no portfolio
    if kind == 1:
        return ()
    if kind == 2:
        return ("*",)
    if kind == 3:
        return ("PF-0", "*")
    return tuple(draw(st.lists(st.sampled_from(PORTFOLIOS), min_size=1, max_size=4, unique=True)))


@st.composite
def streams_claims(draw: st.DrawFn) -> StreamsClaim:
    if draw(st.integers(0, 9)) >= 3:
        return None
    names = draw(st.lists(st.sampled_from(STREAM_NAMES), min_size=1, max_size=4, unique=True))
    return tuple(draw(stream_names((name,))) for name in names)


ROLE_SETS: tuple[tuple[str, ...] | None, ...] = (
    ("subscriber",),
    ("subscriber",),
    ("subscriber",),
    ("subscriber",),
    None,
    ("subscriber", "admin"),
    ("subscriber", "admin"),
    ("admin",),
    ("publisher",),
)


@st.composite
def user_plans(draw: st.DrawFn, name: str) -> UserPlan:
    return UserPlan(
        name, draw(portfolio_claims()), draw(streams_claims()), draw(st.sampled_from(ROLE_SETS))
    )


def own_portfolios(user: UserPlan) -> tuple[str, ...]:
    claim = user.portfolios or ()
    return (*PORTFOLIOS, UNOWNED) if "*" in claim else tuple(p for p in claim if p != "*")


@st.composite
def filter_values(draw: st.DrawFn, name: str, user: UserPlan) -> Any:
    if name == "portfolio_ids":
        own = own_portfolios(user)
        if own and draw(st.integers(0, 3)) > 0:
            return draw(st.lists(st.sampled_from(own), min_size=1, max_size=3, unique=True))
        # An attempt on a portfolio the token may not grant (forbidden unless it does).
        foreign = [p for p in (*PORTFOLIOS, UNOWNED) if p not in own] or [UNOWNED]
        picked = draw(st.lists(st.sampled_from(own), max_size=1)) if own else []
        return [*picked, draw(st.sampled_from(foreign))]
    if name == "user_id":
        # Half the time another user's (forbidden unless admin): every run must try it.
        if draw(st.booleans()):
            return user.name
        return draw(st.sampled_from([u for u in (*USER_NAMES, NOBODY) if u != user.name]))
    if name == "symbols":
        return draw(
            st.lists(st.sampled_from((*SYMBOLS, "ZZZ")), min_size=1, max_size=2, unique=True)
        )
    if name == "strategy_ids":
        return draw(st.lists(st.sampled_from(STRATEGIES), min_size=1, max_size=2, unique=True))
    if name == "severity":
        return draw(st.sampled_from(SEVERITIES))
    if name == "venue":
        return draw(st.sampled_from(VENUES))
    if name == "asset_class":
        return draw(st.sampled_from(ASSET_CLASSES))
    assert name in ("min_price", "max_price"), name
    return draw(st.integers(88, 112)) + 0.25  # never equal to a published price


@st.composite
def filter_sets(draw: st.DrawFn, stream: str, user: UserPlan) -> dict[str, Any] | None:
    names = sorted(STREAMS[stream].filters)
    count = min(draw(st.sampled_from((0, 0, 0, 0, 1, 1, 2))), len(names))
    chosen = draw(st.lists(st.sampled_from(names), min_size=count, max_size=count, unique=True))
    filters = {name: draw(filter_values(name, user)) for name in chosen}
    if filters.get("min_price", 0) > filters.get("max_price", 1000):
        filters["min_price"], filters["max_price"] = filters["max_price"], filters["min_price"]
    if not filters:
        return draw(st.sampled_from((None, {})))
    return filters


@st.composite
def sub_plans(draw: st.DrawFn, user: UserPlan) -> SubPlan:
    if user.streams and draw(st.integers(0, 4)) > 0:
        stream = draw(st.sampled_from(user.streams))
    else:
        stream = draw(stream_names())
    spec = STREAMS[canonical(stream)]
    since_kind = draw(st.integers(0, 19))
    since: int | str | None = None
    if 11 <= since_kind < 19:
        since = draw(st.integers(0, 1000))
    elif since_kind == 19:
        since = "bogus"
    return SubPlan(
        stream=stream,
        filters=draw(filter_sets(spec.name, user)),
        explicit_id=draw(st.integers(0, 5)) > 0,
        snapshot=draw(st.sampled_from((None, None, True, False))),
        rate_limit=None if spec.reliable else draw(st.sampled_from((None, None, 25.0, 200.0))),
        since=since,
    )


@st.composite
def conn_plans(draw: st.DrawFn, user: UserPlan, opens_in: int) -> ConnPlan:
    later = opens_in == 1
    refresh = None
    # Refreshes are frequent for tokens of every portfolio: narrowing those is the case
    # where a subscription without filters must not go on reading everything.
    everything = "*" in (user.portfolios or ())
    if later and draw(st.integers(0, 3)) < (3 if everything else 2):
        streams = user.streams if draw(st.integers(0, 2)) > 0 else draw(streams_claims())
        if everything and draw(st.integers(0, 3)) > 0:
            portfolios: PortfolioClaim = tuple(
                draw(st.lists(st.sampled_from(PORTFOLIOS), min_size=1, max_size=3, unique=True))
            )
        else:
            portfolios = draw(portfolio_claims())
        refresh = RefreshPlan(portfolios, streams)
    return ConnPlan(
        user=user.name,
        node=draw(st.integers(0, 1)),
        subprotocol=draw(st.sampled_from((None, "tidewire.v3.json", "tidewire.v3.msgpack"))),
        batch_ms=draw(st.sampled_from((0, 0, 1, 5, 20))),
        decimals=draw(st.sampled_from((None, None, "string", "number"))),
        opens_in=opens_in,
        first=tuple(draw(st.lists(sub_plans(user), min_size=1, max_size=5))),
        refresh=refresh,
        drop=tuple(draw(st.lists(st.integers(0, 9), max_size=2))) if later else (),
        second=tuple(draw(st.lists(sub_plans(user), max_size=3))) if later else (),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(2, 5))
    users = tuple(draw(user_plans(name)) for name in USER_NAMES[:count])
    connections = []
    for user in users:
        for _ in range(draw(st.integers(1, 3))):
            connections.append(draw(conn_plans(user, 1)))
        if draw(st.integers(0, 2)) == 0:
            connections.append(draw(conn_plans(user, 2)))
    publishes = (
        draw(st.integers(0, 300)),
        draw(st.integers(500, 1000)),
        draw(st.integers(500, 1000)),
    )
    return Scenario(users, tuple(connections), publishes, draw(st.integers(0, 2**32 - 1)))


# ------------------------------------------------------------------ published messages


def make_message(rng: random.Random, stream: str, message_id: str) -> dict[str, Any]:
    """A random valid producer message of `stream`, with the fields filters read."""

    def chance(p: float) -> bool:
        return rng.random() < p

    def portfolio() -> str:
        return rng.choice((*PORTFOLIOS, UNOWNED))

    def user() -> str:
        return rng.choice((*USER_NAMES, NOBODY))

    symbol = rng.choice(SYMBOLS)
    price = rng.randint(90, 110)
    raw: dict[str, Any] = {"message_id": message_id}
    data: dict[str, Any]
    extras: dict[str, float] = {}  # field -> probability of carrying it
    names_portfolio: float = 0.0
    names_user: float = 0.0
    if stream == "market_data":
        if chance(0.5):
            raw |= {"type": "market_data", "data_type": "quote"}
            data = {"bid_price": price, "ask_price": price + 1}
        else:
            raw |= {"type": "market_data", "data_type": "trade"}
            data = {"price": price, "last_trade_size": 1}
        raw["symbol"] = symbol
        extras = {"venue": 0.5, "asset_class": 0.5}
        names_portfolio, names_user = 0.08, 0.08
    elif stream in ("trade_updates", "order_updates", "position_updates"):
        n = message_id.rsplit("-", 1)[-1]
        if stream == "trade_updates":
            raw["type"] = "trade_updates"
            data = {"trade_id": f"T{n}", "order_id": f"O{n}", "side": "buy", "quantity": 1}
            data |= {"price": price, "status": "filled", "symbol": symbol}
            # The original shape names a user; many trades name no portfolio at all.
            names_portfolio, names_user = 0.6, 0.7
        elif stream == "order_updates":
            raw |= {"type": "order_update", "order_id": f"O{n}", "order_status": "open"}
            raw["symbol"] = symbol
            data = {"side": "sell", "order_type": "limit", "quantity": 5}
            data |= {"filled_quantity": 0, "price": price}
            names_portfolio, names_user = 0.6, 0.7
        else:
            raw |= {"type": "position_update", "symbol": symbol}
            data = {"quantity": rng.randint(-5, 5), "avg_price": 10.0, "unrealized_pnl": 0.0}
            names_portfolio, names_user = 1.0, 0.3
        extras = {"strategy_id": 0.5, "venue": 0.5, "asset_class": 0.4}
    elif stream == "risk_alerts":
        raw["type"] = rng.choice(("risk_alert", "breach_alert"))
        if raw["type"] == "risk_alert":
            data = {"metric": "gross", "current_value": 2.0, "threshold": 1.5, "message": "gross"}
            raw["risk_type"] = "exposure"
        else:
            data = {"limit_type": "gross", "current_value": 2.0, "limit_value": 1.5}
            raw["breach_type"] = "exposure"
        data["timestamp"] = "2026-01-01T00:00:00Z"
        raw["severity"] = rng.choice(SEVERITIES)  # required by both shapes
        extras = {"symbol": 0.3, "strategy_id": 0.3, "venue": 0.2}
        names_portfolio, names_user = 1.0, 0.3
    elif stream == "performance_updates":
        raw["type"] = "performance_update"
        data = {"pnl": 1.0, "returns": 0.01}
        names_portfolio, names_user = 1.0, 0.3
    elif stream == "risk_metrics":
        raw |= {"type": "risk_metrics", "metric_type": rng.choice(("var_95", "leverage"))}
        data = {"value": 1.0}
        names_portfolio, names_user = 1.0, 0.3
    elif stream == "strategy_performance":
        strategy = rng.choice(STRATEGIES)
        raw |= {"type": "strategy_performance", "strategy_id": strategy}
        data = {"total_return": 0.1, "sharpe_ratio": 1.0, "max_drawdown": 0.1}
        data |= {"trade_count": 3, "win_rate": 0.5, "profit_factor": 1.2}
        names_portfolio, names_user = 0.4, 0.5
    elif stream == "execution_analytics":
        raw |= {"type": "execution_analytics", "symbol": symbol, "execution_id": message_id}
        data = {"fill_price": 100.1, "benchmark_price": 100.0, "execution_time_ms": 2.0}
        extras = {"strategy_id": 0.4, "venue": 0.4}
        names_portfolio, names_user = 0.4, 0.5
    elif stream == "engine_status":
        raw |= {"type": "engine_status", "engine_id": rng.choice(ENGINES)}
        data = {"state": rng.choice(("running", "degraded", "down")), "uptime": 5.0}
        extras = {"severity": 0.5}
        names_portfolio, names_user = 0.1, 0.1
    elif stream == "system_health":
        raw |= {"type": "system_health", "component": rng.choice(COMPONENTS)}
        data = {"status": rng.choice(("healthy", "degraded", "error"))}
        extras = {"severity": 0.5}
        names_portfolio, names_user = 0.1, 0.1
    else:
        assert stream == "events", stream
        raw |= {"type": rng.choice(STREAMS["events"].message_types)}
        raw["source"] = rng.choice(SOURCES)
        data, extras = _event(raw, rng), {"severity": 0.7}
        names_portfolio, names_user = 0.35, 0.55  # user-only messages: 0.65 * 0.55
    for name, probability in extras.items():
        if chance(probability):
            raw[name] = {
                "strategy_id": lambda: rng.choice(STRATEGIES),
                "venue": lambda: rng.choice(VENUES),
                "asset_class": lambda: rng.choice(ASSET_CLASSES),
                "severity": lambda: rng.choice(SEVERITIES),
                "symbol": lambda: symbol,
            }[name]()
    if chance(names_portfolio):
        # Where the producer puts it does not matter: ingest lifts `data.portfolio_id`.
        (data if chance(0.2) else raw)["portfolio_id"] = portfolio()
    if chance(names_user) or (
        stream in ("trade_updates", "order_updates")
        and "portfolio_id" not in raw
        and "portfolio_id" not in data
    ):
        # A trade or an order names its user or its portfolio, at least one.
        (data if chance(0.2) else raw)["user_id"] = user()
    raw["data"] = data
    return raw


def _event(raw: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The required fields of each `events` type (the top level into `raw`)."""
    match raw["type"]:
        case "event":
            raw["event_type"] = "notice"
            return {"description": "notice"}
        case "alert":
            raw["alert_level"] = rng.choice(SEVERITIES)
            return {"title": "Notice", "message": "notice"}
        case "system_alert":
            raw |= {"component": "gateway", "alert_type": "notice"}
            raw["severity"] = rng.choice(SEVERITIES)
            return {"description": "notice"}
        case "command_response":
            raw |= {"command": "flatten", "status": "success"}
            return {}
        case _:
            return {"message": "notice"}


def published(raw: dict[str, Any], stream: str, seq: int, node: int) -> Published:
    data = raw["data"]

    def value(name: str) -> Any:
        found = raw.get(name)
        return found if found is not None else data.get(name)

    price = None
    for name in ("price", "last_trade_price"):
        if data.get(name) is not None:
            price = float(data[name])
            break
    else:
        if data.get("bid_price") is not None and data.get("ask_price") is not None:
            price = (data["bid_price"] + data["ask_price"]) / 2.0
    return Published(
        stream=stream,
        seq=seq,
        message_id=raw["message_id"],
        node=node,
        portfolio_id=value("portfolio_id"),
        user_id=value("user_id"),
        symbol=value("symbol"),
        strategy_id=value("strategy_id"),
        venue=value("venue"),
        asset_class=value("asset_class"),
        # An alert's `alert_level` is its severity unless it names one (docs/protocol.md).
        severity=value("severity") or value("alert_level"),
        price=price,
    )
