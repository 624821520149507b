"""Nautilus value formats to Tidewire values: exact decimals, money, timestamps, enums, ids.

Nautilus serialises prices, quantities and money as strings (`"0.73269"`, `"1.47 USD"`) and
timestamps as nanosecond integers in strings (`"1700000000000000000"`) or, with
`timestamps_as_iso8601`, as RFC 3339 text with up to nine fractional digits. Everything here
is pure and exact: decimals never pass through a float, nanoseconds never through a
datetime.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "data_message_id",
    "event_message_id",
    "instrument_parts",
    "iso_of_ns",
    "lower",
    "money",
    "number",
    "parse_ns",
    "put",
    "side",
    "text",
    "venue_of_account",
]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def number(value: Any) -> Decimal | None:
    """An exact Decimal of a Nautilus number: a decimal string, an int, or a float.

    Floats (position events carry `avg_px_open` and `signed_qty` as floats) become the Decimal
    of their shortest repr, `0.72923` rather than `0.7292299999999999...`: the value the
    producer printed. None, empty text and non-numbers give None.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str) and value:
        try:
            result = Decimal(value.replace("_", ""))
        except InvalidOperation:
            return None
        return result if result.is_finite() else None
    return None


def money(value: Any) -> tuple[Decimal | None, str | None]:
    """`"1.47 USD"` -> (Decimal("1.47"), "USD"); a bare number has no currency."""
    if isinstance(value, str) and " " in value:
        amount, _, currency = value.partition(" ")
        return number(amount), currency or None
    return number(value), None


def parse_ns(value: Any) -> int | None:
    """Nanoseconds since the epoch from `"1700000000000000000"`, an int, or RFC 3339 text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        return None
    if value.isdigit():
        return int(value)
    match = _RFC3339.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    seconds = calendar.timegm(
        (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
    )
    nanos = int((fraction or "").ljust(9, "0"))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + nanos


def iso_of_ns(ns: int) -> str:
    """The envelope's timestamp format (microseconds, `Z`) of a nanosecond timestamp."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"


def lower(value: Any) -> str | None:
    """An enum name in lower case (`"STOP_LIMIT"` -> `"stop_limit"`); None stays None."""
    return value.lower() if isinstance(value, str) and value else None


def side(value: Any) -> str | None:
    """Order or aggressor side as Tidewire says it: `buy`, `sell`, or None."""
    text = lower(value)
    if text in ("buy", "buyer"):
        return "buy"
    if text in ("sell", "seller"):
        return "sell"
    return None


def instrument_parts(instrument_id: str) -> tuple[str, str | None]:
    """`"AUD/USD.SIM"` -> (`"AUD/USD"`, `"SIM"`): symbol and venue of an InstrumentId."""
    symbol, dot, venue = instrument_id.rpartition(".")
    if not dot or not symbol or not venue:
        return instrument_id, None
    return symbol, venue


def venue_of_account(account_id: str) -> str:
    """The issuer (venue) of an AccountId: `"SIM-001"` -> `"SIM"`."""
    return account_id.split("-", 1)[0]


def event_message_id(event_id: str, suffix: str = "") -> str:
    """The Tidewire message id of a Nautilus event: the same on every re-read of the entry,
    so a replay after a restart is a duplicate at the broker, not a second message."""
    return f"nt-{event_id}-{suffix}" if suffix else f"nt-{event_id}"


def data_message_id(stream: str, entry_id: str) -> str:
    """The message id of a data entry (quotes, trades, bars have no event id): the Redis
    stream key (digested, keys can be long) and the entry id, unique and stable."""
    digest = hashlib.blake2b(stream.encode(), digest_size=5).hexdigest()
    return f"nt-{digest}-{entry_id}"


def text(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


def put(data: dict[str, Any], name: str, value: Any) -> None:
    """Set `data[name]` unless `value` is None (optional payload fields stay absent)."""
    if value is not None:
        data[name] = value
