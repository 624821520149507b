"""The latest value per snapshot key of one stream, bounded, least recently updated first out.

Both brokers keep one `LatestValues` per stream that keeps last values: the memory broker as
its store, the Redis broker as this node's copy of what it delivered (so a snapshot is a
list of references, not a read and a decode of the whole `:last` hash per subscriber).
Pure: no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from tidewire.protocol.messages import DataMessage
from tidewire.protocol.streams import STREAMS, snapshot_key


class LatestValues:
    """Newest message per snapshot key, in the order of their last update (so in seq order
    within an epoch); past `max_keys` the key updated least recently is forgotten."""

    __slots__ = ("_spec", "_values", "max_keys")

    def __init__(self, stream: str, max_keys: int) -> None:
        self._spec = STREAMS[stream]
        # An OrderedDict, not a dict: evicting the oldest of a dict (`next(iter(d))`) scans
        # past the slots of every earlier eviction, so a publisher of new keys past the cap
        # would cost time that grows with each one.
        self._values: OrderedDict[str, DataMessage] = OrderedDict()
        self.max_keys = max_keys

    def __len__(self) -> int:
        return len(self._values)

    def put(self, message: DataMessage) -> None:
        """`message` is now its key's latest value (the newest key of all)."""
        values = self._values
        key = snapshot_key(self._spec, message)
        values[key] = message
        values.move_to_end(key)  # the newest key last: the order stays the update order
        if len(values) > self.max_keys:
            values.popitem(last=False)

    def messages(self) -> list[DataMessage]:
        """Every latest value, oldest update first."""
        return list(self._values.values())

    def clear(self) -> None:
        self._values = OrderedDict()

    def merge(self, older: Iterable[DataMessage]) -> None:
        """Add values read elsewhere (e.g. from Redis) where they are newer than what is
        held for their key; the result is again in seq order, bounded."""
        spec = self._spec
        combined = {snapshot_key(spec, m): m for m in older}
        for key, message in self._values.items():
            known = combined.get(key)
            if known is None or known.seq < message.seq:
                combined[key] = message
        ordered = sorted(combined.values(), key=lambda m: m.seq)[-self.max_keys :]
        self._values = OrderedDict((snapshot_key(spec, m), m) for m in ordered)
