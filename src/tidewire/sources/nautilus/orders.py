"""Order state from Nautilus order events, and the `order_update` / `trade_updates` they become.

Nautilus order events are deltas: only `OrderInitialized` carries the side, type, quantity
and price; `OrderAccepted`, `OrderCanceled`... carry just the ids. A Tidewire `order_update`
is the order's whole state after the event, so `OrderTracker` keeps each live order's state,
applies every event to it, and forgets the order once it reaches a final status. Pure.

`OrderState.data()` is the canonical `order_update` data (the mapper puts `order_id`,
`symbol`, `order_status` and `user_id` at the top level); `trade_data` and `trade_state`
make the canonical `trade_updates` data, the latter the order's status and quantities
after the fill.

Status after each event (Tidewire's statuses: pending, open, partial, filled, cancelled,
rejected, denied, expired):

* OrderInitialized, OrderEmulated, OrderReleased, OrderSubmitted: pending;
* OrderAccepted, OrderTriggered: open (partial once something filled);
* OrderPendingUpdate, OrderPendingCancel: unchanged, `pending_action` says what is in flight;
* OrderUpdated, OrderModifyRejected, OrderCancelRejected: unchanged (new quantity / price;
  the refusal's reason as `modify_reject_reason` / `cancel_reject_reason`, on the update of
  that event only: the order itself was not rejected);
* OrderFilled: partial, or filled when the filled quantity reaches the order's quantity;
* OrderDenied, OrderRejected, OrderCanceled, OrderExpired: denied, rejected, cancelled,
  expired; Nautilus's `reason` is the `reject_reason` of the first two (and the
  `cancel_reason` of the others, when they have one).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from tidewire.sources.nautilus.values import iso_of_ns, lower, money, number, parse_ns, side

__all__ = [
    "FINAL_STATUSES",
    "ORDER_EVENTS",
    "OrderState",
    "OrderTracker",
    "trade_data",
    "trade_state",
]

Raw = dict[str, Any]
_T = TypeVar("_T")

ORDER_EVENTS = frozenset(
    {
        "OrderInitialized",
        "OrderDenied",
        "OrderEmulated",
        "OrderReleased",
        "OrderSubmitted",
        "OrderAccepted",
        "OrderRejected",
        "OrderCanceled",
        "OrderExpired",
        "OrderTriggered",
        "OrderPendingUpdate",
        "OrderPendingCancel",
        "OrderModifyRejected",
        "OrderCancelRejected",
        "OrderUpdated",
        "OrderFilled",
    }
)
FINAL_STATUSES = frozenset({"filled", "cancelled", "rejected", "denied", "expired"})
_FINAL_OF_EVENT = {
    "OrderDenied": "denied",
    "OrderRejected": "rejected",
    "OrderCanceled": "cancelled",
    "OrderExpired": "expired",
}
_PENDING_ACTION = {"OrderPendingUpdate": "update", "OrderPendingCancel": "cancel"}
_REFUSAL = {
    "OrderModifyRejected": "modify_reject_reason",
    "OrderCancelRejected": "cancel_reject_reason",
}
_REJECTED = frozenset({"denied", "rejected"})
FORGOTTEN_KEPT = 10_000
"""Final orders remembered (ids only), so a late event for one is not counted as unknown."""


@dataclass(slots=True)
class OrderState:
    """What Tidewire knows about one order after the events seen so far."""

    order_id: str
    """Nautilus `client_order_id`: stable from initialisation on, unlike the venue's id."""
    instrument_id: str
    side: str
    """`buy` or `sell`."""
    order_type: str
    """Nautilus OrderType in lower case: `market`, `limit`, `stop_market`, ..."""
    quantity: Decimal
    strategy_id: str | None = None
    trader_id: str | None = None
    """The Nautilus trader: the `user_id` of the order's messages."""
    order_time: int | None = None
    """ts_event (else ts_init) of OrderInitialized, in ns."""
    time_in_force: str | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    account_id: str | None = None
    """Known from OrderSubmitted on; None for an order denied before submission."""
    venue_order_id: str | None = None
    filled: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    """Sum of fill quantity x price, for the average fill price."""
    status: str = "pending"
    reject_reason: str | None = None
    cancel_reason: str | None = None
    refusal: tuple[str, str] | None = None
    """(field, reason) of a refused modify or cancel, for the update of that event only."""
    pending_action: str | None = None
    portfolio_id: str | None = None
    """The portfolio its messages go to, fixed at the first event (see mapping)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def avg_fill_price(self) -> Decimal | None:
        return self.notional / self.filled if self.filled else None

    @property
    def remaining(self) -> Decimal:
        return max(self.quantity - self.filled, Decimal(0))

    def data(self) -> Raw:
        """The `order_update` data for this state (`order_id`, `symbol`, `order_status`
        belong at the top level)."""
        data: Raw = {
            "side": self.side,
            "order_type": self.order_type,
            "quantity": self.quantity,
            "filled_quantity": self.filled,
            "remaining_quantity": self.remaining,
        }
        optional = {
            "price": self.price,
            "trigger_price": self.trigger_price,
            "avg_fill_price": self.avg_fill_price,
            "reject_reason": self.reject_reason,
            "cancel_reason": self.cancel_reason,
            "time_in_force": self.time_in_force,
            "order_time": iso_of_ns(self.order_time) if self.order_time else None,
            "venue_order_id": self.venue_order_id,
            "account_id": self.account_id,
            "pending_action": self.pending_action,
        }
        data.update((name, value) for name, value in optional.items() if value is not None)
        if self.refusal is not None:
            data[self.refusal[0]] = self.refusal[1]
        data.update(self.extra)
        return data


class OrderTracker:
    """Applies order events to order states; `apply` returns the state after the event."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderState] = {}
        """Orders not yet in a final status, by client_order_id."""
        self.unknown_events = 0
        """Events for orders whose OrderInitialized was never seen (stream trimmed)."""
        self._final: OrderedDict[str, None] = OrderedDict()

    def apply(self, event: Raw) -> OrderState | None:
        """Update the order `event` belongs to. None when the order is unknown.

        An order reaching a final status is returned one last time, then forgotten.
        """
        kind = event.get("type")
        order_id = event.get("client_order_id")
        if not isinstance(order_id, str):
            return None
        if kind == "OrderInitialized":
            state = self._initialized(event, order_id)
            if state is None:
                return None
            self.orders[order_id] = state
            return state
        state = self.orders.get(order_id)
        if state is None:
            if order_id not in self._final:
                self.unknown_events += 1
            return None
        self._apply(state, kind, event)
        if state.status in FINAL_STATUSES:
            del self.orders[order_id]
            self._final[order_id] = None
            while len(self._final) > FORGOTTEN_KEPT:
                self._final.popitem(last=False)
        return state

    def _initialized(self, event: Raw, order_id: str) -> OrderState | None:
        order_side = side(event.get("order_side"))
        order_type = lower(event.get("order_type"))
        quantity = number(event.get("quantity"))
        instrument = event.get("instrument_id")
        if order_side is None or order_type is None or quantity is None:
            return None
        if not isinstance(instrument, str):
            return None
        options = event.get("options")
        options = options if isinstance(options, dict) else {}
        state = OrderState(
            order_id=order_id,
            instrument_id=instrument,
            side=order_side,
            order_type=order_type,
            quantity=quantity,
            strategy_id=_str(event.get("strategy_id")),
            trader_id=_str(event.get("trader_id")),
            order_time=parse_ns(event.get("ts_event")) or parse_ns(event.get("ts_init")),
            time_in_force=lower(event.get("time_in_force")),
            price=number(options.get("price", event.get("price"))),
            trigger_price=number(options.get("trigger_price", event.get("trigger_price"))),
        )
        if event.get("post_only"):
            state.extra["post_only"] = True
        if event.get("reduce_only"):
            state.extra["reduce_only"] = True
        return state

    def _apply(self, state: OrderState, kind: Any, event: Raw) -> None:
        account = _str(event.get("account_id"))
        if account is not None:
            state.account_id = account
        venue_order_id = _str(event.get("venue_order_id"))
        if venue_order_id is not None:
            state.venue_order_id = venue_order_id
        state.refusal = None
        if kind in _PENDING_ACTION:
            state.pending_action = _PENDING_ACTION[kind]
            return
        state.pending_action = None
        if kind in _FINAL_OF_EVENT:
            state.status = _FINAL_OF_EVENT[kind]
            reason = _str(event.get("reason"))
            if reason is not None and state.status in _REJECTED:
                state.reject_reason = reason
            elif reason is not None:
                state.cancel_reason = reason
        elif kind in ("OrderAccepted", "OrderTriggered"):
            state.status = "partial" if state.filled else "open"
        elif kind == "OrderReleased":
            released = number(event.get("released_price"))
            if released is not None:
                state.extra["released_price"] = released
        elif kind == "OrderEmulated":
            state.extra["emulated"] = True
        elif kind == "OrderUpdated":
            state.quantity = _or(number(event.get("quantity")), state.quantity)
            state.price = _or(number(event.get("price")), state.price)
            state.trigger_price = _or(number(event.get("trigger_price")), state.trigger_price)
        elif kind in _REFUSAL:
            state.refusal = (_REFUSAL[kind], _str(event.get("reason")) or "refused")
        elif kind == "OrderFilled":
            quantity = _or(number(event.get("last_qty")), Decimal(0))
            price = _or(number(event.get("last_px")), Decimal(0))
            state.filled += quantity
            state.notional += quantity * price
            state.status = "filled" if state.filled >= state.quantity else "partial"


def trade_data(event: Raw) -> Raw | None:
    """The `trade_updates` data an OrderFilled event gives by itself (without the order's
    state: see `trade_state`); None when it lacks a field."""
    fill_side = side(event.get("order_side"))
    quantity = number(event.get("last_qty"))
    price = number(event.get("last_px"))
    trade_id = _str(event.get("trade_id"))
    order_id = _str(event.get("client_order_id"))
    instrument = _str(event.get("instrument_id"))
    if None in (fill_side, quantity, price, trade_id, order_id, instrument):
        return None
    commission, commission_currency = money(event.get("commission"))
    data: Raw = {
        "trade_id": trade_id,
        "order_id": order_id,
        "symbol": instrument,
        "side": fill_side,
        "quantity": quantity,
        "price": price,
    }
    optional = {
        "commission": commission,
        "commission_currency": commission_currency,
        "currency": _str(event.get("currency")),
        "liquidity_side": lower(event.get("liquidity_side")),
        "order_type": lower(event.get("order_type")),
        "venue_order_id": _str(event.get("venue_order_id")),
        "position_id": _str(event.get("position_id")),
        "account_id": _str(event.get("account_id")),
    }
    data.update((name, value) for name, value in optional.items() if value is not None)
    return data


def trade_state(order: OrderState | None, trade: Raw, applied: bool) -> Raw:
    """The order's `status`, `filled_quantity`, `remaining_quantity` and `avg_fill_price`
    after the fill `trade` (from `trade_data`). `applied`: whether `order` already includes
    the fill (its OrderFilled on `events.order.*` came first), else it is added here.

    An order never seen initialised (its stream was trimmed) gives status `filled` only,
    the gateway's own default for a trade.
    """
    if order is None:
        return {"status": "filled"}
    filled, notional = order.filled, order.notional
    if not applied:
        filled += trade["quantity"]
        notional += trade["quantity"] * trade["price"]
    data: Raw = {
        "status": "filled" if filled >= order.quantity else "partial",
        "filled_quantity": filled,
        "remaining_quantity": max(order.quantity - filled, Decimal(0)),
    }
    if filled:
        data["avg_fill_price"] = notional / filled
    return data


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
