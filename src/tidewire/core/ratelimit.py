"""Token buckets for inbound message rates and per-subscription delivery rates."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; starts full.

    Time is passed in by the caller (monotonic seconds), so the bucket has no clock of its own
    and tests drive it directly.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def tokens(self, now: float) -> float:
        """Tokens available at `now`."""
        return min(self.burst, self._tokens + max(0.0, now - self._stamp) * self.rate)

    def take(self, now: float, tokens: float = 1.0) -> bool:
        """Spend `tokens` if available; False (and nothing spent) when the bucket is short."""
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False
