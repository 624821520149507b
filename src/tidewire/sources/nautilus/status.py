"""Nautilus component states as Tidewire engine statuses. Pure.

Every ComponentStateChanged becomes an `engine_status` of engine id
`{trader_id}/{component_id}` (`BACKTESTER-001/DataEngine`, `BACKTESTER-001/EMACross-000`);
the Trader component itself (component id = trader id) is the trader's engine, whose status
also depends on its heartbeats (see `liveness`).
"""

from __future__ import annotations

from typing import Any

from tidewire.sources.nautilus.values import put, text

__all__ = ["ENGINE_STATUS_OF_STATE", "SEVERITY_OF_STATUS", "component_data", "engine_id_of"]

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
    "STOPPING": "stopped",
    "STOPPED": "stopped",
    "DISPOSING": "stopped",
    "DISPOSED": "stopped",
    "FAULTING": "down",
    "FAULTED": "down",
}
"""Nautilus ComponentState -> Tidewire engine status (unknown states: degraded)."""
SEVERITY_OF_STATUS = {
    "starting": "low",
    "running": "low",
    "stopped": "low",
    "degraded": "medium",
    "stale": "medium",
    "down": "high",
}


def engine_id_of(payload: Raw) -> str | None:
    """`{trader_id}/{component_id}`, or the trader id for the Trader component itself."""
    component = text(payload.get("component_id"))
    trader = text(payload.get("trader_id"))
    if component is None:
        return None
    if trader is None or component == trader:
        return component
    return f"{trader}/{component}"


def component_data(payload: Raw) -> Raw | None:
    """The `engine_status` data of a ComponentStateChanged; None without a state."""
    state = text(payload.get("state"))
    if state is None:
        return None
    component = text(payload.get("component_id"))
    kind = text(payload.get("component_type"))
    status = ENGINE_STATUS_OF_STATE.get(state, "degraded")
    data: Raw = {
        "status": status,
        "state": state,
        "message": f"{kind or 'component'} {component} {state.lower()}",
    }
    put(data, "component_id", component)
    put(data, "component_type", kind)
    put(data, "trader_id", text(payload.get("trader_id")))
    return data
