"""A NautilusTrader strategy that produces every event Tidewire maps, plus synthetic quotes.

Shared by `nautilus_backtest.py` (a BacktestEngine, fast and deterministic) and
`nautilus_node.py` (a live TradingNode). Needs `nautilus_trader` (the `nautilus` extra).

`DeskExerciser` runs a fixed cycle counted in quote ticks, so a backtest produces the same
events every time:

| tick of the cycle | action | Nautilus events |
|---|---|---|
| 5 | resting buy limit far below the market | Initialized, Submitted, Accepted |
| 10 | move it (modify price) | PendingUpdate, Updated |
| 15 | cancel it | PendingCancel, Canceled |
| 20 | market buy larger than the quoted size | Filled (partial, then filled), PositionOpened |
| 25 | market buy, adds to the position | Filled, PositionChanged |
| 30 | market sell of the whole position | Filled, PositionClosed |
| 35 | market order above the instrument's max quantity | Denied (risk engine) |
| 40 | post-only buy limit that would cross the spread | Rejected (venue) |
| 45 | halt trading; an order is then denied | TradingStateChanged HALTED, Denied |
| 50 | trading active again | TradingStateChanged ACTIVE |
| 51 | GTD buy limit far below the market, expiring after 3 s | Accepted, then Expired |
| 52 | emulated buy stop at the bid (released at once) | Emulated, Released, Filled |
| 53 | buy stop-limit just above the ask | Accepted (Triggered, Filled if the ask gets there) |
| 55 | move its trigger into the market | PendingUpdate, ModifyRejected |
| 58 | cancel it if still open | PendingCancel, Canceled |

Account states follow every fill; component state changes come from the kernel.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import OrderSide, TimeInForce, TradingState, TriggerType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.model.orders import LimitOrder, StopLimitOrder
from nautilus_trader.risk.engine import RiskEngine
from nautilus_trader.trading.strategy import Strategy

CYCLE_TICKS = 60
QUOTE_SIZE = 1_000_000
"""Size quoted on each side: an order above it fills in two parts in a backtest."""


class DeskExerciserConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    trade_size: Decimal = Decimal(100_000)
    cycles: int | None = None
    """Stop acting after this many cycles (None: forever)."""


class DeskExerciser(Strategy):
    """Places, moves and cancels resting orders, trades, and provokes denials and rejections."""

    def __init__(self, config: DeskExerciserConfig) -> None:
        super().__init__(config)
        self.instrument: Instrument | None = None
        self.risk_engine: RiskEngine | None = None
        self.ticks = 0
        self.resting: LimitOrder | None = None
        self.stop_limit: StopLimitOrder | None = None
        self.cfg = config

    def attach_risk_engine(self, risk_engine: RiskEngine) -> None:
        """The kernel's risk engine, whose trading state this strategy flips at ticks 45/50."""
        self.risk_engine = risk_engine

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.cfg.instrument_id)
        if self.instrument is None:
            self.log.error(f"no instrument {self.cfg.instrument_id}")
            self.stop()
            return
        self.subscribe_quote_ticks(self.cfg.instrument_id)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self.ticks += 1
        cycle, step = divmod(self.ticks, CYCLE_TICKS)
        if self.cfg.cycles is not None and cycle >= self.cfg.cycles:
            return
        action = {
            5: self._rest,
            10: self._move,
            15: self._cancel,
            20: self._buy_big,
            25: self._buy_more,
            30: self._flatten,
            35: self._too_big,
            40: self._crossing_post_only,
            45: self._halt,
            50: self._resume,
            51: self._expiring,
            52: self._emulated_stop,
            53: self._stop_limit,
            55: self._move_trigger_into_market,
            58: self._cancel_stop_limit,
        }.get(step)
        if action is not None:
            action(tick)

    # ------------------------------------------------------------------ actions

    def _rest(self, tick: QuoteTick) -> None:
        price = self._price(tick.bid_price.as_double() * 0.99)
        self.resting = self.order_factory.limit(
            self.cfg.instrument_id, OrderSide.BUY, self._qty(self.cfg.trade_size), price
        )
        self.submit_order(self.resting)

    def _move(self, tick: QuoteTick) -> None:
        if self.resting is not None and self.resting.is_open:
            self.modify_order(self.resting, price=self._price(tick.bid_price.as_double() * 0.995))

    def _cancel(self, tick: QuoteTick) -> None:
        if self.resting is not None and self.resting.is_open:
            self.cancel_order(self.resting)
        self.resting = None

    def _buy_big(self, tick: QuoteTick) -> None:
        self._market(OrderSide.BUY, Decimal(QUOTE_SIZE) + self.cfg.trade_size)

    def _buy_more(self, tick: QuoteTick) -> None:
        self._market(OrderSide.BUY, self.cfg.trade_size)

    def _flatten(self, tick: QuoteTick) -> None:
        own = self.cache.positions_open(instrument_id=self.cfg.instrument_id, strategy_id=self.id)
        net = sum((position.signed_decimal_qty() for position in own), Decimal(0))
        if net > 0:
            self._market(OrderSide.SELL, Decimal(net))
        elif net < 0:
            self._market(OrderSide.BUY, Decimal(-net))

    def _too_big(self, tick: QuoteTick) -> None:
        assert self.instrument is not None
        maximum = self.instrument.max_quantity
        limit = maximum.as_decimal() if maximum is not None else Decimal(10**9)
        self._market(OrderSide.BUY, limit * 2)

    def _crossing_post_only(self, tick: QuoteTick) -> None:
        order = self.order_factory.limit(
            self.cfg.instrument_id,
            OrderSide.BUY,
            self._qty(self.cfg.trade_size),
            self._price(tick.ask_price.as_double() * 1.001),
            time_in_force=TimeInForce.GTC,
            post_only=True,
        )
        self.submit_order(order)

    def _halt(self, tick: QuoteTick) -> None:
        if self.risk_engine is not None:
            self.risk_engine.set_trading_state(TradingState.HALTED)
            self._market(OrderSide.BUY, self.cfg.trade_size)  # denied: trading is halted

    def _resume(self, tick: QuoteTick) -> None:
        if self.risk_engine is not None:
            self.risk_engine.set_trading_state(TradingState.ACTIVE)

    def _expiring(self, tick: QuoteTick) -> None:
        order = self.order_factory.limit(
            self.cfg.instrument_id,
            OrderSide.BUY,
            self._qty(self.cfg.trade_size),
            self._price(tick.bid_price.as_double() * 0.98),
            time_in_force=TimeInForce.GTD,
            expire_time=self.clock.utc_now() + timedelta(seconds=3),
        )
        self.submit_order(order)

    def _emulated_stop(self, tick: QuoteTick) -> None:
        order = self.order_factory.stop_market(
            self.cfg.instrument_id,
            OrderSide.BUY,
            self._qty(self.cfg.trade_size),
            trigger_price=tick.bid_price,
            emulation_trigger=TriggerType.BID_ASK,
        )
        self.submit_order(order)

    def _stop_limit(self, tick: QuoteTick) -> None:
        assert self.instrument is not None
        increment = self.instrument.price_increment.as_double()
        self.stop_limit = self.order_factory.stop_limit(
            self.cfg.instrument_id,
            OrderSide.BUY,
            self._qty(self.cfg.trade_size),
            price=self._price(tick.ask_price.as_double() + 5 * increment),
            trigger_price=self._price(tick.ask_price.as_double() + increment),
        )
        self.submit_order(self.stop_limit)

    def _move_trigger_into_market(self, tick: QuoteTick) -> None:
        order = self.stop_limit
        if order is not None and order.is_open and not order.is_triggered:
            self.modify_order(order, trigger_price=tick.bid_price)  # venue refuses

    def _cancel_stop_limit(self, tick: QuoteTick) -> None:
        if self.stop_limit is not None and self.stop_limit.is_open:
            self.cancel_order(self.stop_limit)
        self.stop_limit = None

    # ------------------------------------------------------------------ helpers

    def _market(self, side: OrderSide, quantity: Decimal) -> None:
        order = self.order_factory.market(self.cfg.instrument_id, side, self._qty(quantity))
        self.submit_order(order)

    def _qty(self, value: Decimal) -> Quantity:
        assert self.instrument is not None
        return Quantity(value, self.instrument.size_precision)

    def _price(self, value: float) -> Price:
        assert self.instrument is not None
        return self.instrument.make_price(value)

    def on_stop(self) -> None:
        self.cancel_all_orders(self.cfg.instrument_id)
        self.close_all_positions(self.cfg.instrument_id)


def random_walk(
    start: float, count: int | None, seed: int, precision: int = 5, spread_ticks: int = 2
) -> Iterator[tuple[float, float]]:
    """(bid, ask) pairs of a random walk around `start`; endless when `count` is None."""
    rng = random.Random(seed)
    tick = 10.0**-precision
    mid = start
    index = 0
    while count is None or index < count:
        # A slow sine plus noise: EMA crossings happen every few dozen bars.
        mid += rng.gauss(0, 2 * tick) + math.sin(index / 40) * tick
        half = spread_ticks * tick / 2
        yield round(mid - half, precision), round(mid + half, precision)
        index += 1
