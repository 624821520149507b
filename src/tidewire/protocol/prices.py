"""The price a `min_price` / `max_price` filter compares, exactly (pure; docs/protocol.md
section 3, filters).

The price of a message is `data.price`, else `data.last_trade_price`, else the mid of
`data.bid_price` and `data.ask_price`; the first of the first two that is present decides.
Every number is read as the decimal it was written as (a JSON number by its shortest repr,
a decimal string as it is) and the mid is computed without rounding, so bid 1.1 / ask 1.3
has the mid 1.2 and passes `max_price: 1.2` (with floats it is 1.2000000000000002).

The gateway's filters (core/subscription.py) and the Python SDK's routing (client/routing.py)
use this module; the JavaScript client has the same rule in `client/routing.js`, and the
vectors of tests/vectors/filters.json check all three.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

__all__ = ["MAX_DIGITS", "MAX_EXPONENT", "decimal_of", "exact_mid", "message_price", "within"]

MAX_DIGITS = 100
"""Significant digits a price may have; more is not a price."""
MAX_EXPONENT = 400
"""The largest magnitude of a price's decimal exponent (a double reaches 308): beyond it,
one publisher's `1e-999999999` / `1e999999999` would make the exact mid a computation of
billions of digits for every price-filtered subscriber."""
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""What a decimal string may look like (ASCII, no underscores, no NaN or infinity): the
JavaScript client accepts the same."""


def decimal_of(value: Any) -> Decimal | None:
    """`value` as the decimal it was written as; None for what is not a finite number of
    at most `MAX_DIGITS` digits and an exponent within `MAX_EXPONENT` (booleans, blank or
    malformed strings, NaN and infinities are not)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, float):
            number = Decimal(repr(value))  # the shortest repr: what the JSON text said
        elif isinstance(value, str):
            text = value.strip()
            if len(text) > 2 * MAX_DIGITS or not _DECIMAL.fullmatch(text):
                return None
            number = Decimal(text)
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        else:
            return None
    except InvalidOperation:
        return None
    if not number.is_finite() or len(number.as_tuple().digits) > MAX_DIGITS:
        return None
    return number if abs(number.adjusted()) <= MAX_EXPONENT else None


def exact_mid(bid: Decimal, ask: Decimal) -> Decimal:
    """`(bid + ask) / 2` without rounding, whatever the digits of the operands."""
    # Enough digits for the exact sum plus one for the halving; the default 28 may not be.
    exponent = min(int(bid.as_tuple().exponent), int(ask.as_tuple().exponent))
    digits = max(bid.adjusted(), ask.adjusted()) - exponent + 3
    with localcontext(prec=max(digits, 28)):
        return (bid + ask) / 2


def message_price(data: Mapping[str, Any]) -> Decimal | None:
    """The price of a message's `data`, or None when it carries none."""
    for name in ("price", "last_trade_price"):
        value = data.get(name)
        if value is not None:
            return decimal_of(value)
    bid = decimal_of(data.get("bid_price"))
    ask = decimal_of(data.get("ask_price"))
    if bid is None or ask is None:
        return None
    return exact_mid(bid, ask)


def within(price: Decimal | None, low: Decimal | None, high: Decimal | None) -> bool:
    """Whether `price` passes `min_price` `low` and `max_price` `high` (inclusive); a
    message without a price passes no price filter."""
    if price is None:
        return False
    return (low is None or price >= low) and (high is None or price <= high)
