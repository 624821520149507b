"""The Flusher of core/flusher.py: when and how outboxes are written, without sockets.

A `FakeScheduler` records call_soon / call_later; a `FakeTransport` records writes (both in
tests/fakes.py). Most tests drive a `Flusher` directly over connections whose outboxes they
fill by hand; the pause/resume ones go through the hub that owns it.
"""

from __future__ import annotations

import json

import pytest

from fakes import (
    FakeClock,
    FakeScheduler,
    connection,
    parse_frames,
    received,
    subscription,
    transport,
)
from messages import quote, risk_alert, sequenced
from tidewire.core.connection import Connection
from tidewire.core.flusher import Flusher
from tidewire.core.frames import build_frame
from tidewire.core.hub import Hub

# ------------------------------------------------------------------ harness


def item(connection: Connection, n: int) -> bytes:
    """A frame (or a payload, for a batching connection) holding the number n."""
    payload = json.dumps(n).encode()
    return payload if connection.outbox.batched else build_frame(payload, False)


class Rig:
    """A Flusher with a fake scheduler and clock, recording its after-write calls."""

    def __init__(self) -> None:
        self.clock = FakeClock(100.0)
        self.scheduler = FakeScheduler()
        self.after: list[Connection] = []
        self.flusher = Flusher(self.scheduler, self.clock, self.after.append)

    def queue(self, connection: Connection, *numbers: int, ordered: bool = True) -> None:
        for n in numbers:
            connection.outbox.push(item(connection, n), ordered)
        if not connection.dirty:
            self.flusher.mark(connection)


@pytest.fixture
def rig() -> Rig:
    return Rig()


# ------------------------------------------------------------------ once per iteration


def test_flush_writes_each_dirty_connection_once_with_everything_pending(rig: Rig) -> None:
    a, b = connection(), connection()
    rig.queue(a, 1, 2)
    rig.queue(a, 3, ordered=False)
    rig.queue(b, 4)
    assert len(rig.scheduler.soon) == 1, "one flush per iteration, however many marks"
    assert transport(a).writes == []
    rig.clock.now = 101.0
    assert rig.scheduler.run_soon() == 1
    assert received(a) == [1, 2, 3] and received(b) == [4]
    assert len(transport(a).writes) == 1 and len(transport(b).writes) == 1
    for c in (a, b):
        assert not c.dirty and not c.outbox
        assert c.last_outbound == 101.0
        assert c.bytes_sent == len(transport(c).writes[0])
    counters = rig.flusher.counters
    assert (counters.flushes, counters.writes) == (1, 2)
    assert counters.bytes_written == a.bytes_sent + b.bytes_sent
    assert rig.after == [], "no transport is paused"


def test_connection_marked_twice_is_written_once(rig: Rig) -> None:
    c = connection()
    c.outbox.push(item(c, 1))
    rig.flusher.mark(c)
    rig.flusher.mark(c)
    rig.scheduler.run_soon()
    assert received(c) == [1]
    assert len(transport(c).writes) == 1
    assert rig.flusher.counters.writes == 1


def test_next_iteration_schedules_a_new_flush(rig: Rig) -> None:
    c = connection()
    rig.queue(c, 1)
    rig.scheduler.run_soon()
    assert rig.scheduler.soon == []
    rig.queue(c, 2)
    assert len(rig.scheduler.soon) == 1
    rig.scheduler.run_soon()
    assert received(c) == [1, 2]
    assert rig.flusher.counters.flushes == 2


def test_single_pending_frame_is_written_as_the_shared_object(rig: Rig) -> None:
    c = connection()
    shared = item(c, 7)
    c.outbox.push(shared, ordered=False)
    rig.flusher.mark(c)
    rig.scheduler.run_soon()
    assert transport(c).writes[0] is shared


def test_closed_connection_is_not_written(rig: Rig) -> None:
    c = connection()
    rig.queue(c, 1)
    c.closed = True
    rig.scheduler.run_soon()
    assert transport(c).writes == []
    assert not c.dirty


# ------------------------------------------------------------------ paused transports


def test_paused_connection_is_skipped_and_left_clean(rig: Rig) -> None:
    paused, other = connection(), connection()
    rig.queue(paused, 1)
    rig.queue(other, 2)
    paused.write_paused = True
    rig.scheduler.run_soon()
    assert transport(paused).writes == []
    assert not paused.dirty, "not left in the dirty list: resuming marks it again"
    assert paused.outbox.pending_bytes > 0
    assert received(other) == [2]
    assert rig.flusher.counters.writes == 1
    assert rig.scheduler.soon == [], "a skipped connection schedules no retry"
    paused.write_paused = False
    rig.flusher.mark(paused)
    rig.scheduler.run_soon()
    assert received(paused) == [1]


def test_write_that_pauses_the_transport_calls_after_write(rig: Rig) -> None:
    c, calm = connection(), connection()

    def pause(data: bytes) -> None:
        c.write_paused = True

    transport(c).on_write = pause
    rig.queue(c, 1)
    rig.queue(calm, 2)
    rig.scheduler.run_soon()
    assert rig.after == [c]


def test_hub_resume_writes_what_was_held_back() -> None:
    clock, scheduler = FakeClock(5.0), FakeScheduler()
    hub = Hub(scheduler, 1 << 20, clock=clock)
    c = connection(now=clock())
    hub.add_connection(c)
    hub.add_subscription(subscription(c, "risk_alerts"))
    hub.pause(c)
    hub.dispatch(sequenced(risk_alert("PF-1"), 1))
    hub.dispatch(sequenced(risk_alert("PF-1"), 2))
    scheduler.run_soon()
    assert transport(c).writes == []
    hub.resume(c)
    assert len(scheduler.soon) == 1
    scheduler.run_soon()
    assert [m["seq"] for m in received(c)] == [1, 2]
    assert len(transport(c).writes) == 1
    assert hub.flusher.counters.writes == 1


def test_hub_resume_with_nothing_pending_schedules_nothing() -> None:
    scheduler = FakeScheduler()
    hub = Hub(scheduler, 1 << 20, clock=FakeClock(0.0))
    c = connection()
    hub.add_connection(c)
    hub.pause(c)
    hub.resume(c)
    assert scheduler.soon == [] and scheduler.later == []
    assert not c.write_paused


def test_resume_writes_queued_reliable_and_conflated_messages_together() -> None:
    scheduler = FakeScheduler()
    hub = Hub(scheduler, 1 << 20, clock=FakeClock(0.0))
    c = connection()
    hub.add_connection(c)
    hub.add_subscription(subscription(c, "risk_alerts"))
    hub.add_subscription(subscription(c, "market_data"))
    hub.pause(c)
    hub.dispatch(sequenced(risk_alert("PF-1"), 1))
    hub.dispatch(sequenced(quote("AAPL"), 1))
    hub.resume(c)
    scheduler.run_soon()
    assert [(m["stream"], m["seq"]) for m in received(c)] == [
        ("risk_alerts", 1),
        ("market_data", 1),
    ]
    assert c.outbox.latest == {}


# ------------------------------------------------------------------ write_now


def test_write_now_writes_every_lane_at_once(rig: Rig) -> None:
    c = connection()
    c.outbox.push(item(c, 2), ordered=False)
    c.outbox.push(item(c, 1))
    c.outbox.push_latest(("market_data", "AAPL"), item(c, 3))
    rig.clock.now = 123.0
    rig.flusher.write_now(c)
    assert received(c) == [1, 2, 3]
    assert len(transport(c).writes) == 1
    assert not c.outbox and c.outbox.latest == {}
    assert c.last_outbound == 123.0
    assert rig.flusher.counters.writes == 1
    assert rig.flusher.counters.bytes_written == len(transport(c).writes[0])
    assert rig.scheduler.soon == [], "no flush scheduled"
    assert rig.after == []
    c.write_paused = True
    c.outbox.push(item(c, 4))
    rig.flusher.write_now(c)
    assert rig.after == [c]


# ------------------------------------------------------------------ batch timer


def test_batching_connection_gets_a_timer_and_one_batch_frame(rig: Rig) -> None:
    c = connection(batch_ms=25)
    rig.queue(c, 1, 2)
    rig.queue(c, 3, ordered=False)
    assert rig.scheduler.soon == []
    assert [delay for delay, _ in rig.scheduler.later] == [pytest.approx(0.025)]
    assert rig.scheduler.run_soon() == 0
    assert transport(c).writes == []
    rig.scheduler.run_later()
    ((opcode, payload),) = parse_frames(transport(c).writes[0])
    assert opcode == 0x1
    assert json.loads(payload) == {"type": "batch", "messages": [1, 2, 3]}
    assert not c.dirty and not c.outbox
    # The next message starts the next window.
    rig.queue(c, 4)
    assert len(rig.scheduler.later) == 1
    rig.scheduler.run_later()
    assert received(c) == [1, 2, 3, 4]


@pytest.mark.parametrize("state", ["paused", "closed", "empty"])
def test_batch_timer_writes_nothing_for_a_paused_closed_or_empty_connection(
    rig: Rig, state: str
) -> None:
    c = connection(batch_ms=10)
    rig.queue(c, 1)
    if state == "paused":
        c.write_paused = True
    elif state == "closed":
        c.closed = True
    else:
        c.outbox.take()
    rig.scheduler.run_later()
    assert transport(c).writes == []
    assert not c.dirty
    assert rig.flusher.counters.writes == 0
