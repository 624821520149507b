"""The pure market model behind the built-in simulator: no I/O, no event loop, no sleeping.

`MarketModel.step(dt)` advances simulated time by `dt` seconds and returns the raw producer
messages (plain dicts, as `tidewire.protocol.ingest.build_data_message` takes them) for every
stream of docs/protocol.md. Given a seed and a sequence of `dt`s the output is the same on
every run (timestamps come from the injected clock), so tests step it instead of waiting.

Every message is already in its canonical shape (the original frontend's field names and
placements, `protocol.payloads` and `protocol.shapes`), with every required field set, so
ingest neither renames nor derives anything: `data.timestamp` is the step's time, orders
carry `order_id`, `symbol` and `order_status` at the top level, risk metrics come one
message per `metric_type`. Messages about a portfolio name its owner as `user_id` (see
`tidewire.sources.instruments`: PF-ALPHA alice, PF-BETA bob, PF-GAMMA carol), trades and
orders included.

* Quotes: a log random walk per instrument with a slow pull back to its starting price and a
  hidden trend lasting minutes; spread proportional to the price; prices on the tick. Some
  quotes are followed by a trade tick; one-minute mid bars.
* Orders of a few portfolios' strategies, which read the trend with noise and trade towards
  a target position: pending -> open -> partial* -> filled, or rejected, or cancelled. Each
  fill gives a trade (its `execution_id` is the trade id), execution analytics of that
  execution against the mid at order time, and a position update.
* Positions, P&L, performance, strategy statistics and risk metrics follow the fills exactly;
  risk alerts fire when limits are crossed; engine status, system health, events (each
  with an `event_type` and a unique `event_id`), alerts and system alerts.

This module drives the clock, quotes, orders and fills. The catalogue and portfolios are in
`tidewire.sources.instruments`, position and P&L arithmetic in `.accounting`, the order,
trade and execution messages in `.orders`, and position marks, the periodic status streams
and risk alerts in `.status` (a `StatusReporter`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tidewire.sources.accounting import Book, Position, Strategy, apply_fill
from tidewire.sources.instruments import (
    PORTFOLIOS,
    Instrument,
    decimals,
    pick_instruments,
    round_step,
    where,
)
from tidewire.sources.orders import Order, fill_messages, order_message
from tidewire.sources.status import Raw, StatusReporter

__all__ = ["MarketModel"]

_SECONDS_PER_YEAR = 252 * 6.5 * 3600  # one simulated second is one trading second
_REVERSION_HALF_LIFE = 4 * 3600.0  # keeps prices plausible in a demo left running for days
_TREND_SECONDS = 300.0  # lifetime of the hidden trend
_TREND_STRENGTH = 0.04  # its standard deviation, as a fraction of the per-second volatility
_VIEW_NOISE = 1.0  # noise of a strategy's read of the trend, in trend standard deviations
_MAX_POSITION = 0.15  # largest position a strategy aims for, as a fraction of capital
_BAR_SECONDS = 60.0
_REJECT_REASONS = (
    "insufficient buying power",
    "price outside limit collar",
    "max order quantity exceeded",
    "pre-trade risk check failed: position limit",
)


def _poisson(rng: random.Random, lam: float) -> int:
    """Number of events of a Poisson process with mean `lam` (Knuth; normal when large)."""
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, count, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


@dataclass(slots=True)
class _Market:
    """One instrument's state: the last published quote and the bar being built."""

    inst: Instrument
    log_mid: float
    bid: float = 0.0
    ask: float = 0.0
    last: float = 0.0
    drift: float = 0.0
    """The hidden trend: drift of the log mid per second."""
    updated_at: float = 0.0
    bar: list[float] = field(default_factory=list)
    """open, high, low, close, volume; empty when nothing was quoted since the last bar."""

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


class MarketModel:
    """Deterministic simulated market, portfolios and trading engine. See the module doc."""

    def __init__(
        self,
        seed: int | None = None,
        *,
        symbols: int = 20,
        quotes_per_second: float = 400.0,
        orders_per_second: float = 2.0,
        status_interval: float = 1.0,
        position_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        id_prefix: str | None = None,
    ) -> None:
        """Create the model.

        `symbols`: number of instruments (the catalogue's 21 across asset classes, then
        synthetic equities). `quotes_per_second`: quotes across all symbols per simulated
        second (trade ticks and bars come on top). `orders_per_second`: new orders across all
        strategies. `status_interval`: seconds between performance, strategy, risk metrics,
        engine status and system health updates; `position_interval`: between position marks.
        `clock`: wall time in epoch seconds, read once per step for timestamps.
        `id_prefix`: part of order and trade ids; derived from the seed when omitted.
        """
        if symbols < 1:
            raise ValueError("symbols must be at least 1")
        if quotes_per_second < 0 or orders_per_second < 0:
            raise ValueError("rates must not be negative")
        if status_interval <= 0 or position_interval <= 0:
            raise ValueError("intervals must be positive")
        rng = self._rng = random.Random(seed)
        self._clock = clock
        self._quote_rate, self._order_rate = quotes_per_second, orders_per_second
        self._intervals = {"status": status_interval, "positions": position_interval}
        self._prefix = id_prefix or f"{rng.getrandbits(24):06x}"
        self.instruments: tuple[Instrument, ...] = pick_instruments(symbols, rng)
        """The simulated instruments, in the order they are quoted round-robin."""
        self._markets = [_Market(inst, math.log(inst.price)) for inst in self.instruments]
        for market in self._markets:
            self._requote(market, 0.0)
        self._by_symbol = {market.inst.symbol: market for market in self._markets}
        self._books: list[Book] = []
        self._strategies: list[Strategy] = []
        for spec in PORTFOLIOS:
            prior = round(spec.capital * rng.uniform(-0.01, 0.02), 2)
            book = Book(spec, prior, spec.capital + prior)
            self._books.append(book)
            # Strategies of one portfolio trade disjoint symbols, so a position (kept per
            # portfolio and symbol) belongs to one strategy and carries its strategy_id.
            picked = rng.sample(self._markets, min(len(self._markets), 10))
            for index, strategy_id in enumerate(spec.strategies):
                names = [m.inst.symbol for m in picked[index :: len(spec.strategies)]]
                self._strategies.append(Strategy(strategy_id, book, names))
        self._trading = [strategy for strategy in self._strategies if strategy.symbols]
        self._orders: list[Order] = []
        self.elapsed = 0.0
        """Simulated seconds since the start."""
        self._steps = 0
        self._now = ""
        self._out: list[Raw] = []
        self._cursor = 0
        self._quote_budget = 0.0
        self._counts = {"orders": 0, "fills": 0, "ticks": 0, "events": 0}
        self._due = {"status": 0.0, "positions": position_interval, "bar": _BAR_SECONDS}
        # Occasional events: first ones early so a fresh dashboard shows every stream.
        for name, (low, high) in {
            "event": (3, 15),
            "alert": (10, 30),
            "breach": (25, 60),
            "degrade": (40, 90),
        }.items():
            self._due[name] = rng.uniform(low, high)
        self._status = StatusReporter(self._emit, self._by_symbol, rng, lambda: self._now)

    # ------------------------------------------------------------------ stepping

    def step(self, dt: float) -> list[Raw]:
        """Advance simulated time by `dt` seconds and return the messages produced meanwhile.

        The first call also announces the start (an event and engine status "starting" when
        `dt` is 0). A long `dt` skips missed periodic updates instead of bursting them.
        """
        if dt < 0:
            raise ValueError("dt must not be negative")
        start = self.elapsed
        self.elapsed += dt
        self._now = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._out = []
        if not self._steps:
            names = ", ".join(strategy.strategy_id for strategy in self._trading)
            text = f"{len(self._markets)} instruments; strategies {names}"
            started = {"title": "Simulator started", "description": text, "category": "system"}
            self._emit("event", started, event_type="simulator_started", severity="low")
        self._steps += 1
        self._quotes(start, dt)
        if self._every("bar", _BAR_SECONDS):
            self._bars()
        for _ in range(_poisson(self._rng, self._order_rate * dt) if self._trading else 0):
            self._new_order()
        for order in self._orders:
            if order.next_at <= self.elapsed:
                self._advance(order)
        self._orders = [o for o in self._orders if o.status in ("pending", "open", "partial")]
        if self._every("positions", self._intervals["positions"]):
            for book in self._books:
                for symbol, position in book.positions.items():
                    if position.qty:
                        self._status.position(book, symbol, position)
        if self._every("status", self._intervals["status"]):
            for book in self._books:
                self._status.portfolio(book)
            for strategy in self._strategies:
                self._status.strategy(strategy)
            self._status.engine(
                self.elapsed,
                open_orders=len(self._orders),
                orders=self._counts["orders"],
                fills=self._counts["fills"],
                strategies=len(self._trading),
            )
        self._occasional()
        return self._out

    def _every(self, name: str, interval: float) -> bool:
        if self.elapsed < self._due[name]:
            return False
        self._due[name] = max(self._due[name] + interval, self.elapsed)
        return True

    def _timer(self, name: str, mean: float) -> bool:
        """Occasional events at random times, `mean` seconds apart on average."""
        if self.elapsed < self._due[name]:
            return False
        self._due[name] = self.elapsed + self._rng.expovariate(1 / mean)
        return True

    def _emit(self, kind: str, data: Raw, **top: Any) -> None:
        data.setdefault("timestamp", self._now)
        if kind == "event" and "event_id" not in top:
            self._counts["events"] += 1
            top["event_id"] = f"SIM-{self._prefix}-E{self._counts['events']:07d}"
        raw: Raw = {"type": kind, "timestamp": self._now, "data": data}
        raw.update((name, value) for name, value in top.items() if value is not None)
        self._out.append(raw)

    # ------------------------------------------------------------------ market data

    def _requote(self, market: _Market, seconds: float) -> None:
        """Walk the mid over `seconds` and set a new bid/ask on the tick around it."""
        inst, rng = market.inst, self._rng
        if seconds > 0:
            per_second = inst.volatility / math.sqrt(_SECONDS_PER_YEAR)
            pull = (math.log(inst.price) - market.log_mid) * math.log(2) / _REVERSION_HALF_LIFE
            market.log_mid += (pull + market.drift) * seconds
            market.log_mid += per_second * math.sqrt(seconds) * rng.gauss(0.0, 1.0)
            # The trend is an Ornstein-Uhlenbeck process: it gives strategies something to
            # trade on, so their P&L is more than trading costs.
            keep = math.exp(-seconds / _TREND_SECONDS)
            noise = _TREND_STRENGTH * per_second * math.sqrt(1 - keep * keep)
            market.drift = market.drift * keep + noise * rng.gauss(0.0, 1.0)
        mid = math.exp(market.log_mid)
        half = mid * inst.spread_bps / 2e4 * rng.uniform(0.8, 1.6)
        low = max(1, math.floor((mid - half) / inst.tick + 1e-9))
        high = max(low + 1, math.ceil((mid + half) / inst.tick - 1e-9))
        digits = decimals(inst.tick)
        market.bid, market.ask = round(low * inst.tick, digits), round(high * inst.tick, digits)
        market.last = market.last or round_step(mid, inst.tick)

    def _size(self, inst: Instrument, low: float, high: float) -> float:
        return max(
            inst.qty_step,
            round_step(inst.quote_size * self._rng.uniform(low, high), inst.qty_step),
        )

    def _quotes(self, start: float, dt: float) -> None:
        self._quote_budget += self._quote_rate * dt
        count = int(self._quote_budget)
        self._quote_budget -= count
        rng = self._rng
        for index in range(count):
            # Round-robin over symbols; each quote walks the price over the time since that
            # symbol's previous quote, so volatility does not depend on the quote rate.
            market = self._markets[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._markets)
            at = start + dt * (index + 1) / count
            self._requote(market, at - market.updated_at)
            market.updated_at = at
            inst, mid, bar = market.inst, market.mid, market.bar
            if bar:
                bar[1], bar[2], bar[3] = max(bar[1], mid), min(bar[2], mid), mid
            else:
                market.bar = [mid, mid, mid, mid, 0.0]
            quote = {
                "bid_price": market.bid,
                "ask_price": market.ask,
                "bid_size": self._size(inst, 0.2, 2.0),
                "ask_size": self._size(inst, 0.2, 2.0),
                "last_trade_price": market.last,
            }
            self._emit("market_data", quote, data_type="quote", **where(inst))
            if rng.random() < 0.25:
                buyer = rng.random() < 0.5
                size = self._size(inst, 0.05, 0.6)
                market.last = market.ask if buyer else market.bid
                market.bar[4] += size
                self._counts["ticks"] += 1
                tick = {
                    "price": market.last,
                    "last_trade_size": size,
                    "aggressor_side": "buyer" if buyer else "seller",
                    "trade_id": f"{inst.venue}-{self._counts['ticks']}",
                }
                self._emit("market_data", tick, data_type="trade", **where(inst))

    def _bars(self) -> None:
        for market in self._markets:
            inst = market.inst
            if market.bar:
                digits = decimals(inst.tick) + 2
                values = [round(value, digits) for value in market.bar[:4]]
                bar: Raw = dict(zip(("open", "high", "low", "close"), values, strict=True))
                bar["volume"] = round_step(market.bar[4], inst.qty_step)
                bar["bar_type"] = f"{inst.symbol}.{inst.venue}-1-MINUTE-MID"
                self._emit("market_data", bar, data_type="bar", **where(inst))
                market.bar = []

    # ------------------------------------------------------------------ orders

    def _new_order(self) -> None:
        rng = self._rng
        strategy = rng.choice(self._trading)
        market = self._by_symbol[rng.choice(strategy.symbols)]
        inst, capital = market.inst, strategy.book.spec.capital
        unit = market.mid * inst.multiplier
        position = strategy.book.positions.get(inst.symbol)
        held = position.qty if position else 0.0
        # Read the trend with noise and trade in slices towards a target position.
        trend = _TREND_STRENGTH * inst.volatility / math.sqrt(_SECONDS_PER_YEAR)
        view = market.drift / trend + rng.gauss(0.0, _VIEW_NOISE)
        target = max(-1.0, min(1.0, view / 1.5)) * _MAX_POSITION * capital / unit
        side = "buy" if target > held else "sell"
        size = min(abs(target - held), capital * rng.uniform(0.005, 0.04) / unit)
        quantity = max(inst.qty_step, round_step(size, inst.qty_step))
        if held and (held > 0) != (target > 0) and rng.random() < 0.3:
            quantity = abs(held)  # close out; other slices cross zero
        limit = None
        if rng.random() < 0.55:
            # From a few half-spreads behind the touch (rests) to through it (marketable).
            offset = (market.ask - market.bid) / 2 * rng.uniform(-4.0, 1.5)
            sign = 1 if side == "buy" else -1
            limit = round_step(max(market.mid + sign * offset, inst.tick), inst.tick)
        self._counts["orders"] += 1
        order_id = f"SIM-{self._prefix}-O{self._counts['orders']:07d}"
        start = self.elapsed
        late, expiry = start + rng.uniform(0.005, 0.08), start + rng.uniform(5.0, 30.0)
        order = Order(
            order_id,
            strategy,
            market,
            side,
            quantity,
            limit,
            market.mid,
            start,
            self._now,
            late,
            expiry,
        )
        self._orders.append(order)
        self._emit_order(order)

    def _advance(self, order: Order) -> None:
        """Move an order one event along its lifecycle."""
        rng, market = self._rng, order.market
        order.next_at = self.elapsed + rng.uniform(0.02, 0.4)
        if order.status == "pending":
            order.status = "rejected" if rng.random() < 0.03 else "open"
            reason = rng.choice(_REJECT_REASONS) if order.status == "rejected" else None
            self._emit_order(order, reason)
            if reason is not None:
                note = {"title": "Order rejected", "message": f"{order.order_id}: {reason}"}
                self._emit("notification", note, severity="medium", **order.strategy.book.who())
            return
        buy = order.side == "buy"
        touch = market.ask if buy else market.bid
        if order.limit is None:
            price = touch
        elif (touch <= order.limit) if buy else (touch >= order.limit):
            # A resting order is filled at its own price when the market comes to it.
            price = order.limit if order.resting else touch
        elif self.elapsed >= order.expires_at or rng.random() < 0.01:
            order.status = "cancelled"
            expired = self.elapsed >= order.expires_at
            self._emit_order(order, "time in force expired" if expired else "cancelled by strategy")
            return
        else:
            order.resting = True
            return
        step = market.inst.qty_step
        quantity = round_step(order.quantity - order.filled, step)
        if quantity > step and rng.random() < 0.4:
            quantity = min(quantity, max(step, round_step(quantity * rng.uniform(0.2, 0.8), step)))
        self._fill(order, quantity, price)

    def _fill(self, order: Order, quantity: float, price: float) -> None:
        inst, strategy = order.market.inst, order.strategy
        order.filled = round_step(order.filled + quantity, inst.qty_step)
        order.notional += quantity * price
        order.status = "filled" if order.filled >= order.quantity else "partial"
        self._emit_order(order)
        fee_bps = inst.fee_bps * (0.5 if order.resting else 1.0)
        notional = quantity * price * inst.multiplier
        commission = round(quantity * inst.fee_per_unit + notional * fee_bps / 1e4, 2)
        self._counts["fills"] += 1
        strategy.fills += 1
        trade_id = f"SIM-{self._prefix}-T{self._counts['fills']:07d}"
        for kind, data, top in fill_messages(
            order, trade_id, quantity, price, commission, self.elapsed
        ):
            self._emit(kind, data, **top)
        sign = 1 if order.side == "buy" else -1
        book = strategy.book
        position = book.positions.setdefault(inst.symbol, Position(strategy.strategy_id))
        realized = apply_fill(position, sign * quantity, price, inst)
        position.commissions += commission
        if realized is not None:
            strategy.closed(realized)
        self._status.position(book, inst.symbol, position)

    def _emit_order(self, order: Order, reason: str | None = None) -> None:
        kind, data, top = order_message(order, self._now, reason)
        self._emit(kind, data, **top)

    # ------------------------------------------------------------------ occasional

    def _occasional(self) -> None:
        rng = self._rng
        book = rng.choice(self._books)
        if self._timer("event", 20.0):
            strategy = rng.choice(self._strategies)
            who = strategy.book.who()
            if rng.random() < 0.5:
                text = f"{strategy.strategy_id} rebalanced its target weights"
                event = {"title": "Strategy rebalanced", "description": text}
                event["category"] = "strategy"
                self._emit("event", event, event_type="strategy_rebalanced", severity="low", **who)
            else:
                text = f"{self._counts['orders']} orders, {self._counts['fills']} fills today"
                note = {"title": "Order flow summary", "message": text}
                self._emit("notification", note, severity="low", **who)
        if self._timer("alert", 60.0):
            self._status.throttle_alert(book)
        if self._timer("breach", 300.0):
            self._status.fat_finger_alert(book)
        if self._timer("degrade", 240.0):
            self._status.degrade(self.elapsed)
        else:
            self._status.recover(self.elapsed)
