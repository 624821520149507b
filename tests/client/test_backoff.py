"""Reconnection delays: exponential ceilings, cap, full jitter, throttled floor, counting."""

from __future__ import annotations

import random

import pytest

from tidewire.client.backoff import Backoff


class _Extremes(random.Random):
    """An rng that returns the low end, then the high end, of every range, alternately."""

    def __init__(self) -> None:
        super().__init__(0)
        self.calls = 0

    def uniform(self, a: float, b: float) -> float:
        self.calls += 1
        return a if self.calls % 2 else b


def test_ceilings_double_until_the_cap() -> None:
    backoff = Backoff(0.5, 10.0)
    assert [backoff.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_every_delay_lies_within_zero_and_its_ceiling() -> None:
    backoff = Backoff(0.1, 3.0, rng=random.Random(1))
    for attempt in range(200):
        delay = backoff.next_delay()
        assert 0.0 <= delay <= backoff.ceiling(attempt) <= 3.0


def test_jitter_reaches_both_ends_of_the_range() -> None:
    backoff = Backoff(1.0, 60.0, rng=_Extremes())
    assert backoff.next_delay() == 0.0  # full jitter: may retry at once
    assert backoff.next_delay() == 2.0  # ... or wait the whole ceiling of attempt 1


def test_jitter_spreads_delays() -> None:
    backoff = Backoff(1.0, 1.0, rng=random.Random(7))
    delays = {backoff.next_delay() for _ in range(50)}
    assert len(delays) == 50


def test_throttled_delays_are_longer_and_never_near_zero() -> None:
    backoff = Backoff(0.5, 30.0, throttle_factor=4.0, rng=_Extremes())
    low = backoff.next_delay(throttled=True)
    high = backoff.next_delay(throttled=True)
    assert low == 1.0  # half of the first throttled ceiling (0.5 * 4)
    assert high == 4.0  # the second throttled ceiling
    assert Backoff(0.5, 3.0).ceiling(10, throttled=True) == 3.0  # still capped


def test_attempts_are_counted_and_reset() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    assert backoff.attempts == 5
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() <= 1.0


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    assert Backoff(0.001, 5.0).ceiling(10_000) == 5.0


@pytest.mark.parametrize(
    ("base", "cap", "factor"), [(0.0, 1.0, 4.0), (-1.0, 1.0, 4.0), (2.0, 1.0, 4.0), (1, 2, 0.5)]
)
def test_invalid_settings_are_refused(base: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap, throttle_factor=factor)
