"""The bounded queue between the connection's reader and one subscription's consumer.

Pure: push and pop, no event loop. The reader must never block on a slow consumer (that
would stall every other subscription of the connection and, in the end, get the connection
closed as a slow consumer), and a bounded queue cannot grow forever either, so a full queue
applies the stream's delivery class (docs/protocol.md section 5) instead of dropping silently:

* latest-value streams (market data, performance, status ...) **conflate**: only the newest
  message per `key` matters, so when the queue is full, older queued messages of the new
  message's key are removed (or, if the key has none, every key's older duplicates are
  removed). Surviving messages keep their arrival (`seq`) order. When every queued message
  already has a distinct key the new one is still accepted, so the queue holds at most
  `max(maxsize, number of keys)` messages and the consumer always ends up with the newest
  value of every key. `conflated` counts the removed messages.
* reliable streams (fills, orders, risk alerts ...) never lose a message quietly: a message
  that does not fit is dropped, `overflowed` becomes true, `dropped` counts it, and a `Gap`
  entry is queued where the messages are missing so the consumer learns of the loss at the
  right place in the stream.

`mark()` queues a `Gap` of another kind: a place where the stream has a gap the queue did not
cause (the gateway could not replay what a reconnection missed). Gaps are not messages: they
are never conflated, dropped or counted by `len()`, and the subscription turns each into the
resync marker its iterator yields (see `tidewire.client.resync`).

The conflation unit is the message's `key` by default; a subscription passes the stream's
snapshot key instead (market data per symbol *and* data_type, as the gateway conflates).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

KeyFunction = Callable[[dict[str, Any]], Hashable | None]
"""The conflation unit of a message; None for a message that has none (never conflated)."""


class PushResult(enum.Enum):
    """What `MessageBuffer.push` did with a message."""

    QUEUED = "queued"
    """Queued without losing anything."""
    CONFLATED = "conflated"
    """Queued after removing older messages of the same key (latest-value streams)."""
    DROPPED = "dropped"
    """Not queued: the queue is full and the stream is reliable; a `Gap` marks the loss."""


@dataclass(slots=True)
class Gap:
    """A place in the queue where the stream has a gap.

    `dropped` > 0: that many messages of a reliable stream were dropped here because the
    queue was full (later drops of the same run add to it). `dropped` == 0: a gap queued by
    `mark()`. `marker` is the resync marker the subscription yields for it (filled in by the
    subscription for overflow gaps).
    """

    dropped: int
    marker: dict[str, Any] = field(default_factory=dict)


class MessageBuffer:
    """A FIFO of data messages bounded by `maxsize`, with the overflow policy of its stream.

    `conflate=True` for latest-value streams, False for reliable ones (see the module
    docstring). `pop()` returns messages in arrival order, and `Gap` markers where a reliable
    stream lost messages.
    """

    def __init__(self, maxsize: int, *, conflate: bool, key: KeyFunction | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.conflate = conflate
        self._key = key or _key_of
        self.conflated = 0
        """Messages removed because a newer message of their key arrived while full."""
        self.dropped = 0
        """Messages of a reliable stream lost because the queue was full."""
        self.overflowed = False
        """True once a reliable stream lost a message; stays true (sticky) for the record."""
        # Entry number -> message or Gap; entry numbers grow, so dict order is arrival order.
        self._entries: OrderedDict[int, dict[str, Any] | Gap] = OrderedDict()
        self._next_entry = 0
        self._messages = 0
        # Latest-value streams only: key -> entry numbers of its queued messages, oldest first.
        self._entries_of_key: dict[Any, deque[int]] = {}
        # The overflow Gap that further drops extend (the last entry), if any.
        self._open_gap: Gap | None = None

    def __len__(self) -> int:
        """Queued messages (Gap markers are not counted)."""
        return self._messages

    def __bool__(self) -> bool:
        return bool(self._entries)

    def push(self, message: dict[str, Any]) -> PushResult:
        """Queue `message`, applying the overflow policy when the queue is full."""
        result = PushResult.QUEUED
        if self._messages >= self.maxsize:
            if not self.conflate:
                self._drop()
                return PushResult.DROPPED
            if self._conflate_for(self._unit(message)):
                result = PushResult.CONFLATED
        self._open_gap = None
        entry = self._next_entry
        self._next_entry += 1
        self._entries[entry] = message
        self._messages += 1
        if self.conflate:
            self._entries_of_key.setdefault(self._unit(message), deque()).append(entry)
        return result

    def mark(self, marker: dict[str, Any]) -> Gap:
        """Queue a gap that the queue did not cause (not bounded: gaps are not messages)."""
        gap = Gap(0, marker)
        self._open_gap = None
        self._entries[self._next_entry] = gap
        self._next_entry += 1
        return gap

    @property
    def open_gap(self) -> Gap | None:
        """The overflow Gap the last `push` created or extended; None after a queued entry."""
        return self._open_gap

    def pop(self) -> dict[str, Any] | Gap:
        """The oldest entry. Raises IndexError when empty."""
        if not self._entries:
            raise IndexError("pop from an empty MessageBuffer")
        _, item = self._entries.popitem(last=False)
        if isinstance(item, Gap):
            if item is self._open_gap:
                self._open_gap = None
            return item
        self._messages -= 1
        if self.conflate:
            key = self._unit(item)
            entries = self._entries_of_key[key]
            entries.popleft()
            if not entries:
                del self._entries_of_key[key]
        return item

    def clear(self) -> None:
        """Forget every queued entry (counters are kept)."""
        self._entries.clear()
        self._entries_of_key.clear()
        self._messages = 0
        self._open_gap = None

    def _drop(self) -> None:
        self.dropped += 1
        self.overflowed = True
        if self._open_gap is not None:
            self._open_gap.dropped += 1
        else:
            # One Gap per run of lost messages; it may exceed maxsize by one entry.
            self._open_gap = Gap(1)
            self._entries[self._next_entry] = self._open_gap
            self._next_entry += 1

    def _unit(self, message: dict[str, Any]) -> Any:
        unit = self._key(message)
        # A message without a conflation unit is never conflated with another.
        return unit if unit is not None else ("unkeyed", id(message))

    def _conflate_for(self, key: Any) -> bool:
        """Make room for a message of `key`; True when something was removed."""
        older = self._entries_of_key.pop(key, None)
        if older:
            for entry in older:
                del self._entries[entry]
            self._messages -= len(older)
            self.conflated += len(older)
            return True
        if self._messages > len(self._entries_of_key):
            # Some key has duplicates: keep only the newest message of every key.
            removed = 0
            for entries in self._entries_of_key.values():
                while len(entries) > 1:
                    del self._entries[entries.popleft()]
                    removed += 1
            self._messages -= removed
            self.conflated += removed
            return True
        return False


def _key_of(message: dict[str, Any]) -> Hashable | None:
    key = message.get("key")
    return key if isinstance(key, str | int) else None
