"""What both client implementations of the load generator share."""

from __future__ import annotations

import array
import json
import re
from dataclasses import dataclass, field

SUBSCRIBE = json.dumps({"type": "subscribe", "stream": "market_data"}).encode()
CONFIRMED = b"subscription_confirmed"
# Every data frame of every server starts its payload with this (bench.quotes), and it
# cannot occur inside a frame: counting it in the byte stream counts deliveries.
MARKER = b'{"type":"market_data"'
# `ts` is the last field of `data`; requiring the closing brace rejects a number cut short
# at the end of a read.
TS = re.compile(rb'"ts":(\d+)\}')
MAX_SAMPLES = 2_000_000  # bounds memory: 16 MB of int64 at most


@dataclass
class Totals:
    """Counters of one load generator process, shared by all its connections."""

    received: int = 0
    """Data frames received, all connections together."""
    bytes: int = 0
    bytes_frames: int = 0
    """Frames whose bytes are in `bytes`; 0 means all received frames (raw client)."""
    reads: int = 0
    """recv calls (raw client) that returned data: deliveries / reads shows the batching."""
    measuring: bool = False
    samples: array.array[int] = field(default_factory=lambda: array.array("q"))
    """Latency samples in ns: receipt time minus the `ts` embedded at publish."""

    def add_sample(self, latency_ns: int) -> None:
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(latency_ns)


@dataclass
class Outcome:
    """What a client implementation reports after STOP."""

    subscribed: int
    per_connection: list[int]
    connect_seconds: float
    errors: list[str]
