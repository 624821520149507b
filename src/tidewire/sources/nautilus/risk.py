"""Risk alerts from Nautilus's risk engine: trading-state changes and denied orders. Pure.

A `risk_alert` needs `metric`, `current_value`, `threshold`, `timestamp`. Nautilus gives a
state name (TradingStateChanged) or a free-text reason (OrderDenied); the reasons the 1.221
risk engine writes are parsed into a metric, the offending value and the limit:

* `quantity 20000000 invalid (> maximum trade size of 10000000)` (or `< minimum`):
  metric `order_quantity`, current_value 20000000, threshold 10000000;
* `CODE: name=value, name=value` (`NOTIONAL_EXCEEDS_MAX_PER_ORDER: max_notional=...,
  notional=...`, `CUM_NOTIONAL_EXCEEDS_FREE_BALANCE: free=..., cum_notional=...`, ...):
  metric `code` in lower case, current_value the first value whose name has no max / min /
  free in it, threshold the first that has;
* `TradingState.HALTED`, `... when TradingState.REDUCING ...`: metric `trading_state`,
  current_value 2 (halted) or 1 (reducing), threshold 0;
* anything else: metric `order_denied`, current_value the order's quantity (0 if unknown),
  threshold 0.

Trading states as numbers: 0 ACTIVE, 1 REDUCING, 2 HALTED; the threshold 0 means "anything
above restricts trading". Severity: HALTED critical, REDUCING high, ACTIVE low; a denied
order is high.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tidewire.sources.nautilus.values import iso_of_ns, number, put, text

__all__ = [
    "PRIORITY_OF_SEVERITY",
    "Denial",
    "TradingStateLevel",
    "denial_data",
    "parse_denial",
    "trading_state",
    "trading_state_data",
]

Raw = dict[str, Any]

PRIORITY_OF_SEVERITY = {"low": 2, "medium": 2, "high": 3, "critical": 4}

_QUANTITY = re.compile(
    r"quantity (?P<value>-?[\d.]+) invalid \((?P<op>[<>]) (?:maximum|minimum) trade size of "
    r"(?P<limit>-?[\d.]+)\)"
)
_CODED = re.compile(r"^(?P<code>[A-Z][A-Z_]+): (?P<rest>.*)$")
_PAIR = re.compile(r"(?P<name>[a-z_]+)=(?P<value>-?[\d_.,]+)")
_LIMIT_WORDS = ("max", "min", "free")


@dataclass(frozen=True, slots=True)
class TradingStateLevel:
    level: int
    severity: str
    text: str


_STATES = {
    "ACTIVE": TradingStateLevel(0, "low", "trading is active"),
    "REDUCING": TradingStateLevel(1, "high", "trading is reducing only"),
    "HALTED": TradingStateLevel(2, "critical", "trading is halted"),
}


def trading_state(state: str) -> TradingStateLevel:
    """Level, severity and wording of a Nautilus TradingState name."""
    return _STATES.get(state.upper(), TradingStateLevel(0, "medium", f"trading state {state}"))


@dataclass(frozen=True, slots=True)
class Denial:
    """What a denial reason says, as risk_alert fields."""

    metric: str
    current_value: Decimal
    threshold: Decimal


def parse_denial(reason: str, quantity: Decimal | None) -> Denial:
    """Metric, offending value and limit of an OrderDenied reason (see the module's table)."""
    match = _QUANTITY.search(reason)
    if match is not None:
        value, limit = number(match["value"]), number(match["limit"])
        if value is not None and limit is not None:
            return Denial("order_quantity", value, limit)
    if "TradingState." in reason:
        state = reason.rsplit("TradingState.", 1)[1].split()[0].strip(".,;")
        return Denial("trading_state", Decimal(trading_state(state).level), Decimal(0))
    coded = _CODED.match(reason)
    if coded is not None:
        current: Decimal | None = None
        limit = None
        for pair in _PAIR.finditer(coded["rest"]):
            value = number(pair["value"].replace(",", "").rstrip("."))
            if value is None:
                continue
            if any(word in pair["name"] for word in _LIMIT_WORDS):
                limit = value if limit is None else limit
            elif current is None:
                current = value
        if current is not None and limit is not None:
            return Denial(coded["code"].lower(), current, limit)
    return Denial("order_denied", quantity if quantity is not None else Decimal(0), Decimal(0))


def denial_data(payload: Raw, quantity: Decimal | None, ts_event: int) -> Raw:
    """The `risk_alert` data of an OrderDenied (`quantity`: the order's, if known)."""
    reason = text(payload.get("reason")) or "order denied"
    order_id = text(payload.get("client_order_id"))
    denial = parse_denial(reason, quantity)
    data: Raw = {
        "metric": denial.metric,
        "current_value": denial.current_value,
        "threshold": denial.threshold,
        "timestamp": iso_of_ns(ts_event),
        "message": f"order {order_id} denied: {reason}",
        "reason": reason,
    }
    put(data, "order_id", order_id)
    return data


def trading_state_data(payload: Raw, ts_event: int) -> tuple[TradingStateLevel, Raw] | None:
    """Level and `risk_alert` data of a TradingStateChanged; None without a state."""
    state = text(payload.get("state"))
    if state is None:
        return None
    level = trading_state(state)
    trader = text(payload.get("trader_id"))
    data: Raw = {
        "metric": "trading_state",
        "current_value": Decimal(level.level),
        "threshold": Decimal(0),
        "timestamp": iso_of_ns(ts_event),
        "message": f"{level.text} ({trader or 'trader'} risk engine)",
        "state": state,
    }
    put(data, "trader_id", trader)
    return level, data
