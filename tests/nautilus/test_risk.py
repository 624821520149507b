"""Denial reasons of the Nautilus 1.221 risk engine as risk-alert metrics."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tidewire.sources.nautilus.risk import parse_denial, trading_state


@pytest.mark.parametrize(
    ("reason", "metric", "current", "threshold"),
    [
        (
            "quantity 20000000 invalid (> maximum trade size of 10000000)",
            "order_quantity",
            "20000000",
            "10000000",
        ),
        ("quantity 10 invalid (< minimum trade size of 1000)", "order_quantity", "10", "1000"),
        (
            "NOTIONAL_EXCEEDS_MAX_PER_ORDER: max_notional=1_000_000.00 USD, "
            "notional=2_000_000.00 USD",
            "notional_exceeds_max_per_order",
            "2000000.00",
            "1000000.00",
        ),
        (
            "CUM_NOTIONAL_EXCEEDS_FREE_BALANCE: free=1000.00 USD, cum_notional=1500.50 USD",
            "cum_notional_exceeds_free_balance",
            "1500.50",
            "1000.00",
        ),
        ("TradingState.HALTED", "trading_state", "2", "0"),
        ("BUY when TradingState.REDUCING and LONG", "trading_state", "1", "0"),
        ("something new", "order_denied", "5", "0"),
    ],
)
def test_parse_denial(reason: str, metric: str, current: str, threshold: str) -> None:
    denial = parse_denial(reason, Decimal(5))
    assert denial.metric == metric
    assert denial.current_value == Decimal(current)
    assert denial.threshold == Decimal(threshold)


def test_unknown_reason_without_quantity() -> None:
    assert parse_denial("no idea", None).current_value == 0


def test_trading_states() -> None:
    assert trading_state("HALTED").severity == "critical"
    assert trading_state("REDUCING").level == 1
    assert trading_state("ACTIVE").severity == "low"
    assert trading_state("WHATEVER").severity == "medium"
