"""Tidewire 0.1's field names and placements, mapped onto the canonical shapes on ingest.

Producers written for Tidewire 0.1 (`data.bid`/`ask`, `data.order_id`, `data.status`, ...)
keep working: `upgrade` renames and moves their fields, so that what goes out is the
canonical shape only (docs/protocol.md section 2, the "0.1 name" columns). A canonical name already
present always wins over its 0.1 synonym. Pure: dicts in, dicts out.
"""

from __future__ import annotations

from typing import Any

from tidewire.protocol.shapes import SHAPES

Fields = dict[str, Any]

# Per message type: 0.1 name in `data` -> canonical name in `data`.
DATA_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "market_data": (("bid", "bid_price"), ("ask", "ask_price"), ("size", "last_trade_size")),
    "performance_update": (("total_pnl", "pnl"),),
    "breach_alert": (("metric", "limit_type"), ("threshold", "limit_value")),
    "strategy_performance": (("trades", "trade_count"),),
    "execution_analytics": (("latency_ms", "execution_time_ms"),),
    "engine_status": (("status", "state"), ("uptime_seconds", "uptime")),
    "system_health": (("cpu_percent", "cpu_usage"),),
    "event": (("message", "description"),),
    "system_alert": (("message", "description"),),
}

# Per message type: 0.1 name (top level or in `data`) -> canonical top-level name.
TOP_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "order_update": (("status", "order_status"),),
    "breach_alert": (("risk_type", "breach_type"),),
}

# 0.1 values of an enum that the original names otherwise.
VALUE_RENAMES: dict[tuple[str, str], dict[str, str]] = {
    ("system_health", "status"): {"unhealthy": "error"},
}

_VALUE_RENAMES_OF_TYPE: dict[str, list[tuple[str, dict[str, str]]]] = {}
for (_type, _name), _values in VALUE_RENAMES.items():
    _VALUE_RENAMES_OF_TYPE.setdefault(_type, []).append((_name, _values))

# 0.1's `metric: value` form of risk_metrics: one message per metric now.
LEGACY_RISK_METRICS: tuple[str, ...] = ("var_95", "exposure", "leverage", "margin_used")

_REJECTED = frozenset({"rejected", "denied"})
_CANCELLED = frozenset({"cancelled", "expired"})


def upgrade(message_type: str, top: Fields, data: Fields) -> None:
    """Rename and move the 0.1 fields of one message in place (`top` and `data` are the
    caller's copies)."""
    for old, new in TOP_RENAMES.get(message_type, ()):
        value = top.pop(old, None)
        if value is None:
            value = data.pop(old, None)
        if value is not None:
            top.setdefault(new, value)
    shape = SHAPES[message_type]
    in_payload = shape.payload.__struct_fields__
    for name in shape.fields:
        # 0.1 kept most type-specific fields inside `data`.
        if top.get(name) is None and data.get(name) is not None and name not in in_payload:
            top[name] = data.pop(name)
    for old, new in DATA_RENAMES.get(message_type, ()):
        # With both names given, the canonical one is the field and the 0.1 one stays an
        # extra field, as the producer sent it.
        if old in data and new not in data:
            data[new] = data.pop(old)
    for name, values in _VALUE_RENAMES_OF_TYPE.get(message_type, ()):
        for where in (top, data):
            value = where.get(name)
            if isinstance(value, str) and value in values:
                where[name] = values[value]
    if message_type == "order_update" and "reason" in data:
        # 0.1 had one `reason`; the original tells a rejection from a cancellation.
        status = top.get("order_status")
        status = status if isinstance(status, str) else None
        if status in _REJECTED:
            data.setdefault("reject_reason", data.pop("reason"))
        elif status in _CANCELLED:
            data.setdefault("cancel_reason", data.pop("reason"))
    if message_type == "alert":
        # The original's `alert_level` is the severity the filters read: keep both.
        level = top.get("alert_level") or top.get("severity")
        if level is not None:
            top.setdefault("alert_level", level)
            top.setdefault("severity", level)


def split_risk_metrics(top: Fields, data: Fields) -> list[tuple[Fields, Fields]] | None:
    """A 0.1 `risk_metrics` message (several metrics in one `data`) as one message per
    metric (`metric_type` and `value`), or None when the message is not of that form."""
    if top.get("metric_type") is not None or "value" in data:
        return None
    metrics = [name for name in LEGACY_RISK_METRICS if name in data]
    if not metrics:
        return None
    rest = {name: value for name, value in data.items() if name not in LEGACY_RISK_METRICS}
    return [({**top, "metric_type": name}, {**rest, "value": data[name]}) for name in metrics]
