"""The raw load generator (bench.clients.raw) with latency kept per second of wall time.

Same connections, subscription (`market_data`), counting and control block as bench.loadgen;
the difference is where latency samples go: besides the run's totals, each sample is put
in the bucket of the wall-clock second (`int(time.time())`) it was taken in, so a driver can
line latency up with what happened on the server that second (bench.slow_consumer).
Samples are taken while the phase is MEASURE, from every `--sample-every`-th read (all
quotes in that read). Prints one JSON object on stdout at STOP.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import raw
from bench.clients.common import Totals
from bench.control import ControlBlock
from bench.stats import percentiles

POINTS = (50, 99, 99.9, 100)
BIN_NS = 100_000
"""Histogram bin width: 0.1 ms. A driver merges the histograms of any set of seconds."""


@dataclass
class TimelineTotals(Totals):
    """Totals that also keep every latency sample in its wall-clock second, and a histogram
    of each second (0.1 ms bins)."""

    per_second: dict[int, array[int]] = field(default_factory=dict)
    histograms: dict[int, dict[int, int]] = field(default_factory=dict)

    def add_sample(self, latency_ns: int) -> None:
        super().add_sample(latency_ns)
        second = int(time.time())
        bucket = self.per_second.get(second)
        if bucket is None:
            bucket = self.per_second[second] = array("q")
            self.histograms[second] = {}
        bucket.append(latency_ns)
        histogram = self.histograms[second]
        key = max(0, latency_ns) // BIN_NS
        histogram[key] = histogram.get(key, 0) + 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--url", required=True)
    parser.add_argument("--control", required=True, help="control block file (bench.control)")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--sample-every", type=int, default=1, help="power of two")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="lifetime bound")
    args = parser.parse_args()
    if args.sample_every < 1 or args.sample_every & (args.sample_every - 1):
        parser.error("--sample-every must be a power of two")
    return args


def _ms(values: dict[str, float]) -> dict[str, float]:
    return {key: round(value / 1e6, 3) for key, value in values.items()}


def _lifetime_expired(signum: int, frame: object) -> None:
    print("timeline_loadgen: lifetime bound reached, exiting", file=sys.stderr, flush=True)
    sys.exit(2)


def main() -> None:
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGALRM, _lifetime_expired)
    signal.alarm(max(1, int(args.max_seconds)))
    ctl = ControlBlock(Path(args.control))
    totals = TimelineTotals()
    try:
        outcome = raw.run(args.url, ctl, totals, args.connections, 0, args.sample_every)
    finally:
        signal.alarm(0)
        ctl.close()
    counts = outcome.per_connection or [0]
    result: dict[str, Any] = {
        "connections": args.connections,
        "subscribed": outcome.subscribed,
        "connect_seconds": round(outcome.connect_seconds, 3),
        "connect_errors": len(outcome.errors),
        "first_errors": outcome.errors[:3],
        "received": totals.received,
        "per_connection_min": min(counts),
        "per_connection_max": max(counts),
        "latency_samples": len(totals.samples),
        "latency_ms": _ms(percentiles(totals.samples, POINTS)),
        "per_second": {
            str(second): {"samples": len(bucket), **_ms(percentiles(bucket, POINTS))}
            for second, bucket in sorted(totals.per_second.items())
        },
        "bin_ns": BIN_NS,
        "histograms": {str(second): hist for second, hist in sorted(totals.histograms.items())},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
