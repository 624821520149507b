"""Writing outboxes to transports: once per event-loop iteration, one write per connection.

Connections with pending output are marked dirty; one callback per loop iteration (or one
timer per `batch_ms` for batching connections) writes each dirty connection's outbox as a
single `transport.write`. A connection whose transport asked us to stop (`write_paused`) is
skipped until the transport resumes; the hub then marks it dirty again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tidewire.core.connection import Connection
from tidewire.core.latency import LatencyHistogram


class Scheduler(Protocol):
    """The part of an event loop the core uses (asyncio's loop satisfies it)."""

    def call_soon(self, callback: Callable[[], object]) -> Any: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Any: ...


class FlushCounters:
    __slots__ = ("bytes_written", "flushes", "writes")

    def __init__(self) -> None:
        self.flushes = 0
        self.writes = 0
        self.bytes_written = 0


class Flusher:
    """Schedules and performs the writes of every connection of a hub."""

    def __init__(
        self,
        scheduler: Scheduler,
        clock: Callable[[], float],
        after_write: Callable[[Connection], None],
    ) -> None:
        self._scheduler = scheduler
        self._clock = clock
        self._after_write = after_write
        """Called after a write to a connection whose transport is paused (slow-consumer check)."""
        self._dirty: list[Connection] = []
        self._scheduled = False
        self._scheduled_at = 0.0
        self.counters = FlushCounters()
        self.latency = LatencyHistogram()
        """Per flush, how long its messages waited from the first one queued (the broker
        handing it over) to the writes: observed once per flush, not per delivery."""

    def mark(self, connection: Connection) -> None:
        """Schedule a write of `connection`'s outbox (once, however often it is marked)."""
        connection.dirty = True
        if connection.batch_ms:
            self._scheduler.call_later(
                connection.batch_ms / 1000.0, lambda: self._flush_one(connection)
            )
            return
        self._dirty.append(connection)
        if not self._scheduled:
            self._scheduled = True
            self._scheduled_at = self._clock()
            self._scheduler.call_soon(self.flush)

    def flush_soon(self, connection: Connection) -> None:
        """Write a batching connection's outbox in this loop iteration, not at its timer.

        A timer already set still fires and writes whatever arrived since (or nothing)."""
        connection.dirty = True
        self._scheduler.call_soon(lambda: self._flush_one(connection))

    def flush(self) -> None:
        """Write every dirty connection's outbox: one write per connection."""
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        now = self._clock()
        written = writes = 0
        for connection in dirty:
            connection.dirty = False
            outbox = connection.outbox
            if connection.closed or connection.write_paused or not outbox.pending_bytes:
                continue
            ordered = outbox.ordered
            if len(ordered) == 1 and not outbox.market and not outbox.latest and not outbox.batched:
                # The common case at one message per iteration: no join, no copy.
                data = ordered[0]
                outbox.ordered = []
                outbox.pending_bytes = 0
            elif (
                not ordered and len(outbox.market) == 1 and not outbox.latest and not outbox.batched
            ):
                data = outbox.market[0]
                outbox.market = []
                outbox.pending_bytes = 0
            else:
                data = outbox.take()
            connection.write(data)
            connection.bytes_sent += len(data)
            connection.last_outbound = now
            written += len(data)
            writes += 1
            if connection.write_paused:
                self._after_write(connection)
        if writes:
            self.latency.observe(self._clock() - self._scheduled_at)
        counters = self.counters
        counters.flushes += 1
        counters.writes += writes
        counters.bytes_written += written

    def write_now(self, connection: Connection) -> None:
        """Write `connection`'s outbox at once (before closing it, or for a batch timer)."""
        data = connection.outbox.take()
        connection.write(data)
        connection.bytes_sent += len(data)
        connection.last_outbound = self._clock()
        self.counters.writes += 1
        self.counters.bytes_written += len(data)
        if connection.write_paused:
            self._after_write(connection)

    def _flush_one(self, connection: Connection) -> None:
        connection.dirty = False
        if not connection.closed and not connection.write_paused and connection.outbox:
            self.write_now(connection)
