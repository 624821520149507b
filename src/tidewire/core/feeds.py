"""Snapshots and replays delivered under flow control, one chunk at a time.

Queued at once, a snapshot of 100,000 keys or a replay of 100,000 messages is tens of
megabytes in one connection's outbox: past `max_outbox_bytes` (4008) however fast the client
reads, and memory held for a client that may never read. A `Feed` instead holds the messages
still to send (references to what the broker returned, not frames), and `Feeds` encodes and
writes `chunk_bytes` of them at a time, the next chunk only once the transport took the last
one: in the next loop iteration while the client keeps up, on `resume` when its socket was
full. What a feed has in flight is at most a chunk plus the transport's high-water mark, so
it never counts as a backlog; a client that stops reading is cut by `stall_timeout` like any
other (and its feed dropped with it).

A replay longer than `recovery.REPLAY_PAGE` comes with its `Pages`: when a page is sent,
the next is read from the broker in the background and the feed waits for it (its
connection's other feeds go on); should history stop covering it, the connection is closed
with 1012 and the client recovers from what it got.

The subscription stays gated while its feed runs: its live messages wait in its setup buffer
(bounded by the hub's `max_setup_buffer`) and are fed after the setup's messages, a buffer at
a time, until the buffer is found empty; only then does the gate open. So a subscriber gets
the snapshot or replay, then every live message in seq order, none twice (buffered messages
the setup already covered are skipped), and a client slower than its stream overflows the
buffer and is sent to recover (4008) instead of being fed forever.

Chunks of a connection's feeds take turns, so one big snapshot does not hold back the other
subscriptions it set up at the same time, and one connection's feed takes one chunk of
encoding per loop iteration, never the loop.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from tidewire.core import recovery
from tidewire.core.connection import Connection
from tidewire.core.flusher import Scheduler
from tidewire.core.subscription import Subscription
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.messages import DataMessage, StreamPosition

if TYPE_CHECKING:
    from tidewire.core.hub import Hub

log = logging.getLogger("tidewire.feeds")

CHUNK_BYTES = 64 * 1024
"""Encoded bytes a feed queues per turn: about the transport's high-water mark, so that a
client that keeps up gets one chunk per loop iteration and one that does not holds at most
one chunk more than any live subscriber would."""


class Feed:
    """What one subscription still has to receive before it goes live."""

    __slots__ = (
        "fetching",
        "messages",
        "offering",
        "pages",
        "position",
        "subscription",
        "throttled",
    )

    def __init__(
        self,
        subscription: Subscription,
        messages: Iterable[DataMessage],
        position: StreamPosition | None,
        throttled: bool,
        pages: recovery.Pages | None = None,
    ) -> None:
        self.subscription = subscription
        self.pages = pages
        """The rest of a replay, read a page at a time when `messages` run out."""
        self.fetching = False
        """True while the next page is being read."""
        self.messages: Iterator[DataMessage] = iter(messages)
        self.position = position
        """Buffered live messages at or before it are skipped (the setup covered them)."""
        self.throttled = throttled
        """Buffered live messages go through the subscription's rate limit (an update)."""
        self.offering = False
        """True once the feed sends buffered messages of a throttled subscription."""


class _Step(enum.Enum):
    MORE = 1
    """The budget is spent (or buffered messages are next): another turn."""
    WAITING = 2
    """Its next page is being read: nothing to send until it arrives."""
    DONE = 3
    """Its gate opened, or it is gone (unsubscribed, connection closed)."""


class _Queue:
    __slots__ = ("feeds", "scheduled")

    def __init__(self) -> None:
        self.feeds: deque[Feed] = deque()
        self.scheduled = False


class Feeds:
    """The feeds of every connection of a hub, and their pump."""

    def __init__(self, hub: Hub, scheduler: Scheduler, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._hub = hub
        self._scheduler = scheduler
        self.chunk_bytes = chunk_bytes
        self._queues: dict[Connection, _Queue] = {}
        self._pumping = False
        self.chunks = 0
        """Chunks written so far (a counter for /api/stats)."""

    def __len__(self) -> int:
        """Feeds under way on this node."""
        return sum(len(queue.feeds) for queue in self._queues.values())

    def start(
        self,
        subscription: Subscription,
        messages: Iterable[DataMessage],
        position: StreamPosition | None = None,
        throttled: bool = False,
        pages: recovery.Pages | None = None,
    ) -> None:
        """Deliver `messages` (then the rest of the replay from `pages`), then the
        subscription's buffered live messages after `position`, then open its gate. The
        first chunk goes out now."""
        connection = subscription.connection
        if connection.closed or subscription.removed:
            return
        queue = self._queues.get(connection)
        if queue is None:
            queue = self._queues[connection] = _Queue()
        queue.feeds.append(Feed(subscription, messages, position, throttled, pages))
        if not queue.scheduled:
            self.pump(connection)

    def forget(self, connection: Connection) -> None:
        """Drop a closed connection's feeds (their messages were never encoded)."""
        self._queues.pop(connection, None)

    def pump(self, connection: Connection) -> None:
        """Write the next chunk of `connection`'s feeds, if its transport takes it."""
        queue = self._queues.get(connection)
        if queue is None:
            return
        self._pumping = True
        try:
            self._pump(connection, queue)
        except Exception:
            # Confirmed, and part of it sent: the client must reconnect and recover rather
            # than go on with a gap (or a gate that never opens).
            log.exception("feeding %s failed", connection.connection_id)
            self._queues.pop(connection, None)
            self._hub.close(connection, CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._pumping = False

    def _pump(self, connection: Connection, queue: _Queue) -> None:
        queue.scheduled = False
        if connection.closed:
            del self._queues[connection]
            return
        if connection.write_paused:
            return  # the hub pumps again on resume
        feeds = queue.feeds
        outbox = connection.outbox
        budget = outbox.pending_bytes + self.chunk_bytes
        waiting = 0  # feeds in a row that wait for a page
        while feeds and waiting < len(feeds) and outbox.pending_bytes < budget:
            if connection.closed:
                break
            feed = feeds[0]
            step = self._step(feed, budget)
            if step is _Step.DONE:
                feeds.popleft()
                continue
            feeds.rotate(-1)
            waiting = waiting + 1 if step is _Step.WAITING else 0
        if outbox and not connection.closed:
            self.chunks += 1
            self._hub.flusher.write_now(connection)
        if not feeds or connection.closed:
            self._queues.pop(connection, None)
        elif waiting < len(feeds) and not connection.write_paused:
            queue.scheduled = True
            self._scheduler.call_soon(lambda: self.pump(connection))

    def _step(self, feed: Feed, budget: int) -> _Step:
        """Queue `feed`'s messages until the outbox holds `budget` bytes."""
        hub = self._hub
        subscription = feed.subscription
        connection = subscription.connection
        outbox = connection.outbox
        if subscription.removed:
            return _Step.DONE
        if feed.fetching:
            return _Step.WAITING
        send = hub.offer if feed.offering else hub.deliver
        for message in feed.messages:
            send(subscription, message)
            if outbox.pending_bytes >= budget or connection.closed:
                return _Step.DONE if connection.closed else _Step.MORE
        pages = feed.pages
        if pages is not None and not pages.done:
            feed.fetching = True
            pages.fetch(lambda page: self._paged(feed, page))
            # A broker that answered at once (the memory broker) already handed it over.
            return _Step.WAITING if feed.fetching else _Step.MORE
        buffered = subscription.buffer
        if subscription.removed or connection.closed or buffered is None:
            return _Step.DONE
        if not buffered:
            hub.open_gate(subscription)
            return _Step.DONE
        # Live messages that arrived meanwhile: fed next, while newer ones keep buffering.
        subscription.buffer = []
        if feed.position is not None:
            buffered = recovery.after(feed.position, buffered)
        feed.messages = iter(buffered)
        feed.offering = feed.throttled
        return _Step.MORE

    def _paged(self, feed: Feed, page: list[DataMessage] | None) -> None:
        """The next page of a replay arrived (None: history no longer covers it)."""
        feed.fetching = False
        subscription = feed.subscription
        connection = subscription.connection
        if connection.closed:
            return
        if subscription.removed:
            page = []  # the next pump drops the feed (and what it holds)
        elif page is None:
            # Part of the replay was sent: resubscribing from the last seq it got, the
            # client learns `recovered: false` and resyncs; never a hole.
            self._hub.close(
                connection, CloseCode.SERVICE_RESTART, "history no longer covers the replay"
            )
            return
        feed.messages = iter(page)
        queue = self._queues.get(connection)
        if queue is not None and not queue.scheduled and not self._pumping:
            self.pump(connection)
