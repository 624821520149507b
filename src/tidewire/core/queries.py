"""One-shot reads of the original hooks: `get_snapshot`, `get_trade_history` and `sync`.

Each answers with one reply and holds nothing afterwards. The messages a query returns pass
the same filters and the same entitlement rule as a subscription's (a detached
`Subscription` does the matching), so a query never shows what a subscription could not.
Sizes are bounded by `max_query_messages`; the history a trade query scans, by ten times the
trades it asks for (at most 2,000); a connection has one query in flight at a time and the
node `max_queries_in_flight`, so that no caller can keep the broker busy for everyone. The
answer is checked once more against the connection's token when the broker has answered (a
`refresh` may have narrowed it meanwhile).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from tidewire.brokers.base import Broker, BrokerUnavailable
from tidewire.core.entitlements import authorize_subscribe, message_check, readable
from tidewire.core.subscription import Subscription
from tidewire.protocol.compat import topic_filters
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.messages import (
    DataMessage,
    ErrorReply,
    GetSnapshot,
    GetTradeHistory,
    Snapshot,
    Sync,
    SyncResponse,
    TradeHistory,
    now_iso,
)
from tidewire.protocol.streams import STREAMS, StreamSpec, resolve_stream

if TYPE_CHECKING:
    from tidewire.core.connection import Connection
    from tidewire.core.hub import Hub

log = logging.getLogger("tidewire.commands")
T = TypeVar("T")

TRADE_STREAM = "trade_updates"
DEFAULT_TRADE_HISTORY = 100
TRADE_HISTORY_SCAN_FACTOR = 10
MAX_TRADE_HISTORY_SCAN = 2000
"""A trade query looks at most at the newest 10 x `limit` trades, and never more than this:
the cost of one query is bounded whatever the caller may read."""


def detached(
    connection: Connection, spec: StreamSpec, raw_filters: object, max_values: int
) -> Subscription:
    """A subscription that is never registered: the filters and reader of a query.

    Raises ProtocolError (invalid_filter, forbidden) as a subscribe would."""
    filters = validate_filters(raw_filters, spec, max_values)
    principal = connection.principal
    filters = authorize_subscribe(principal, spec, filters)
    return Subscription(
        connection, "query", spec, filters, now_iso(), reader=message_check(principal, spec)
    )


def _limit(requested: int | None, default: int, maximum: int) -> int:
    if requested is None:
        return min(default, maximum)
    if type(requested) is not int or requested < 1:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "`limit` must be a positive integer")
    return min(requested, maximum)


class Queries:
    """Answers the one-shot commands of every connection of a node."""

    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        max_messages: int,
        max_filter_values: int,
        max_in_flight: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`max_messages`: the most messages one answer carries (`max_query_messages`);
        `max_in_flight`: queries the node answers at once (`max_queries_in_flight`)."""
        self.hub = hub
        self.broker = broker
        self.max_messages = max_messages
        self.max_filter_values = max_filter_values
        self.max_in_flight = max_in_flight
        self._busy: set[str] = set()
        """Connections (by id) with a query in flight."""
        self._wall_clock = clock

    def sync(self, connection: Connection, command: Sync) -> None:
        self.hub.send(
            connection,
            SyncResponse(
                correlation_id=command.message_id,
                client_timestamp=command.client_timestamp,
                server_timestamp=now_iso(),
                server_time=round(self._wall_clock() * 1000.0, 3),
            ),
        )

    def check_snapshot(self, connection: Connection, command: GetSnapshot) -> Subscription:
        """Validate a `get_snapshot` (synchronously, so errors answer at once)."""
        spec = resolve_stream(command.stream) if command.stream else None
        if spec is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_STREAM,
                f"unknown stream {command.stream!r}",
                {"stream": command.stream},
            )
        if not spec.keeps_last_values:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"{spec.name} keeps no latest values: subscribe with `since` to replay it"
                + (", or send get_trade_history" if spec.name == TRADE_STREAM else ""),
                {"stream": spec.name},
            )
        _limit(command.limit, self.max_messages, self.max_messages)
        raw_filters = command.filters
        if command.topic is not None:
            raw_filters = topic_filters(spec, command.topic, raw_filters)
        matcher = detached(connection, spec, raw_filters, self.max_filter_values)
        self._begin(connection)
        return matcher

    async def snapshot(self, command: GetSnapshot, matcher: Subscription) -> None:
        connection = matcher.connection
        result = await self._fetch(
            connection, command.message_id, self.broker.snapshot(matcher.spec.name)
        )
        if result is None:
            return
        limit = _limit(command.limit, self.max_messages, self.max_messages)
        matching = [m for m in result.messages if self._readable(matcher, m)]
        self.hub.send(
            connection,
            Snapshot(
                correlation_id=command.message_id,
                stream=matcher.spec.name,
                topic=command.topic or matcher.spec.name,
                position=result.position,
                messages=matching[-limit:],
                truncated=len(matching) > limit,
            ),
        )

    def check_trade_history(self, connection: Connection, command: GetTradeHistory) -> Subscription:
        _limit(command.limit, DEFAULT_TRADE_HISTORY, self.max_messages)
        spec = STREAMS[TRADE_STREAM]
        matcher = detached(connection, spec, command.filters, self.max_filter_values)
        self._begin(connection)
        return matcher

    async def trade_history(self, command: GetTradeHistory, matcher: Subscription) -> None:
        connection = matcher.connection
        limit = _limit(command.limit, DEFAULT_TRADE_HISTORY, self.max_messages)
        scan = min(limit * TRADE_HISTORY_SCAN_FACTOR, MAX_TRADE_HISTORY_SCAN)
        recent = await self._fetch(
            connection, command.message_id, self.broker.recent(TRADE_STREAM, scan)
        )
        if recent is None:
            return
        # Read after the fetch: the trades never reach past what this node delivered.
        position = self.broker.position(TRADE_STREAM)
        trades = [m for m in recent if self._readable(matcher, m)][-limit:]
        self.hub.send(
            connection,
            TradeHistory(correlation_id=command.message_id, position=position, trades=trades),
        )

    async def _fetch(
        self, connection: Connection, request_id: str | None, read: Awaitable[T]
    ) -> T | None:
        """The broker's answer to a query, or None once the error is answered; either way
        the connection's query is counted out."""
        try:
            return await read
        except BrokerUnavailable as exc:
            self._unavailable(connection, request_id, exc)
        except Exception:
            self._failed(connection, request_id)
        finally:
            self._busy.discard(connection.connection_id)
        return None

    def _begin(self, connection: Connection) -> None:
        """Count a query in; raises ProtocolError(rate_limited) past the bounds."""
        if connection.connection_id in self._busy:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "one get_snapshot or get_trade_history at a time: wait for its answer",
            )
        if len(self._busy) >= self.max_in_flight:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"the gateway is answering {self.max_in_flight} queries: retry",
                {"limit": self.max_in_flight},
            )
        self._busy.add(connection.connection_id)

    @staticmethod
    def _readable(matcher: Subscription, message: DataMessage) -> bool:
        # The token may have been refreshed (narrowed) while the broker answered.
        return matcher.matches_all(message) and readable(matcher.connection.principal, message)

    def _failed(self, connection: Connection, request_id: str | None) -> None:
        log.exception("a query of %s failed", connection.connection_id)
        error = ProtocolError(ErrorCode.INTERNAL_ERROR, "internal error")
        self.hub.send(connection, ErrorReply.of(error, request_id))

    def _unavailable(
        self, connection: Connection, request_id: str | None, exc: BrokerUnavailable
    ) -> None:
        error = ProtocolError(ErrorCode.UNAVAILABLE, f"broker unavailable: {exc}")
        self.hub.send(connection, ErrorReply.of(error, request_id))
