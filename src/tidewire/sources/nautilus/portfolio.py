"""Position events and account states as `position_update` / `performance_update` data. Pure.

Positions: `position_side` (top level) is Nautilus's `side` in lower case (long, short,
flat); `quantity` is signed (negative when short) from Nautilus's exact `quantity` string
and `side`; `avg_price` is `avg_px_open` (a float in Nautilus, taken at its shortest repr);
`realized_pnl` and `unrealized_pnl` are the Money strings' amounts. Nautilus reports
unrealized P&L on PositionChanged (at the fill price); a position that opens at one price or
closes has none, so it is 0 there. Tidewire does not re-mark positions on every quote.

Accounts (`AccountState` -> the portfolio's `performance_update`): `total_value` is the
total balance in the account's base currency (else its first balance); `pnl` is its change
since the first AccountState the gateway saw of the account, and `returns` that change
relative to that first value (`pnl / first total`; 0 when the first total was 0), so they
cover what the gateway observed, not the account's life before; `daily_pnl` is the change
since the first one of the UTC day (by ts_event); every balance (total, locked, free per
currency) and margin is in `balances` / `margins`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tidewire.sources.nautilus.values import lower, money, number, put, text

__all__ = ["POSITION_EVENTS", "Balances", "position_data"]

Raw = dict[str, Any]

POSITION_EVENTS = {
    "PositionOpened": "opened",
    "PositionChanged": "changed",
    "PositionClosed": "closed",
}
_NANOS_PER_DAY = 86_400 * 1_000_000_000


def position_data(kind: str, payload: Raw) -> tuple[str, str, Raw] | None:
    """(instrument id, position side, `position_update` data) of a position event; None when
    a field is missing."""
    instrument = text(payload.get("instrument_id"))
    quantity = number(payload.get("quantity"))
    avg = number(payload.get("avg_px_open"))
    if instrument is None or quantity is None or avg is None or kind not in POSITION_EVENTS:
        return None
    position_side = lower(payload.get("side"))
    if position_side not in ("long", "short", "flat"):
        # Nautilus always names the side; should it not, the signed quantity tells.
        signed = number(payload.get("signed_qty"))
        negative = signed is not None and signed < 0
        position_side = "flat" if not quantity else "short" if negative else "long"
    realized, currency = money(payload.get("realized_pnl"))
    unrealized, _ = money(payload.get("unrealized_pnl"))
    data: Raw = {
        "quantity": -quantity if position_side == "short" else quantity,
        "avg_price": avg,
        "unrealized_pnl": unrealized if unrealized is not None else Decimal(0),
        "realized_pnl": realized if realized is not None else Decimal(0),
        "event": POSITION_EVENTS[kind],
    }
    put(data, "position_id", text(payload.get("position_id")))
    put(data, "currency", currency or text(payload.get("currency")))
    put(data, "peak_quantity", number(payload.get("peak_qty")))
    put(data, "last_price", number(payload.get("last_px")))
    put(data, "last_quantity", number(payload.get("last_qty")))
    if kind == "PositionClosed":
        put(data, "avg_close_price", number(payload.get("avg_px_close")))
        put(data, "realized_return", number(payload.get("realized_return")))
    put(data, "opening_order_id", text(payload.get("opening_order_id")))
    put(data, "closing_order_id", text(payload.get("closing_order_id")))
    put(data, "account_id", text(payload.get("account_id")))
    return instrument, position_side, data


@dataclass(slots=True)
class _Account:
    start: Decimal
    day: int
    day_start: Decimal


class Balances:
    """Remembers each account's first balance (overall and per UTC day) for the P&L."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def update(self, payload: Raw, ts_event: int) -> Raw | None:
        """The `performance_update` data of an AccountState; None when it has no balance."""
        account_id = text(payload.get("account_id"))
        balances = payload.get("balances")
        if account_id is None or not isinstance(balances, list):
            return None
        rows = [_balance(row) for row in balances if isinstance(row, dict)]
        if not rows:
            return None
        currency = text(payload.get("base_currency"))
        chosen = next((row for row in rows if row["currency"] == currency), rows[0])
        total = chosen["total"]
        day = ts_event // _NANOS_PER_DAY
        track = self._accounts.get(account_id)
        if track is None:
            track = self._accounts[account_id] = _Account(total, day, total)
        elif day != track.day:
            track.day, track.day_start = day, total
        pnl = total - track.start
        data: Raw = {
            "pnl": pnl,
            "returns": pnl / track.start if track.start else Decimal(0),
            "total_value": total,
            "daily_pnl": total - track.day_start,
            "currency": chosen["currency"],
            "balances": rows,
            "account_id": account_id,
        }
        put(data, "account_type", lower(payload.get("account_type")))
        margins = payload.get("margins")
        if isinstance(margins, list) and margins:
            data["margins"] = [_margin(row) for row in margins if isinstance(row, dict)]
        return data


def _balance(row: Raw) -> Raw:
    return {
        "currency": text(row.get("currency")) or "",
        "total": _or_zero(number(row.get("total"))),
        "locked": _or_zero(number(row.get("locked"))),
        "free": _or_zero(number(row.get("free"))),
    }


def _margin(row: Raw) -> Raw:
    out: Raw = {}
    for name, value in row.items():
        if name == "type":
            continue
        if name in ("initial", "maintenance"):
            amount, currency = money(value)
            out[name] = amount
            if currency is not None:
                out.setdefault("currency", currency)
        else:
            out[name] = value
    return out


def _or_zero(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)
