"""The inbound side of a client: frames in, messages to subscriptions, replies to waiters.

The dispatcher holds everything that waits for the gateway (subscriptions, subscribe
confirmations, request replies, heartbeat round trips) and what the gateway said about the
connection. It never sends: the connection manager sends and tells the dispatcher what it
sent, so the rules of who gets which reply live here in one place.

Order of the calls for one message: the subscriptions first (routing, confirmation,
positions), then the resync handlers of any gap that message revealed, then the message
handlers; a coroutine handler is awaited before the next message is processed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tidewire.client.codec import FrameCodec
from tidewire.client.errors import ConnectionClosedError, ServerError, SubscriptionError
from tidewire.client.heartbeat import HeartbeatTracker
from tidewire.client.resync import ResyncHandler, call_resync_handlers
from tidewire.client.routing import Router
from tidewire.client.subscription import Subscription
from tidewire.client.wire import position_of
from tidewire.protocol.messages import REPLY_TYPES

logger = logging.getLogger("tidewire.client")

MessageHandler = Callable[[dict[str, Any]], Awaitable[None] | None]
"""`fn(message)` for `add_message_handler`; may be a coroutine function."""


@dataclass(slots=True)
class _PendingUpdate:
    """An `update_subscription` waiting for its confirmation."""

    subscription: Subscription
    filters: dict[str, Any] | None
    rate_limit: float | None
    sent: bool = False


class Dispatcher:
    """Decodes frames, routes data messages, resolves the futures of waiting callers."""

    def __init__(self, codec: FrameCodec, *, debug: bool = False) -> None:
        self.codec = codec
        self.debug = debug
        self.subscriptions: dict[str, Subscription] = {}
        """Active subscriptions by id, in creation order (the resubscription order)."""
        self.router: Router[Subscription] = Router()
        self.handlers: dict[str, list[MessageHandler]] = {}
        self.resync_handlers: list[ResyncHandler] = []
        # Gaps revealed by the message being processed: (subscription, resync marker).
        self._resyncs: list[tuple[Subscription, dict[str, Any]]] = []
        self.heartbeats = HeartbeatTracker()
        # subscription_id -> future of its first confirmation, while `subscribe()` waits.
        self._confirmations: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # message_id of a subscribe sent on the current connection -> its subscription_id.
        self._subscribe_ids: dict[str, str] = {}
        # message_id -> future of the reply, while `request()` waits.
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # Requests written on the current connection: they fail when it is lost.
        self._sent_requests: set[str] = set()
        # message_id -> an update to apply when the gateway confirms it (even when the
        # caller stopped waiting: the gateway applied it, so must the routing).
        self._updates: dict[str, _PendingUpdate] = {}
        self._pings: list[asyncio.Future[float]] = []

        self.established = False
        """True once the current connection's `connection_established` arrived."""
        self.connection_id: str | None = None
        self.server_limits: dict[str, Any] | None = None
        self.server_heartbeat_interval: float | None = None
        self.message_latency: float | None = None
        self.messages_received = 0
        self.user_id: str | None = None
        """Who the gateway says this connection is (`connection_established`, `auth_ok`)."""
        self.expires_at: str | None = None
        """When the connection's token expires (ISO-8601), as the gateway last said."""

    # ------------------------------------------------------------------ bookkeeping

    def add_subscription(self, subscription: Subscription) -> asyncio.Future[dict[str, Any]]:
        """Register a new subscription; the future resolves with its first confirmation."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._confirmations[subscription.subscription_id] = future
        self.subscriptions[subscription.subscription_id] = subscription
        self.router.add(
            subscription.subscription_id, subscription.stream, subscription.filters, subscription
        )
        return future

    def forget(self, subscription: Subscription, error: BaseException | None) -> None:
        """Stop routing to `subscription` and end its iterator (with `error`, if any)."""
        self.subscriptions.pop(subscription.subscription_id, None)
        self.router.remove(subscription.subscription_id)
        self._confirmations.pop(subscription.subscription_id, None)
        subscription.finish(error)

    def subscribe_sent(self, message_id: str, subscription_id: str) -> None:
        """A subscribe went out on the current connection (replies correlate by message_id)."""
        self._subscribe_ids[message_id] = subscription_id

    def expect_update(
        self,
        message_id: str,
        subscription: Subscription,
        filters: dict[str, Any] | None,
        rate_limit: float | None,
    ) -> None:
        """An `update_subscription` of `subscription` is about to be sent as `message_id`.

        Its `subscription_confirmed` (`updated: true`) switches the subscription's local
        filters and rate limit in the reader, before any later message is routed.
        """
        self._updates[message_id] = _PendingUpdate(subscription, filters, rate_limit)

    def release_update(self, message_id: str) -> None:
        """The caller stopped waiting: forget the update unless it was sent (then its
        confirmation, if one comes, still applies it)."""
        update = self._updates.get(message_id)
        if update is not None and not update.sent:
            del self._updates[message_id]

    def expect_reply(self, message_id: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the reply whose `correlation_id` is `message_id`."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[message_id] = future
        return future

    def release(self, message_id: str) -> None:
        """The caller stopped waiting for the reply to `message_id`."""
        self._requests.pop(message_id, None)
        self._sent_requests.discard(message_id)

    def sent(self, message: dict[str, Any]) -> None:
        """`message` was written on the current connection."""
        message_id = message.get("message_id")
        if not isinstance(message_id, str):
            return
        if message_id in self._requests:
            self._sent_requests.add(message_id)
        update = self._updates.get(message_id)
        if update is not None:
            update.sent = True

    def expect_ping(self) -> asyncio.Future[float]:
        """A future for the round trip (ms) of the next heartbeat response."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings.append(future)
        return future

    def release_ping(self, future: asyncio.Future[float]) -> None:
        if future in self._pings:
            self._pings.remove(future)

    def connection_lost(self, code: int) -> None:
        """The current connection ended: replies to what was sent on it will never come."""
        self.established = False
        for subscription in self.subscriptions.values():
            subscription.state.on_disconnected()
        self._subscribe_ids.clear()
        self.heartbeats.clear()
        # Never confirmed on the lost connection; the next one resubscribes with the filters
        # the subscription has. Updates still queued go out on the next connection.
        self._updates = {key: update for key, update in self._updates.items() if not update.sent}
        lost = ConnectionClosedError("connection lost before the reply", code=code)
        for message_id in self._sent_requests:
            future = self._requests.get(message_id)
            if future is not None and not future.done():
                future.set_exception(lost)
        self._sent_requests.clear()

    def shut_down(self, error: ConnectionClosedError | None) -> None:
        """The client stopped: end every subscription and fail every waiter."""
        for subscription in list(self.subscriptions.values()):
            subscription.finish(error)
        self.subscriptions.clear()
        self.router = Router()
        failure = error or ConnectionClosedError("the client was closed")
        waiters: list[asyncio.Future[Any]] = [
            *self._confirmations.values(),
            *self._requests.values(),
            *self._pings,
        ]
        for future in waiters:
            if not future.done():
                future.set_exception(failure)
        self._confirmations.clear()
        self._subscribe_ids.clear()
        self._sent_requests.clear()
        self._updates.clear()
        self._resyncs.clear()

    # ------------------------------------------------------------------ inbound

    async def handle_frame(self, frame: bytes | str) -> None:
        """Process one frame: a message, or a batch of messages, in order."""
        try:
            message = self.codec.decode(frame)
        except ValueError as exc:
            logger.warning("ignoring a frame from the gateway: %s", exc)
            return
        messages = message.get("messages")
        if message.get("type") == "batch" and isinstance(messages, list):
            for item in messages:
                if isinstance(item, dict):
                    await self.handle_message(item)
        else:
            await self.handle_message(message)

    async def handle_message(self, message: dict[str, Any]) -> None:
        """Process one message: route or resolve, then call the message handlers."""
        self.messages_received += 1
        if self.debug:
            logger.debug("recv %s", message)
        message_type = message.get("type")
        try:
            if message_type in REPLY_TYPES:
                self._handle_reply(str(message_type), message)
            elif isinstance(message.get("stream"), str):
                self._route(message)
        except Exception:
            # A bad message must not take the reader (and the connection) down with it.
            logger.exception("failed to process a %s message", message_type)
        while self._resyncs:
            subscription, marker = self._resyncs.pop(0)
            handlers = [subscription.on_resync] if subscription.on_resync is not None else []
            await call_resync_handlers([*handlers, *self.resync_handlers], subscription, marker)
        if isinstance(message_type, str):
            await self._call_handlers(message_type, message)

    def _route(self, message: dict[str, Any]) -> None:
        delivered = False
        for subscription in self.router.targets(message):
            # Only subscriptions the gateway confirmed on this connection get messages, so a
            # new subscription never sees messages from before it existed on the gateway.
            if subscription.state.confirmed:
                marker = subscription.deliver(message)
                if marker is not None:
                    self._resyncs.append((subscription, marker))
                delivered = True
        if not delivered and self.debug:
            logger.debug("no subscription for %s %s", message.get("stream"), message.get("key"))

    def _handle_reply(self, message_type: str, message: dict[str, Any]) -> None:
        # The gateway never lets a reply overtake the replay or snapshot it queued for a
        # reliable stream before it: any reply means those are complete.
        for subscription in self.subscriptions.values():
            subscription.state.settle()
        correlation_id = message.get("correlation_id")
        # The answer to an update_subscription: it applies (or is refused) here, never as
        # the confirmation of a subscribe.
        update = (
            self._updates.pop(correlation_id, None) if isinstance(correlation_id, str) else None
        )
        if message_type == "connection_established":
            self._on_established(message)
        elif update is not None or message.get("updated") is True:
            if update is not None and message_type == "subscription_confirmed":
                self._on_updated(update)
        elif message_type in ("subscription_confirmed", "subscription_error"):
            self._on_subscription_reply(message_type, message)
        elif message_type == "heartbeat_response":
            self._on_heartbeat_response(message)
        elif message_type == "auth_ok":
            self._on_identity(message)
        if not isinstance(correlation_id, str):
            if message_type == "error":
                logger.warning("error from the gateway: %s", message)
            return
        future = self._requests.get(correlation_id)
        if future is not None and not future.done():
            if message_type == "error":
                future.set_exception(ServerError.from_reply(message))
            elif message_type == "subscription_error":
                future.set_exception(SubscriptionError.from_reply(message))
            else:
                future.set_result(message)
        elif message_type == "error":
            if update is None and correlation_id in self._subscribe_ids:
                # A subscribe so malformed that the gateway answered `error`.
                self._on_subscription_reply("subscription_error", message)
            else:
                logger.warning("error from the gateway: %s", message)

    def _on_updated(self, update: _PendingUpdate) -> None:
        subscription = update.subscription
        if self.subscriptions.get(subscription.subscription_id) is not subscription:
            return  # unsubscribed meanwhile
        subscription.state.on_updated(update.filters, update.rate_limit)
        self.router.add(
            subscription.subscription_id, subscription.stream, subscription.filters, subscription
        )

    def _on_established(self, message: dict[str, Any]) -> None:
        connection_id = message.get("connection_id")
        self.connection_id = connection_id if isinstance(connection_id, str) else ""
        self.established = True
        limits = message.get("limits")
        self.server_limits = dict(limits) if isinstance(limits, dict) else None
        interval = message.get("heartbeat_interval")
        if isinstance(interval, int | float) and not isinstance(interval, bool):
            self.server_heartbeat_interval = float(interval)
        self._on_identity(message)

    def _on_identity(self, message: dict[str, Any]) -> None:
        user_id, expires_at = message.get("user_id"), message.get("expires_at")
        self.user_id = user_id if isinstance(user_id, str) else None
        self.expires_at = expires_at if isinstance(expires_at, str) else None

    def _on_subscription_reply(self, message_type: str, message: dict[str, Any]) -> None:
        # Every subscribe this client sends carries a message_id, so a reply correlated with
        # another id answers a raw subscribe sent with `send_message`, even when it names
        # one of our subscription ids (duplicate_subscription): it must not touch ours.
        correlation_id = message.get("correlation_id")
        if isinstance(correlation_id, str):
            subscription_id: Any = self._subscribe_ids.pop(correlation_id, None)
        else:
            subscription_id = message.get("subscription_id")
        subscription = (
            self.subscriptions.get(subscription_id) if isinstance(subscription_id, str) else None
        )
        if subscription is None:
            return
        future = self._confirmations.pop(subscription.subscription_id, None)
        if message_type == "subscription_confirmed":
            marker = subscription.confirmed(message)
            if marker is not None:
                self._resyncs.append((subscription, marker))
            # The gateway names the canonical stream; route by that name from now on.
            self.router.add(
                subscription.subscription_id,
                subscription.stream,
                subscription.filters,
                subscription,
            )
            if future is not None and not future.done():
                future.set_result(message)
            return
        error = SubscriptionError.from_reply(message)
        error.subscription_id = subscription.subscription_id
        if future is None:
            logger.warning("resubscription of %s refused: %s", subscription.subscription_id, error)
        self.forget(subscription, error)
        if future is not None and not future.done():
            future.set_exception(error)

    def _on_heartbeat_response(self, message: dict[str, Any]) -> None:
        latency = self.heartbeats.finish(message.get("client_timestamp"))
        if latency is not None:
            self.message_latency = latency
            for future in self._pings:
                if not future.done():
                    future.set_result(latency)
        positions = message.get("positions")
        if not isinstance(positions, dict):
            return
        for subscription in self.subscriptions.values():
            position = position_of(positions.get(subscription.stream))
            if position is not None and subscription.state.confirmed:
                subscription.state.advance(position)

    async def _call_handlers(self, message_type: str, message: dict[str, Any]) -> None:
        handlers = [*self.handlers.get(message_type, ()), *self.handlers.get("*", ())]
        for handler in handlers:
            try:
                result = handler(message)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("message handler %r failed", handler)
