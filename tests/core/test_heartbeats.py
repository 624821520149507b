"""`sweep` of core/heartbeats.py: pings, 4010, server heartbeats and the 4008 stall limit.

No sockets, no event loop: a hub with a fake scheduler, clock and transports (tests/fakes.py),
and `sweep` called with the time the test chooses.
"""

from __future__ import annotations

import pytest

from fakes import World as HubWorld
from fakes import received, transport
from messages import quote, sequenced
from tidewire.core.heartbeats import sweep
from tidewire.protocol.errors import CloseCode

INTERVAL, TIMEOUT = 10.0, 30.0
STALL = 20.0


class World(HubWorld):
    """A hub with the stall limit STALL that sets no timers, swept when the test says."""

    def __init__(self) -> None:
        super().__init__(64 * 1024, allow_timers=False, stall_timeout=STALL)

    def sweep(self, now: float | None = None) -> None:
        if now is not None:
            self.clock.now = now
        sweep(self.hub, self.clock.now, INTERVAL, TIMEOUT)


@pytest.fixture
def world() -> World:
    return World()


# ------------------------------------------------------------------ inbound silence


@pytest.mark.parametrize(
    ("idle", "pinged", "closed"),
    [
        (0.0, False, False),
        (9.5, False, False),
        (10.0, True, False),
        (29.9, True, False),
        (30.0, False, True),
        (500.0, False, True),
    ],
)
def test_sweep_pings_then_closes_on_inbound_silence(
    world: World, idle: float, pinged: bool, closed: bool
) -> None:
    connection = world.connect()
    world.sweep(connection.last_inbound + idle)
    assert transport(connection).pings == (1 if pinged else 0)
    assert connection.closed is closed
    if closed:
        assert [code for code, _ in transport(connection).closes] == [4010]
        assert connection.close_code == CloseCode.HEARTBEAT_TIMEOUT
        assert world.hub.counters.heartbeat_timeouts == 1
    else:
        assert transport(connection).closes == []
        assert world.hub.counters.heartbeat_timeouts == 0


def test_sweep_judges_each_connection_on_its_own(world: World) -> None:
    quiet, talking = world.connect(), world.connect()
    talking.last_inbound = world.clock.now + 25
    world.sweep(world.clock.now + 30)
    assert quiet.closed and not talking.closed
    assert transport(talking).closes == []


def test_sweep_skips_closed_connections(world: World) -> None:
    connection = world.connect()
    world.hub.close(connection, CloseCode.NORMAL, "done")
    world.sweep(connection.last_inbound + 1000)
    assert transport(connection).closes == [(1000, "done")]
    assert transport(connection).pings == 0
    assert world.hub.counters.heartbeat_timeouts == 0


# ------------------------------------------------------------------ server heartbeats


def test_outbound_silence_gets_heartbeats_counting_up(world: World) -> None:
    connection = world.connect()
    counters = []
    for _ in range(3):
        world.clock.now += INTERVAL
        connection.last_inbound = world.clock.now  # the client keeps talking
        world.sweep()
        world.flush()
        heartbeat = received(connection)[-1]
        assert heartbeat["type"] == "heartbeat"
        assert heartbeat["server_timestamp"].endswith("Z")
        counters.append(heartbeat["counter"])
    assert counters == [1, 2, 3]
    assert len(transport(connection).writes) == 3
    assert transport(connection).closes == []


def test_no_heartbeat_while_data_flows_or_one_is_pending(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.clock.now += 5
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    assert connection.last_outbound == world.clock.now
    start = world.clock.now
    connection.last_inbound = start + 9
    world.sweep(start + 9)
    assert not connection.outbox, "written 9 s ago: no heartbeat yet"
    world.sweep(start + 10)
    world.sweep(start + 11)
    world.flush()
    types = [m["type"] for m in received(connection)]
    assert types == ["market_data", "heartbeat"], "one heartbeat, not one per sweep"


# ------------------------------------------------------------------ stalled readers


@pytest.mark.parametrize(("paused_for", "closed"), [(0.0, False), (19.9, False), (20.0, True)])
def test_connection_paused_for_the_stall_timeout_is_closed_with_4008(
    world: World, paused_for: float, closed: bool
) -> None:
    connection = world.connect()
    world.hub.pause(connection)
    assert connection.paused_at == world.clock.now
    # The client keeps sending (pings, heartbeats) but does not read.
    connection.last_inbound = world.clock.now + paused_for
    world.sweep(world.clock.now + paused_for)
    assert connection.closed is closed
    if closed:
        assert transport(connection).closes == [(CloseCode.SLOW_CONSUMER, "slow consumer")]
        assert connection.close_code == 4008
        assert world.hub.counters.slow_consumer_closes == 1
    else:
        assert transport(connection).closes == []
        assert world.hub.counters.slow_consumer_closes == 0
    assert world.hub.counters.heartbeat_timeouts == 0


def test_stalled_connection_is_closed_without_writing_its_backlog(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.pause(connection)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    connection.last_inbound = world.clock.now + STALL
    world.sweep(world.clock.now + STALL)
    world.flush()
    assert connection.closed
    assert transport(connection).writes == []


def test_stall_counts_from_the_latest_pause(world: World) -> None:
    connection = world.connect()
    start = world.clock.now
    world.hub.pause(connection)
    world.clock.now = start + 15
    world.hub.resume(connection)
    world.clock.now = start + 18
    world.hub.pause(connection)
    connection.last_inbound = start + 37.9
    world.sweep(start + 37.9)
    assert not connection.closed, "paused 19.9 s this time: not stalled yet"
    connection.last_inbound = start + 38
    world.sweep(start + 38)
    assert connection.close_code == 4008


def test_resumed_connection_is_never_stalled(world: World) -> None:
    connection = world.connect()
    world.hub.pause(connection)
    world.hub.resume(connection)
    connection.last_inbound = world.clock.now + 100
    world.sweep(world.clock.now + 100)
    assert not connection.closed
    assert world.hub.counters.slow_consumer_closes == 0


def test_paused_connection_does_not_pile_up_heartbeats(world: World) -> None:
    connection = world.connect()
    start = world.clock.now
    world.hub.pause(connection)
    for t in (10.0, 12.0, 14.0, 16.0):  # idle outbound, paused for less than STALL
        connection.last_inbound = start + t  # the client keeps talking
        world.sweep(start + t)
    assert not connection.closed
    world.hub.resume(connection)
    world.flush()
    assert [m["type"] for m in received(connection)].count("heartbeat") <= 1


def test_silent_client_is_pinged_once_per_interval_not_per_sweep(world: World) -> None:
    """Review defect: the 1 s sweep pinged a silent client on every pass after `interval`."""
    connection = world.connect()
    start = connection.last_inbound
    # Sweep every second through 25 s of silence (below the 30 s timeout).
    for second in range(1, 26):
        world.sweep(start + second)
    # Pinged at 10 s and 20 s of silence only.
    assert transport(connection).pings == 2
    assert not connection.closed


def test_inbound_frame_restarts_the_ping_interval(world: World) -> None:
    connection = world.connect()
    start = connection.last_inbound
    world.sweep(start + 10.0)
    assert transport(connection).pings == 1
    connection.last_inbound = start + 15.0  # the client said something (a pong, a command)
    world.sweep(start + 20.0)
    assert transport(connection).pings == 1
    world.sweep(start + 25.0)
    assert transport(connection).pings == 2
