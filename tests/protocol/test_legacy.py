"""protocol.legacy and protocol.derived: Tidewire 0.1 inputs become canonical messages.

Each case is a message as a Tidewire 0.1 producer sent it and what goes out: the canonical
fields in their places, and none of the 0.1 names left behind.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.ingest import build_data_message, build_data_messages
from tidewire.protocol.legacy import DATA_RENAMES, TOP_RENAMES

TS = "2026-01-01T00:00:00.000000Z"


def wire(raw: dict[str, Any]) -> dict[str, Any]:
    """What a subscriber receives for `raw` (sequenced at 1)."""
    message = build_data_message({"timestamp": TS, **raw}).sequenced(1, "e")
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(message))
    return decoded


# (0.1 input, expected top-level fields, expected data, 0.1 names that must be gone from data)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], set[str]]] = [
    (
        "quote",
        {"type": "market_data", "symbol": "AAPL", "data": {"bid": 1.1, "ask": 1.3, "bid_size": 5}},
        {"symbol": "AAPL", "data_type": "quote"},
        {"bid_price": 1.1, "ask_price": 1.3, "bid_size": 5},
        {"bid", "ask"},
    ),
    (
        "trade tick",
        {"type": "market_data", "symbol": "AAPL", "data": {"price": 10.5, "size": 3}},
        {"data_type": "trade"},
        {"price": 10.5, "last_trade_size": 3},
        {"size"},
    ),
    (
        "order",
        {
            "type": "order_update",
            "portfolio_id": "P1",
            "data": {
                "order_id": "O1",
                "symbol": "AAPL",
                "side": "buy",
                "order_type": "limit",
                "quantity": 10,
                "filled_quantity": 4,
                "status": "partial",
                "price": 99.5,
            },
        },
        {"order_id": "O1", "symbol": "AAPL", "order_status": "partial", "portfolio_id": "P1"},
        {"remaining_quantity": 6, "quantity": 10, "filled_quantity": 4, "order_type": "limit"},
        {"order_id", "symbol", "status"},
    ),
    (
        "rejected order with a reason",
        {
            "type": "order_update",
            "portfolio_id": "P1",
            "data": {
                "order_id": "O2",
                "symbol": "AAPL",
                "side": "sell",
                "order_type": "market",
                "quantity": 1,
                "filled_quantity": 0,
                "status": "denied",
                "reason": "over the limit",
            },
        },
        {"order_status": "denied"},
        {"reject_reason": "over the limit"},
        {"reason"},
    ),
    (
        "cancelled order with a reason",
        {
            "type": "order_update",
            "portfolio_id": "P1",
            "data": {
                "order_id": "O3",
                "symbol": "AAPL",
                "side": "sell",
                "quantity": 1,
                "filled_quantity": 0,
                "status": "cancelled",
                "reason": "user",
            },
        },
        {"order_status": "cancelled"},
        {"cancel_reason": "user"},
        {"reason"},
    ),
    (
        "trade",
        {
            "type": "trade_updates",
            "portfolio_id": "P1",
            "data": {
                "trade_id": "T1",
                "order_id": "O1",
                "symbol": "AAPL",
                "side": "buy",
                "quantity": 10,
                "price": 101.5,
                "commission": 0.1,
            },
        },
        {"portfolio_id": "P1"},
        {"status": "filled", "order_id": "O1", "commission": 0.1},
        set(),
    ),
    (
        "short position",
        {
            "type": "position_update",
            "portfolio_id": "P1",
            "data": {"symbol": "AAPL", "quantity": -5, "avg_price": 10, "unrealized_pnl": 1},
        },
        {"symbol": "AAPL", "position_side": "short"},
        {"quantity": -5},
        {"symbol"},
    ),
    (
        "performance",
        {
            "type": "performance_update",
            "portfolio_id": "P1",
            "data": {"total_value": 1100, "total_pnl": 100, "daily_pnl": 5},
        },
        {"portfolio_id": "P1"},
        {"pnl": 100, "returns": 0.1, "total_value": 1100, "daily_pnl": 5},
        {"total_pnl"},
    ),
    (
        "risk alert without message or risk type",
        {
            "type": "risk_alert",
            "portfolio_id": "P1",
            "severity": "warning",
            "data": {"metric": "gross_exposure", "current_value": 2.0, "threshold": 1.5},
        },
        {"risk_type": "gross_exposure", "severity": "medium"},
        {"message": "gross_exposure at 2.0 crossed its threshold 1.5"},
        set(),
    ),
    (
        "breach alert",
        {
            "type": "breach_alert",
            "portfolio_id": "P1",
            "risk_type": "drawdown",
            "severity": "high",
            "data": {"metric": "max_drawdown", "current_value": 6, "threshold": 5},
        },
        {"breach_type": "drawdown"},
        {"limit_type": "max_drawdown", "limit_value": 5, "breach_percentage": 20},
        {"metric", "threshold"},
    ),
    (
        "strategy performance",
        {
            "type": "strategy_performance",
            "data": {
                "strategy_id": "S1",
                "trades": 7,
                "pnl": 3.0,
                "total_return": 0.1,
                "sharpe_ratio": 1.0,
                "max_drawdown": 0.1,
                "win_rate": 0.5,
                "profit_factor": 1.2,
            },
        },
        {"strategy_id": "S1", "strategy_name": "S1"},
        {"trade_count": 7, "pnl": 3.0},
        {"strategy_id", "trades"},
    ),
    (
        "execution analytics",
        {
            "type": "execution_analytics",
            "execution_id": "E1",
            "data": {
                "order_id": "O1",
                "symbol": "AAPL",
                "latency_ms": 4.0,
                "fill_price": 100.02,
                "benchmark_price": 100.0,
            },
        },
        {"symbol": "AAPL", "execution_id": "E1"},
        {"execution_time_ms": 4.0, "slippage": 0.02, "slippage_bps": 2.0, "order_id": "O1"},
        {"latency_ms", "symbol"},
    ),
    (
        "engine status",
        {
            "type": "engine_status",
            "engine_id": "N1",
            "data": {"status": "stale", "uptime_seconds": 30.5},
        },
        {"engine_id": "N1"},
        {"state": "stale", "uptime": 30.5},
        {"status", "uptime_seconds"},
    ),
    (
        "system health",
        {
            "type": "system_health",
            "component": "gateway",
            "data": {"status": "unhealthy", "cpu_percent": 91.0, "memory_mb": 120},
        },
        {"component": "gateway"},
        {"status": "error", "cpu_usage": 91.0, "memory_mb": 120},
        {"cpu_percent"},
    ),
    (
        "event",
        {"type": "event", "event_type": "deploy", "data": {"message": "strategy deployed"}},
        {"event_type": "deploy", "event_id": "m-1"},
        {"description": "strategy deployed"},
        {"message"},
    ),
    (
        "alert",
        {"type": "alert", "severity": "high", "data": {"message": "careful", "title": "Risk"}},
        {"alert_level": "high", "severity": "high"},
        {"message": "careful", "title": "Risk"},
        set(),
    ),
    (
        "system alert",
        {
            "type": "system_alert",
            "component": "feed",
            "alert_type": "latency",
            "severity": "medium",
            "data": {"message": "feed slow"},
        },
        {"component": "feed", "alert_type": "latency"},
        {"description": "feed slow"},
        {"message"},
    ),
]


@pytest.mark.parametrize(
    ("raw", "top", "data", "gone"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_01_inputs_go_out_canonical(
    raw: dict[str, Any], top: dict[str, Any], data: dict[str, Any], gone: set[str]
) -> None:
    out = wire({"message_id": "m-1", **raw})
    for name, value in top.items():
        assert out[name] == value, name
    for name, value in data.items():
        assert out["data"][name] == pytest.approx(value), name
    assert not gone & set(out["data"])
    assert out["data"]["timestamp"] == TS
    assert out["sequence"] == out["seq"] == 1


def test_every_rename_has_a_case() -> None:
    renamed = {old for pairs in DATA_RENAMES.values() for old, _ in pairs}
    renamed |= {old for pairs in TOP_RENAMES.values() for old, _ in pairs}
    covered = {name for case in CASES for name in case[4]} | {"risk_type"}
    assert renamed <= covered


def test_canonical_names_win_over_their_01_synonyms() -> None:
    raw = {"type": "market_data", "symbol": "A", "data": {"bid": 1.0, "bid_price": 2.0}}
    assert build_data_message(raw).data["bid_price"] == 2.0


def test_producer_dicts_are_not_changed() -> None:
    data = {"bid": 1.0, "ask": 2.0}
    build_data_message({"type": "market_data", "symbol": "A", "data": data})
    assert data == {"bid": 1.0, "ask": 2.0}


def test_01_risk_metrics_become_one_message_per_metric() -> None:
    raw = {
        "type": "risk_metrics",
        "portfolio_id": "P1",
        "message_id": "rm-1",
        "data": {"var_95": 1.5, "exposure": 2.0, "leverage": 3.0, "note": "eod"},
    }
    messages = build_data_messages(raw)
    assert [(m.metric_type, m.data["value"]) for m in messages] == [
        ("var_95", 1.5),
        ("exposure", 2.0),
        ("leverage", 3.0),
    ]
    assert [m.message_id for m in messages] == ["rm-1.var_95", "rm-1.exposure", "rm-1.leverage"]
    assert all(m.data["note"] == "eod" and "var_95" not in m.data for m in messages)
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw)  # one message expected: told to publish per metric
    assert caught.value.details == {"field": "metric_type"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "engine_status", "engine_id": "N", "data": {"status": "running"}}, "uptime"),
        ({"type": "event", "data": {"message": "x"}}, "event_type"),
        ({"type": "alert", "severity": "low", "data": {"message": "x"}}, "title"),
        (
            {"type": "system_alert", "severity": "low", "data": {"message": "x"}},
            "component",
        ),
        ({"type": "strategy_performance", "strategy_id": "S", "data": {"pnl": 1}}, "total_return"),
    ],
)
def test_what_nothing_says_is_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw)
    assert caught.value.code is ErrorCode.INVALID_MESSAGE
    assert f"`{field}`" in caught.value.message


# --------------------------------------------------------------------------- derived values


@pytest.mark.parametrize(
    ("quantity", "filled", "remaining"),
    [(10, 4, 6), (1.1, 0.1, 1.0), (Decimal("1.10"), Decimal("0.10"), Decimal("1.00"))],
)
def test_remaining_quantity_is_exact(quantity: Any, filled: Any, remaining: Any) -> None:
    raw = {
        "type": "order_update",
        "order_id": "O",
        "user_id": "u",
        "symbol": "A",
        "order_status": "partial",
        "data": {"side": "buy", "quantity": quantity, "filled_quantity": filled},
    }
    value = build_data_message(raw).data["remaining_quantity"]
    assert value == remaining and type(value) is type(remaining)


@pytest.mark.parametrize(("quantity", "side"), [(5, "long"), (-0.5, "short"), (0, "flat")])
def test_position_side_from_the_sign(quantity: float, side: str) -> None:
    raw = {
        "type": "position_update",
        "portfolio_id": "P",
        "symbol": "A",
        "data": {"quantity": quantity, "avg_price": 1, "unrealized_pnl": 0},
    }
    assert build_data_message(raw).position_side == side


def test_a_given_position_side_wins() -> None:
    raw = {
        "type": "position_update",
        "portfolio_id": "P",
        "symbol": "A",
        "position_side": "short",
        "data": {"quantity": 5, "avg_price": 1, "unrealized_pnl": 0},
    }
    assert build_data_message(raw).position_side == "short"


@pytest.mark.parametrize(
    ("extra", "status"),
    [({"remaining_quantity": 0}, "filled"), ({"remaining_quantity": 2}, "partial"), ({}, "filled")],
)
def test_trade_status(extra: dict[str, Any], status: str) -> None:
    data = {"trade_id": "T", "symbol": "A", "side": "buy", "quantity": 1, "price": 1, **extra}
    raw = {"type": "trade_updates", "user_id": "u", "data": data}
    assert build_data_message(raw).data["status"] == status
    partial = {**raw, "trade_type": "partial_fill", "data": dict(data)}
    if not extra:
        assert build_data_message(partial).data["status"] == "partial"


def test_returns_are_not_derived_from_a_zero_base() -> None:
    raw = {
        "type": "performance_update",
        "portfolio_id": "P",
        "data": {"total_value": 100, "total_pnl": 100},
    }
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw)
    assert "`returns`" in caught.value.message


def test_envelope_timestamp_comes_from_data_when_only_data_has_one() -> None:
    raw = {"type": "notification", "data": {"timestamp": TS}}
    assert build_data_message(raw).timestamp == TS


# --------------------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    "data",
    [
        {"x": 2**64},  # JSON carries it, msgpack does not
        {"x": -(2**63) - 1},
        {"nested": [{"x": 2**70}]},
    ],
)
def test_numbers_a_subscriber_could_not_decode_are_refused(data: dict[str, Any]) -> None:
    raw = {"type": "notification", "data": data}
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw)
    assert caught.value.details == {"field": "data"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"side": "buy", "quantity": 1.7e308, "filled_quantity": -1.7e308}, "remaining_quantity"),
        ({"side": "buy", "quantity": 2**64, "filled_quantity": -(2**64)}, "data"),
    ],
)
def test_a_derivation_past_the_range_is_not_made(data: dict[str, Any], field: str) -> None:
    raw = {
        "type": "order_update",
        "order_id": "O",
        "user_id": "u",
        "symbol": "A",
        "order_status": "open",
        "data": data,
    }
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw)
    assert field in caught.value.message or caught.value.details == {"field": field}


def test_a_field_of_another_type_is_refused() -> None:
    raw = {"type": "market_data", "symbol": "A", "order_status": "open", "data": {}}
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw)
    assert caught.value.details == {"field": "order_status", "type": "market_data"}


@pytest.mark.parametrize("status", [["rejected"], {"a": 1}])
def test_odd_status_types_are_invalid_not_a_crash(status: Any) -> None:
    raw: dict[str, Any] = {
        "type": "order_update",
        "portfolio_id": "P",
        "data": {"order_id": "O", "symbol": "A", "side": "buy", "quantity": 1},
    }
    raw["data"] |= {"filled_quantity": 0, "status": status, "reason": "x"}
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw)
    assert caught.value.code is ErrorCode.INVALID_MESSAGE


def test_a_01_synonym_beside_its_canonical_name_stays_as_sent() -> None:
    raw = {"type": "event", "event_type": "e", "data": {"description": "d", "message": "m"}}
    data = build_data_message(raw).data
    assert (data["description"], data["message"]) == ("d", "m")


def test_a_partial_fill_is_partial_whatever_the_remaining_quantity() -> None:
    data = {"trade_id": "T", "symbol": "A", "side": "buy", "quantity": 1, "price": 1}
    raw = {"type": "trade_updates", "user_id": "u", "trade_type": "partial_fill"}
    message = build_data_message({**raw, "data": {**data, "remaining_quantity": 0}})
    assert message.data["status"] == "partial"
