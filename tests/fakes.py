"""Test doubles for the core, without sockets or an event loop.

- `FakeClock`, `FakeScheduler`: time and the event loop, moved only by the test.
- `FakeTransport`: a client socket that records writes, pings and closes.
- `parse_frames`, `decode`, `decode_writes`, `received`, `seqs`: what a transport was sent,
  read back (RFC 6455 frames; JSON text, msgpack binary; batch frames unpacked).
- `connection`, `subscription`: builders over those fakes; `World`: a hub with a fake clock
  and scheduler, and helpers to add connections and subscriptions to it.

Plain functions and classes, no pytest fixtures: test modules import what they use.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import msgspec

from tidewire.core.auth import ROLE_SUBSCRIBER, Principal
from tidewire.core.connection import Connection
from tidewire.core.hub import Hub
from tidewire.core.ratelimit import TokenBucket
from tidewire.core.subscription import Subscription
from tidewire.protocol.codec import WireFormat
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.messages import now_iso
from tidewire.protocol.streams import STREAMS

Callback = Callable[[], object]

# ------------------------------------------------------------------ time and the event loop


class FakeClock:
    """A monotonic clock that reads `now`, which only the test moves."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeHandle:
    """What call_soon / call_later return; records `cancel` (the callback still runs)."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """Records call_soon / call_later callbacks; tests run them when they choose.

    `soon` holds the call_soon callbacks, `later` (delay, callback) of each call_later.
    With a `clock`, `advance` lets time pass and fires each timer at its due time. With
    `allow_timers=False`, call_later fails the test.
    """

    def __init__(self, clock: FakeClock | None = None, *, allow_timers: bool = True) -> None:
        self.clock = clock
        self.allow_timers = allow_timers
        self.soon: list[Callback] = []
        self.later: list[tuple[float, Callback]] = []
        self._due: list[float] = []
        """The clock time each timer of `later` is due, index for index."""
        self.soon_calls = 0
        self.later_calls = 0

    def call_soon(self, callback: Callback) -> FakeHandle:
        self.soon_calls += 1
        self.soon.append(callback)
        return FakeHandle()

    def call_later(self, delay: float, callback: Callback) -> FakeHandle:
        if not self.allow_timers:
            raise AssertionError("no timers expected here")
        self.later_calls += 1
        self.later.append((delay, callback))
        self._due.append((0.0 if self.clock is None else self.clock.now) + delay)
        return FakeHandle()

    @property
    def delays(self) -> list[float]:
        """The delay asked by each pending timer."""
        return [delay for delay, _ in self.later]

    def run_soon(self) -> int:
        """One event-loop iteration: run what is queued now (not what it schedules)."""
        ready, self.soon = self.soon, []
        for callback in ready:
            callback()
        return len(ready)

    def run_later(self) -> int:
        """Fire every pending timer at once, whatever its delay (not those they schedule)."""
        ready, self.later, self._due = self.later, [], []
        for _, callback in ready:
            callback()
        return len(ready)

    def run(self, timers: bool = True) -> None:
        """Run what is scheduled (and what that schedules); timers too unless told not to."""
        while self.soon or (timers and self.later):
            ready, self.soon = self.soon, []
            if timers:
                ready = [*ready, *(callback for _, callback in self.later)]
                self.later, self._due = [], []
            for callback in ready:
                callback()

    def advance(self, seconds: float) -> int:
        """Let time pass, firing each timer at its due time; returns how many fired."""
        assert self.clock is not None, "advance needs a clock"
        end = self.clock.now + seconds
        fired = 0
        while True:
            due = [i for i, when in enumerate(self._due) if when <= end]
            if not due:
                break
            first = min(due, key=self._due.__getitem__)
            when = self._due.pop(first)
            _, callback = self.later.pop(first)
            self.clock.now = max(self.clock.now, when)
            callback()
            fired += 1
        self.clock.now = end
        return fired


# ------------------------------------------------------------------ transport and frames


class FakeTransport:
    """A client socket that records writes, pings and closes.

    A transport made with `writable=False` (or `closable=False`) fails the test on a write
    (or a close).
    """

    def __init__(self, *, writable: bool = True, closable: bool = True) -> None:
        self.writable = writable
        self.closable = closable
        self.writes: list[bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.pings = 0
        self.buffer_size = 0
        """What `write_buffer_size` reports: bytes the 'kernel' did not take."""
        self.on_write: Callable[[bytes], None] | None = None
        """Called with each write (e.g. to pause, as asyncio's pause_writing does)."""

    def write(self, data: bytes) -> None:
        if not self.writable:
            raise AssertionError(f"unexpected write of {len(data)} bytes")
        self.writes.append(data)
        if self.on_write is not None:
            self.on_write(data)

    def write_buffer_size(self) -> int:
        return self.buffer_size

    def ping(self) -> None:
        self.pings += 1

    def close(self, code: int, reason: str) -> None:
        if not self.closable:
            raise AssertionError(f"unexpected close {code} {reason}")
        self.closes.append((code, reason))


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of every unmasked, unfragmented frame in `data`."""
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        first, second = data[i], data[i + 1]
        assert first & 0x80, "FIN must be set"
        assert not second & 0x80, "server frames are never masked"
        length = second & 0x7F
        i += 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        frames.append((first & 0x0F, data[i : i + length]))
        i += length
    assert i == len(data)
    return frames


def decode(opcode: int, payload: bytes) -> Any:
    """A text frame's JSON or a binary frame's msgpack."""
    assert opcode in (0x1, 0x2)
    return msgspec.msgpack.decode(payload) if opcode == 0x2 else json.loads(payload)


def decode_writes(writes: Iterable[bytes]) -> list[Any]:
    """Every message in `writes`, in order, batch frames unpacked."""
    out: list[Any] = []
    for write in writes:
        for opcode, payload in parse_frames(write):
            message = decode(opcode, payload)
            if isinstance(message, dict) and message.get("type") == "batch":
                out.extend(message["messages"])
            else:
                out.append(message)
    return out


def transport(connection: Connection) -> FakeTransport:
    """The FakeTransport of `connection`."""
    assert isinstance(connection.transport, FakeTransport)
    return connection.transport


def received(connection: Connection) -> list[Any]:
    """Every message written to `connection` so far."""
    return decode_writes(transport(connection).writes)


def seqs(connection: Connection) -> list[tuple[str, int]]:
    """(key, seq) of every message written to `connection` so far (all must be data)."""
    return [(m["key"], m["seq"]) for m in received(connection)]


# ------------------------------------------------------------------ connections and subscriptions

_connection_ids = itertools.count(1)
ANONYMOUS_SUBSCRIBER = Principal(
    user_id=None, roles=frozenset({ROLE_SUBSCRIBER}), portfolios=None, open_access=True
)
"""The principal of every connection while authentication is off."""


def connection(
    *,
    fmt: WireFormat = WireFormat.JSON,
    batch_ms: int = 0,
    now: float = 0.0,
    transport: FakeTransport | None = None,
    principal: Principal | None = None,
    inbound_rate: float = 50.0,
    inbound_burst: int = 200,
    connection_id: str | None = None,
) -> Connection:
    """A connection over a FakeTransport, opened at `now` (not added to any hub).

    Its principal is an anonymous subscriber unless `principal` says otherwise.
    """
    return Connection(
        connection_id=connection_id or f"c{next(_connection_ids)}",
        transport=FakeTransport() if transport is None else transport,
        wire_format=fmt,
        principal=ANONYMOUS_SUBSCRIBER if principal is None else principal,
        inbound=TokenBucket(inbound_rate, inbound_burst, now),
        now=now,
        connected_at=now_iso(),
        batch_ms=batch_ms,
    )


def subscription(
    connection: Connection,
    stream: str,
    sid: str = "",
    *,
    rate_limit: float | None = None,
    **filters: Any,
) -> Subscription:
    """A subscription of `connection` to `stream` (not added to any hub); sid: sub-<n>."""
    spec = STREAMS[stream]
    return Subscription(
        connection,
        sid or f"sub-{len(connection.subscriptions) + 1}",
        spec,
        validate_filters(filters, spec),
        now_iso(),
        rate_limit=rate_limit,
    )


class World:
    """A hub on a fake clock and scheduler, with helpers to add connections to it.

    `hub_options` go to the Hub (e.g. `stall_timeout`). `allow_timers=False` makes any
    call_later fail the test, `allow_closes=False` any close of a connection.
    """

    def __init__(
        self,
        max_outbox_bytes: int = 64 * 1024,
        *,
        now: float = 1000.0,
        allow_timers: bool = True,
        allow_closes: bool = True,
        **hub_options: Any,
    ) -> None:
        self.allow_closes = allow_closes
        self.clock = FakeClock(now)
        self.scheduler = FakeScheduler(self.clock, allow_timers=allow_timers)
        self.hub = Hub(self.scheduler, max_outbox_bytes, clock=self.clock, **hub_options)
        self.high_water = max_outbox_bytes // 2
        """Where a transport pauses writing (and resumes below), as in `backlog`."""

    def connect(self, fmt: WireFormat = WireFormat.JSON, batch_ms: int = 0) -> Connection:
        """A new connection, opened now and added to the hub."""
        added = connection(
            fmt=fmt,
            batch_ms=batch_ms,
            now=self.clock(),
            transport=FakeTransport(closable=self.allow_closes),
        )
        self.hub.add_connection(added)
        return added

    def subscribe(
        self,
        connection: Connection,
        stream: str,
        sid: str = "",
        *,
        rate_limit: float | None = None,
        **filters: Any,
    ) -> Subscription:
        """A new subscription of `connection`, added to the hub."""
        added = subscription(connection, stream, sid, rate_limit=rate_limit, **filters)
        self.hub.add_subscription(added)
        return added

    def flush(self) -> None:
        """One event-loop iteration: the hub's flush, if one is scheduled."""
        self.scheduler.run_soon()

    def release(self, after: float) -> None:
        """Let `after` seconds pass: a timer (e.g. a rate limit's release) must fire by then."""
        assert self.scheduler.advance(after) > 0, "no timer was due"

    def backlog(self, connection: Connection, size: int) -> None:
        """The peer stopped reading: `size` bytes wait in the transport, which pauses writing
        above its high-water mark and resumes below it (pause_writing / resume_writing of
        the data plane)."""
        transport(connection).buffer_size = size
        if size > self.high_water and not connection.write_paused:
            self.hub.pause(connection)
        elif size <= self.high_water and connection.write_paused:
            self.hub.resume(connection)


def run_to_completion(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a command's asynchronous part at once: the memory broker never suspends."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise AssertionError("the coroutine suspended: it needs a real event loop")
