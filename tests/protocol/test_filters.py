"""protocol.filters: a subscription's filters are checked against its stream."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.filters import DEFAULT_MAX_FILTER_VALUES, validate_filters
from tidewire.protocol.messages import Filters
from tidewire.protocol.streams import STREAMS, StreamSpec

ALL_FILTERS = list(Filters.__struct_fields__)
# A valid value of every filter.
GOOD: dict[str, Any] = {
    "symbols": ["AAPL", "MSFT"],
    "portfolio_ids": ["PF-1"],
    "strategy_ids": ["S1"],
    "user_id": "u1",
    "severity": "high",
    "min_price": 1.5,
    "max_price": 200.0,
    "venue": "XNAS",
    "asset_class": "equity",
}
MARKET = STREAMS["market_data"]
PORTFOLIO = STREAMS["trade_updates"]  # supports every filter but severity


def refused(raw: Any, spec: StreamSpec = MARKET, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        validate_filters(raw, spec, **kwargs)
    error = caught.value
    assert error.code is ErrorCode.INVALID_FILTER
    assert not error.retryable
    return error


def test_good_values_cover_every_filter() -> None:
    assert set(GOOD) == set(ALL_FILTERS)


def test_no_filters_means_no_constraint() -> None:
    assert validate_filters(None, MARKET) == Filters()
    assert validate_filters({}, MARKET) == Filters()


SUPPORTED = [(name, f) for name, spec in STREAMS.items() for f in sorted(spec.filters)]
UNSUPPORTED = [
    (name, f) for name, spec in STREAMS.items() for f in ALL_FILTERS if f not in spec.filters
]


@pytest.mark.parametrize(("stream", "name"), SUPPORTED)
def test_supported_filter_is_accepted(stream: str, name: str) -> None:
    filters = validate_filters({name: GOOD[name]}, STREAMS[stream])
    assert getattr(filters, name) == GOOD[name]
    assert filters == Filters(**{name: GOOD[name]})


@pytest.mark.parametrize(("stream", "name"), UNSUPPORTED)
def test_filter_the_stream_does_not_carry_is_refused(stream: str, name: str) -> None:
    spec = STREAMS[stream]
    error = refused({name: GOOD[name]}, spec)
    assert error.details == {"filters": [name], "supported": sorted(spec.filters)}
    assert stream in error.message


def test_every_stream_refuses_something_or_accepts_everything() -> None:
    # The catalogue really restricts filters: otherwise the test above would test nothing.
    assert len(UNSUPPORTED) > 40
    assert ("market_data", "portfolio_ids") in UNSUPPORTED
    assert ("engine_status", "symbols") in UNSUPPORTED


def test_all_filters_of_a_stream_together() -> None:
    raw = {name: GOOD[name] for name in PORTFOLIO.filters}
    filters = validate_filters(raw, PORTFOLIO)
    for name in PORTFOLIO.filters:
        assert getattr(filters, name) == GOOD[name]


@pytest.mark.parametrize(
    ("raw", "unknown"),
    [
        ({"colour": "red"}, ["colour"]),
        ({"symbol": "AAPL"}, ["symbol"]),  # singular: not a filter
        ({"zz": 1, "aa": 2, "symbols": ["A"]}, ["aa", "zz"]),
        ({"colour": 1, "portfolio_ids": ["P"]}, ["colour"]),  # unknown is reported first
    ],
)
def test_unknown_filter(raw: dict[str, Any], unknown: list[str]) -> None:
    error = refused(raw)
    assert error.details == {"filters": unknown}
    assert "unknown filter" in error.message


def test_several_unsupported_filters_are_all_named() -> None:
    error = refused({"user_id": "u", "portfolio_ids": ["P"], "symbols": ["A"]})
    assert error.details is not None
    assert error.details["filters"] == ["portfolio_ids", "user_id"]


@pytest.mark.parametrize("raw", [[], ["symbols"], "symbols=AAPL", 5, True])
def test_filters_must_be_an_object(raw: Any) -> None:
    assert "object" in refused(raw).message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("symbols", "AAPL"),
        ("symbols", [1, 2]),
        ("symbols", {"AAPL": True}),
        ("portfolio_ids", "PF-1"),
        ("strategy_ids", [None]),
        ("user_id", 5),
        ("user_id", ["u1"]),
        ("severity", "urgent"),
        ("severity", 3),
        ("min_price", "1.5"),
        ("min_price", True),
        ("max_price", [1]),
        ("venue", 5),
        ("asset_class", ["equity"]),
    ],
)
def test_wrong_type(name: str, value: Any) -> None:
    error = refused({name: value}, PORTFOLIO if name != "severity" else STREAMS["risk_alerts"])
    assert f"$.{name}" in error.message


@pytest.mark.parametrize("name", ["symbols", "portfolio_ids", "strategy_ids"])
def test_an_empty_list_is_no_filter(name: str) -> None:
    """The original subscription form sends `portfolio_ids: []` for a blank field."""
    assert validate_filters({name: []}, PORTFOLIO) == Filters()


@pytest.mark.parametrize("name", ["user_id", "venue", "asset_class"])
def test_an_empty_string_is_no_filter(name: str) -> None:
    assert validate_filters({name: "", "symbols": ["A"]}, PORTFOLIO) == Filters(symbols=["A"])


def test_blank_filters_of_the_original_form() -> None:
    form = {"symbols": ["AAPL"], "portfolio_ids": [], "strategy_ids": [], "user_id": ""}
    assert validate_filters(form, PORTFOLIO) == Filters(symbols=["AAPL"])


@pytest.mark.parametrize("name", ["symbols", "portfolio_ids", "strategy_ids"])
def test_too_many_values(name: str) -> None:
    error = refused({name: ["a", "b", "c"]}, PORTFOLIO, max_values=2)
    assert error.details == {"filter": name, "limit": 2}
    assert "3 values" in error.message
    assert validate_filters({name: ["a", "b"]}, PORTFOLIO, max_values=2)


def test_default_value_limit() -> None:
    at_limit = [f"S{i}" for i in range(DEFAULT_MAX_FILTER_VALUES)]
    assert validate_filters({"symbols": at_limit}, MARKET).symbols == at_limit
    error = refused({"symbols": [*at_limit, "ONE-MORE"]})
    assert error.details == {"filter": "symbols", "limit": DEFAULT_MAX_FILTER_VALUES}


@pytest.mark.parametrize(("low", "high"), [(10, 5), (0.02, 0.01), (-1, -2)])
def test_min_price_above_max_price(low: float, high: float) -> None:
    error = refused({"min_price": low, "max_price": high})
    assert error.details == {"filter": "min_price"}


@pytest.mark.parametrize(
    "raw",
    [
        {"min_price": 5, "max_price": 5},
        {"min_price": 5},
        {"max_price": 5},
        {"min_price": 0, "max_price": math.inf},
    ],
)
def test_price_bounds_accepted(raw: dict[str, Any]) -> None:
    filters = validate_filters(raw, MARKET)
    assert (filters.min_price, filters.max_price) == (raw.get("min_price"), raw.get("max_price"))


def test_integer_prices_become_floats() -> None:
    filters = validate_filters({"min_price": 5}, MARKET)
    assert filters.min_price == 5.0 and isinstance(filters.min_price, float)


@pytest.mark.parametrize("name", ["min_price", "max_price"])
def test_nan_price_is_refused(name: str) -> None:
    """NaN compares false with every price, so the subscription would silently match nothing.

    JSON cannot carry NaN, but msgpack can.
    """
    assert refused({name: math.nan}).details == {"filter": name}


@pytest.mark.parametrize("severity", ["low", "medium", "high", "critical"])
def test_severity_levels(severity: str) -> None:
    assert validate_filters({"severity": severity}, STREAMS["events"]).severity == severity


def test_input_is_not_modified() -> None:
    raw = {"symbols": ["A"], "min_price": 1}
    validate_filters(raw, MARKET)
    assert raw == {"symbols": ["A"], "min_price": 1}


def test_non_string_filter_names_are_invalid_not_a_crash() -> None:
    error = refused({1: ["a"], "symbols": ["A"]}, PORTFOLIO)
    assert error.details == {"filters": ["1"]}
