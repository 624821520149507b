"""Order state from order events: statuses, partial fills, forgetting final orders."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tidewire.sources.nautilus.orders import OrderTracker, trade_data, trade_state


def init(order_id: str = "O-1", **extra: Any) -> dict[str, Any]:
    return {
        "type": "OrderInitialized",
        "trader_id": "TRADER-1",
        "ts_event": "1700000000000000000",
        "client_order_id": order_id,
        "instrument_id": "AUD/USD.SIM",
        "strategy_id": "S-1",
        "order_side": "SELL",
        "order_type": "STOP_LIMIT",
        "quantity": "300",
        "time_in_force": "GTC",
        "options": {"price": "0.70000", "trigger_price": "0.70010"},
        **extra,
    }


def event(kind: str, order_id: str = "O-1", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "client_order_id": order_id, **fields}


def fill(qty: str, px: str, order_id: str = "O-1") -> dict[str, Any]:
    return event(
        "OrderFilled",
        order_id,
        last_qty=qty,
        last_px=px,
        order_side="SELL",
        trade_id=f"T-{qty}",
        instrument_id="AUD/USD.SIM",
        commission="0.01 USD",
        liquidity_side="MAKER",
    )


def test_stop_limit_lifecycle_with_partial_fills() -> None:
    tracker = OrderTracker()
    state = tracker.apply(init())
    assert state is not None
    assert (state.side, state.order_type, state.status) == ("sell", "stop_limit", "pending")
    assert state.price == Decimal("0.70000") and state.trigger_price == Decimal("0.70010")
    assert state.trader_id == "TRADER-1"
    data = state.data()
    assert data["remaining_quantity"] == Decimal(300) and data["filled_quantity"] == 0
    assert data["order_time"] == "2023-11-14T22:13:20.000000Z"
    assert not {"order_id", "symbol", "status", "order_status"} & set(data)  # top level
    tracker.apply(event("OrderSubmitted", account_id="SIM-001"))
    tracker.apply(event("OrderAccepted", venue_order_id="V-1"))
    state = tracker.apply(event("OrderTriggered"))
    assert state is not None and state.status == "open" and state.venue_order_id == "V-1"
    state = tracker.apply(fill("100", "0.70000"))
    assert state is not None and state.status == "partial"
    assert state.data()["remaining_quantity"] == Decimal(200)
    state = tracker.apply(event("OrderUpdated", quantity="250", price="0.70001"))
    assert state is not None and state.quantity == Decimal(250) and state.status == "partial"
    state = tracker.apply(fill("150", "0.70003"))
    assert state is not None and state.status == "filled"
    assert state.avg_fill_price == (Decimal("70.000") + Decimal("105.0045")) / 250
    assert state.account_id == "SIM-001"
    assert "O-1" not in tracker.orders  # final: forgotten
    assert tracker.apply(event("OrderCancelRejected", reason="already filled")) is None
    assert tracker.unknown_events == 0  # a late event for a final order is not "unknown"


def test_final_statuses() -> None:
    for kind, status in (
        ("OrderDenied", "denied"),
        ("OrderRejected", "rejected"),
        ("OrderCanceled", "cancelled"),
        ("OrderExpired", "expired"),
    ):
        tracker = OrderTracker()
        tracker.apply(init())
        state = tracker.apply(event(kind, reason="because"))
        assert state is not None and state.status == status
        data = state.data()
        if kind in ("OrderDenied", "OrderRejected"):
            assert data["reject_reason"] == "because" and "cancel_reason" not in data
        else:
            assert data["cancel_reason"] == "because" and "reject_reason" not in data


def test_pending_actions_and_refusals() -> None:
    tracker = OrderTracker()
    tracker.apply(init())
    tracker.apply(event("OrderAccepted"))
    state = tracker.apply(event("OrderPendingCancel"))
    assert state is not None and state.data()["pending_action"] == "cancel"
    state = tracker.apply(event("OrderCancelRejected", reason="too late"))
    assert state is not None and state.status == "open"
    data = state.data()
    assert data["cancel_reject_reason"] == "too late" and "pending_action" not in data
    assert "cancel_reason" not in data and "reject_reason" not in data
    state = tracker.apply(event("OrderModifyRejected", reason="in the market"))
    assert state is not None and state.data()["modify_reject_reason"] == "in the market"
    assert "cancel_reject_reason" not in state.data()  # that was the previous event's
    state = tracker.apply(event("OrderUpdated", quantity="200"))
    assert state is not None and "modify_reject_reason" not in state.data()


def test_emulated_and_released() -> None:
    tracker = OrderTracker()
    tracker.apply(init())
    state = tracker.apply(event("OrderEmulated"))
    assert state is not None and state.data()["emulated"] is True
    state = tracker.apply(event("OrderReleased", released_price="0.70020"))
    assert state is not None and state.data()["released_price"] == Decimal("0.70020")
    assert state.status == "pending"


def test_unknown_orders_are_counted() -> None:
    tracker = OrderTracker()
    assert tracker.apply(event("OrderAccepted", "O-9")) is None
    assert tracker.unknown_events == 1
    assert tracker.apply({"type": "OrderAccepted"}) is None  # no id at all


def test_trade_data() -> None:
    data = trade_data(fill("100", "0.70000"))
    assert data is not None
    assert data["quantity"] == Decimal(100) and data["price"] == Decimal("0.70000")
    assert data["commission"] == Decimal("0.01") and data["commission_currency"] == "USD"
    assert data["liquidity_side"] == "maker" and data["side"] == "sell"
    assert trade_data({"type": "OrderFilled"}) is None


def test_trade_state_is_the_order_after_the_fill() -> None:
    tracker = OrderTracker()
    tracker.apply(init())
    first, second = fill("100", "0.70000"), fill("200", "0.70003")
    trade = trade_data(first)
    assert trade is not None
    order = tracker.orders["O-1"]
    # The fills copy read first: the fill is not in the order yet.
    before = trade_state(order, trade, applied=False)
    assert before == {
        "status": "partial",
        "filled_quantity": Decimal(100),
        "remaining_quantity": Decimal(200),
        "avg_fill_price": Decimal("0.70000"),
    }
    tracker.apply(first)
    assert trade_state(order, trade, applied=True) == before
    last = trade_data(second)
    assert last is not None
    after = trade_state(order, last, applied=False)
    assert after["status"] == "filled" and after["remaining_quantity"] == 0
    assert after["avg_fill_price"] == (Decimal("70.000") + Decimal("140.006")) / 300
    assert trade_state(None, last, applied=False) == {"status": "filled"}
