"""The hub: subscription index and fan-out of every message to its subscribers.

Hot path (docs/architecture.md): the broker hands each sequenced message to `dispatch`; the hub
finds matching subscriptions through the index (stream -> key -> subscriptions, plus the
stream's wildcard subscriptions), encodes the message at most once per wire format in use,
and appends the same frame bytes to each matching connection's outbox. The `Flusher` writes
outboxes once per event-loop iteration with one write per connection.

Slow consumers (docs/protocol.md section 5): while a connection's transport is paused, its
latest-value messages are conflated per key in the outbox and its reliable messages queue up
to `max_outbox_bytes`, past which (or after `stall_timeout` seconds paused) it is closed with
4008. A subscription that is being set up (snapshot or replay under way) buffers its live
messages until the setup is done, up to `max_setup_buffer` of them (past it: 4008 too); the
setup itself goes out under flow control, a chunk at a time (`feeds.Feeds`). A rate-limited
subscription goes through its `Throttle`.

The hub does no I/O of its own: it writes through each connection's `Transport` and
schedules through a `Scheduler` (the asyncio loop in production, a fake in tests).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec

from tidewire.core.auth import Principal
from tidewire.core.connection import Connection
from tidewire.core.entitlements import readable
from tidewire.core.feeds import Feeds
from tidewire.core.flusher import Flusher, Scheduler
from tidewire.core.frames import build_frame
from tidewire.core.quotas import IdentityLedger
from tidewire.core.subscription import Subscription
from tidewire.core.throttle import Throttle
from tidewire.protocol.codec import ENCODE, WIRE_FORMATS, WireFormat
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.messages import DataMessage, Filters
from tidewire.protocol.streams import STREAMS, snapshot_key

__all__ = ["EncodedMessage", "Hub", "HubCounters", "Scheduler"]


class EncodedMessage:
    """A data message with its payload and frame bytes, built lazily once per wire format."""

    __slots__ = ("_frames", "_payloads", "built", "message", "ordered")

    def __init__(self, message: DataMessage) -> None:
        self.message = message
        self.built = 0
        """Encodings done so far, one per wire format used (added to `frames_encoded`)."""
        self.ordered = STREAMS[message.stream].reliable
        """True: the outbox's ordered lane; False: the market lane (latest-value streams).

        Critical-priority messages are on reliable streams (risk alerts, events): the ordered
        lane puts them ahead of market data. A critical message of a latest-value stream
        keeps its place in the market lane, so that it never overtakes an older message of
        its own stream."""
        self._payloads: list[bytes | None] = [None] * len(WIRE_FORMATS)
        self._frames: list[bytes | None] = [None] * len(WIRE_FORMATS)

    def payload(self, fmt: WireFormat) -> bytes:
        payload = self._payloads[fmt]
        if payload is None:
            payload = self._payloads[fmt] = ENCODE[fmt](self.message)
            self.built += 1
        return payload

    def frame(self, fmt: WireFormat) -> bytes:
        frame = self._frames[fmt]
        if frame is None:
            frame = self._frames[fmt] = build_frame(self.payload(fmt), fmt.binary)
        return frame


class _StreamIndex:
    __slots__ = ("by_key", "wildcard")

    def __init__(self) -> None:
        # dict-as-ordered-set: O(1) removal, insertion-ordered iteration.
        self.by_key: dict[str, dict[Subscription, None]] = {}
        self.wildcard: dict[Subscription, None] = {}

    def __bool__(self) -> bool:
        return bool(self.by_key) or bool(self.wildcard)


@dataclass
class HubCounters:
    """Totals since start; /api/stats and /metrics (server/metrics.py) read these."""

    messages_dispatched: int = 0
    deliveries: int = 0
    frames_encoded: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    slow_consumer_closes: int = 0
    heartbeat_timeouts: int = 0
    conflated: int = 0
    setup_buffer_overflows: int = 0
    throttled: int = 0
    """Messages a subscription's rate limit held back (conflated or released later)."""
    published: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Messages the broker handed to this node, by (stream, source)."""
    deliveries_by_stream: Counter[str] = field(default_factory=Counter)
    bytes_by_stream: Counter[str] = field(default_factory=Counter)
    """Bytes of the frames (or batch payloads) queued for subscribers, by stream."""
    closed_by_code: Counter[int] = field(default_factory=Counter)
    """Connections gone, by the close code the gateway sent (0: the peer closed first)."""


class Hub:
    """Owns the connections of this node, their subscriptions and the fan-out."""

    def __init__(
        self,
        scheduler: Scheduler,
        max_outbox_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        stall_timeout: float = 30.0,
        max_setup_buffer: int = 10_000,
    ) -> None:
        self._scheduler = scheduler
        self._clock = clock
        self.max_outbox_bytes = max_outbox_bytes
        self.stall_timeout = stall_timeout
        """Seconds a connection may stay paused (not reading) before it is closed with 4008."""
        self.max_setup_buffer = max_setup_buffer
        """Live messages a subscription may buffer while it is being set up."""
        self.connections: dict[str, Connection] = {}
        self._index: dict[str, _StreamIndex] = {}
        self._token = 0
        self._held: list[tuple[Subscription, str, EncodedMessage]] | None = None
        """Messages throttled subscriptions held during the current dispatch."""
        self.counters = HubCounters()
        self.ledger = IdentityLedger()
        """Connections per user and address, subscriptions per user (the quotas)."""
        self.flusher = Flusher(scheduler, clock, self._check_backlog)
        self.feeds = Feeds(self, scheduler)
        """Snapshots and replays under way, written as each connection drains."""

    # ------------------------------------------------------------------ connections

    def add_connection(self, connection: Connection) -> None:
        self.connections[connection.connection_id] = connection
        self.ledger.opened(connection)
        self.counters.connections_opened += 1

    def identify(self, connection: Connection, principal: Principal) -> None:
        """Give `connection` a new principal (after `auth` or `refresh`; same user)."""
        first = connection.user_id is None and principal.user_id is not None
        connection.principal = principal
        if first and not connection.closed:
            self.ledger.identified(connection)
        connection.auth_deadline = 0.0

    def remove_connection(self, connection: Connection) -> None:
        """Forget a connection that went away (idempotent)."""
        if self.connections.pop(connection.connection_id, None) is None:
            return
        for subscription in list(connection.subscriptions.values()):
            self.remove_subscription(subscription)
        self.ledger.closed(connection)
        self.feeds.forget(connection)
        connection.closed = True
        self.counters.connections_closed += 1
        self.counters.closed_by_code[connection.close_code or 0] += 1

    def close(self, connection: Connection, code: int, reason: str) -> None:
        """Flush what is pending (unless the connection is not reading), then close it."""
        if connection.closed:
            return
        if connection.outbox and code != CloseCode.SLOW_CONSUMER and not connection.write_paused:
            self.flusher.write_now(connection)
            if connection.closed:  # that last write found a slow consumer and closed it
                return
        connection.closed = True
        connection.close_code = code
        self.feeds.forget(connection)
        connection.transport.close(code, reason)

    def pause(self, connection: Connection) -> None:
        """The transport's send buffer passed its high-water mark: the client is behind."""
        connection.write_paused = True
        connection.paused_at = self._clock()

    def resume(self, connection: Connection) -> None:
        """The transport drained below its low-water mark: write what was held back."""
        connection.write_paused = False
        if connection.closed:
            return
        if connection.outbox:
            self.flusher.mark(connection)
        self.feeds.pump(connection)

    # ------------------------------------------------------------------ subscriptions

    def add_subscription(self, subscription: Subscription) -> None:
        connection = subscription.connection
        connection.subscriptions[subscription.subscription_id] = subscription
        self.ledger.subscription_added(connection.user_id)
        self._add_to_index(subscription)

    def remove_subscription(self, subscription: Subscription) -> None:
        connection = subscription.connection
        if connection.subscriptions.pop(subscription.subscription_id, None) is not None:
            self.ledger.subscription_removed(connection.user_id)
        subscription.removed = True
        subscription.buffer = None  # a setup under way delivers nothing more
        self._remove_from_index(subscription)

    def reconfigure(
        self, subscription: Subscription, filters: Filters, rate_limit: float | None
    ) -> None:
        """Give a live subscription new filters and rate limit between two dispatches, so it
        misses nothing and gets nothing twice. What the old rate limit held and the new
        filters still match goes out now; the new rate limit (if any) starts afresh."""
        throttle = subscription.throttle
        self._remove_from_index(subscription)
        subscription.reconfigure(filters, rate_limit)
        self._add_to_index(subscription)
        if throttle is None:
            return
        self.counters.conflated += throttle.conflated - subscription.conflated_seen
        for encoded in throttle.release(self._clock()):
            if subscription.matches_all(encoded.message):
                self._send_one(subscription, encoded)

    def offer(self, subscription: Subscription, message: DataMessage) -> None:
        """Deliver a live message that waited in a subscription's buffer, through its rate
        limit when it has one (conflated with what the limit holds)."""
        if subscription.throttle is None:
            self.deliver(subscription, message)
            return
        reader = subscription.reader
        if reader is not None and not readable(reader, message):
            return
        encoded = EncodedMessage(message)
        if self._pass_throttle(subscription, encoded):
            self._send_one(subscription, encoded)

    def _add_to_index(self, subscription: Subscription) -> None:
        index = self._index.get(subscription.spec.name)
        if index is None:
            index = self._index[subscription.spec.name] = _StreamIndex()
        if subscription.index_keys is None:
            index.wildcard[subscription] = None
        else:
            for key in subscription.index_keys:
                index.by_key.setdefault(key, {})[subscription] = None

    def _remove_from_index(self, subscription: Subscription) -> None:
        index = self._index.get(subscription.spec.name)
        if index is None:
            return
        if subscription.index_keys is None:
            index.wildcard.pop(subscription, None)
        else:
            for key in subscription.index_keys:
                holders = index.by_key.get(key)
                if holders is not None:
                    holders.pop(subscription, None)
                    if not holders:
                        del index.by_key[key]
        if not index:
            del self._index[subscription.spec.name]

    def subscriptions(self) -> Iterator[Subscription]:
        for connection in self.connections.values():
            yield from connection.subscriptions.values()

    def subscriber_count(self, stream: str) -> int:
        index = self._index.get(stream)
        if index is None:
            return 0
        return len(index.wildcard) + len({s for held in index.by_key.values() for s in held})

    # ------------------------------------------------------------------ fan-out

    def dispatch(self, message: DataMessage) -> None:
        """Queue `message` for every connection with a matching subscription.

        The hottest loop of the gateway: the common case (a connection that keeps up, a
        subscription without a gate) is written out flat, because each recipient may cost
        a few hundred nanoseconds at most.
        """
        counters = self.counters
        counters.messages_dispatched += 1
        index = self._index.get(message.stream)
        if index is None:
            return
        keyed = index.by_key.get(message.key)
        wildcard = index.wildcard
        if not keyed and not wildcard:
            return
        self._token += 1
        token = self._token
        encoded: EncodedMessage | None = None
        delivered = size = 0
        self._held = None
        for holders in (keyed, wildcard):
            if not holders:
                continue
            for subscription in holders:
                if not subscription.plain and not subscription.matches(message):
                    continue
                if encoded is None:
                    encoded = EncodedMessage(message)
                if subscription.gated and not self._pass_gate(subscription, encoded):
                    continue
                subscription.messages_delivered += 1
                connection = subscription.connection
                if connection.last_token == token or connection.closed:
                    continue
                connection.last_token = token
                delivered += 1
                if connection.write_paused:
                    self._queue(connection, encoded)
                    continue
                fmt = connection.wire_format
                outbox = connection.outbox
                item = encoded.payload(fmt) if outbox.batched else encoded.frame(fmt)
                (outbox.ordered if encoded.ordered else outbox.market).append(item)
                length = len(item)
                outbox.pending_bytes += length
                size += length
                connection.messages_queued += 1
                if not connection.dirty:
                    self.flusher.mark(connection)
        counters.deliveries += delivered
        if delivered:
            counters.deliveries_by_stream[message.stream] += delivered
            counters.bytes_by_stream[message.stream] += size
        if encoded is not None:
            counters.frames_encoded += encoded.built
        if self._held is not None:
            self._drop_held_duplicates(token)

    def deliver(self, subscription: Subscription, message: DataMessage) -> None:
        """Queue one data message for a subscription's connection (snapshots, replays, the
        live messages buffered meanwhile). Checked against the subscription's reader again:
        the connection may have refreshed to a narrower token since they were matched."""
        reader = subscription.reader
        if reader is not None and not readable(reader, message):
            return
        self._send_one(subscription, EncodedMessage(message))

    def _send_one(self, subscription: Subscription, encoded: EncodedMessage) -> None:
        """Queue one message outside the fan-out loop (snapshots, replays, releases),
        counted as a delivery of `subscription`."""
        subscription.messages_delivered += 1
        self._queue(subscription.connection, encoded)
        self.counters.deliveries += 1
        self.counters.deliveries_by_stream[encoded.message.stream] += 1

    def broadcast(self, message: DataMessage) -> int:
        """Queue `message` for every open connection, subscribed or not; returns the count.

        Connections that have not authenticated yet get nothing, and neither do those whose
        token may not read the message (`entitlements.readable`).

        Connections with a subscription that matches get it through `dispatch` when the
        broker delivers it, so they are skipped here: each connection gets it once.
        """
        encoded = EncodedMessage(message)
        recipients = 0
        for connection in self.connections.values():
            if not self.reaches(connection, message):
                continue
            recipients += 1
            if any(
                s.spec.name == message.stream and s.matches_all(message)
                for s in connection.subscriptions.values()
            ):
                continue
            self._queue(connection, encoded)
            self.counters.deliveries += 1
            self.counters.deliveries_by_stream[message.stream] += 1
        return recipients

    @staticmethod
    def reaches(connection: Connection, message: DataMessage) -> bool:
        """Whether a broadcast of `message` is for `connection`: open, authenticated (or
        authentication off), and its token may read the message (e.g. a `streams` claim
        without events may not)."""
        principal = connection.principal
        if connection.closed or not (principal.authenticated or principal.open_access):
            return False
        return readable(principal, message)

    def send(self, connection: Connection, reply: msgspec.Struct) -> None:
        """Queue a reply (confirmation, error, heartbeat) for one connection.

        Replies take the ordered lane: they never overtake a reliable message queued before
        them, so the positions a reply reports are never ahead of what was sent.
        """
        if connection.closed:
            return
        fmt = connection.wire_format
        payload = ENCODE[fmt](reply)
        item = payload if connection.outbox.batched else build_frame(payload, fmt.binary)
        connection.outbox.push(item)
        self._queued(connection, reply=True)

    def _queue(self, connection: Connection, encoded: EncodedMessage) -> None:
        """Queue a data message for one connection, conflating it if the client is behind."""
        if connection.closed:
            return
        fmt = connection.wire_format
        outbox = connection.outbox
        item = encoded.payload(fmt) if outbox.batched else encoded.frame(fmt)
        self.counters.bytes_by_stream[encoded.message.stream] += len(item)
        if connection.write_paused and not encoded.ordered:
            message = encoded.message
            before = outbox.conflated
            outbox.push_latest(
                (message.stream, snapshot_key(STREAMS[message.stream], message)), item
            )
            self.counters.conflated += outbox.conflated - before
        else:
            outbox.push(item, encoded.ordered)
        self._queued(connection)

    def _queued(self, connection: Connection, reply: bool = False) -> None:
        connection.messages_queued += 1
        if connection.write_paused:
            self._check_backlog(connection)
        elif reply and connection.batch_ms:
            # A reply does not wait for the batch timer: heartbeat round trips would measure
            # the batch interval, and a subscriber would wait for its confirmation.
            self.flusher.flush_soon(connection)
        elif not connection.dirty:
            self.flusher.mark(connection)

    def _check_backlog(self, connection: Connection) -> None:
        """Close a connection whose unsent bytes passed the limit (4008: slow consumer).

        It gets no more of our memory, and no message is dropped silently: the client
        reconnects and recovers from its last seq.
        """
        backlog = connection.outbox.pending_bytes + connection.transport.write_buffer_size()
        if backlog > self.max_outbox_bytes:
            self.slow_consumer(connection)

    def slow_consumer(self, connection: Connection) -> None:
        self.counters.slow_consumer_closes += 1
        self.close(connection, CloseCode.SLOW_CONSUMER, "slow consumer")

    # ------------------------------------------------------------------ gates

    def _pass_gate(self, subscription: Subscription, encoded: EncodedMessage) -> bool:
        """Whether a gated subscription takes `encoded` now (else it buffered or held it)."""
        buffer = subscription.buffer
        if buffer is not None:
            if len(buffer) >= self.max_setup_buffer:
                self._setup_overflow(subscription)
            elif not subscription.connection.closed:
                buffer.append(encoded.message)
            return False
        return self._pass_throttle(subscription, encoded)

    def _pass_throttle(self, subscription: Subscription, encoded: EncodedMessage) -> bool:
        """Whether a rate-limited subscription sends `encoded` now (else its limit holds it)."""
        throttle = subscription.throttle
        assert throttle is not None
        message = encoded.message
        now = self._clock()
        key = snapshot_key(subscription.spec, message)
        if throttle.offer(key, encoded, now):
            return True
        self.counters.throttled += 1
        if self._held is None:
            self._held = []
        self._held.append((subscription, key, encoded))
        if not throttle.scheduled:
            throttle.scheduled = True
            self._scheduler.call_later(
                max(0.0, throttle.next_release - now),
                lambda: self._release(subscription, throttle),
            )
        return False

    def _setup_overflow(self, subscription: Subscription) -> None:
        """A subscription's live messages outran its snapshot or replay past the bound.

        Dropping some would leave a silent gap; instead the buffer is freed and the
        connection closed with 4008, like a slow consumer: the client reconnects and
        resubscribes from its position (`since`), recovering from history or resyncing. The
        setup under way sees the connection closed and delivers nothing. Not removed from the
        index here: `dispatch` may be iterating it."""
        subscription.buffer = []
        self.counters.setup_buffer_overflows += 1
        self.counters.slow_consumer_closes += 1
        self.close(
            subscription.connection, CloseCode.SLOW_CONSUMER, "subscription setup buffer overflow"
        )

    def _drop_held_duplicates(self, token: int) -> None:
        """Forget held messages that their connection got anyway in this dispatch.

        A connection with a throttled and an unthrottled subscription matching the same
        message receives it once, live; releasing the held copy later would send it twice.
        """
        assert self._held is not None
        for subscription, key, encoded in self._held:
            throttle = subscription.throttle
            if subscription.connection.last_token == token and throttle is not None:
                throttle.discard(key, encoded)
        self._held = None

    def _release(self, subscription: Subscription, throttle: Throttle[EncodedMessage]) -> None:
        if subscription.removed or subscription.throttle is not throttle:
            return  # removed, or its rate limit was replaced (update_subscription)
        throttle.scheduled = False
        self.counters.conflated += throttle.conflated - subscription.conflated_seen
        subscription.conflated_seen = throttle.conflated
        reader = subscription.reader
        for encoded in throttle.release(self._clock()):
            if reader is not None and not readable(reader, encoded.message):
                continue  # held under an earlier, wider token
            self._send_one(subscription, encoded)

    def open_gate(self, subscription: Subscription) -> list[DataMessage]:
        """End a subscription's setup: return its buffered live messages (none when its feed
        drained them), deliver directly from now on."""
        buffered = subscription.buffer or []
        subscription.buffer = None
        subscription.gated = subscription.throttle is not None
        return buffered
