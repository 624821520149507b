"""Per-connection outbox: frames waiting for the next flush, and the slow-consumer policy.

The hub appends shared, pre-encoded frames; the flush joins everything pending into one
write. A connection that asked for `batch_ms` collects payloads instead and gets one
`{"type":"batch","messages":[...]}` frame per flush.

Two lanes keep order where it matters and let urgent traffic pass where it does not: the
ordered lane holds replies, messages of reliable streams and critical-priority messages, in
the order they were queued (a `heartbeat_response` never overtakes a message whose seq it
reports); the market lane holds messages of latest-value streams and goes after it, so
critical alerts and fills go ahead of market data within a flush.

When a connection falls behind (its socket's send buffer passed the high-water mark), the
hub stops writing to it and the outbox holds what comes next (docs/protocol.md section 5):
messages of latest-value streams are conflated, the newest per key replacing the older one,
so their memory is bounded by the number of keys whatever the rate; messages of reliable
streams queue in order, and the hub closes the connection (4008) when their bytes pass the
limit. Pure: the outbox never touches a socket.
"""

from __future__ import annotations

import msgspec

from tidewire.core.frames import build_frame
from tidewire.protocol.codec import ENCODE, WireFormat
from tidewire.protocol.messages import Batch

ConflationKey = tuple[str, str]
"""(stream, snapshot key): the unit in which latest-value messages replace each other."""


class Outbox:
    """Pending output of one connection and the byte count that bounds it."""

    __slots__ = (
        "batched",
        "conflated",
        "latest",
        "market",
        "ordered",
        "pending_bytes",
        "wire_format",
    )

    def __init__(self, wire_format: WireFormat, batched: bool) -> None:
        self.wire_format = wire_format
        self.batched = batched
        """True: items are payloads, sent as one batch frame; False: items are frames."""
        self.ordered: list[bytes] = []
        """The ordered lane: replies, reliable streams, critical priority."""
        self.market: list[bytes] = []
        """The market lane: latest-value streams while the connection keeps up."""
        self.latest: dict[ConflationKey, bytes] = {}
        """Latest-value items queued while the connection is behind, newest per key, in
        the order of their last update (so seq order holds within each stream)."""
        self.pending_bytes = 0
        self.conflated = 0
        """Messages replaced by a newer one of the same key before they were sent."""

    def push(self, item: bytes, ordered: bool = True) -> None:
        """Queue a frame (or a payload, when batched) in the ordered or the market lane."""
        (self.ordered if ordered else self.market).append(item)
        self.pending_bytes += len(item)

    def push_latest(self, key: ConflationKey, item: bytes) -> None:
        """Queue a latest-value item, replacing the one of the same key still queued."""
        latest = self.latest
        older = latest.pop(key, None)
        if older is not None:
            self.pending_bytes -= len(older)
            self.conflated += 1
        latest[key] = item
        self.pending_bytes += len(item)

    def __bool__(self) -> bool:
        return self.pending_bytes > 0

    def take(self) -> bytes:
        """Everything pending as the bytes of one write, leaving the outbox empty."""
        items = self.ordered + self.market if self.market else self.ordered
        if self.latest:
            items = items + list(self.latest.values())
            self.latest = {}
        self.ordered = []
        self.market = []
        self.pending_bytes = 0
        if self.batched:
            fmt = self.wire_format
            payload = ENCODE[fmt](Batch([msgspec.Raw(item) for item in items]))
            return build_frame(payload, fmt.binary)
        return items[0] if len(items) == 1 else b"".join(items)
