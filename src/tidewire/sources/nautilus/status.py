"""Nautilus component states as Tidewire engine statuses. Pure.

Every ComponentStateChanged becomes an `engine_status` of engine id
`{trader_id}/{component_id}` (`BACKTESTER-001/DataEngine`, `BACKTESTER-001/EMACross-000`);
the Trader component itself (component id = trader id) is the trader's engine, whose status
also depends on its heartbeats (see `liveness`).

`data.state` is the Tidewire engine state of the Nautilus ComponentState (table below),
`data.component_state` the Nautilus name. Nautilus reports no uptime, so `data.uptime` is
what the gateway observed (`Uptimes`): seconds from the first state change it saw of the
component (or the first after the component stopped or failed, a restart) to this one, by
the Redis entry times (the time of the writes, not the events' possibly simulated time);
0 while the component is stopped or in error.
"""

from __future__ import annotations

from typing import Any

from tidewire.sources.nautilus.values import put, text

__all__ = [
    "DOWN_STATES",
    "ENGINE_STATUS_OF_STATE",
    "SEVERITY_OF_STATUS",
    "Uptimes",
    "component_data",
    "engine_id_of",
]

Raw = dict[str, Any]

ENGINE_STATUS_OF_STATE = {
    "PRE_INITIALIZED": "starting",
    "READY": "starting",
    "STARTING": "starting",
    "RESUMING": "starting",
    "RESETTING": "starting",
    "RUNNING": "running",
    "DEGRADING": "degraded",
    "DEGRADED": "degraded",
    "STOPPING": "stopping",
    "STOPPED": "stopped",
    "DISPOSING": "stopped",
    "DISPOSED": "stopped",
    "FAULTING": "error",
    "FAULTED": "error",
}
"""Nautilus ComponentState -> Tidewire engine state (unknown states: degraded)."""
SEVERITY_OF_STATUS = {
    "starting": "low",
    "running": "low",
    "stopping": "low",
    "stopped": "low",
    "degraded": "medium",
    "stale": "medium",
    "error": "high",
    "down": "high",
}
DOWN_STATES = frozenset({"stopped", "error", "down"})
"""Engine states in which nothing runs: their uptime is 0."""


def engine_id_of(payload: Raw) -> str | None:
    """`{trader_id}/{component_id}`, or the trader id for the Trader component itself."""
    component = text(payload.get("component_id"))
    trader = text(payload.get("trader_id"))
    if component is None:
        return None
    if trader is None or component == trader:
        return component
    return f"{trader}/{component}"


class Uptimes:
    """Observed uptime per component (see the module docstring)."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[int, str]] = {}
        """Engine id -> (millis of the observed start, last state)."""

    def observe(self, engine_id: str, state: str, at_millis: int) -> float:
        """The uptime in seconds of `engine_id`, now in `state` at `at_millis`."""
        known = self._since.get(engine_id)
        start = at_millis
        if known is not None and not (known[1] in DOWN_STATES and state not in DOWN_STATES):
            start = min(known[0], at_millis)
        self._since[engine_id] = (start, state)
        return 0.0 if state in DOWN_STATES else (at_millis - start) / 1000


def component_data(payload: Raw, uptimes: Uptimes, at_millis: int) -> Raw | None:
    """The `engine_status` data of a ComponentStateChanged written at `at_millis`; None
    without a state or component."""
    state = text(payload.get("state"))
    engine_id = engine_id_of(payload)
    if state is None or engine_id is None:
        return None
    component = text(payload.get("component_id"))
    kind = text(payload.get("component_type"))
    status = ENGINE_STATUS_OF_STATE.get(state, "degraded")
    data: Raw = {
        "state": status,
        "uptime": uptimes.observe(engine_id, status, at_millis),
        "component_state": state,
        "message": f"{kind or 'component'} {component} {state.lower()}",
    }
    put(data, "component_id", component)
    put(data, "component_type", kind)
    put(data, "trader_id", text(payload.get("trader_id")))
    return data
