"""Validation of subscription filters against a stream (docs/protocol.md section 3)."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import Filters
from tidewire.protocol.streams import StreamSpec

DEFAULT_MAX_FILTER_VALUES = 1000
# Values of a blank form field: no filter on it (0 and False are not blank: neither equals
# any of these).
_BLANK: tuple[object, ...] = ([], "", None)


def validate_filters(
    raw: Any, spec: StreamSpec, max_values: int = DEFAULT_MAX_FILTER_VALUES
) -> Filters:
    """Check a subscribe's `filters` object for `spec` and return it typed.

    An empty list, an empty string or null means "no filter on that field" (the original
    subscription form sends `portfolio_ids: []` for a blank field). Raises
    ProtocolError(invalid_filter) for an unknown filter, a filter that the stream's messages
    never carry, a wrong type, a too long list, or min_price > max_price.
    """
    if raw is None:
        return Filters()
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_FILTER, "`filters` must be an object")
    raw = {name: value for name, value in raw.items() if value not in _BLANK}
    known = set(Filters.__struct_fields__)
    unknown = sorted(str(name) for name in raw if name not in known)
    if unknown:
        raise ProtocolError(
            ErrorCode.INVALID_FILTER,
            f"unknown filter(s): {', '.join(unknown)}",
            {"filters": unknown},
        )
    foreign = sorted(name for name in raw if name not in spec.filters)
    if foreign:
        raise ProtocolError(
            ErrorCode.INVALID_FILTER,
            f"stream {spec.name} does not support filter(s) {', '.join(foreign)}; "
            f"it supports {', '.join(sorted(spec.filters))}",
            {"filters": foreign, "supported": sorted(spec.filters)},
        )
    try:
        filters = msgspec.convert(raw, Filters)
    except msgspec.ValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_FILTER, f"invalid filter: {exc}") from None
    for name in ("symbols", "portfolio_ids", "strategy_ids"):
        values = getattr(filters, name)
        if values is None:
            continue
        if len(values) > max_values:
            raise ProtocolError(
                ErrorCode.INVALID_FILTER,
                f"`{name}` has {len(values)} values; at most {max_values} are allowed",
                {"filter": name, "limit": max_values},
            )
    for name in ("min_price", "max_price"):
        price = getattr(filters, name)
        if price is not None and math.isnan(price):
            # NaN compares false with every price: the subscription would match nothing.
            raise ProtocolError(
                ErrorCode.INVALID_FILTER, f"`{name}` must be a number", {"filter": name}
            )
    low, high = filters.min_price, filters.max_price
    if low is not None and high is not None and low > high:
        raise ProtocolError(
            ErrorCode.INVALID_FILTER,
            f"min_price ({low}) is greater than max_price ({high})",
            {"filter": "min_price"},
        )
    return filters


def filter_value_count(filters: Filters) -> int:
    """How many values the list filters of `filters` hold (the memory a subscription keeps
    for them grows with this)."""
    return sum(
        len(values)
        for values in (filters.symbols, filters.portfolio_ids, filters.strategy_ids)
        if values is not None
    )
