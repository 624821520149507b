"""A Nautilus trader's liveness from its heartbeats: running, stale, down. Pure.

Nautilus drops message-bus writes silently when Redis is unreachable, and a crashed node
simply stops writing, so silence is the only failure signal: with
`MessageBusConfig(heartbeat_interval_secs=N)` the node writes `health:heartbeat` every N
seconds. `Liveness` turns the time of the last heartbeat into a status:

| condition (checked in this order) | status |
|---|---|
| the gateway cannot reach Redis | down ("Redis unreachable: ...") |
| the Trader component is STOPPING | stopping (silence is expected) |
| the Trader component is STOPPED/DISPOSING/DISPOSED | stopped (silence is expected) |
| the Trader component is FAULTING/FAULTED | error |
| no heartbeat for more than `down_after` intervals | down |
| no heartbeat for more than `stale_after` intervals | stale |
| otherwise | the Trader's state: running (RUNNING or unknown), starting, degraded |

The interval is `interval` when configured, else learned from the spacing of the last
heartbeats (their Redis entry times), else `default_interval`. Times are seconds of the
caller's wall clock; heartbeat times come from Redis entry ids, corrected for the offset
between Redis's clock and the gateway's (so a backlog of old heartbeats read after a restart
does not look alive).

Uptime (Nautilus reports none) is what the gateway observed: while heartbeats arrive, the
time since the first heartbeat of the current unbroken run of them; stale, up to the last
heartbeat; with no heartbeat at all (a node without `heartbeat_interval_secs`), since the
gateway first learned of the trader; 0 when stopped, in error or down.
"""

from __future__ import annotations

import itertools
import statistics
from collections import deque
from dataclasses import dataclass

from tidewire.sources.nautilus.status import (
    DOWN_STATES,
    ENGINE_STATUS_OF_STATE,
    SEVERITY_OF_STATUS,
)

__all__ = ["Liveness", "LivenessReport"]

_SILENT_OK = frozenset({"STOPPING", "STOPPED", "DISPOSING", "DISPOSED"})
_FAULTED = frozenset({"FAULTING", "FAULTED"})


@dataclass(frozen=True, slots=True)
class LivenessReport:
    """The engine status to publish for one trader."""

    engine_id: str
    status: str
    """The engine state: starting, running, degraded, stale, stopping, stopped, error or
    down."""
    severity: str
    message: str
    cause: str
    """Why: `heartbeat`, `silence`, `state`, `unreachable`; a change of status or cause is
    reported again, a change of the message alone (the age of the silence) is not."""
    last_heartbeat: float | None
    interval: float
    uptime: float = 0.0
    """Seconds the trader was observed up (see the module docstring)."""


class Liveness:
    """Status of one trader (engine) from heartbeats, its Trader state and Redis reachability."""

    def __init__(
        self,
        engine_id: str,
        *,
        interval: float | None = None,
        stale_after: float = 2.0,
        down_after: float = 5.0,
        default_interval: float = 5.0,
    ) -> None:
        """`stale_after` / `down_after`: missed intervals before stale / down."""
        if not 0 < stale_after < down_after:
            raise ValueError("need 0 < stale_after < down_after")
        self.engine_id = engine_id
        self._configured = interval
        self._default = default_interval
        self._stale_after = stale_after
        self._down_after = down_after
        self._beats: deque[float] = deque(maxlen=6)
        self._streak_start: float | None = None
        self._first_seen: float | None = None
        self._state: str | None = None
        self._unreachable: str | None = None
        self._reported: tuple[str, str] | None = None

    @property
    def interval(self) -> float:
        if self._configured is not None:
            return self._configured
        gaps = [later - earlier for earlier, later in itertools.pairwise(self._beats)]
        gaps = [gap for gap in gaps if gap > 0]
        return statistics.median(gaps) if gaps else self._default

    @property
    def last_heartbeat(self) -> float | None:
        return self._beats[-1] if self._beats else None

    def heartbeat(self, at: float) -> None:
        """A heartbeat written at `at` (seconds, gateway wall clock)."""
        last = self.last_heartbeat
        if last is not None and at <= last:
            return
        if last is None or at - last > self._down_after * self.interval:
            self._streak_start = at  # first heartbeat, or the first after a silence
        self._beats.append(at)
        self._seen(at)

    def trader_state(self, state: str, at: float | None = None) -> None:
        """The Trader component's latest ComponentState name (RUNNING, STOPPED, ...), learned
        at `at` (gateway wall clock; when known, it starts the observed uptime)."""
        self._state = state
        if at is not None:
            self._seen(at)

    def _seen(self, at: float) -> None:
        if self._first_seen is None or at < self._first_seen:
            self._first_seen = at

    def unreachable(self, reason: str) -> None:
        """The gateway lost Redis: the trader cannot be observed."""
        self._unreachable = reason

    def reachable(self) -> None:
        self._unreachable = None

    def current(self, now: float) -> LivenessReport | None:
        """The status at `now`; None while nothing at all is known about the trader."""
        last = self.last_heartbeat
        if self._unreachable is not None:
            return self._report("down", "unreachable", f"Redis unreachable: {self._unreachable}")
        if self._state in _SILENT_OK or self._state in _FAULTED:
            status = ENGINE_STATUS_OF_STATE[self._state]
            return self._report(status, "state", f"trader {self._state.lower()}")
        interval = self.interval
        if last is not None:
            silence = now - last
            if silence > self._down_after * interval:
                text = f"no heartbeat for {silence:.1f} s (interval {interval:g} s)"
                return self._report("down", "silence", text)
            if silence > self._stale_after * interval:
                text = f"no heartbeat for {silence:.1f} s (interval {interval:g} s)"
                streak = self._streak_start if self._streak_start is not None else last
                return self._report("stale", "silence", text, last - streak)
        if self._state is None and last is None:
            return None
        status = ENGINE_STATUS_OF_STATE.get(self._state or "RUNNING", "running")
        cause = "heartbeat" if last is not None else "state"
        text = "heartbeats arriving" if last is not None else "no heartbeat seen yet"
        if self._state is not None:
            text = f"trader {self._state.lower()}, {text}"
        since = self._streak_start if last is not None else self._first_seen
        uptime = 0.0 if since is None else max(0.0, now - since)
        return self._report(status, cause, text, uptime)

    def evaluate(self, now: float) -> LivenessReport | None:
        """The status at `now` if its status or cause changed since the last one returned."""
        report = self.current(now)
        if report is None:
            return None
        marker = (report.status, report.cause)
        if marker == self._reported:
            return None
        self._reported = marker
        return report

    def _report(self, status: str, cause: str, message: str, uptime: float = 0.0) -> LivenessReport:
        return LivenessReport(
            engine_id=self.engine_id,
            status=status,
            severity=SEVERITY_OF_STATUS[status],
            message=message,
            cause=cause,
            last_heartbeat=self.last_heartbeat,
            interval=self.interval,
            uptime=0.0 if status in DOWN_STATES else uptime,
        )
