"""The market simulator: the pure model by stepping it, the asyncio runner against MemoryBroker."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import defaultdict
from typing import Any

import pytest

from tidewire.brokers.base import BrokerUnavailable, Handlers
from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.streams import SEVERITIES, STREAMS
from tidewire.sources.instruments import INSTRUMENTS, PORTFOLIOS
from tidewire.sources.market_model import MarketModel
from tidewire.sources.simulator import MarketSimulator
from tidewire.sources.status import ENGINE_ID

CLOCK = 1_700_000_000.0
STEPS = 2000
DT = 0.05
MULTIPLIER = {inst.symbol: inst.multiplier for inst in INSTRUMENTS}
TICK = {inst.symbol: inst.tick for inst in INSTRUMENTS}
CAPITAL = {spec.portfolio_id: spec.capital for spec in PORTFOLIOS}


def run_model(seed: int, dts: list[float], **options: Any) -> list[dict[str, Any]]:
    model = MarketModel(seed, clock=lambda: CLOCK, **options)
    return [raw for dt in dts for raw in model.step(dt)]


@pytest.fixture(scope="module")
def messages() -> list[DataMessage]:
    """One 100-second run (2000 steps of 50 ms), validated like any producer's messages."""
    raws = run_model(11, [0.0] + [DT] * (STEPS - 1), quotes_per_second=100.0)
    return [build_data_message(raw, default_source="simulator") for raw in raws]


def of_type(messages: list[DataMessage], kind: str) -> list[DataMessage]:
    return [message for message in messages if message.type == kind]


def close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance + 1e-9 * max(abs(a), abs(b))


# --------------------------------------------------------------------------- coverage


def test_every_stream_receives_messages(messages: list[DataMessage]) -> None:
    assert {message.stream for message in messages} == set(STREAMS)
    types = {message.type for message in messages}
    assert {"risk_alert", "breach_alert", "event", "notification", "alert", "system_alert"} <= types
    assert {message.data_type for message in of_type(messages, "market_data")} == {
        "quote",
        "trade",
        "bar",
    }
    assert all(message.source == "simulator" for message in messages)
    assert {message.key for message in of_type(messages, "engine_status")} == {ENGINE_ID}


# The fields subscribers filter on (docs/protocol.md) and those of the canonical shapes,
# carried top level, per message type.
_OWNED = {"portfolio_id", "strategy_id", "user_id", "symbol", "venue", "asset_class"}
REQUIRED_FIELDS = {
    "market_data": {"symbol", "venue", "asset_class", "data_type"},
    "trade_updates": _OWNED | {"trade_type"},
    "order_update": _OWNED | {"order_id", "order_status"},
    "position_update": _OWNED | {"position_side"},
    "risk_alert": {"portfolio_id", "user_id", "severity", "risk_type"},
    "breach_alert": {"portfolio_id", "user_id", "severity", "breach_type"},
    "performance_update": {"portfolio_id", "user_id"},
    "strategy_performance": {"strategy_id", "strategy_name", "portfolio_id", "user_id"},
    "execution_analytics": _OWNED | {"execution_id"},
    "risk_metrics": {"portfolio_id", "user_id", "metric_type"},
    "engine_status": {"engine_id", "severity"},
    "system_health": {"component", "severity"},
    "event": {"severity", "event_type", "event_id"},
    "notification": {"severity"},
    "alert": {"severity", "alert_level", "alert_category", "portfolio_id", "user_id"},
    "system_alert": {"severity", "component", "alert_type"},
}


def test_filter_fields_are_top_level(messages: list[DataMessage]) -> None:
    for message in messages:
        missing = {name for name in REQUIRED_FIELDS[message.type] if not getattr(message, name)}
        assert not missing, (message.type, missing)
        assert message.severity is None or message.severity in SEVERITIES
        if message.portfolio_id is not None:
            assert message.user_id == next(
                spec.user_id for spec in PORTFOLIOS if spec.portfolio_id == message.portfolio_id
            )


# --------------------------------------------------------------------------- market data


def test_quotes_are_plausible(messages: list[DataMessage]) -> None:
    start = {inst.symbol: inst.price for inst in INSTRUMENTS}
    quotes = [m for m in of_type(messages, "market_data") if m.data_type == "quote"]
    assert len({quote.symbol for quote in quotes}) == 20
    for quote in quotes:
        assert quote.symbol is not None
        bid, ask, tick = quote.data["bid_price"], quote.data["ask_price"], TICK[quote.symbol]
        assert 0 < bid < ask
        assert (ask - bid) / bid < 0.002  # a few basis points, at most a few ticks
        for price in (bid, ask):
            assert close(round(price / tick) * tick, price, 1e-9)
        assert 0.8 < bid / start[quote.symbol] < 1.25
        assert quote.data["bid_size"] > 0 and quote.data["ask_size"] > 0
    trades = [m for m in of_type(messages, "market_data") if m.data_type == "trade"]
    assert trades and all(t.data["last_trade_size"] > 0 and t.data["price"] > 0 for t in trades)


def test_quote_rate_is_exact_over_time() -> None:
    model = MarketModel(1, quotes_per_second=30.0, clock=lambda: CLOCK)
    quotes = [
        raw
        for _ in range(40)
        for raw in model.step(0.25)
        if raw["type"] == "market_data" and raw["data_type"] == "quote"
    ]
    assert len(quotes) == 300


# --------------------------------------------------------------------------- orders and fills


def test_order_lifecycle_is_valid(messages: list[DataMessage]) -> None:
    history: dict[str, list[DataMessage]] = defaultdict(list)
    for message in of_type(messages, "order_update"):
        assert message.order_id is not None
        history[message.order_id].append(message)
    assert len(history) > 100
    statuses = {update.order_status for updates in history.values() for update in updates}
    assert statuses == {"pending", "open", "partial", "filled", "cancelled", "rejected"}
    for order_id, updates in history.items():
        path = [update.order_status for update in updates]
        assert path[0] == "pending", order_id
        if len(path) > 1:
            assert path[1] in ("open", "rejected"), path
        for earlier, later in itertools.pairwise(path):
            assert earlier in ("pending", "open", "partial"), path  # nothing after the end
            if earlier != "pending":
                assert later in ("partial", "filled", "cancelled"), path
        filled = [update.data["filled_quantity"] for update in updates]
        quantity = updates[0].data["quantity"]
        assert filled == sorted(filled) and filled[-1] <= quantity
        if path[-1] == "filled":
            assert filled[-1] == quantity
        reason = {"cancelled": "cancel_reason", "rejected": "reject_reason"}.get(path[-1] or "")
        if reason is not None:
            assert updates[-1].data[reason]
        for update in updates:
            data = update.data
            assert data["quantity"] == quantity
            assert close(data["remaining_quantity"], quantity - data["filled_quantity"], 1e-9)
            assert (data["order_type"] == "limit") == ("price" in data)
            assert data["order_time"] == updates[0].data["order_time"]
            ends = {name for name in ("cancel_reason", "reject_reason") if name in data}
            assert ends == ({reason} if update is updates[-1] and reason else set())


def test_every_fill_has_a_trade_and_analytics(messages: list[DataMessage]) -> None:
    trades = defaultdict(list)
    for trade in of_type(messages, "trade_updates"):
        trades[trade.data["order_id"]].append(trade)
    analytics = defaultdict(list)
    for report in of_type(messages, "execution_analytics"):
        analytics[report.data["order_id"]].append(report)
    increments = defaultdict(list)
    last_filled: dict[str, float] = {}
    for update in of_type(messages, "order_update"):
        order_id, filled = update.order_id, update.data["filled_quantity"]
        assert order_id is not None
        if filled > last_filled.get(order_id, 0.0):
            increments[order_id].append(filled - last_filled.get(order_id, 0.0))
            # avg_fill_price is the quantity-weighted price of the order's trades so far.
            so_far = trades[order_id][: len(increments[order_id])]
            notional = sum(t.data["quantity"] * t.data["price"] for t in so_far)
            assert close(update.data["avg_fill_price"], notional / filled, 1e-3)
        last_filled[order_id] = filled
    assert set(trades) == set(increments) == set(analytics)
    for order_id, steps in increments.items():
        assert [t.data["quantity"] for t in trades[order_id]] == pytest.approx(steps)
        assert len(analytics[order_id]) == len(steps)
        for trade, report in zip(trades[order_id], analytics[order_id], strict=True):
            assert trade.symbol == trade.data["symbol"] and trade.data["commission"] >= 0
            assert trade.data["execution_id"] == report.execution_id == trade.data["trade_id"]
    trade_ids = [t.data["trade_id"] for t in of_type(messages, "trade_updates")]
    assert len(trade_ids) == len(set(trade_ids))


def test_a_trade_carries_its_order_status_after_the_fill(messages: list[DataMessage]) -> None:
    """Each fill publishes the order's update, then its trade: same status, quantities."""
    last_update: dict[str, DataMessage] = {}
    checked = 0
    for message in messages:
        if message.type == "order_update":
            assert message.order_id is not None
            last_update[message.order_id] = message
        elif message.type == "trade_updates":
            order = last_update[message.data["order_id"]]
            assert message.data["status"] == order.order_status in ("partial", "filled")
            assert message.trade_type == (
                "fill" if order.order_status == "filled" else "partial_fill"
            )
            for name in ("filled_quantity", "remaining_quantity", "avg_fill_price"):
                assert message.data[name] == order.data[name], name
            assert message.data["venue"] == message.venue
            checked += 1
    assert checked > 100


def test_slippage_is_measured_against_the_arrival_mid(messages: list[DataMessage]) -> None:
    trades = {t.data["trade_id"]: t for t in of_type(messages, "trade_updates")}
    for report in of_type(messages, "execution_analytics"):
        data = report.data
        assert report.execution_id is not None
        trade = trades[report.execution_id]
        assert data["fill_price"] == trade.data["price"]
        assert close(data["slippage"], data["fill_price"] - data["benchmark_price"], 1e-6)
        expected = data["slippage"] / data["benchmark_price"] * 1e4
        assert close(data["slippage_bps"], expected, 0.001)
        assert trade.data["slippage_bps"] == data["slippage_bps"]
        sign = 1 if trade.data["side"] == "buy" else -1
        cost = sign * data["slippage"] * trade.data["quantity"] * MULTIPLIER[trade.data["symbol"]]
        assert close(data["execution_shortfall"], cost, 0.01)
        assert 0 < data["fill_ratio"] <= 1 and data["execution_time_ms"] > 0


# --------------------------------------------------------------------------- positions and P&L


def test_positions_follow_the_fills(messages: list[DataMessage]) -> None:
    """Every position update equals an independent replay of the fills published before it."""
    book: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    checked = 0
    for message in messages:
        if message.type == "trade_updates":
            assert message.portfolio_id is not None and message.symbol is not None
            state = book[message.portfolio_id, message.symbol]
            sign = 1 if message.data["side"] == "buy" else -1
            quantity, price = sign * message.data["quantity"], message.data["price"]
            held, avg, _ = state
            if held == 0 or (held > 0) == (quantity > 0):
                state[1] = (abs(held) * avg + abs(quantity) * price) / abs(held + quantity)
            else:
                closed = min(abs(held), abs(quantity)) * math.copysign(1, held)
                state[2] += closed * (price - avg) * MULTIPLIER[message.symbol]
                if abs(quantity) > abs(held):
                    state[1] = price  # crossed zero: the new position opened here
            state[0] = held + quantity
        elif message.type == "position_update":
            assert message.portfolio_id is not None and message.symbol is not None
            held, avg, realized = book[message.portfolio_id, message.symbol]
            data = message.data
            assert close(data["quantity"], held, 1e-6), message
            side = "long" if data["quantity"] > 0 else "short" if data["quantity"] < 0 else "flat"
            assert message.position_side == side
            assert close(data["realized_pnl"], realized, 0.02)
            if abs(held) > 1e-9:
                assert close(data["avg_price"], avg, 1e-4 * TICK[message.symbol])
                cost = held * data["avg_price"] * MULTIPLIER[message.symbol]
                assert close(data["unrealized_pnl"], data["market_value"] - cost, 0.05)
            else:
                assert data["avg_price"] == 0 and data["unrealized_pnl"] == 0
            checked += 1
    assert checked > 100
    # Positions were reduced, closed and flipped, so the rules above were all exercised.
    assert any(abs(state[2]) > 0 for state in book.values())


def test_performance_is_consistent_with_positions(messages: list[DataMessage]) -> None:
    realized: dict[str, dict[str, float]] = defaultdict(dict)
    commissions: dict[str, float] = defaultdict(float)
    baseline: dict[str, float] = {}
    for message in messages:
        portfolio = message.portfolio_id
        if message.type == "position_update":
            assert portfolio is not None and message.symbol is not None
            realized[portfolio][message.symbol] = message.data["realized_pnl"]
        elif message.type == "trade_updates":
            assert portfolio is not None
            commissions[portfolio] += message.data["commission"]
        elif message.type == "performance_update":
            assert portfolio is not None
            data = message.data
            assert close(data["realized_pnl"], sum(realized[portfolio].values()), 0.1)
            assert close(data["commissions"], commissions[portfolio], 0.1)
            daily = data["realized_pnl"] + data["unrealized_pnl"] - data["commissions"]
            assert close(data["daily_pnl"], daily, 0.05)
            assert close(data["total_value"] - data["pnl"], CAPITAL[portfolio], 0.05)
            assert close(data["returns"], data["pnl"] / CAPITAL[portfolio], 1e-8)
            # P&L of earlier days stays what it was.
            prior = baseline.setdefault(portfolio, data["pnl"] - data["daily_pnl"])
            assert close(data["pnl"] - data["daily_pnl"], prior, 0.05)
    assert set(baseline) == set(CAPITAL)


def test_risk_metrics_and_strategies(messages: list[DataMessage]) -> None:
    reports: dict[tuple[str | None, str], dict[str, float]] = defaultdict(dict)
    trends: dict[tuple[str | None, str], list[float]] = defaultdict(list)
    for metric in of_type(messages, "risk_metrics"):
        assert metric.metric_type is not None
        reports[metric.portfolio_id, metric.timestamp][metric.metric_type] = metric.data["value"]
        history = trends[metric.portfolio_id, metric.metric_type]
        if history and metric.data["trend"] == "increasing":
            assert metric.data["value"] > history[-1]
        history.append(metric.data["value"])
    assert reports
    for data in reports.values():
        assert set(data) == {
            "var_95",
            "exposure",
            "leverage",
            "margin_used",
            "net_exposure",
            "concentration",
        }
        assert data["var_95"] >= 0 and data["exposure"] >= abs(data["net_exposure"]) - 0.01
        assert 0 <= data["leverage"] < 3
    strategies = {spec.portfolio_id: set(spec.strategies) for spec in PORTFOLIOS}
    fills: dict[str | None, int] = defaultdict(int)
    for message in messages:
        if message.type == "trade_updates":
            fills[message.strategy_id] += 1
        elif message.type == "strategy_performance":
            assert message.portfolio_id is not None
            assert message.strategy_id in strategies[message.portfolio_id]
            data = message.data
            assert data["trade_count"] == fills[message.strategy_id]
            assert 0 <= data["win_rate"] <= 1 and 0 <= data["profit_factor"] <= 100
            assert data["max_drawdown"] >= 0
            share = CAPITAL[message.portfolio_id] / 2
            assert close(data["total_return"], data["pnl"] / share, 1e-8)
    for alert in of_type(messages, "risk_alert"):
        assert alert.data["timestamp"] == alert.timestamp and alert.data["threshold"] > 0
    for breach in of_type(messages, "breach_alert"):
        limit = breach.data
        assert limit["timestamp"] == breach.timestamp and limit["limit_value"] > 0
        expected = 100 * (limit["current_value"] - limit["limit_value"]) / limit["limit_value"]
        assert close(limit["breach_percentage"], expected, 1e-3)


def test_engine_status_and_health(messages: list[DataMessage]) -> None:
    engine = of_type(messages, "engine_status")
    assert engine[0].data["state"] == "starting" and engine[0].data["uptime"] == 0
    assert {m.data["state"] for m in engine[1:]} <= {"running", "degraded"}
    uptimes = [m.data["uptime"] for m in engine]
    assert uptimes == sorted(uptimes) and uptimes[-1] > 90
    assert engine[-1].data["orders_processed"] > 0 and engine[-1].data["trades_executed"] > 0
    for health in of_type(messages, "system_health"):
        data = health.data
        assert data["status"] in ("healthy", "degraded")
        assert 0 < data["cpu_usage"] <= 100 and 0 < data["memory_usage"] <= 100
        assert data["network_latency"] > 0
    for alert in of_type(messages, "system_alert"):
        assert alert.data["current_value"] > alert.data["threshold"]


# --------------------------------------------------------------------------- model behaviour


def test_same_seed_same_messages() -> None:
    dts = [0.0, 0.013, 0.2, 0.05, 1.7, 0.0, 0.05] * 40
    first = run_model(5, dts, quotes_per_second=50.0)
    assert first == run_model(5, dts, quotes_per_second=50.0)
    assert first != run_model(6, dts, quotes_per_second=50.0)


def test_long_step_skips_missed_updates_instead_of_bursting() -> None:
    model = MarketModel(3, quotes_per_second=20.0, clock=lambda: CLOCK)
    model.step(0.0)
    raws = model.step(120.0)
    assert len([raw for raw in raws if raw["type"] == "performance_update"]) == len(PORTFOLIOS)
    assert len([raw for raw in raws if raw["type"] == "engine_status"]) == 1


def test_symbol_selection_mixes_asset_classes() -> None:
    assert len({inst.asset_class for inst in MarketModel(1, symbols=4).instruments}) == 4
    many = MarketModel(1, symbols=40).instruments
    assert len(many) == len({inst.symbol for inst in many}) == 40
    assert MarketModel(1, symbols=1).step(0.0)


@pytest.mark.parametrize(
    "options", [{"symbols": 0}, {"quotes_per_second": -1.0}, {"status_interval": 0.0}]
)
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MarketModel(1, **options)


def test_negative_dt_is_refused() -> None:
    with pytest.raises(ValueError):
        MarketModel(1).step(-0.1)


# --------------------------------------------------------------------------- asyncio runner


async def test_simulator_publishes_to_the_broker_in_sequence() -> None:
    broker = MemoryBroker()
    received: list[DataMessage] = []
    enough = asyncio.Event()

    def consume(message: DataMessage) -> None:
        received.append(message)
        streams = {m.stream for m in received}
        if len(received) >= 300 and len(streams) >= 8 and "order_updates" in streams:
            enough.set()

    broker.attach(Handlers(message=consume))
    await broker.start()
    simulator = MarketSimulator(broker.publish, rate=20.0, seed=7, orders_per_second=5.0)
    task = simulator.start()
    assert simulator.start() is task and simulator.running
    await asyncio.wait_for(enough.wait(), timeout=60)
    await simulator.stop()
    assert not simulator.running and task.cancelled()
    count = len(received)
    by_stream: dict[str, list[int]] = defaultdict(list)
    for message in received:
        by_stream[message.stream].append(message.seq)
        assert message.source == "simulator" and message.epoch
    for stream, seqs in by_stream.items():
        assert seqs == list(range(1, len(seqs) + 1)), stream
        assert simulator.messages_published[stream] == len(seqs)
    assert sum(simulator.messages_published.values()) == count
    await broker.close()


async def test_simulator_survives_an_unavailable_broker() -> None:
    broker = MemoryBroker()
    calls = 0
    published = asyncio.Event()

    async def flaky(message: DataMessage) -> object:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise BrokerUnavailable("redis is down")
        published.set()
        return await broker.publish(message)

    simulator = MarketSimulator(flaky, seed=1)
    simulator.start()
    await asyncio.wait_for(published.wait(), timeout=60)
    await simulator.stop()
    assert simulator.messages_dropped > 0
    assert sum(simulator.messages_published.values()) >= 1


async def test_stop_reports_the_error_that_ended_the_run() -> None:
    async def broken(message: DataMessage) -> object:
        raise RuntimeError("bug in the publisher")

    simulator = MarketSimulator(broken, seed=1)
    task = simulator.start()
    await asyncio.wait([task], timeout=60)
    assert task.done() and not simulator.running
    with pytest.raises(RuntimeError, match="bug in the publisher"):
        await simulator.stop()
    await simulator.stop()  # stopping twice is harmless
