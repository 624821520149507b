"""The hub: subscription index, fan-out and the flush of every connection's outbox.

Hot path (ARCHITECTURE.md): the broker hands each sequenced message to `dispatch`; the hub
finds matching subscriptions through the index (stream -> key -> subscriptions, plus the
stream's wildcard subscriptions), encodes the message at most once per wire format in use,
and appends the same frame bytes to each matching connection's outbox. Outboxes are flushed
once per event-loop iteration (or every `batch_ms` for batching connections) with one write
per connection.

The hub does no I/O of its own: it writes through each connection's `Transport` and schedules
through a `Scheduler` (the asyncio loop in production, a fake in tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from tidewire.core.connection import Connection
from tidewire.core.frames import build_frame
from tidewire.core.subscription import Subscription
from tidewire.protocol.codec import ENCODE, WIRE_FORMATS, WireFormat
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.messages import PRIORITY_CRITICAL, DataMessage, ServerHeartbeat, now_iso


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The part of an event loop the hub uses (asyncio's loop satisfies it)."""

    def call_soon(self, callback: Callable[[], object]) -> Any: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Any: ...


class EncodedMessage:
    """A data message with its payload and frame bytes, built lazily once per wire format."""

    __slots__ = ("_frames", "_payloads", "built", "message", "urgent")

    def __init__(self, message: DataMessage) -> None:
        self.message = message
        self.built = 0
        """Encodings done so far, one per wire format used (the hub adds it to `frames_encoded`)."""
        self.urgent = message.priority >= PRIORITY_CRITICAL
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
    """Totals since start; the metrics endpoint of a later issue reads these."""

    messages_dispatched: int = 0
    deliveries: int = 0
    frames_encoded: int = 0
    flushes: int = 0
    writes: int = 0
    bytes_written: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    slow_consumer_closes: int = 0
    heartbeat_timeouts: int = 0


class Hub:
    """Owns the connections of this node, their subscriptions and the fan-out."""

    def __init__(
        self,
        scheduler: Scheduler,
        max_outbox_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scheduler = scheduler
        self._clock = clock
        self.max_outbox_bytes = max_outbox_bytes
        self.connections: dict[str, Connection] = {}
        self._index: dict[str, _StreamIndex] = {}
        self._dirty: list[Connection] = []
        self._flush_scheduled = False
        self._token = 0
        self.counters = HubCounters()

    # ------------------------------------------------------------------ connections

    def add_connection(self, connection: Connection) -> None:
        self.connections[connection.connection_id] = connection
        self.counters.connections_opened += 1

    def remove_connection(self, connection: Connection) -> None:
        """Forget a connection that went away (idempotent)."""
        if self.connections.pop(connection.connection_id, None) is None:
            return
        for subscription in list(connection.subscriptions.values()):
            self.remove_subscription(subscription)
        connection.closed = True
        self.counters.connections_closed += 1

    def close(self, connection: Connection, code: int, reason: str) -> None:
        """Flush what is pending, then close the connection with `code`."""
        if connection.closed:
            return
        if connection.outbox and code != CloseCode.SLOW_CONSUMER:
            self._write(connection)
            if connection.closed:  # that last write found a slow consumer and closed it
                return
        connection.closed = True
        connection.close_code = code
        connection.transport.close(code, reason)

    # ------------------------------------------------------------------ subscriptions

    def add_subscription(self, subscription: Subscription) -> None:
        connection = subscription.connection
        connection.subscriptions[subscription.subscription_id] = subscription
        index = self._index.get(subscription.spec.name)
        if index is None:
            index = self._index[subscription.spec.name] = _StreamIndex()
        if subscription.index_keys is None:
            index.wildcard[subscription] = None
        else:
            for key in subscription.index_keys:
                index.by_key.setdefault(key, {})[subscription] = None

    def remove_subscription(self, subscription: Subscription) -> None:
        subscription.connection.subscriptions.pop(subscription.subscription_id, None)
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

        The hottest loop of the gateway: it is written out flat (no helper calls per
        recipient) because each recipient costs a few hundred nanoseconds at most.
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
        urgent = message.priority >= PRIORITY_CRITICAL
        delivered = 0
        for holders in (keyed, wildcard):
            if not holders:
                continue
            for subscription in holders:
                if not subscription.plain and not subscription.matches(message):
                    continue
                subscription.messages_delivered += 1
                connection = subscription.connection
                if connection.last_token == token or connection.closed:
                    continue
                connection.last_token = token
                if encoded is None:
                    encoded = EncodedMessage(message)
                fmt = connection.wire_format
                outbox = connection.outbox
                item = encoded.payload(fmt) if outbox.batched else encoded.frame(fmt)
                (outbox.urgent if urgent else outbox.pending).append(item)
                outbox.pending_bytes += len(item)
                connection.messages_sent += 1
                delivered += 1
                if not connection.dirty:
                    self._mark_dirty(connection)
        counters.deliveries += delivered
        if encoded is not None:
            counters.frames_encoded += encoded.built

    def deliver(self, connection: Connection, message: DataMessage) -> None:
        """Queue one data message for one connection (snapshots, replays, broadcasts)."""
        self._push_encoded(connection, EncodedMessage(message))
        self.counters.deliveries += 1

    def broadcast(self, message: DataMessage) -> int:
        """Queue `message` for every open connection, subscribed or not; returns the count.

        Connections with a subscription that matches get it through `dispatch` when the
        broker delivers it, so they are skipped here: each connection gets it once.
        """
        encoded = EncodedMessage(message)
        recipients = 0
        for connection in self.connections.values():
            if connection.closed:
                continue
            recipients += 1
            if any(
                s.spec.name == message.stream and s.matches_all(message)
                for s in connection.subscriptions.values()
            ):
                continue
            self._push_encoded(connection, encoded)
            self.counters.deliveries += 1
        return recipients

    def send(self, connection: Connection, reply: msgspec.Struct, urgent: bool = True) -> None:
        """Queue a reply (confirmation, error, heartbeat) for one connection.

        Replies are urgent by default: they go ahead of data already pending in the outbox
        of this flush, but after data of earlier flushes, so a subscription_confirmed never
        overtakes messages of an earlier subscription.
        """
        if connection.closed:
            return
        fmt = connection.wire_format
        payload = ENCODE[fmt](reply)
        item = payload if connection.outbox.batched else build_frame(payload, fmt.binary)
        self._push(connection, item, urgent)

    def _push_encoded(self, connection: Connection, encoded: EncodedMessage) -> None:
        if connection.closed:
            return
        fmt = connection.wire_format
        item = encoded.payload(fmt) if connection.outbox.batched else encoded.frame(fmt)
        self._push(connection, item, encoded.urgent)

    def _push(self, connection: Connection, item: bytes, urgent: bool) -> None:
        connection.outbox.push(item, urgent)
        connection.messages_sent += 1
        if not connection.dirty:
            self._mark_dirty(connection)

    def _mark_dirty(self, connection: Connection) -> None:
        connection.dirty = True
        if connection.batch_ms:
            self._scheduler.call_later(
                connection.batch_ms / 1000.0, lambda: self._flush_batched(connection)
            )
            return
        self._dirty.append(connection)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._scheduler.call_soon(self.flush)

    def flush(self) -> None:
        """Write every dirty connection's outbox: one write per connection."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        now = self._clock()
        limit = self.max_outbox_bytes
        written = writes = 0
        for connection in dirty:
            connection.dirty = False
            outbox = connection.outbox
            if connection.closed or not outbox.pending_bytes:
                continue
            pending = outbox.pending
            if len(pending) == 1 and not outbox.urgent and not outbox.batched:
                # The common case at one message per iteration: no join, no copy.
                data = pending[0]
                outbox.pending = []
                outbox.pending_bytes = 0
            else:
                data = outbox.take()
            connection.write(data)
            connection.bytes_sent += len(data)
            connection.last_outbound = now
            written += len(data)
            writes += 1
            # The kernel took what it could; the rest waits in user space, and the transport
            # said so (write_paused). A connection that lets that grow past the limit is a
            # slow consumer: close it (4008) rather than drop its messages or let it eat
            # the process's memory.
            if connection.write_paused and connection.transport.write_buffer_size() > limit:
                self._slow_consumer(connection)
        counters = self.counters
        counters.flushes += 1
        counters.writes += writes
        counters.bytes_written += written

    def _flush_batched(self, connection: Connection) -> None:
        connection.dirty = False
        if not connection.closed and connection.outbox:
            self._write(connection)

    def _write(self, connection: Connection) -> None:
        data = connection.outbox.take()
        connection.write(data)
        connection.bytes_sent += len(data)
        connection.last_outbound = self._clock()
        self.counters.writes += 1
        self.counters.bytes_written += len(data)
        if connection.write_paused and (
            connection.transport.write_buffer_size() > self.max_outbox_bytes
        ):
            self._slow_consumer(connection)

    def _slow_consumer(self, connection: Connection) -> None:
        self.counters.slow_consumer_closes += 1
        self.close(connection, CloseCode.SLOW_CONSUMER, "slow consumer")

    # ------------------------------------------------------------------ heartbeats

    def tick(self, now: float, interval: float, timeout: float) -> None:
        """Heartbeats both ways; call about once a second.

        A connection silent inbound for `timeout` is closed with 4010; silent for `interval`,
        it gets a WebSocket ping (browsers answer pings without application code). A
        connection we have not written to for `interval` gets a `heartbeat` message, so a
        silent stream stays distinguishable from a dead one.
        """
        for connection in list(self.connections.values()):
            if connection.closed:
                continue
            idle_in = now - connection.last_inbound
            if idle_in >= timeout:
                self.counters.heartbeat_timeouts += 1
                self.close(connection, CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                continue
            if idle_in >= interval:
                connection.transport.ping()
            if now - connection.last_outbound >= interval and not connection.dirty:
                connection.heartbeat_counter += 1
                self.send(
                    connection,
                    ServerHeartbeat(
                        counter=connection.heartbeat_counter, server_timestamp=now_iso()
                    ),
                )
