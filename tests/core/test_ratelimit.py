"""TokenBucket of core/ratelimit.py, driven by an injected clock (no sleeps)."""

from __future__ import annotations

import pytest

from tidewire.core.ratelimit import TokenBucket


@pytest.mark.parametrize(("rate", "burst"), [(1.0, 1), (4.0, 5), (50.0, 200)])
def test_starts_full_allows_burst_then_refuses(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst, now=100.0)
    assert all(bucket.take(100.0) for _ in range(burst))
    assert bucket.take(100.0) is False
    assert bucket.take(100.0) is False


# Rates whose period is a binary fraction keep the arithmetic exact.
@pytest.mark.parametrize(("rate", "burst"), [(1.0, 2), (4.0, 5), (64.0, 200)])
def test_refills_at_rate(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    for _ in range(burst):
        assert bucket.take(0.0)
    assert not bucket.take(0.0)
    # Exactly one token comes back after 1/rate seconds, and not before.
    step = 1.0 / rate
    assert not bucket.take(step * 0.5)
    assert bucket.take(step)
    assert not bucket.take(step)
    # Two steps later (counted from the last refill), two more tokens.
    assert bucket.take(3 * step)
    assert bucket.take(3 * step)
    assert not bucket.take(3 * step)


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=4.0, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    later = 1000.0  # 4000 tokens' worth of silence
    assert [bucket.take(later) for _ in range(4)] == [True, True, True, False]


def test_sustained_rate_is_allowed_forever() -> None:
    bucket = TokenBucket(rate=4.0, burst=1, now=0.0)
    assert all(bucket.take(i * 0.25) for i in range(1000))


def test_a_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    assert not bucket.take(0.0, tokens=3)
    assert bucket.take(0.0, tokens=2)
    assert not bucket.take(0.0)


def test_clock_going_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket(rate=10.0, burst=1, now=50.0)
    assert bucket.take(50.0)
    assert not bucket.take(10.0)
    assert not bucket.take(50.0)
    assert bucket.take(50.1)
