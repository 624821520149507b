"""A subscription and its compiled filters (docs/protocol.md section 3).

The hub indexes subscriptions by the stream's key filter (symbols for market_data,
portfolio_ids for portfolio streams, ...); `Subscription.matches` checks only the filters the
index does not already guarantee. Pure logic, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidewire.core.auth import Principal
from tidewire.core.entitlements import readable
from tidewire.core.throttle import Throttle
from tidewire.protocol.messages import DataMessage, Filters, SubscriptionInfo
from tidewire.protocol.prices import decimal_of, message_price, within
from tidewire.protocol.streams import (
    FILTER_FIELDS,
    KEY_FILTER_OF_FIELD,
    SEVERITY_RANK,
    StreamSpec,
)

if TYPE_CHECKING:
    from tidewire.core.connection import Connection


def field_value(message: DataMessage, name: str) -> Any:
    """A filterable field of a message: top level first, then inside `data`."""
    value = getattr(message, name, None)
    if value is None:
        value = message.data.get(name)
    return value


class Subscription:
    """One subscription of one connection to one stream, with its filters compiled."""

    __slots__ = (
        "_filters_plain",
        "_max_price",
        "_min_price",
        "_min_severity",
        "_value_checks",
        "buffer",
        "conflated_seen",
        "connection",
        "created_at",
        "filters",
        "gated",
        "group",
        "index_keys",
        "messages_delivered",
        "plain",
        "rate_limit",
        "reader",
        "removed",
        "spec",
        "subscription_id",
        "throttle",
    )

    def __init__(
        self,
        connection: Connection,
        subscription_id: str,
        spec: StreamSpec,
        filters: Filters,
        created_at: str,
        rate_limit: float | None = None,
        reader: Principal | None = None,
    ) -> None:
        """`reader`: the principal each message must be readable by
        (`entitlements.message_check`); None when the filters and the index guarantee it."""
        self.connection = connection
        self.subscription_id = subscription_id
        self.spec = spec
        self.filters = filters
        self.created_at = created_at
        self.rate_limit = rate_limit
        self.messages_delivered = 0
        self.buffer: list[DataMessage] | None = None
        """Live messages that arrived while the subscription's snapshot or replay was being
        prepared; None once it delivers directly."""
        self.throttle: Throttle[Any] | None = (
            Throttle(rate_limit) if rate_limit is not None else None
        )
        self.gated = self.throttle is not None
        """True when dispatch must go through `buffer` or `throttle` (the slow path)."""
        self.removed = False
        self.group: str | None = None
        """The id an `event_types` subscribe was sent with, for its members."""
        self.conflated_seen = 0
        """The throttle's `conflated` count already added to the hub's counter."""
        self._compile(filters)
        self.reader = reader
        self.plain = reader is None and self._filters_plain
        """True when the index alone decides: no per-message check is needed."""

    def _compile(self, filters: Filters) -> None:
        """Set `filters` and the checks they compile to (index keys, value checks)."""
        spec = self.spec
        self.filters = filters
        # A stream whose key may come from another field (a trade keyed by its user) is not
        # indexed: a portfolio filter must never match a user's key.
        key_filter = None if spec.key_fallback else KEY_FILTER_OF_FIELD.get(spec.key_field)
        key_values = getattr(filters, key_filter) if key_filter else None
        self.index_keys: frozenset[str] | None = (
            frozenset(key_values) if key_values is not None else None
        )
        """Keys the hub indexes this subscription under; None = every key (wildcard)."""
        checks: list[tuple[str, frozenset[str]]] = []
        for filter_name, field in FILTER_FIELDS.items():
            if filter_name == "severity" or filter_name == key_filter:
                continue
            value = getattr(filters, filter_name)
            if value is None:
                continue
            allowed = frozenset(value) if isinstance(value, list) else frozenset((value,))
            checks.append((field, allowed))
        self._value_checks = tuple(checks)
        self._min_severity = (
            SEVERITY_RANK[filters.severity] if filters.severity is not None else None
        )
        self._min_price = decimal_of(filters.min_price)
        self._max_price = decimal_of(filters.max_price)
        self._filters_plain = (
            not checks
            and self._min_severity is None
            and (self._min_price is None and self._max_price is None)
        )

    def reconfigure(self, filters: Filters, rate_limit: float | None) -> None:
        """New filters and rate limit (`update_subscription`); the hub re-indexes it and
        sends what the old throttle held (`Hub.reconfigure`): a new rate starts afresh."""
        self._compile(filters)
        self.rate_limit = rate_limit
        self.throttle = Throttle(rate_limit) if rate_limit is not None else None
        self.conflated_seen = 0
        self.gated = self.buffer is not None or self.throttle is not None
        self.plain = self.reader is None and self._filters_plain

    def set_reader(self, reader: Principal | None) -> None:
        """Check messages against `reader` from now on (the connection refreshed its token)."""
        self.reader = reader
        self.plain = reader is None and self._filters_plain

    def matches(self, message: DataMessage) -> bool:
        """Whether `message` passes the filters the index does not cover.

        A filter matches only a message that carries its field with an allowed value.
        """
        if self.reader is not None and not readable(self.reader, message):
            return False
        for field, allowed in self._value_checks:
            if field_value(message, field) not in allowed:
                return False
        if self._min_severity is not None:
            rank = SEVERITY_RANK.get(field_value(message, "severity") or "")
            if rank is None or rank < self._min_severity:
                return False
        if self._min_price is None and self._max_price is None:
            return True
        return within(message_price(message.data), self._min_price, self._max_price)

    def matches_all(self, message: DataMessage) -> bool:
        """`matches` plus the key filter; for messages that did not come through the index."""
        if self.index_keys is not None and message.key not in self.index_keys:
            return False
        return self.plain or self.matches(message)

    def info(self) -> SubscriptionInfo:
        return SubscriptionInfo(
            subscription_id=self.subscription_id,
            stream=self.spec.name,
            filters=self.filters,
            rate_limit=self.rate_limit,
            created_at=self.created_at,
            messages_delivered=self.messages_delivered,
        )
