"""Nautilus value formats: exact decimals, money, timestamps, enums, ids."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tidewire.sources.nautilus.values import (
    data_message_id,
    event_message_id,
    instrument_parts,
    iso_of_ns,
    money,
    number,
    parse_ns,
    side,
    venue_of_account,
)


def test_number_keeps_decimal_strings_exact() -> None:
    assert number("0.73269") == Decimal("0.73269")
    assert str(number("0.73000")) == "0.73000"  # trailing zeros (the price precision) kept
    assert number("1000000") == Decimal(1_000_000)
    assert number(5) == Decimal(5)


def test_number_of_a_float_is_its_shortest_repr() -> None:
    # Position events carry avg_px_open as a float.
    assert number(0.72923) == Decimal("0.72923")
    assert number(0.7300009090909091) == Decimal("0.7300009090909091")


@pytest.mark.parametrize("value", [None, "", "abc", "NaN", "inf", True, [], {}])
def test_number_refuses_non_numbers(value: object) -> None:
    assert number(value) is None


def test_money() -> None:
    assert money("1.47 USD") == (Decimal("1.47"), "USD")
    assert money("-227.92 USD") == (Decimal("-227.92"), "USD")
    assert money("12.5") == (Decimal("12.5"), None)
    assert money(None) == (None, None)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1700000000000000000", 1_700_000_000_000_000_000),
        ("0", 0),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
        ("2023-11-14T22:13:20.000000001Z", 1_700_000_000_000_000_001),
        ("2026-11-26T14:47:11.774934008+00:00", 1_795_704_431_774_934_008),
        ("2023-11-14T23:13:20.5+01:00", 1_700_000_000_500_000_000),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_parse_ns(text: str, ns: int) -> None:
    assert parse_ns(text) == ns


def test_parse_ns_of_garbage_is_none() -> None:
    assert parse_ns("yesterday") is None
    assert parse_ns(None) is None


def test_iso_of_ns_has_the_envelope_format() -> None:
    assert iso_of_ns(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"


def test_enums_and_ids() -> None:
    assert side("BUY") == "buy"
    assert side("SELLER") == "sell"
    assert side("NO_AGGRESSOR") is None
    assert instrument_parts("AUD/USD.SIM") == ("AUD/USD", "SIM")
    assert instrument_parts("ESZ4.XCME") == ("ESZ4", "XCME")
    assert instrument_parts("BRK.B.XNYS") == ("BRK.B", "XNYS")  # dots in the symbol
    assert venue_of_account("SIM-001") == "SIM"


def test_message_ids_are_deterministic() -> None:
    assert event_message_id("abc") == "nt-abc"
    assert event_message_id("abc", "trade") == "nt-abc-trade"
    key = "trader-X:stream:data.quotes.SIM.AUD/USD"
    assert data_message_id(key, "1-0") == data_message_id(key, "1-0")
    assert data_message_id(key, "1-0") != data_message_id(key, "1-1")
    assert data_message_id(key, "1-0") != data_message_id("other", "1-0")
