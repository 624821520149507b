"""Inbound frames of a connection: limits, decoding and the client commands of section 3.

One `CommandHandler` serves every connection of a node (no per-connection handler objects:
idle connections must stay small). Bad input gets an error reply and changes nothing else;
only floods and frames past the hard size cap close the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from tidewire.brokers.base import Broker, BrokerUnavailable
from tidewire.core import admission, recovery
from tidewire.core.auth import Authenticator
from tidewire.core.authentication import accept_token
from tidewire.core.connection import Connection
from tidewire.core.entitlements import (
    authorize_publish,
    publish_scope,
)
from tidewire.core.hub import Hub
from tidewire.core.queries import Queries
from tidewire.core.quotas import PublishRates, publisher_key
from tidewire.core.resubscribe import SubscriptionUpdates
from tidewire.core.subscription import Subscription
from tidewire.protocol.codec import decode_object, message_id_of, to_command
from tidewire.protocol.errors import CloseCode, ErrorCode, ProtocolError
from tidewire.protocol.ingest import build_data_messages
from tidewire.protocol.messages import (
    Ack,
    Auth,
    ClientCommand,
    DataMessage,
    ErrorReply,
    GetSnapshot,
    GetTradeHistory,
    Heartbeat,
    HeartbeatResponse,
    ListSubscriptions,
    Ping,
    Pong,
    Publish,
    Refresh,
    StreamPosition,
    Subscribe,
    SubscribeOrderBook,
    SubscriptionConfirmed,
    SubscriptionError,
    Subscriptions,
    Sync,
    Unsubscribe,
    UnsubscribeOrderBook,
    UnsubscriptionConfirmed,
    UpdateSubscription,
    now_iso,
)
from tidewire.protocol.paths import path_subscriptions

log = logging.getLogger("tidewire.commands")

MAX_NAMED_IDS = 100
"""Unknown ids a `not_found` answer lists at most."""
ORDER_BOOKS_UNAVAILABLE = (
    "order books are not available on this gateway yet: subscribe to market_data for the "
    "top of the book"
)


@dataclass(frozen=True, slots=True)
class CommandLimits:
    """The per-connection limits of the inbound side (all are settings)."""

    max_subscriptions: int
    max_message_bytes: int
    max_filter_values: int
    max_subscriptions_per_user: int = 1000
    max_connections_per_user: int = 200
    max_query_messages: int = 1000
    """The most messages a `get_snapshot` or `get_trade_history` answer carries."""
    max_queries_in_flight: int = 16
    """Queries (`get_snapshot`, `get_trade_history`) the node answers at once."""
    max_filter_values_per_connection: int = 10_000
    """Filter values all subscriptions of one connection hold together."""
    max_list_page: int = 100
    """Subscriptions one `list_subscriptions` answer lists at most."""


@dataclass(slots=True)
class CommandCounters:
    """Totals since start (server/metrics.py exports them)."""

    inbound_messages: int = 0
    errors_by_code: Counter[str] = field(default_factory=Counter)
    """Error replies (`error`, `subscription_error`), by error code."""
    recovery: Counter[str] = field(default_factory=Counter)
    """Subscribes with `since`: recovered, not_recovered_epoch, not_recovered_trimmed."""
    replayed: int = 0
    """Messages of replays handed to recovering subscribers (their first pages)."""


class CommandHandler:
    """Applies client commands to the hub and broker, and answers them."""

    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        authenticator: Authenticator,
        limits: CommandLimits,
        clock: Callable[[], float],
        spawn: Callable[[Coroutine[Any, Any, None]], None] | None = None,
        publish_rates: PublishRates | None = None,
    ) -> None:
        """`spawn` runs the asynchronous part of a command (a snapshot or replay fetch, a
        publish); by default a task on the running loop. `publish_rates`: the per-publisher
        budget shared with the REST API (None: unlimited)."""
        self.hub = hub
        self.publish_rates = publish_rates
        self.broker = broker
        self.authenticator = authenticator
        self.limits = limits
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._spawn = spawn or self._create_task
        self.queries = Queries(
            hub,
            broker,
            limits.max_query_messages,
            limits.max_filter_values,
            limits.max_queries_in_flight,
        )
        self.updates = SubscriptionUpdates(hub, broker, limits, self._spawn)
        self.counters = CommandCounters()

    def on_frame(self, connection: Connection, payload: bytes, binary: bool) -> None:
        """Handle one complete inbound message of `connection`."""
        now = self._clock()
        connection.last_inbound = now
        connection.messages_received += 1
        self.counters.inbound_messages += 1
        connection.bytes_received += len(payload)
        if not connection.inbound.take(now):
            # A flood is a protocol violation: answering each message would let one client
            # make the gateway do unbounded work.
            self.hub.close(connection, CloseCode.INBOUND_RATE_EXCEEDED, "inbound rate exceeded")
            return
        if len(payload) > self.limits.max_message_bytes:
            self._error(
                connection,
                ProtocolError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"message of {len(payload)} bytes exceeds the limit of "
                    f"{self.limits.max_message_bytes}",
                    {"limit": self.limits.max_message_bytes, "size": len(payload)},
                ),
                None,
            )
            return
        correlation_id: str | None = None
        try:
            raw = decode_object(payload, binary, connection.wire_format)
            correlation_id = message_id_of(raw)
            command = to_command(raw)
        except ProtocolError as exc:
            self._error(connection, exc, correlation_id)
            return
        principal = connection.principal
        if not (principal.authenticated or principal.open_access) and not isinstance(
            command, Auth | Ping
        ):
            # Until a token is presented only `auth` and `ping` are served: an unknown
            # caller gets no data, no positions and no subscription slots.
            self._error(
                connection,
                ProtocolError(ErrorCode.UNAUTHORIZED, "authenticate first: send auth {token}"),
                correlation_id,
            )
            return
        try:
            self._handle(connection, command)
        except ProtocolError as exc:
            self._error(connection, exc, correlation_id)
        except Exception:
            log.exception(
                "command %s failed on %s", type(command).__name__, connection.connection_id
            )
            self._error(
                connection,
                ProtocolError(ErrorCode.INTERNAL_ERROR, "internal error"),
                correlation_id,
            )

    def _handle(self, connection: Connection, command: ClientCommand) -> None:
        match command:
            case Subscribe():
                self._subscribe(connection, command)
            case Unsubscribe():
                self._unsubscribe(connection, command)
            case Heartbeat():
                self._heartbeat(connection, command)
            case ListSubscriptions():
                self.hub.send(connection, self._listing(connection, command))
            case Publish():
                self._publish(connection, command)
            case Ping():
                self.hub.send(connection, Pong(correlation_id=command.message_id))
            case Auth() | Refresh():
                self._auth(connection, command)
            case UpdateSubscription():
                self.updates.update(connection, command)
            case GetSnapshot():
                matcher = self.queries.check_snapshot(connection, command)
                self._spawn(self.queries.snapshot(command, matcher))
            case GetTradeHistory():
                matcher = self.queries.check_trade_history(connection, command)
                self._spawn(self.queries.trade_history(command, matcher))
            case Sync():
                self.queries.sync(connection, command)
            case SubscribeOrderBook():
                self._refuse(
                    connection,
                    command,
                    command.subscription_id,
                    ProtocolError(ErrorCode.UNKNOWN_STREAM, ORDER_BOOKS_UNAVAILABLE),
                )
            case UnsubscribeOrderBook():
                raise ProtocolError(ErrorCode.UNKNOWN_STREAM, ORDER_BOOKS_UNAVAILABLE)

    # ------------------------------------------------------------------ subscribe

    def _subscribe(self, connection: Connection, command: Subscribe) -> None:
        try:
            subscriptions = admission.admit(connection, command, self.limits, self.hub.ledger)
        except ProtocolError as exc:
            connection.errors += 1
            self._refuse(connection, command, command.subscription_id, exc)
            return
        for subscription in subscriptions:
            self._start(command, subscription)

    def _start(self, command: Subscribe, subscription: Subscription) -> None:
        if not recovery.needs_setup(subscription, command.since, command.snapshot):
            self.hub.add_subscription(subscription)
            self._confirm(command, subscription, self.broker.position(subscription.spec.name), None)
            return
        # Registered now, so that no live message is missed while the snapshot or replay is
        # fetched; those messages wait in the subscription's buffer until it is delivered.
        subscription.buffer = []
        subscription.gated = True
        self.hub.add_subscription(subscription)
        self._spawn(self._set_up(command, subscription))

    async def _set_up(self, command: Subscribe, subscription: Subscription) -> None:
        connection = subscription.connection
        try:
            setup = await recovery.prepare(
                self.broker, subscription, command.since, command.snapshot, self._spawn
            )
        except BrokerUnavailable as exc:
            self.hub.remove_subscription(subscription)
            if command.since is not None:
                # A recovering client (an SDK resubscribing after a reconnection) has nobody to
                # hand this error to: send it to reconnect and recover once the broker is back.
                self.hub.close(connection, CloseCode.SERVICE_RESTART, "broker unavailable")
                return
            self._refuse(
                connection,
                command,
                subscription.subscription_id,
                ProtocolError(ErrorCode.UNAVAILABLE, f"broker unavailable: {exc}"),
            )
            return
        except Exception:
            # A bug must not leave the subscription gated (buffering forever, never confirmed).
            log.exception(
                "setting up %s on %s failed", subscription.spec.name, connection.connection_id
            )
            self.hub.remove_subscription(subscription)
            self._refuse(
                connection,
                command,
                subscription.subscription_id,
                ProtocolError(
                    ErrorCode.INTERNAL_ERROR,
                    "internal error while preparing the snapshot or replay",
                ),
            )
            return
        if subscription.removed or connection.closed:
            return
        if command.since is not None:
            self._count_recovery(command.since, setup, subscription.spec.reliable)
        self._confirm(command, subscription, setup.position, setup.recovered)
        # Then the snapshot or replay, and the live messages buffered meanwhile, a chunk at
        # a time as the client reads (a failure there closes with 1011).
        self.hub.feeds.start(
            subscription,
            setup.messages,
            setup.position,
            # Live messages buffered meanwhile go through the subscription's rate limit.
            throttled=subscription.throttle is not None,
            pages=setup.pages,
        )

    def _count_recovery(self, since: StreamPosition, setup: recovery.Setup, replay: bool) -> None:
        counters = self.counters
        if setup.recovered:
            counters.recovery["recovered"] += 1
            if replay:  # a reliable stream's replay (a latest-value stream sends its snapshot)
                counters.replayed += len(setup.messages)
        elif since.epoch != setup.position.epoch:
            counters.recovery["not_recovered_epoch"] += 1
        else:
            counters.recovery["not_recovered_trimmed"] += 1

    def _refuse(
        self,
        connection: Connection,
        command: Subscribe | SubscribeOrderBook,
        subscription_id: str | None,
        exc: ProtocolError,
    ) -> None:
        """Answer a subscribe with `subscription_error` (retryable as its code says)."""
        self.counters.errors_by_code[exc.code.value] += 1
        self.hub.send(
            connection,
            SubscriptionError(
                correlation_id=command.message_id,
                subscription_id=subscription_id,
                error_code=exc.code.value,
                error_message=exc.message,
                retryable=exc.retryable,
            ),
        )

    def _confirm(
        self,
        command: Subscribe,
        subscription: Subscription,
        position: StreamPosition,
        recovered: bool | None,
    ) -> None:
        self.hub.send(
            subscription.connection,
            SubscriptionConfirmed(
                correlation_id=command.message_id,
                subscription_id=subscription.subscription_id,
                stream=subscription.spec.name,
                topic=command.topic or subscription.spec.name,
                filters=subscription.filters,
                rate_limit=subscription.rate_limit,
                position=position,
                recovered=recovered,
            ),
        )

    def _create_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unsubscribe(self, connection: Connection, command: Unsubscribe) -> None:
        ids = list(command.subscription_ids or [])
        if command.subscription_id is not None:
            ids.insert(0, command.subscription_id)
        if not ids:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "unsubscribe needs subscription_id or subscription_ids"
            )
        # An id of an `event_types` subscribe names its whole group.
        ids = admission.unsubscribe_ids(connection, ids)
        unknown = [sid for sid in ids if sid not in connection.subscriptions]
        if unknown:
            # All or nothing: a typo in a bulk unsubscribe must not half-apply it. The
            # answer names the first unknown ids only: a frame of ids must not come back
            # several times its size.
            named = ", ".join(map(repr, unknown[:10])) + (", ..." if len(unknown) > 10 else "")
            raise ProtocolError(
                ErrorCode.NOT_FOUND,
                f"no subscription {named} on this connection",
                {"subscription_ids": unknown[:MAX_NAMED_IDS]},
            )
        for sid in dict.fromkeys(ids):
            self.hub.remove_subscription(connection.subscriptions[sid])
        self.hub.send(
            connection,
            UnsubscriptionConfirmed(
                correlation_id=command.message_id, subscription_ids=list(dict.fromkeys(ids))
            ),
        )

    # ------------------------------------------------------------------ others

    def _heartbeat(self, connection: Connection, command: Heartbeat) -> None:
        subscriptions = connection.subscriptions.values()
        # A stream with a subscription still receiving its snapshot, replay or update is
        # left out: its position is ahead of what that subscription was sent, and a client
        # resuming from it would skip the messages held back meanwhile.
        settling = {s.spec.name for s in subscriptions if s.buffer is not None}
        streams = {s.spec.name for s in subscriptions} - settling
        self.hub.send(
            connection,
            HeartbeatResponse(
                correlation_id=command.message_id,
                client_timestamp=command.client_timestamp,
                server_timestamp=now_iso(),
                positions={name: self.broker.position(name) for name in sorted(streams)},
            ),
        )

    def _publish(self, connection: Connection, command: Publish) -> None:
        # A 0.1 risk_metrics message becomes one message per metric: one ack each.
        messages = build_data_messages(command.message, default_source="ws")
        for message in messages:
            authorize_publish(connection.principal, message)
        if self.publish_rates is not None:
            publisher = publisher_key(connection.user_id, connection.address)
            wait = self.publish_rates.take(publisher, len(messages), self._clock())
            if wait:
                raise self.publish_rates.refusal(wait)
        self._spawn(self._publish_and_ack(connection, command.message_id, messages))

    async def _publish_and_ack(
        self, connection: Connection, request_id: str | None, messages: list[DataMessage]
    ) -> None:
        try:
            outcomes = await self.broker.publish_many(
                messages, scope=publish_scope(connection.principal)
            )
        except BrokerUnavailable as exc:
            self._error(
                connection,
                ProtocolError(ErrorCode.UNAVAILABLE, f"broker unavailable: {exc}"),
                request_id,
            )
            return
        for outcome in outcomes:
            self.hub.send(
                connection,
                Ack(
                    correlation_id=request_id,
                    ack_message_id=outcome.message.message_id,
                    seq=outcome.message.seq,
                    stream=outcome.message.stream,
                    status="duplicate" if outcome.duplicate else "accepted",
                    duplicate=outcome.duplicate,
                ),
            )

    def _auth(self, connection: Connection, command: Auth | Refresh) -> None:
        first = not connection.principal.authenticated
        accept_token(
            self.hub, self.authenticator, self.limits.max_connections_per_user, connection, command
        )
        if first and connection.principal.authenticated and not connection.closed:
            self.subscribe_path(connection)

    def _listing(self, connection: Connection, command: ListSubscriptions) -> Subscriptions:
        """One page of `list_subscriptions`: a listing never answers a small request with
        megabytes (each page is bounded, and so are the filter values behind it)."""
        page = self.limits.max_list_page
        limit = command.limit
        if limit is not None:
            if type(limit) is not int or limit < 1:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "`limit` must be a positive integer")
            page = min(limit, page)
        ids = list(connection.subscriptions)
        start = 0
        if command.after is not None:
            if command.after not in connection.subscriptions:
                raise ProtocolError(
                    ErrorCode.NOT_FOUND,
                    f"no subscription {command.after!r} on this connection",
                    {"after": command.after},
                )
            start = ids.index(command.after) + 1
        chosen = ids[start : start + page]
        more = start + page < len(ids)
        return Subscriptions(
            correlation_id=command.message_id,
            subscriptions=[connection.subscriptions[sid].info() for sid in chosen],
            next=chosen[-1] if more and chosen else None,
        )

    def subscribe_path(self, connection: Connection) -> None:
        """Subscribe a connection of a per-topic path (`/ws/system/health`, ...) to its
        streams, as if it had sent the subscribes (`protocol.paths`)."""
        for command in path_subscriptions(connection.path) or ():
            self._subscribe(connection, command)

    def _error(
        self, connection: Connection, exc: ProtocolError, correlation_id: str | None
    ) -> None:
        connection.errors += 1
        self.counters.errors_by_code[exc.code.value] += 1
        self.hub.send(connection, ErrorReply.of(exc, correlation_id))
