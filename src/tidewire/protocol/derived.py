"""Required fields of the original shapes that the gateway fills when a producer leaves
them out, because the message already says them (docs/protocol.md, "Derived fields").

Arithmetic is exact: numbers go through `Decimal(str(x))`, and the result is a Decimal when
an input was one, an int when every input was an int and the result is whole, else a float.
Pure: dicts in, dicts changed in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

Fields = dict[str, Any]
_NUMBER = (int, float, Decimal)


def _exact(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        return None
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def compute(fn: Callable[..., Decimal], *values: Any) -> Any:
    """`fn` of `values` exactly, typed like its inputs (module docstring); None when an
    input is not a finite number or `fn` fails (a division by zero)."""
    exact = [_exact(v) for v in values]
    if any(v is None for v in exact):
        return None
    try:
        result = fn(*exact)
    except (ArithmeticError, InvalidOperation):
        return None
    if not result.is_finite():
        return None
    if any(isinstance(v, Decimal) for v in values):
        return result
    if all(isinstance(v, int) for v in values) and result == result.to_integral_value():
        return int(result)
    number = float(result)
    # Past float's range the JSON encoder would write null for a required number.
    return number if math.isfinite(number) else None


def _set(data: Fields, name: str, value: Any) -> None:
    if value is not None and data.get(name) is None:
        data[name] = value


def fill(message_type: str, top: Fields, data: Fields, timestamp: str, message_id: str) -> None:
    """Fill the derivable required fields of one message (see the module docstring)."""
    data.setdefault("timestamp", timestamp)
    if message_type == "order_update":
        _set(
            data,
            "remaining_quantity",
            compute(lambda q, f: q - f, data.get("quantity"), data.get("filled_quantity")),
        )
    elif message_type == "trade_updates":
        if data.get("status") is None:
            data["status"] = _trade_status(top, data)
    elif message_type == "position_update":
        if top.get("position_side") is None:
            quantity = _exact(data.get("quantity"))
            if quantity is not None:
                top["position_side"] = (
                    "long" if quantity > 0 else "short" if quantity < 0 else "flat"
                )
    elif message_type == "performance_update":
        # returns = pnl / the value it was made on (total value before the P&L).
        _set(
            data,
            "returns",
            compute(lambda p, v: p / (v - p), data.get("pnl"), data.get("total_value")),
        )
    elif message_type == "breach_alert":
        _set(
            data,
            "breach_percentage",
            compute(
                lambda c, lim: 100 * (c - lim) / abs(lim),
                data.get("current_value"),
                data.get("limit_value"),
            ),
        )
    elif message_type == "risk_alert":
        if data.get("message") is None and "metric" in data:
            data["message"] = (
                f"{data['metric']} at {data.get('current_value')} crossed its threshold "
                f"{data.get('threshold')}"
            )
        if top.get("risk_type") is None and isinstance(data.get("metric"), str):
            top["risk_type"] = data["metric"]
    elif message_type == "execution_analytics":
        _set(
            data,
            "slippage",
            compute(lambda f, b: f - b, data.get("fill_price"), data.get("benchmark_price")),
        )
        _set(
            data,
            "slippage_bps",
            compute(lambda s, b: s / b * 10_000, data.get("slippage"), data.get("benchmark_price")),
        )
    elif message_type == "strategy_performance":
        if top.get("strategy_name") is None and top.get("strategy_id") is not None:
            top["strategy_name"] = top["strategy_id"]
    elif message_type == "event":
        top.setdefault("event_id", message_id)


def _trade_status(top: Fields, data: Fields) -> str:
    """A trade's order status when the producer gave none: partial when its remaining
    quantity is above 0 or its `trade_type` is `partial_fill`, else filled (a trade is a
    fill)."""
    remaining = _exact(data.get("remaining_quantity"))
    if (remaining is not None and remaining > 0) or top.get("trade_type") == "partial_fill":
        return "partial"
    return "filled"
