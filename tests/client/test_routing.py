"""Client-side filter matching and routing among subscriptions of one stream."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tidewire.client.routing import (
    Router,
    field_value,
    matches,
    message_price,
    severity_rank,
)
from tidewire.protocol.prices import exact_mid


def quote(symbol: str, bid: Any = 100.0, ask: Any = 101.0, **top: Any) -> dict[str, Any]:
    return {
        "type": "market_data",
        "stream": "market_data",
        "key": symbol,
        "seq": 1,
        "symbol": symbol,
        "data": {"bid_price": bid, "ask_price": ask},
        **top,
    }


def alert(severity: str, portfolio_id: str = "P1", **data: Any) -> dict[str, Any]:
    return {
        "type": "risk_alert",
        "stream": "risk_alerts",
        "key": portfolio_id,
        "portfolio_id": portfolio_id,
        "severity": severity,
        "data": {"metric": "var", "current_value": 2, "threshold": 1, **data},
    }


def test_no_filters_match_everything() -> None:
    assert matches({}, quote("AAPL"))
    assert matches({}, {"stream": "events", "data": {}})


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"symbols": ["AAPL", "MSFT"]}, True),
        ({"symbols": ["TSLA"]}, False),
        ({"venue": "XNAS"}, True),
        ({"venue": "XNYS"}, False),
        ({"asset_class": "equity"}, True),
        ({"symbols": ["AAPL"], "venue": "XNYS"}, False),  # every filter must match
    ],
)
def test_list_and_equality_filters(filters: dict[str, Any], expected: bool) -> None:
    message = quote("AAPL", venue="XNAS", asset_class="equity")
    assert matches(filters, message) is expected


def test_a_field_may_live_in_data() -> None:
    message = {"stream": "trade_updates", "data": {"portfolio_id": "P7", "user_id": "u1"}}
    assert matches({"portfolio_ids": ["P7"], "user_id": "u1"}, message)
    assert not matches({"portfolio_ids": ["P8"]}, message)
    assert field_value(message, "portfolio_id") == "P7"


def test_top_level_wins_over_data() -> None:
    message = {"symbol": "AAPL", "data": {"symbol": "MSFT"}}
    assert field_value(message, "symbol") == "AAPL"


def test_a_message_without_the_field_does_not_match() -> None:
    assert not matches({"strategy_ids": ["S1"]}, quote("AAPL"))
    assert not matches({"user_id": "u1"}, quote("AAPL"))
    assert not matches({"severity": "low"}, quote("AAPL"))
    assert not matches({"min_price": 1}, {"stream": "events", "data": {"message": "hi"}})


@pytest.mark.parametrize(
    ("minimum", "level", "expected"),
    [
        ("low", "low", True),
        ("medium", "low", False),
        ("medium", "high", True),
        ("high", "critical", True),
        ("critical", "high", False),
        ("medium", "warning", True),  # aliases of other engines
        ("high", "info", False),
        ("critical", "fatal", True),
    ],
)
def test_severity_is_a_minimum(minimum: str, level: str, expected: bool) -> None:
    assert matches({"severity": minimum}, alert(level)) is expected


def test_severity_ranks() -> None:
    assert [severity_rank(s) for s in ("low", "medium", "high", "critical")] == [0, 1, 2, 3]
    assert severity_rank("HIGH") == 2
    assert severity_rank("bogus") is None
    assert severity_rank(3) is None


def test_price_is_price_then_last_trade_price_then_mid() -> None:
    both = {"bid_price": 1, "ask_price": 2}
    assert message_price({"data": {"price": 5, "last_trade_price": 6, **both}}) == 5
    assert message_price({"data": {"last_trade_price": 6, **both}}) == 6
    assert message_price({"data": both}) == Decimal("1.5")
    assert message_price({"data": {"bid_price": 1}}) is None
    assert message_price({"data": {"price": True}}) is None
    # As on the gateway: the first of price / last_trade_price present decides.
    assert message_price({"data": {"price": "n/a", **both}}) is None
    assert message_price({"data": {"bid_price": "1", "ask_price": "3"}}) == 2


def test_the_price_is_read_from_data_only() -> None:
    # The 0.1 names and a top-level price are not prices of the canonical shapes.
    assert message_price({"price": 5, "data": {}}) is None
    assert message_price({"data": {"bid": 1, "ask": 2}}) is None
    assert message_price({"data": None}) is None


def test_the_mid_is_exact() -> None:
    # Decimal's default 28 digits would round this sum; float would round 1.1 + 1.3.
    bid, ask = "1.00000000000000000000000000001", "100000000.00000000000000000000000000003"
    mid = exact_mid(Decimal(bid), Decimal(ask))
    assert str(mid) == "50000000.50000000000000000000000000002"
    assert (Decimal(bid) + Decimal(ask)) / 2 != mid
    assert message_price({"data": {"bid_price": 1.1, "ask_price": 1.3}}) == Decimal("1.2")
    assert matches({"max_price": 1.2}, {"data": {"bid_price": 1.1, "ask_price": 1.3}})


def test_blank_filters_are_no_filters() -> None:
    # The original subscription form sends `portfolio_ids: []` for a blank field.
    blank: dict[str, Any] = {
        "symbols": [],
        "portfolio_ids": [],
        "venue": "",
        "severity": "",
        "user_id": None,
    }
    assert matches(blank, quote("AAPL"))
    assert not matches({"symbols": [], "venue": "XNYS"}, quote("AAPL", venue="XNAS"))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"min_price": 100}, True),
        ({"min_price": 100.6}, False),
        ({"max_price": 100.5}, True),  # mid of 100 / 101, inclusive bounds
        ({"max_price": 100.4}, False),
        ({"min_price": 100, "max_price": 101}, True),
    ],
)
def test_price_bounds_use_the_mid(filters: dict[str, Any], expected: bool) -> None:
    assert matches(filters, quote("AAPL")) is expected


def test_decimal_strings_compare_as_numbers() -> None:
    message = quote("AAPL", bid="100.10", ask="100.30")
    assert matches({"min_price": 100.2, "max_price": 100.2}, message)
    assert not matches({"min_price": 100.21}, message)


def test_unknown_filters_never_exclude() -> None:
    assert matches({"future_filter": "x"}, quote("AAPL"))


def test_router_separates_subscriptions_of_one_stream() -> None:
    router: Router[str] = Router()
    router.add("a", "market_data", {"symbols": ["AAPL"]}, "A")
    router.add("b", "market_data", {"symbols": ["AAPL", "MSFT"]}, "B")
    router.add("c", "market_data", {}, "C")
    router.add("r", "risk_alerts", {"severity": "high"}, "R")
    assert router.targets(quote("AAPL")) == ["A", "B", "C"]
    assert router.targets(quote("MSFT")) == ["B", "C"]
    assert router.targets(quote("TSLA")) == ["C"]
    assert router.targets(alert("critical")) == ["R"]
    assert router.targets(alert("low")) == []
    assert router.targets({"stream": "events", "data": {}}) == []
    assert router.targets({"data": {}}) == []
    assert router.streams() == {"market_data", "risk_alerts"}


def test_router_remove_and_replace() -> None:
    router: Router[str] = Router()
    router.add("a", "market_data", {}, "A")
    router.add("a", "risk_alerts", {}, "A2")  # same id: replaced, moves stream
    assert router.targets(quote("AAPL")) == []
    assert len(router) == 1
    router.remove("a")
    router.remove("a")  # unknown ids are ignored
    assert len(router) == 0
    assert router.streams() == set()
