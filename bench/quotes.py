"""The quote every server publishes, so all of them put the same bytes on the wire.

Tidewire wraps a producer's message in its envelope (type, version, timestamp, message_id, stream,
key, seq, epoch, source, data, symbol, venue, data_type); the peers build the same envelope
themselves, so a delivery is the same ~290-byte frame everywhere. `data.ts` is the publish
time in ns since the epoch (time.time_ns(): one clock for every process on the machine).
Symbols rotate so that a burst of K messages has K different keys: a latest-value stream may
conflate messages of one key, and the benchmark measures fan-out, not conflation.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any


def symbol(n: int, symbols: int) -> str:
    return f"SYM{n % symbols + 1}"


def quote_data(n: int) -> dict[str, Any]:
    bid = 100.0 + (n % 1000) / 100.0
    return {"bid_price": bid, "ask_price": round(bid + 0.02, 2), "ts": time.time_ns()}


def raw_quote(n: int, symbols: int) -> dict[str, Any]:
    """A producer's message, as Tidewire's `build_data_message` takes it."""
    return {
        "type": "market_data",
        "symbol": symbol(n, symbols),
        "venue": "SIM",
        "data_type": "quote",
        "data": quote_data(n),
    }


_EPOCH = os.urandom(4).hex()
_ID_PREFIX = os.urandom(4).hex()


def envelope_json(n: int, symbols: int) -> str:
    """The delivered frame of the peers: Tidewire's envelope, built the idiomatic way."""
    sym = symbol(n, symbols)
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    message = {
        "type": "market_data",
        "version": "3.0",
        "timestamp": timestamp,
        "message_id": f"tw-{_ID_PREFIX}-{n + 1:x}",
        "stream": "market_data",
        "key": sym,
        "seq": n + 1,
        "epoch": _EPOCH,
        "source": "bench",
        # The gateway fills data.timestamp from the envelope; `sequence` mirrors `seq`.
        "data": {**quote_data(n), "timestamp": timestamp},
        "sequence": n + 1,
        "symbol": sym,
        "venue": "SIM",
        "data_type": "quote",
    }
    return json.dumps(message, separators=(",", ":"))
