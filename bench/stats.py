"""Small statistics helpers shared by the load generator and the drivers."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentiles(values: Sequence[int], points: Sequence[float]) -> dict[str, float]:
    """Nearest-rank percentiles of `values` (any order), keyed like "p50", "p99", "p99.9"."""
    ordered = sorted(values)
    out: dict[str, float] = {}
    for point in points:
        key = f"p{point:g}"
        if not ordered:
            out[key] = float("nan")
            continue
        rank = min(len(ordered) - 1, max(0, round(point / 100 * len(ordered)) - 1))
        out[key] = float(ordered[rank])
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
