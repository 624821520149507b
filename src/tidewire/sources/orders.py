"""The simulated orders and the messages they give: order updates, trades, execution analytics.

`MarketModel` moves an `Order` along its lifecycle; the functions here turn its state into
canonical messages (`order_update`, `trade_updates`, `execution_analytics`), returned as
(type, data, top-level fields) for the model to emit. Pure: no clock, no randomness.

* An order update carries `order_id`, `symbol` and `order_status` at the top level and the
  order's quantities (`remaining_quantity` included) in `data`; the simulator's one reason
  is a `reject_reason` or a `cancel_reason` depending on the status.
* A trade is one fill: `status` is the order's status after it, `trade_type` says whether
  it completed the order (`fill`) or not (`partial_fill`); its `execution_id` is the trade
  id, which its execution analytics carry too.
* Execution analytics measure the fill against the mid when the order was created
  (`benchmark_price`): `slippage = fill_price - benchmark_price` and `slippage_bps` as the
  gateway derives them (signed, not side-adjusted), plus `execution_shortfall`, the cost in
  currency (positive when bought above or sold below the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tidewire.sources.accounting import Strategy
from tidewire.sources.instruments import Instrument, decimals, round_step, where

__all__ = ["Message", "Order", "Quoted", "fill_messages", "order_message"]

Raw = dict[str, Any]
Message = tuple[str, Raw, Raw]
"""(message type, data, top-level fields) of one message."""


class Quoted(Protocol):
    """An instrument's current quote, as orders read it."""

    @property
    def inst(self) -> Instrument: ...

    @property
    def bid(self) -> float: ...

    @property
    def ask(self) -> float: ...

    @property
    def mid(self) -> float: ...


@dataclass(slots=True)
class Order:
    """One simulated order and where it stands."""

    order_id: str
    strategy: Strategy
    market: Quoted
    side: str
    quantity: float
    limit: float | None
    """Limit price; None for a market order."""
    arrival_mid: float
    created_at: float
    """Simulated seconds at creation."""
    created: str
    """`order_time`: the timestamp of the step the order was created in."""
    next_at: float
    expires_at: float
    status: str = "pending"
    filled: float = 0.0
    notional: float = 0.0
    resting: bool = False
    """A limit order that was not marketable when it reached the book: its fills are passive."""

    @property
    def avg_fill_price(self) -> float | None:
        if not self.filled:
            return None
        return round(self.notional / self.filled, decimals(self.market.inst.tick) + 4)

    @property
    def remaining(self) -> float:
        return round_step(self.quantity - self.filled, self.market.inst.qty_step)

    def owner(self) -> Raw:
        """Top-level fields naming the order's strategy, portfolio, user and instrument."""
        book = self.strategy.book
        return {"strategy_id": self.strategy.strategy_id, **book.who(), **where(self.market.inst)}


def order_message(order: Order, now: str, reason: str | None = None) -> Message:
    """The `order_update` of `order` as it stands at `now` (`reason`: why it ended)."""
    rejected = order.status == "rejected"
    data: Raw = {
        "side": order.side,
        "order_type": "market" if order.limit is None else "limit",
        "quantity": order.quantity,
        "filled_quantity": order.filled,
        "remaining_quantity": order.remaining,
        "price": order.limit,
        "avg_fill_price": order.avg_fill_price,
        "order_time": order.created,
        "last_update_time": now,
        "reject_reason": reason if rejected else None,
        "cancel_reason": reason if order.status == "cancelled" else None,
    }
    data = {name: value for name, value in data.items() if value is not None}
    top: Raw = {"order_id": order.order_id, "order_status": order.status, **order.owner()}
    if rejected:
        top["priority"] = 3
    return "order_update", data, top


def fill_messages(
    order: Order,
    trade_id: str,
    quantity: float,
    price: float,
    commission: float,
    elapsed: float,
) -> list[Message]:
    """The trade and execution analytics of a fill already applied to `order`, at
    simulated time `elapsed`."""
    inst = order.market.inst
    digits = decimals(inst.tick)
    # The mid can sit half a tick between prices: one more digit keeps it exact enough.
    benchmark = round(order.arrival_mid, digits + 1)
    slippage = round(price - benchmark, digits + 1)
    slippage_bps = round(slippage / benchmark * 1e4, 3)
    trade: Raw = {
        "trade_id": trade_id,
        "order_id": order.order_id,
        "symbol": inst.symbol,
        "side": order.side,
        "quantity": quantity,
        "price": price,
        "status": order.status,
        "filled_quantity": order.filled,
        "remaining_quantity": order.remaining,
        "avg_fill_price": order.avg_fill_price,
        "commission": commission,
        "execution_id": trade_id,
        "venue": inst.venue,
        "slippage_bps": slippage_bps,
        "liquidity": "maker" if order.resting else "taker",
    }
    trade_type = "fill" if order.status == "filled" else "partial_fill"
    sign = 1 if order.side == "buy" else -1
    analytics: Raw = {
        "order_id": order.order_id,
        "fill_price": price,
        "benchmark_price": benchmark,
        "slippage": slippage,
        "slippage_bps": slippage_bps,
        "execution_time_ms": round((elapsed - order.created_at) * 1000, 3),
        "fill_ratio": round(order.filled / order.quantity, 6),
        "execution_shortfall": round(sign * slippage * quantity * inst.multiplier, 2),
    }
    owner = order.owner()
    return [
        ("trade_updates", trade, {"trade_type": trade_type, **owner}),
        ("execution_analytics", analytics, {"execution_id": trade_id, **owner}),
    ]
