"""Heartbeat round trips: monotonic clock by echoed timestamp, wall clock as fallback."""

from __future__ import annotations

import pytest

from tidewire.client.heartbeat import HeartbeatTracker


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 50.0


def tracker(clocks: Clocks, keep: int = 32) -> HeartbeatTracker:
    return HeartbeatTracker(
        keep=keep, wall_clock=lambda: clocks.wall, monotonic=lambda: clocks.mono
    )


def test_heartbeat_command_shape() -> None:
    clocks = Clocks()
    command = tracker(clocks).start()
    assert command == {"type": "heartbeat", "client_timestamp": 1_700_000_000_000}
    assert isinstance(command["client_timestamp"], int)


def test_round_trip_uses_the_monotonic_clock() -> None:
    clocks = Clocks()
    heartbeats = tracker(clocks)
    sent = heartbeats.start()["client_timestamp"]
    clocks.mono += 0.0125
    clocks.wall -= 30  # an NTP step backwards must not matter
    assert heartbeats.finish(sent) == pytest.approx(12.5)
    # Echoed as a float by a JSON encoder: still found.
    second = heartbeats.start()["client_timestamp"]
    clocks.mono += 0.002
    assert heartbeats.finish(float(second)) == pytest.approx(2.0)


def test_two_heartbeats_in_one_millisecond_get_distinct_timestamps() -> None:
    clocks = Clocks()
    heartbeats = tracker(clocks)
    a = heartbeats.start()["client_timestamp"]
    b = heartbeats.start()["client_timestamp"]
    assert b == a + 1
    clocks.mono += 0.001
    assert heartbeats.finish(b) == pytest.approx(1.0)
    assert heartbeats.finish(a) == pytest.approx(1.0)


def test_unknown_echo_falls_back_to_the_wall_clock() -> None:
    clocks = Clocks()
    heartbeats = tracker(clocks)
    assert heartbeats.finish(1_699_999_999_990) == 10.0
    assert heartbeats.finish("1699999999995") == 5.0
    assert heartbeats.finish(2_000_000_000_000) == 0.0  # never negative


def test_unusable_echoes() -> None:
    heartbeats = tracker(Clocks())
    assert heartbeats.finish(None) is None
    assert heartbeats.finish(True) is None
    assert heartbeats.finish("soon") is None
    assert heartbeats.finish({"t": 1}) is None


def test_old_heartbeats_are_forgotten() -> None:
    clocks = Clocks()
    heartbeats = tracker(clocks, keep=2)
    first = heartbeats.start()["client_timestamp"]
    heartbeats.start()
    heartbeats.start()
    clocks.mono += 1.0
    clocks.wall += 0.5
    # Forgotten: measured against the wall clock (which moved 0.5 s and 2 ms of ids).
    assert heartbeats.finish(first) == 500.0
    heartbeats.clear()
