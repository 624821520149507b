"""Per-connection outbox: frames waiting for the next flush.

The hub appends shared, pre-encoded frames; the flush joins everything pending into one
write. A connection that asked for `batch_ms` collects payloads instead and gets one
`{"type":"batch","messages":[...]}` frame per flush. Critical-priority frames go ahead of
the rest within a flush. Pure: the outbox never touches a socket.
"""

from __future__ import annotations

import msgspec

from tidewire.core.frames import build_frame
from tidewire.protocol.codec import ENCODE, WireFormat
from tidewire.protocol.messages import Batch


class Outbox:
    """Pending output of one connection and the byte count that bounds it."""

    __slots__ = ("batched", "pending", "pending_bytes", "urgent", "wire_format")

    def __init__(self, wire_format: WireFormat, batched: bool) -> None:
        self.wire_format = wire_format
        self.batched = batched
        """True: items are payloads, sent as one batch frame; False: items are frames."""
        self.pending: list[bytes] = []
        self.urgent: list[bytes] = []
        self.pending_bytes = 0

    def push(self, item: bytes, urgent: bool = False) -> None:
        """Queue a frame (or a payload, when batched). Urgent items go out first."""
        (self.urgent if urgent else self.pending).append(item)
        self.pending_bytes += len(item)

    def __bool__(self) -> bool:
        return self.pending_bytes > 0

    def take(self) -> bytes:
        """Everything pending as the bytes of one write, leaving the outbox empty."""
        items = self.urgent + self.pending if self.urgent else self.pending
        self.pending = []
        self.urgent = []
        self.pending_bytes = 0
        if self.batched:
            fmt = self.wire_format
            payload = ENCODE[fmt](Batch([msgspec.Raw(item) for item in items]))
            return build_frame(payload, fmt.binary)
        return items[0] if len(items) == 1 else b"".join(items)
