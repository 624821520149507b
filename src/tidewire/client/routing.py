"""Client-side routing of data messages to local subscriptions (pure: no I/O, no event loop).

Data messages carry no subscription id (docs/protocol.md section 1, "encode once"): the gateway
sends one copy per connection, and the client decides which of its subscriptions a message
belongs to from the message's `stream` and each subscription's filters. The gateway has
already enforced the filters, so this matching only has to separate several subscriptions of
one stream; it follows the same rules (docs/protocol.md section 3):

* a filter matches a message that carries the field, at the top level or in `data`, with an
  allowed value; a message without the field does not match;
* `severity` is a minimum: low < medium < high < critical;
* an empty list or an empty string is no filter (the original subscription form sends
  `portfolio_ids: []` for a blank field);
* the price for `min_price`/`max_price` is `data.price`, else `data.last_trade_price`, else
  the mid of `data.bid_price` and `data.ask_price` (exact); numbers sent as decimal strings
  (`decimals=string`) are compared as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Generic, TypeVar

from tidewire.protocol import prices
from tidewire.protocol.streams import FILTER_FIELDS, SEVERITY_ALIASES, SEVERITY_RANK

T = TypeVar("T")

# Filters whose value is a list of allowed values of one message field.
_LIST_FILTERS = ("symbols", "portfolio_ids", "strategy_ids")
# Filters whose value is the one allowed value of one message field.
_EQUALITY_FILTERS = ("user_id", "venue", "asset_class")
# Values of a blank form field: no filter (as the gateway's `validate_filters` reads them).
_BLANK: tuple[object, ...] = ([], "", None)


def field_value(message: Mapping[str, Any], name: str) -> Any:
    """The message's `name` field: at the top level when set there, else in `data`."""
    value = message.get(name)
    if value is None:
        data = message.get("data")
        if isinstance(data, Mapping):
            value = data.get(name)
    return value


def message_price(message: Mapping[str, Any]) -> Decimal | None:
    """The price that `min_price`/`max_price` compare, as the gateway reads it from `data`
    (`tidewire.protocol.prices`): exact, None when the message carries none."""
    data = message.get("data")
    return prices.message_price(data) if isinstance(data, Mapping) else None


def severity_rank(value: Any) -> int | None:
    """Rank of a severity (0 low .. 3 critical), accepting `info`/`warning`/`error`/`fatal`."""
    if not isinstance(value, str):
        return None
    level = value.lower()
    return SEVERITY_RANK.get(SEVERITY_ALIASES.get(level, level))


def matches(filters: Mapping[str, Any], message: Mapping[str, Any]) -> bool:
    """Whether `message` passes every filter of `filters` (an empty mapping passes all).

    A filter the client does not know never excludes a message: the gateway refuses unknown
    filters at subscribe time, so one reaching here is from a newer protocol, and the
    gateway has applied it already.
    """
    for name in _LIST_FILTERS:
        allowed: Any = filters.get(name)
        if allowed not in _BLANK and field_value(message, FILTER_FIELDS[name]) not in allowed:
            return False
    for name in _EQUALITY_FILTERS:
        wanted = filters.get(name)
        if wanted not in _BLANK and field_value(message, FILTER_FIELDS[name]) != wanted:
            return False
    minimum = filters.get("severity")
    if minimum not in _BLANK:
        wanted_rank = severity_rank(minimum)
        rank = severity_rank(field_value(message, "severity"))
        if wanted_rank is None or rank is None or rank < wanted_rank:
            return False
    low = prices.decimal_of(filters.get("min_price"))
    high = prices.decimal_of(filters.get("max_price"))
    return (low is None and high is None) or prices.within(message_price(message), low, high)


class Router(Generic[T]):
    """Which local subscriptions a data message belongs to.

    Targets (subscriptions, in the client) are registered under an id with their stream and
    filters; `targets(message)` returns those of the message's stream whose filters match, in
    registration order.
    """

    def __init__(self) -> None:
        self._by_stream: dict[str, dict[str, tuple[Mapping[str, Any], T]]] = {}
        self._stream_of: dict[str, str] = {}

    def add(self, target_id: str, stream: str, filters: Mapping[str, Any], target: T) -> None:
        """Register `target`; an id registered before is replaced."""
        self.remove(target_id)
        self._by_stream.setdefault(stream, {})[target_id] = (filters, target)
        self._stream_of[target_id] = stream

    def remove(self, target_id: str) -> None:
        """Forget a target; unknown ids are ignored."""
        stream = self._stream_of.pop(target_id, None)
        if stream is None:
            return
        targets = self._by_stream[stream]
        del targets[target_id]
        if not targets:
            del self._by_stream[stream]

    def targets(self, message: Mapping[str, Any]) -> list[T]:
        """The targets `message` belongs to (empty when none)."""
        stream = message.get("stream")
        if not isinstance(stream, str):
            return []
        candidates = self._by_stream.get(stream)
        if not candidates:
            return []
        return [target for filters, target in candidates.values() if matches(filters, message)]

    def streams(self) -> set[str]:
        """Streams with at least one target."""
        return set(self._by_stream)

    def __len__(self) -> int:
        return len(self._stream_of)
