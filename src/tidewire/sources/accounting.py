"""Position and P&L accounting of the simulated portfolios: pure arithmetic on fills and marks.

A `Book` holds a portfolio's positions, one per symbol; `apply_fill` books a fill into a
`Position` (average price, realized P&L); `unrealized_pnl` and `book_pnl` value positions at
the current mid. `Strategy` counts a strategy's fills and round trips for its reports.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tidewire.sources.instruments import Instrument, PortfolioSpec, round_step

__all__ = ["Book", "Mark", "Position", "Strategy", "apply_fill", "book_pnl", "unrealized_pnl"]


class Mark(Protocol):
    """Where an instrument trades now: what positions are valued at."""

    @property
    def inst(self) -> Instrument: ...

    @property
    def mid(self) -> float: ...


@dataclass(slots=True)
class Position:
    """One strategy's position in one symbol of a portfolio."""

    strategy_id: str
    qty: float = 0.0
    avg: float = 0.0
    realized: float = 0.0
    """Realized P&L before commissions, which are kept apart."""
    commissions: float = 0.0


def apply_fill(position: Position, signed: float, price: float, inst: Instrument) -> float | None:
    """Book a fill of `signed` quantity; return the realized P&L when it reduced the position.

    Adding keeps a quantity-weighted average price; reducing realizes P&L against it and keeps
    it; crossing zero realizes the whole old position and opens the rest at the fill price.
    """
    held = position.qty
    new = round_step(held + signed, inst.qty_step)
    if held == 0 or (held > 0) == (signed > 0):
        position.avg = (abs(held) * position.avg + abs(signed) * price) / abs(new)
        position.qty = new
        return None
    realized = min(abs(signed), abs(held)) * (price - position.avg) * inst.multiplier
    realized = realized if held > 0 else -realized
    position.realized += realized
    position.qty = new
    if new == 0:
        position.avg = 0.0
    elif (new > 0) != (held > 0):
        position.avg = price
    return realized


def unrealized_pnl(position: Position, mark: Mark) -> float:
    """P&L of `position` if it were closed at the mid of `mark`."""
    return position.qty * (mark.mid - position.avg) * mark.inst.multiplier


@dataclass(slots=True)
class Book:
    """A portfolio's positions and the levels its limit checks last reported."""

    spec: PortfolioSpec
    prior_pnl: float
    """P&L of earlier days, so `pnl` (the total) and `daily_pnl` differ as on a real desk."""
    high: float
    positions: dict[str, Position] = field(default_factory=dict)
    levels: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    """The last value reported of each risk metric, for its `trend`."""

    def who(self) -> dict[str, str]:
        return {"portfolio_id": self.spec.portfolio_id, "user_id": self.spec.user_id}


def book_pnl(
    book: Book, marks: Mapping[str, Mark], strategy_id: str | None = None
) -> tuple[float, float, float]:
    """Realized, unrealized and commissions of a book, or of one of its strategies."""
    realized = unrealized = commissions = 0.0
    for symbol, position in book.positions.items():
        if strategy_id is None or position.strategy_id == strategy_id:
            realized += position.realized
            commissions += position.commissions
            unrealized += unrealized_pnl(position, marks[symbol])
    return realized, unrealized, commissions


@dataclass(slots=True)
class Strategy:
    """A strategy: its portfolio, the symbols it trades and what it did so far."""

    strategy_id: str
    book: Book
    symbols: list[str]
    fills: int = 0
    closes: int = 0
    """Fills that reduced a position (round trips, for the win rate and profit factor)."""
    wins: int = 0
    gross_profit: float = 0.0
    gross_loss: float = 0.0
    """Sums of the realized P&L of winning and (as a positive number) losing closes."""
    peak_pnl: float = 0.0
    max_drawdown: float = 0.0
    """Largest drop of the P&L from its running peak so far (currency, positive)."""
    marks: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    """Recent P&L marks, one per status interval, for the Sharpe ratio."""

    @property
    def capital(self) -> float:
        """The strategy's share of its portfolio's capital (split evenly), for returns."""
        return self.book.spec.capital / len(self.book.spec.strategies)

    def closed(self, realized: float) -> None:
        """Count a fill that realized `realized` (before commissions)."""
        self.closes += 1
        self.wins += realized > 0
        if realized > 0:
            self.gross_profit += realized
        else:
            self.gross_loss -= realized
