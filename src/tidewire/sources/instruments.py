"""The simulated instruments and portfolios: what trades, on which grid, and who holds it.

`INSTRUMENTS` is the catalogue across asset classes and `pick_instruments` the selection a
`MarketModel` quotes; `PORTFOLIOS` are the simulated portfolios with their strategies.
`round_step` and `decimals` put prices and quantities on an instrument's tick or step;
`where` gives the fields that name an instrument in a message.

Owners: each simulated portfolio belongs to one person, its `user_id` (PF-ALPHA alice,
PF-BETA bob, PF-GAMMA carol). Every message about a portfolio carries both `portfolio_id`
and that `user_id`, so trades and orders satisfy the original shape (which names a user)
and a token for alice with `portfolio_ids: ["PF-ALPHA"]` sees exactly her book.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "INSTRUMENTS",
    "PORTFOLIOS",
    "STRATEGY_NAMES",
    "Instrument",
    "PortfolioSpec",
    "decimals",
    "pick_instruments",
    "round_step",
    "strategy_name",
    "where",
]


@dataclass(frozen=True, slots=True)
class Instrument:
    """One simulated instrument and how it trades."""

    symbol: str
    venue: str
    asset_class: str
    price: float
    """Starting mid; the walk is pulled slowly back towards it."""
    volatility: float
    """Annualised volatility of the mid (0.25 is 25 %), over trading time."""
    tick: float
    """Price increment: quotes and fills are multiples of it."""
    qty_step: float
    """Quantity increment of orders, fills and quoted sizes."""
    quote_size: float
    """Typical size shown at the touch."""
    spread_bps: float
    """Typical bid-ask spread in basis points of the price (at least one tick)."""
    multiplier: float = 1.0
    """Currency per unit of price per unit of quantity (a futures contract's size)."""
    fee_per_unit: float = 0.0
    fee_bps: float = 0.0
    """Commission: per unit of quantity plus basis points of notional (halved for makers)."""
    margin_rate: float = 1.0
    """Fraction of notional held as margin."""


def _equity(symbol: str, venue: str, price: float, vol: float, spread: float) -> Instrument:
    return Instrument(symbol, venue, "equity", price, vol, 0.01, 1, 400, spread, 1, 0.005, 0, 0.25)


def _fx(symbol: str, venue: str, price: float, vol: float) -> Instrument:
    return Instrument(symbol, venue, "fx", price, vol, 0.00001, 1000, 2e6, 0.6, 1, 0, 0.2, 0.033)


def _crypto(symbol: str, price: float, vol: float, step: float, size: float) -> Instrument:
    return Instrument(symbol, "BINANCE", "crypto", price, vol, 0.01, step, size, 0.3, 1, 0, 4)


def _future(sym: str, venue: str, price: float, vol: float, tick: float, mult: float) -> Instrument:
    return Instrument(sym, venue, "future", price, vol, tick, 1, 40, 0.3, mult, 2.25, 0, 0.06)


INSTRUMENTS: tuple[Instrument, ...] = (
    _equity("AAPL", "XNAS", 228.50, 0.25, 1.0),
    _equity("MSFT", "XNAS", 415.20, 0.24, 1.0),
    _equity("NVDA", "XNAS", 135.40, 0.50, 1.5),
    _equity("AMZN", "XNAS", 186.30, 0.32, 1.2),
    _equity("GOOGL", "XNAS", 168.90, 0.30, 1.2),
    _equity("META", "XNAS", 512.70, 0.38, 1.5),
    _equity("TSLA", "XNAS", 248.10, 0.55, 2.0),
    _equity("JPM", "XNYS", 201.60, 0.22, 1.5),
    _equity("XOM", "XNYS", 116.80, 0.24, 1.5),
    _equity("KO", "XNYS", 62.40, 0.15, 2.0),
    _equity("GS", "XNYS", 468.30, 0.27, 2.5),
    _equity("BA", "XNYS", 176.20, 0.40, 2.5),
    _fx("EUR/USD", "IDEALPRO", 1.0852, 0.07),
    _fx("GBP/USD", "IDEALPRO", 1.2718, 0.08),
    _fx("AUD/USD", "SIM", 0.6584, 0.10),
    _crypto("BTC/USDT", 67250.0, 0.60, 0.001, 2.5),
    _crypto("ETH/USDT", 3480.0, 0.70, 0.01, 30),
    _future("ESH6", "XCME", 5285.25, 0.16, 0.25, 50),
    _future("NQH6", "XCME", 18640.50, 0.22, 0.25, 20),
    _future("CLG6", "XNYM", 78.42, 0.35, 0.01, 1000),
    _future("GCG6", "XCEC", 2365.40, 0.15, 0.10, 100),
)
"""The catalogue. FX pairs are all quoted in USD so every P&L is in one currency."""


def pick_instruments(count: int, rng: random.Random) -> tuple[Instrument, ...]:
    """`count` instruments: the catalogue interleaved by asset class, then synthetic equities."""
    groups: dict[str, list[Instrument]] = {}
    for inst in INSTRUMENTS:
        groups.setdefault(inst.asset_class, []).append(inst)
    ordered: list[Instrument] = []
    for rank in range(max(len(group) for group in groups.values())):
        ordered.extend(group[rank] for group in groups.values() if rank < len(group))
    for number in range(1, count - len(ordered) + 1):
        price, vol = round(rng.uniform(10, 500), 2), rng.uniform(0.15, 0.6)
        ordered.append(_equity(f"SYN{number:04d}", "SIM", price, vol, 2.0))
    return tuple(ordered[:count])


@dataclass(frozen=True, slots=True)
class PortfolioSpec:
    """A simulated portfolio: its owner (`user_id` in messages), capital and strategies."""

    portfolio_id: str
    user_id: str
    capital: float
    strategies: tuple[str, ...]


PORTFOLIOS: tuple[PortfolioSpec, ...] = (
    PortfolioSpec("PF-ALPHA", "alice", 25_000_000.0, ("STRAT-MOMO-1", "STRAT-MR-2")),
    PortfolioSpec("PF-BETA", "bob", 10_000_000.0, ("STRAT-STATARB-3", "STRAT-FXCARRY-4")),
    PortfolioSpec("PF-GAMMA", "carol", 50_000_000.0, ("STRAT-TREND-5", "STRAT-BASIS-6")),
)


STRATEGY_NAMES: dict[str, str] = {
    "MOMO": "Momentum",
    "MR": "Mean reversion",
    "STATARB": "Statistical arbitrage",
    "FXCARRY": "FX carry",
    "TREND": "Trend following",
    "BASIS": "Basis trading",
}
"""Readable names of the strategy kinds, by the middle part of a strategy id."""


def strategy_name(strategy_id: str) -> str:
    """`STRAT-MOMO-1` -> `Momentum 1` (the `strategy_name` of its messages)."""
    _, kind, number = [*strategy_id.split("-", 2), "", ""][:3]
    name = STRATEGY_NAMES.get(kind)
    return f"{name} {number}" if name is not None else strategy_id


@functools.cache
def decimals(step: float) -> int:
    """Number of decimal places of `step` (2 for 0.01, 0 for 25)."""
    exponent = Decimal(str(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def round_step(value: float, step: float) -> float:
    """`value` rounded to a multiple of `step`, without binary noise in the last digits."""
    return round(round(value / step) * step, decimals(step))


def where(inst: Instrument) -> dict[str, str]:
    """The top-level fields of a message about `inst`."""
    return {"symbol": inst.symbol, "venue": inst.venue, "asset_class": inst.asset_class}
