"""Reconnection delays: exponential backoff with full jitter.

"Full jitter" (delay drawn uniformly from zero to the exponential ceiling) spreads the
reconnections of thousands of clients that lost the same gateway at the same instant, so a
restarted gateway is not hit by a synchronised stampede. After a close that means "you are
too many" or "you are too fast" (4009, 4029) a client must really slow down, so a throttled
delay starts from a larger ceiling and never drops below half of it.
"""

from __future__ import annotations

import random

# 2**62 times any sane base already exceeds every cap; stop growing the exponent there so a
# client that has been retrying for days does not build ever larger integers.
_MAX_EXPONENT = 62


class Backoff:
    """Delays before successive reconnection attempts.

    `next_delay()` returns the delay before the next attempt and counts it in `attempts`;
    `reset()` starts over after a successful connection. The n-th delay (n from 0) lies in
    `[0, min(cap, base * 2**n)]`; with `throttled=True` in `[c / 2, c]` where
    `c = min(cap, base * throttle_factor * 2**n)`.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        throttle_factor: float = 4.0,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0:
            raise ValueError("base must be positive")
        if cap < base:
            raise ValueError("cap must be at least base")
        if throttle_factor < 1:
            raise ValueError("throttle_factor must be at least 1")
        self.base = base
        """Ceiling of the first delay, in seconds."""
        self.cap = cap
        """Largest delay ever returned, in seconds."""
        self.throttle_factor = throttle_factor
        """How much larger the ceiling is after a throttling close (4009, 4029)."""
        self.attempts = 0
        """Delays handed out since the last `reset()`."""
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int, *, throttled: bool = False) -> float:
        """The largest delay of attempt number `attempt` (0 for the first)."""
        factor = self.throttle_factor if throttled else 1.0
        return min(self.cap, self.base * factor * 2.0 ** min(attempt, _MAX_EXPONENT))

    def next_delay(self, *, throttled: bool = False) -> float:
        """The delay before the next attempt, in seconds; counts the attempt."""
        ceiling = self.ceiling(self.attempts, throttled=throttled)
        self.attempts += 1
        low = ceiling / 2 if throttled else 0.0
        return self._rng.uniform(low, ceiling)

    def reset(self) -> None:
        """Start over from the smallest ceiling (after a successful connection)."""
        self.attempts = 0
