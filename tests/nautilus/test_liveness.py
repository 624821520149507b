"""Liveness: heartbeats and the Trader's state to running / stale / down, without a clock."""

from __future__ import annotations

import pytest

from tidewire.sources.nautilus.liveness import Liveness


def statuses(liveness: Liveness, *times: float) -> list[str | None]:
    out = []
    for now in times:
        report = liveness.current(now)
        out.append(report.status if report else None)
    return out


def test_nothing_known_reports_nothing() -> None:
    assert Liveness("T").current(100.0) is None


def test_running_then_stale_then_down_then_running_again() -> None:
    liveness = Liveness("T", interval=1.0)  # stale after 2 missed intervals, down after 5
    liveness.heartbeat(10.0)
    assert statuses(liveness, 10.5, 11.9, 12.1, 14.9, 15.1) == [
        "running",
        "running",
        "stale",
        "stale",
        "down",
    ]
    liveness.heartbeat(16.0)
    assert statuses(liveness, 16.1) == ["running"]
    report = liveness.current(15.1 + 10)
    assert report is not None and "no heartbeat for" in report.message


def test_evaluate_reports_transitions_only() -> None:
    liveness = Liveness("T", interval=1.0)
    liveness.heartbeat(0.0)
    reports = [liveness.evaluate(t) for t in (0.1, 0.5, 2.5, 3.0, 6.0, 7.0)]
    assert [r.status if r else None for r in reports] == [
        "running",
        None,
        "stale",
        None,  # still stale: the growing silence alone is not news
        "down",
        None,
    ]


def test_interval_is_learned_from_the_heartbeats() -> None:
    liveness = Liveness("T", default_interval=5.0)
    liveness.heartbeat(0.0)
    assert liveness.interval == 5.0
    for t in (0.5, 1.0, 1.5, 2.0):
        liveness.heartbeat(t)
    assert liveness.interval == 0.5
    assert statuses(liveness, 2.9, 3.1, 4.6) == ["running", "stale", "down"]


def test_old_or_repeated_heartbeats_do_not_count() -> None:
    liveness = Liveness("T", interval=1.0)
    liveness.heartbeat(10.0)
    liveness.heartbeat(5.0)
    liveness.heartbeat(10.0)
    assert liveness.last_heartbeat == 10.0


def test_a_stopped_trader_is_stopped_not_down() -> None:
    liveness = Liveness("T", interval=1.0)
    liveness.heartbeat(0.0)
    liveness.trader_state("STOPPED")
    assert statuses(liveness, 100.0) == ["stopped"]
    liveness.trader_state("RUNNING")
    assert statuses(liveness, 100.0) == ["down"]


def test_trader_state_without_heartbeats() -> None:
    liveness = Liveness("T")
    liveness.trader_state("STARTING")
    assert statuses(liveness, 0.0) == ["starting"]
    liveness.trader_state("RUNNING")
    report = liveness.current(1000.0)
    assert report is not None and report.status == "running"
    assert report.message == "trader running, no heartbeat seen yet"
    liveness.trader_state("DEGRADED")
    assert statuses(liveness, 0.0) == ["degraded"]
    liveness.trader_state("STOPPING")
    assert statuses(liveness, 0.0) == ["stopping"]
    liveness.trader_state("FAULTED")
    assert statuses(liveness, 0.0) == ["error"]


def test_redis_unreachable_is_down_until_reachable() -> None:
    liveness = Liveness("T", interval=1.0)
    liveness.heartbeat(0.0)
    liveness.unreachable("redis://x: Connection refused")
    report = liveness.evaluate(0.1)
    assert report is not None and report.status == "down" and report.severity == "high"
    assert report.message == "Redis unreachable: redis://x: Connection refused"
    liveness.reachable()
    assert statuses(liveness, 0.2) == ["running"]


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        Liveness("T", stale_after=5, down_after=2)


def uptime(liveness: Liveness, now: float) -> float:
    report = liveness.current(now)
    assert report is not None
    return report.uptime


def test_uptime_counts_from_the_first_heartbeat_after_a_silence() -> None:
    liveness = Liveness("T", interval=1.0)
    for t in (0.0, 1.0, 2.0):
        liveness.heartbeat(t)
    assert uptime(liveness, 2.5) == 2.5
    assert uptime(liveness, 4.5) == 2.0  # stale: up to the last heartbeat observed
    assert uptime(liveness, 10.0) == 0.0  # down
    liveness.heartbeat(20.0)  # after being down: a new run
    assert uptime(liveness, 21.0) == 1.0
    liveness.trader_state("STOPPED")
    assert uptime(liveness, 21.5) == 0.0


def test_uptime_without_heartbeats_counts_from_the_first_sight() -> None:
    liveness = Liveness("T")
    liveness.trader_state("RUNNING", at=100.0)
    assert uptime(liveness, 130.0) == 30.0
    liveness.trader_state("RUNNING", at=120.0)  # a later state does not restart it
    assert uptime(liveness, 130.0) == 30.0
    unseen = Liveness("V")
    unseen.trader_state("RUNNING")  # no time known: nothing observed yet
    assert uptime(unseen, 50.0) == 0.0
