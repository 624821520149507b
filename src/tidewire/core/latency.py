"""A fixed-bucket latency histogram for the write path (pure; exported by server/metrics.py).

The flusher observes, once per flush, how long the messages of that flush waited between the
broker handing them to the hub and their transport write: one `bisect` and two additions per
flush, nothing per delivery.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["LATENCY_BUCKETS", "LatencyHistogram", "le_label"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


class LatencyHistogram:
    """A fixed-bucket histogram cheap enough for the write path: one `bisect` and two
    additions per observation, no locks (the gateway is one event loop). `counts[i]`
    counts observations <= `bounds[i]`, the last one those above every bound; exported
    cumulatively on scrape. The shape the collector reads from `hub.flusher.latency`."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative `(le, count)` pairs ending with `+Inf`."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((le_label(bound), running))
        running += self.counts[-1]
        out.append(("+Inf", running))
        return out


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus spells it (`le` label)."""
    return repr(float(bound))
