"""Per-subscription rate limit with conflation (docs/protocol.md section 3, `rate_limit`).

A subscription with `rate_limit: r` on a latest-value stream gets each key at most `r` times
a second: between two releases, the newest message per key is held (older ones of the same
key are dropped, which is what "latest value" means) and the release sends every held key
at once, in seq order, so messages of one subscription still arrive in seq order. Pure: the
hub passes the time in and schedules the release.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Throttle(Generic[T]):
    """Holds the newest item per key between releases that are `1 / rate` seconds apart."""

    __slots__ = ("conflated", "held", "interval", "next_release", "scheduled")

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_release = 0.0
        self.held: dict[str, T] = {}
        self.scheduled = False
        """True while a release is scheduled (the hub sets and clears it)."""
        self.conflated = 0
        """Items replaced by a newer one of the same key before release."""

    def offer(self, key: str, item: T, now: float) -> bool:
        """True: send `item` now. False: it is held until `next_release`."""
        if not self.held and now >= self.next_release:
            self.next_release = now + self.interval
            return True
        if self.held.pop(key, None) is not None:
            self.conflated += 1
        # Re-inserted at the end: held items stay in the order of their last update.
        self.held[key] = item
        return False

    def discard(self, key: str, item: T) -> None:
        """Forget `item` if it is still the one held for `key`."""
        if self.held.get(key) is item:
            del self.held[key]

    def release(self, now: float) -> list[T]:
        """Everything held, oldest update first; the next release is one interval away."""
        items = list(self.held.values())
        self.held = {}
        self.next_release = now + self.interval
        return items
