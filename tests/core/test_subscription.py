"""Subscription filters of core/subscription.py (docs/protocol.md section 3, `filters`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

import pytest

from tidewire.core.connection import Connection
from tidewire.core.subscription import Subscription, field_value
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.prices import message_price
from tidewire.protocol.streams import SEVERITIES, STREAMS

NO_CONNECTION = cast(Connection, None)  # matching never looks at the connection


def subscribe(stream: str, **filters: Any) -> Subscription:
    spec = STREAMS[stream]
    return Subscription(
        NO_CONNECTION, "s", spec, validate_filters(filters, spec), "2024-01-01T00:00:00.000000Z"
    )


def message(stream: str, key: str, data: dict[str, Any] | None = None, **top: Any) -> DataMessage:
    """A sequenced data message; `top` are top-level fields, `data` the payload as is.

    The key is also the key field's value (as ingest sets it) unless `top` says otherwise."""
    key_field = STREAMS[stream].key_field
    if key_field != "source":
        top.setdefault(key_field, key)
    return DataMessage(
        type=STREAMS[stream].message_types[0],
        timestamp="2024-01-01T00:00:00.000000Z",
        message_id=f"m-{stream}-{key}",
        stream=stream,
        key=key,
        seq=1,
        epoch="e1",
        data=data if data is not None else {},
        **top,
    )


# (filter name, filter value, field, allowed value, other value, a stream whose messages carry
#  the field without it being the stream's key, so the filter is a per-message check)
VALUE_FILTERS = [
    ("symbols", ["AAPL", "MSFT"], "symbol", "MSFT", "GOOG", "trade_updates"),
    ("portfolio_ids", ["PF-1"], "portfolio_id", "PF-1", "PF-2", "events"),
    ("strategy_ids", ["ST-1", "ST-2"], "strategy_id", "ST-2", "ST-9", "order_updates"),
    ("user_id", "u-1", "user_id", "u-1", "u-2", "risk_alerts"),
    ("venue", "XNAS", "venue", "XNAS", "BATS", "market_data"),
    ("asset_class", "equity", "asset_class", "equity", "crypto", "market_data"),
]


@pytest.mark.parametrize(
    ("name", "value", "field", "allowed", "other", "stream"), VALUE_FILTERS, ids=lambda v: None
)
@pytest.mark.parametrize("where", ["top", "data"])
def test_value_filter_reads_field_from_top_level_or_data(
    name: str, value: Any, field: str, allowed: str, other: str, stream: str, where: str
) -> None:
    sub = subscribe(stream, **{name: value})
    assert not sub.plain
    assert sub.index_keys is None, "not the stream's key: checked per message"

    def carrying(v: str) -> DataMessage:
        if where == "top":
            return message(stream, "K", **{field: v})  # type: ignore[arg-type]
        return message(stream, "K", {field: v})

    assert sub.matches(carrying(allowed))
    assert sub.matches_all(carrying(allowed))
    assert not sub.matches(carrying(other))
    assert not sub.matches_all(carrying(other))


@pytest.mark.parametrize(("name", "value", "field", "allowed", "other", "stream"), VALUE_FILTERS)
def test_message_without_the_field_does_not_match(
    name: str, value: Any, field: str, allowed: str, other: str, stream: str
) -> None:
    sub = subscribe(stream, **{name: value})
    assert not sub.matches(message(stream, "K", {"unrelated": allowed}))


def test_top_level_field_wins_over_data() -> None:
    sub = subscribe("market_data", venue="BATS")
    assert not sub.matches(message("market_data", "AAPL", {"venue": "BATS"}, venue="XNAS"))
    assert sub.matches(message("market_data", "AAPL", {"venue": "XNAS"}, venue="BATS"))


# Key filters: the hub's index decides, `matches_all` re-checks them for broadcasts.
KEY_FILTERS = [
    ("market_data", "symbols", ["AAPL", "MSFT"], "MSFT", "GOOG"),
    ("execution_analytics", "symbols", ["AAPL"], "AAPL", "GOOG"),
    ("position_updates", "portfolio_ids", ["PF-1", "PF-2"], "PF-2", "PF-3"),
    ("risk_alerts", "portfolio_ids", ["PF-1"], "PF-1", "PF-3"),
    ("strategy_performance", "strategy_ids", ["ST-1"], "ST-1", "ST-2"),
]


@pytest.mark.parametrize(("stream", "name", "values", "allowed", "other"), KEY_FILTERS)
def test_key_filter_is_indexed(
    stream: str, name: str, values: list[str], allowed: str, other: str
) -> None:
    sub = subscribe(stream, **{name: values})
    assert sub.index_keys == frozenset(values)
    assert sub.plain, "a key-only subscription needs no per-message check"
    assert sub.matches_all(message(stream, allowed))
    assert not sub.matches_all(message(stream, other))


def test_no_filters_is_a_plain_wildcard() -> None:
    sub = subscribe("market_data")
    assert sub.index_keys is None
    assert sub.plain
    assert sub.matches_all(message("market_data", "ANY"))


@pytest.mark.parametrize("minimum", SEVERITIES)
@pytest.mark.parametrize("level", SEVERITIES)
@pytest.mark.parametrize("where", ["top", "data"])
def test_severity_is_a_minimum(minimum: str, level: str, where: str) -> None:
    sub = subscribe("risk_alerts", severity=minimum)
    msg = (
        message("risk_alerts", "PF-1", severity=level)
        if where == "top"
        else message("risk_alerts", "PF-1", {"severity": level})
    )
    expected = SEVERITIES.index(level) >= SEVERITIES.index(minimum)
    assert sub.matches(msg) is expected


def test_severity_order_is_low_medium_high_critical() -> None:
    assert SEVERITIES == ("low", "medium", "high", "critical")


@pytest.mark.parametrize("data", [{}, {"severity": "bogus"}, {"severity": None}])
def test_severity_filter_refuses_messages_without_a_known_severity(data: dict[str, Any]) -> None:
    sub = subscribe("events", severity="low")
    assert not sub.matches(message("events", "simulator", data))


# ------------------------------------------------------------------ prices

PRICE_CASES = [
    pytest.param({"price": 101.0}, "101.0", id="price"),
    pytest.param({"last_trade_price": 99.5}, "99.5", id="last_trade_price"),
    pytest.param({"bid_price": 99.0, "ask_price": 101.0}, "100.0", id="mid"),
    pytest.param({"bid_price": 1.1, "ask_price": 1.3}, "1.2", id="float-mid-is-exact"),
    pytest.param(
        {"price": 50.0, "last_trade_price": 150.0, "bid_price": 1, "ask_price": 3},
        "50.0",
        id="price-first",
    ),
    pytest.param(
        {"last_trade_price": 150.0, "bid_price": 1.0, "ask_price": 3.0},
        "150.0",
        id="last-before-mid",
    ),
    pytest.param({"bid_price": 99.0}, None, id="bid-only"),
    pytest.param({"ask_price": 99.0}, None, id="ask-only"),
    pytest.param({}, None, id="none"),
    pytest.param({"price": Decimal("100.10")}, "100.1", id="decimal-price"),
    pytest.param(
        {"bid_price": Decimal("1.1"), "ask_price": Decimal("1.3")}, "1.2", id="decimal-mid"
    ),
    pytest.param({"price": "100.25"}, "100.25", id="decimal-string"),
    pytest.param({"price": True}, None, id="bool-is-no-price"),
    pytest.param({"price": float("nan")}, None, id="nan-is-no-price"),
]


@pytest.mark.parametrize(("data", "expected"), PRICE_CASES)
def test_message_price(data: dict[str, Any], expected: str | None) -> None:
    price = message_price(message("market_data", "AAPL", data).data)
    assert price == (None if expected is None else Decimal(expected))


@pytest.mark.parametrize(
    ("filters", "data", "expected"),
    [
        ({"min_price": 100.0}, {"price": 100.0}, True),
        ({"min_price": 100.0}, {"price": 99.99}, False),
        ({"max_price": 100.0}, {"price": 100.0}, True),
        ({"max_price": 100.0}, {"price": 100.01}, False),
        ({"min_price": 10, "max_price": 20}, {"price": 15}, True),
        ({"min_price": 10, "max_price": 20}, {"price": 25}, False),
        ({"min_price": 10, "max_price": 20}, {"price": 5}, False),
        # price wins over last_trade_price, which wins over the mid
        ({"min_price": 100.0}, {"price": 50.0, "last_trade_price": 150.0}, False),
        (
            {"min_price": 100.0},
            {"last_trade_price": 150.0, "bid_price": 1.0, "ask_price": 2.0},
            True,
        ),
        ({"min_price": 100.0}, {"bid_price": 99.0, "ask_price": 101.0}, True),
        ({"min_price": 100.5}, {"bid_price": 99.0, "ask_price": 101.0}, False),
        # without a price the filter does not match
        ({"min_price": 0.0}, {"size": 10}, False),
        ({"max_price": 1e9}, {"bid_price": 99.0}, False),
        # Decimal prices compare exactly enough
        ({"min_price": 100.1}, {"price": Decimal("100.10")}, True),
        ({"max_price": 100.09}, {"price": Decimal("100.10")}, False),
        (
            {"min_price": 1.19, "max_price": 1.21},
            {"bid_price": Decimal("1.1"), "ask_price": Decimal("1.3")},
            True,
        ),
        ({"min_price": 1.25}, {"bid_price": Decimal("1.1"), "ask_price": Decimal("1.3")}, False),
        # the mid of JSON numbers is exact too: 1.2, not 1.2000000000000002
        ({"max_price": 1.2}, {"bid_price": 1.1, "ask_price": 1.3}, True),
        ({"min_price": 1.2}, {"bid_price": 1.1, "ask_price": 1.3}, True),
    ],
)
def test_price_filters(filters: dict[str, Any], data: dict[str, Any], expected: bool) -> None:
    sub = subscribe("market_data", **filters)
    assert not sub.plain
    assert sub.matches(message("market_data", "AAPL", data)) is expected


def test_all_filters_must_match() -> None:
    sub = subscribe(
        "trade_updates",
        portfolio_ids=["PF-1"],
        symbols=["AAPL"],
        venue="XNAS",
        user_id="u-1",
        min_price=10.0,
    )
    good = {"symbol": "AAPL", "price": 12.0}
    top = {"venue": "XNAS", "user_id": "u-1"}
    assert sub.matches_all(message("trade_updates", "PF-1", good, **top))
    assert not sub.matches_all(message("trade_updates", "PF-2", good, **top))
    assert not sub.matches_all(message("trade_updates", "PF-1", {**good, "symbol": "MSFT"}, **top))
    assert not sub.matches_all(message("trade_updates", "PF-1", {**good, "price": 9.0}, **top))
    assert not sub.matches_all(message("trade_updates", "PF-1", good, venue="BATS", user_id="u-1"))
    assert not sub.matches_all(message("trade_updates", "PF-1", good, venue="XNAS"))


def test_field_value_prefers_top_level() -> None:
    msg = message("market_data", "AAPL", {"venue": "D", "asset_class": "equity"}, venue="T")
    assert field_value(msg, "venue") == "T"
    assert field_value(msg, "asset_class") == "equity"
    assert field_value(msg, "user_id") is None


def test_info_reports_the_subscription() -> None:
    sub = subscribe("market_data", symbols=["AAPL"], venue="XNAS")
    info = sub.info()
    assert info.subscription_id == "s"
    assert info.stream == "market_data"
    assert info.filters.symbols == ["AAPL"]
    assert info.filters.venue == "XNAS"
    assert info.messages_delivered == 0
