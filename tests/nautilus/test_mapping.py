"""Every mapped Nautilus type, on payloads recorded from a real NautilusTrader 1.221 backtest.

The recordings (tests/nautilus/data/, made by record_payloads.py) hold every stream entry
of a backtest with EMACross and DeskExerciser (examples/nautilus_exercise.py), and what the
engine's cache held afterwards; the final state Tidewire derives must match that cache.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.sources.nautilus.entries import Entry, decode_entry
from tidewire.sources.nautilus.mapping import MappingOptions, NautilusMapper
from tidewire.sources.nautilus.values import parse_ns

Raw = dict[str, Any]
ALL = ("backtest_json_per_topic", "backtest_msgpack_one_stream", "backtest_iso_custom_prefix")
STATUS_OF_NAUTILUS = {
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "DENIED": "denied",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "ACCEPTED": "open",
    "PARTIALLY_FILLED": "partial",
}


def entries_of(recording: Any) -> list[Entry]:
    return [decode_entry(s, i, f) for s, i, f in recording.entries]


def mapped(recording: Any, options: MappingOptions | None = None) -> list[tuple[Entry, list[Raw]]]:
    mapper = NautilusMapper(options)
    return [(entry, mapper.map(entry)) for entry in entries_of(recording)]


def messages(recording: Any, options: MappingOptions | None = None) -> list[DataMessage]:
    """Every mapped message, validated exactly as the source validates it."""
    return [
        build_data_message(raw, default_source="nautilus")
        for _, raws in mapped(recording, options)
        for raw in raws
    ]


def first(pairs: list[tuple[Entry, list[Raw]]], kind: str) -> tuple[Raw, Raw]:
    """The first entry of payload type `kind` that produced a message, and that message."""
    for entry, raws in pairs:
        if entry.kind == kind and raws:
            assert entry.payload is not None
            return entry.payload, raws[0]
    raise AssertionError(f"no {kind} in the recording")


@pytest.fixture(params=ALL)
def any_recording(request: pytest.FixtureRequest, recording: Callable[[str], Any]) -> Any:
    return recording(request.param)


# ---------------------------------------------------------------------- every type, valid


def test_every_message_passes_the_protocol(any_recording: Any) -> None:
    out = messages(any_recording)
    kinds = Counter(message.type for message in out)
    assert {
        "market_data",
        "order_update",
        "trade_updates",
        "position_update",
        "performance_update",
        "risk_alert",
        "engine_status",
    } <= set(kinds), kinds
    assert len({message.message_id for message in out}) == len(out), "message ids unique"


def test_message_ids_are_stable_across_reads(recording: Callable[[str], Any]) -> None:
    rec = recording("backtest_msgpack_one_stream")
    assert [m.message_id for m in messages(rec)] == [m.message_id for m in messages(rec)]


# ---------------------------------------------------------------------- market data


def test_quote(any_recording: Any) -> None:
    payload, raw = first(mapped(any_recording), "QuoteTick")
    assert raw["type"] == "market_data" and raw["data_type"] == "quote"
    assert raw["symbol"] == "AUD/USD.SIM" and raw["venue"] == "SIM"
    assert raw["asset_class"] == "fx"  # from the CurrencyPair on data.instrument.*
    data = raw["data"]
    bid = data["bid_price"]
    assert bid == Decimal(payload["bid_price"]) and isinstance(bid, Decimal)
    assert str(data["ask_price"]) == payload["ask_price"]  # exact, trailing zeros included
    assert data["bid_size"] == Decimal(payload["bid_size"])
    assert data["ts_event"] == parse_ns(payload["ts_event"])
    assert raw["timestamp"].startswith("2023-11-14T22:13:")
    assert data["timestamp"] == raw["timestamp"]


def test_trade_tick(any_recording: Any) -> None:
    payload, raw = first(mapped(any_recording), "TradeTick")
    assert raw["data_type"] == "trade"
    assert raw["data"]["price"] == Decimal(payload["price"])
    assert raw["data"]["last_trade_size"] == Decimal(payload["size"])
    assert raw["data"]["aggressor_side"] in ("buy", "sell")
    assert raw["data"]["trade_id"] == payload["trade_id"]


def test_bar(any_recording: Any) -> None:
    payload, raw = first(mapped(any_recording), "Bar")
    assert raw["data_type"] == "bar" and raw["symbol"] == "AUD/USD.SIM"
    for name in ("open", "high", "low", "close", "volume"):
        assert raw["data"][name] == Decimal(payload[name])
    assert raw["data"]["bar_type"] == "AUD/USD.SIM-5-SECOND-BID-INTERNAL"


def test_symbol_style_symbol(recording: Callable[[str], Any]) -> None:
    options = MappingOptions(symbol_style="symbol")
    pairs = mapped(recording("backtest_json_per_topic"), options)
    _, raw = first(pairs, "QuoteTick")
    assert raw["symbol"] == "AUD/USD" and raw["venue"] == "SIM"
    trade = next(r for _, raws in pairs for r in raws if r["type"] == "trade_updates")
    assert trade["symbol"] == trade["data"]["symbol"] == "AUD/USD"
    assert trade["venue"] == trade["data"]["venue"] == "SIM"


# ---------------------------------------------------------------------- orders


def order_updates(recording: Any, **options: Any) -> dict[str, list[Raw]]:
    by_order: dict[str, list[Raw]] = defaultdict(list)
    for _, raws in mapped(recording, MappingOptions(**options)):
        for raw in raws:
            if raw["type"] == "order_update":
                by_order[raw["order_id"]].append(raw)
    return by_order


def test_resting_order_lifecycle(any_recording: Any) -> None:
    updates = order_updates(any_recording)
    resting = next(u for u in updates.values() if u[0]["data"]["order_type"] == "limit")
    events = [u["data"]["event"] for u in resting]
    assert events == [
        "OrderInitialized",
        "OrderSubmitted",
        "OrderAccepted",
        "OrderPendingUpdate",
        "OrderUpdated",
        "OrderPendingCancel",
        "OrderCanceled",
    ]
    statuses = [u["order_status"] for u in resting]
    assert statuses == ["pending", "pending", "open", "open", "open", "open", "cancelled"]
    assert all(u["symbol"] == "AUD/USD.SIM" and u["user_id"] == "BACKTESTER-001" for u in resting)
    assert {u["data"]["order_time"] for u in resting} == {resting[0]["timestamp"]}
    assert [u["data"]["last_update_time"] for u in resting] == [u["timestamp"] for u in resting]
    assert resting[3]["data"]["pending_action"] == "update"
    assert resting[5]["data"]["pending_action"] == "cancel"
    assert resting[4]["data"]["price"] > resting[0]["data"]["price"]  # moved up
    assert all(u["portfolio_id"] == "SIM-001" for u in resting)  # Initialized has no account
    assert all(u["strategy_id"] == "DeskExerciser-001" for u in resting)
    assert resting[0]["data"]["quantity"] == Decimal(100_000)


def test_partial_then_filled_with_exact_average(recording: Callable[[str], Any]) -> None:
    updates = order_updates(recording("backtest_json_per_topic"))
    big = next(u for u in updates.values() if u[0]["data"]["quantity"] == Decimal(1_100_000))
    filled = [u for u in big if u["data"]["event"] == "OrderFilled"]
    assert [u["order_status"] for u in filled] == ["partial", "filled"]
    fills = [u["data"] for u in filled]
    assert fills[0]["filled_quantity"] == Decimal(1_000_000)
    assert fills[0]["remaining_quantity"] == Decimal(100_000)
    assert fills[1]["filled_quantity"] == Decimal(1_100_000)
    assert fills[1]["remaining_quantity"] == 0
    trade_messages = [
        raw
        for _, raws in mapped(recording("backtest_json_per_topic"))
        for raw in raws
        if raw["type"] == "trade_updates" and raw["data"]["order_id"] == big[0]["order_id"]
    ]
    trades = [raw["data"] for raw in trade_messages]
    notional = sum(t["quantity"] * t["price"] for t in trades)
    assert fills[1]["avg_fill_price"] == notional / Decimal(1_100_000)
    # Each trade carries the order's state after it, whichever copy of the fill made it.
    assert [t["status"] for t in trades] == ["partial", "filled"]
    assert [raw["trade_type"] for raw in trade_messages] == ["partial_fill", "fill"]
    for trade, update in zip(trades, fills, strict=True):
        for name in ("filled_quantity", "remaining_quantity", "avg_fill_price"):
            assert trade[name] == update[name], name


def test_final_order_states_match_the_engine_cache(any_recording: Any) -> None:
    updates = order_updates(any_recording)
    produced = any_recording.produced["orders"]
    assert len(produced) == len(updates)
    for order in produced:
        last_update = updates[order["order_id"]][-1]
        last = last_update["data"]
        assert last_update["order_status"] == STATUS_OF_NAUTILUS[order["status"]], order
        assert last["side"] == order["side"].lower()
        assert last["quantity"] == Decimal(order["quantity"])
        assert last["filled_quantity"] == Decimal(order["filled_quantity"])
        if order["price"] is not None:
            assert last["price"] == Decimal(order["price"])
        if order["avg_px"] is not None:
            assert abs(last["avg_fill_price"] - Decimal(order["avg_px"])) < Decimal("1e-12")
        if order["status"] in ("DENIED", "REJECTED"):
            assert last["reject_reason"] == order["reason"]
            assert "cancel_reason" not in last


def test_every_order_event_kind_is_mapped(recording: Callable[[str], Any]) -> None:
    seen = {
        u["data"]["event"]
        for updates in order_updates(recording("backtest_json_per_topic")).values()
        for u in updates
    }
    assert seen >= {
        "OrderInitialized",
        "OrderDenied",
        "OrderEmulated",
        "OrderReleased",
        "OrderSubmitted",
        "OrderAccepted",
        "OrderRejected",
        "OrderCanceled",
        "OrderExpired",
        "OrderTriggered",
        "OrderPendingUpdate",
        "OrderPendingCancel",
        "OrderModifyRejected",
        "OrderUpdated",
        "OrderFilled",
    }


def test_expired_rejected_and_modify_rejected(recording: Callable[[str], Any]) -> None:
    updates = order_updates(recording("backtest_json_per_topic"))
    last = {order_id: u[-1] for order_id, u in updates.items()}
    assert any(
        u["order_status"] == "expired" and u["data"]["time_in_force"] == "gtd"
        for u in last.values()
    )
    rejected = next(u["data"] for u in last.values() if u["order_status"] == "rejected")
    assert "POST_ONLY" in rejected["reject_reason"] and rejected["post_only"] is True
    index, order = next(
        (index, order)
        for order in updates.values()
        for index, u in enumerate(order)
        if u["data"]["event"] == "OrderModifyRejected"
    )
    modify_rejected = order[index]
    assert "in the market" in modify_rejected["data"]["modify_reject_reason"]
    # A refused modify leaves the order working, and its reason goes with that update only.
    assert modify_rejected["order_status"] == "open"
    assert "reject_reason" not in modify_rejected["data"]
    assert all("modify_reject_reason" not in u["data"] for u in order[index + 1 :])
    released = next(
        u["data"] for o in updates.values() for u in o if u["data"]["event"] == "OrderReleased"
    )
    assert isinstance(released["released_price"], Decimal)


# ---------------------------------------------------------------------- fills


def test_each_fill_is_one_trade_update(any_recording: Any) -> None:
    trades = [m for m in messages(any_recording) if m.type == "trade_updates"]
    produced = any_recording.produced["fills"]
    assert len(trades) == len(produced)  # OrderFilled is on events.order.* and events.fills.*
    by_trade = {t.data["trade_id"]: t for t in trades}
    for fill in produced:
        trade = by_trade[fill["trade_id"]]
        assert trade.data["order_id"] == fill["order_id"]
        assert trade.data["price"] == Decimal(fill["price"])
        assert trade.data["quantity"] == Decimal(fill["quantity"])
        assert trade.data["commission"] == Decimal(fill["commission"])
        assert trade.data["side"] == fill["side"].lower()
        assert trade.data["ts_event"] == fill["ts_event"]
        assert trade.portfolio_id == "SIM-001" and trade.symbol == "AUD/USD.SIM"
        assert trade.user_id == "BACKTESTER-001"  # the trader
        assert trade.data["status"] in ("partial", "filled")
        assert trade.data["execution_time"] == trade.timestamp == trade.data["timestamp"]


def test_fill_copies_are_dropped_in_either_order(recording: Callable[[str], Any]) -> None:
    rec = recording("backtest_json_per_topic")
    entries = entries_of(rec)
    # Read the fills copy stream first, as an XREAD over many streams may.
    entries.sort(key=lambda e: not e.topic.startswith("events.fills"))
    mapper = NautilusMapper()
    trades = [r for e in entries for r in mapper.map(e) if r["type"] == "trade_updates"]
    assert len(trades) == len(rec.produced["fills"])
    assert mapper.duplicate_fills == len(rec.produced["fills"])


# ---------------------------------------------------------------------- denials and risk


def test_denied_order_and_its_risk_alert(any_recording: Any) -> None:
    out = messages(any_recording)
    denied = [m for m in out if m.type == "order_update" and m.order_status == "denied"]
    assert denied and all(m.data["reject_reason"] for m in denied)
    alerts = [m for m in out if m.type == "risk_alert" and m.risk_type == "order_denied"]
    assert len(alerts) == len(denied)
    too_big = next(a for a in alerts if a.data["metric"] == "order_quantity")
    assert too_big.data["current_value"] == Decimal(20_000_000)
    assert too_big.data["threshold"] == Decimal(10_000_000)
    assert too_big.severity == "high" and too_big.priority == 3
    assert too_big.portfolio_id == "SIM-001" and too_big.strategy_id == "DeskExerciser-001"
    halted = next(a for a in alerts if a.data["metric"] == "trading_state")
    assert halted.data["current_value"] == 2 and "HALTED" in halted.data["reason"]
    assert all(a.data["message"] for a in alerts)


def test_trading_state_changes(any_recording: Any) -> None:
    alerts = [
        m
        for m in messages(any_recording)
        if m.type == "risk_alert" and m.risk_type == "trading_state"
    ]
    assert [a.data["state"] for a in alerts[:2]] == ["HALTED", "ACTIVE"]
    assert [a.severity for a in alerts[:2]] == ["critical", "low"]
    assert alerts[0].priority == 4
    assert {a.portfolio_id for a in alerts} == {"SIM-001"}


# ---------------------------------------------------------------------- positions and accounts


def test_position_events(any_recording: Any) -> None:
    pairs = mapped(any_recording)
    for kind, event in (
        ("PositionOpened", "opened"),
        ("PositionChanged", "changed"),
        ("PositionClosed", "closed"),
    ):
        payload, raw = first(pairs, kind)
        data = raw["data"]
        assert raw["type"] == "position_update" and data["event"] == event
        assert raw["portfolio_id"] == "SIM-001" and raw["symbol"] == "AUD/USD.SIM"
        assert raw["position_side"] == payload["side"].lower()
        sign = -1 if payload["side"] == "SHORT" else 1
        assert data["quantity"] == sign * Decimal(payload["quantity"])
        assert data["avg_price"] == Decimal(repr(payload["avg_px_open"]))
        assert data["realized_pnl"] == Decimal(payload["realized_pnl"].split()[0])
        assert data["currency"] == "USD"
        if kind == "PositionChanged":
            assert data["unrealized_pnl"] == Decimal(payload["unrealized_pnl"].split()[0])
        else:
            assert data["unrealized_pnl"] == 0


def test_final_positions_match_the_engine_cache(any_recording: Any) -> None:
    last: dict[str, Raw] = {}
    for m in messages(any_recording):
        if m.type == "position_update":
            last[m.data["position_id"]] = m.data
    for position in any_recording.produced["positions"]:
        data = last[position["position_id"]]
        assert data["quantity"] == Decimal(position["quantity"])
        assert data["realized_pnl"] == Decimal(position["realized_pnl"])
        assert data["avg_price"] == Decimal(repr(position["avg_px_open"]))


def test_account_state_becomes_the_portfolio_balances(any_recording: Any) -> None:
    performance = [m for m in messages(any_recording) if m.type == "performance_update"]
    start = performance[0].data
    assert start["total_value"] == Decimal("1000000.00")
    assert start["pnl"] == 0 and start["returns"] == 0
    assert start["balances"] == [
        {
            "currency": "USD",
            "total": Decimal("1000000.00"),
            "locked": Decimal("0.00"),
            "free": Decimal("1000000.00"),
        }
    ]
    final = performance[-1]
    assert final.portfolio_id == "SIM-001"
    assert final.data["total_value"] == Decimal(any_recording.produced["balance"])
    assert final.data["pnl"] == final.data["total_value"] - Decimal("1000000.00")
    assert final.data["returns"] == final.data["pnl"] / Decimal("1000000.00")
    assert isinstance(final.data["returns"], Decimal)
    assert final.data["account_type"] == "margin"


# ---------------------------------------------------------------------- components


def test_component_state_changes(any_recording: Any) -> None:
    status = [m for m in messages(any_recording) if m.type == "engine_status"]
    data_engine = [m for m in status if m.engine_id == "BACKTESTER-001/DataEngine"]
    states = [m.data["component_state"] for m in data_engine]
    assert states[:3] == ["READY", "STARTING", "RUNNING"]
    assert [m.data["state"] for m in data_engine][:3] == ["starting", "starting", "running"]
    assert data_engine[-1].data["state"] == "stopped" and data_engine[-1].data["uptime"] == 0
    # Uptime is observed: from the first state seen, by the times Redis wrote them.
    assert data_engine[0].data["uptime"] == 0
    running = [m.data["uptime"] for m in data_engine if m.data["state"] != "stopped"]
    assert running == sorted(running)
    # ts_event is 0 for the first states of a backtest: the entry's time stands in.
    assert not data_engine[0].timestamp.startswith("1970")


# ---------------------------------------------------------------------- attribution


def test_portfolio_by_strategy_with_renames(recording: Callable[[str], Any]) -> None:
    options = MappingOptions(portfolio_field="strategy_id", portfolios={"EMACross-000": "PF-TREND"})
    out = messages(recording("backtest_msgpack_one_stream"), options)
    orders = {m.portfolio_id for m in out if m.type == "order_update"}
    assert orders == {"PF-TREND", "DeskExerciser-001"}
    positions = {m.portfolio_id for m in out if m.type == "position_update"}
    assert positions == {"PF-TREND", "DeskExerciser-001"}
    # AccountState has no strategy: it falls back to the account.
    assert {m.portfolio_id for m in out if m.type == "performance_update"} == {"SIM-001"}


def test_portfolio_by_trader(recording: Callable[[str], Any]) -> None:
    out = messages(
        recording("backtest_msgpack_one_stream"), MappingOptions(portfolio_field="trader_id")
    )
    assert {m.portfolio_id for m in out if m.type == "trade_updates"} == {"BACKTESTER-001"}


def test_unknown_payload_types_are_counted_not_mapped() -> None:
    mapper = NautilusMapper()
    entry = Entry("k", "1-0", "reports.execution", {"type": "OrderStatusReport"})
    assert mapper.map(entry) == []
    assert mapper.ignored == {"OrderStatusReport": 1}
