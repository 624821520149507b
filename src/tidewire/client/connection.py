"""`TidewireClient`: the asyncio connection manager of the Python SDK.

The Python side of the original frontend's `useWebSocketManager` hook: one WebSocket to the
gateway, kept alive with heartbeats, re-established with backoff after the close codes of
docs/protocol.md section 6 that call for it, with subscriptions re-sent and queued commands
flushed on every (re)connection.

One supervisor task owns the connection: it connects, re-sends subscriptions, flushes the
queue, then reads frames until the connection ends, and decides from the close code whether
to reconnect. What the application calls (`subscribe`, `send_message`, ...) only writes on
the current connection or queues for the next one; the `Dispatcher` handles what comes back.

Methods take a `timeout` in seconds, like `websockets` and `asyncio.wait_for` do, hence the
`noqa: ASYNC109` markers: the timeout of a request is part of the request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections.abc import Mapping
from contextlib import suppress
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tidewire.client.backoff import Backoff
from tidewire.client.codec import FrameCodec, connection_url
from tidewire.client.dispatch import Dispatcher
from tidewire.client.errors import ConnectionClosedError, ServerError
from tidewire.client.link import GiveUp, Link
from tidewire.client.outbound import OutboundQueue
from tidewire.client.queries import ClientQueries
from tidewire.client.reconnect import ABNORMAL_CLOSURE, reconnect_refusal, throttled
from tidewire.client.resync import ResyncHandler
from tidewire.client.state import ConnectionState, StateTracker
from tidewire.client.subscription import Subscription, new_subscription
from tidewire.client.tokens import TokenSource
from tidewire.client.wire import position_of
from tidewire.protocol.codec import SUBPROTOCOL_JSON
from tidewire.protocol.messages import Filters, StreamPosition, new_message_id

logger = logging.getLogger("tidewire.client")
MAX_LIST_PAGES = 1000
"""Pages of `list_subscriptions` the SDK follows at most."""


class TidewireClient(ClientQueries):
    """Connection manager for one Tidewire gateway connection.

    Use it as `async with TidewireClient(url) as client:`, or `await client.connect()` and
    `await client.close()`. Options:

    - `auto_reconnect`: reconnect after the close codes that call for it (1001, 1006, 1011,
      1012, 1013, 4000 (an operator closed this connection), 4008, 4010, and 4009/4029 with
      a longer backoff). Never after 1000, 1008, 1009, 4003; 4001 closes the client with
      `AuthenticationError`.
    - `reconnect_interval`, `max_reconnect_interval`: base and cap, in seconds, of the
      exponential backoff with full jitter between attempts (see `Backoff`).
    - `max_reconnect_attempts`: attempts after a lost connection (or a failed first
      connection) before the client gives up and closes; None retries forever. The counter
      restarts after every successful connection.
    - `heartbeat_interval`: seconds between heartbeats (None: none); their round trip is
      `message_latency`. `heartbeat_timeout` (default three intervals): seconds without any
      frame from the gateway after which the connection is considered dead and replaced.
    - `message_queue_size`: commands sent while disconnected wait in a queue of this many
      entries and are sent in order after the next connection's resubscriptions. When it is
      full, sending raises `QueueFull`: nothing is ever dropped silently.
    - `subscription_queue_size`: default bounded queue size of every subscription.

    Besides subscriptions: `update_subscription` (or `Subscription.update`) changes one's
    filters or rate limit in place, `get_snapshot` and `trade_history` read the latest values
    and recent trades without subscribing, `sync` measures the gateway's clock (see
    `ClientQueries`).

    Recovery needs no application code: after every reconnection each subscription is sent
    again with `since` = its `position`, and the gateway replays what it missed; duplicates
    are dropped. When it cannot (`recovered: false`), or a subscription's queue overflows,
    the subscription's iterator yields a resync marker at the place of the gap and the
    resync handlers are called (`add_resync_handler`, `subscribe(on_resync=...)`; see
    `tidewire.client.resync`).
    - `token`: a JWT, or a provider (a function, plain or async, returning one) that is
      called before every connection attempt and again before the token expires (the new
      token goes to the gateway as `refresh`). With a provider a 4001 close reconnects
      with a new token; with a fixed token it closes the client (`AuthenticationError`),
      as does a handshake refused with 401.
    - `ssl`: an `ssl.SSLContext` for `wss://` URLs; `ca_file`: a PEM file of the CAs to
      trust instead of the system's (e.g. a gateway's self-signed certificate).
    - `subprotocol`: `tidewire.v3.json` (text frames) or `tidewire.v3.msgpack` (binary).
    - `decimals_as_strings`: ask for decimal numbers as strings (`decimals=string`; use
      `decimal.Decimal(value)`); `batch_ms`: ask the gateway to batch messages into one
      frame per flush (unpacked transparently).
    - `debug`: log every frame sent and received at DEBUG on the `tidewire.client` logger
      (configure logging to see them).
    - `request_timeout`: default timeout of `subscribe`, `unsubscribe`, `request`, `ping`;
      `connect_timeout`: timeout of one connection attempt, handshake and
      `connection_established` included.
    """

    def __init__(
        self,
        url: str,
        *,
        auto_reconnect: bool = True,
        reconnect_interval: float = 1.0,
        max_reconnect_interval: float = 30.0,
        max_reconnect_attempts: int | None = None,
        heartbeat_interval: float | None = 15.0,
        heartbeat_timeout: float | None = None,
        message_queue_size: int = 1000,
        subscription_queue_size: int = 10_000,
        subprotocol: str = SUBPROTOCOL_JSON,
        decimals_as_strings: bool = False,
        batch_ms: int | None = None,
        debug: bool = False,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        backoff: Backoff | None = None,
        token: TokenSource | None = None,
        ssl: _ssl.SSLContext | None = None,
        ca_file: str | None = None,
    ) -> None:
        if max_reconnect_attempts is not None and max_reconnect_attempts < 0:
            raise ValueError("max_reconnect_attempts must not be negative")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive (or None)")
        if subscription_queue_size < 1:
            raise ValueError("subscription_queue_size must be at least 1")
        self.url = url
        """The gateway URL as given (connection options are added as query parameters)."""
        codec = FrameCodec(subprotocol)
        self._auto_reconnect = auto_reconnect
        self._max_reconnect_attempts = max_reconnect_attempts
        if heartbeat_timeout is None and heartbeat_interval is not None:
            heartbeat_timeout = 3 * heartbeat_interval
        self._subscription_queue_size = subscription_queue_size
        self._request_timeout = request_timeout
        self._backoff = backoff or Backoff(
            reconnect_interval, max(max_reconnect_interval, reconnect_interval)
        )
        self._states = StateTracker()
        self._inbound = Dispatcher(codec, debug=debug)
        self._outbound = OutboundQueue(message_queue_size)
        self._link = Link(
            connection_url(url, batch_ms=batch_ms, decimals_as_strings=decimals_as_strings),
            codec,
            self._inbound,
            self._outbound,
            connect_timeout=connect_timeout,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            debug=debug,
            token=token,
            ssl_context=ssl if ca_file is None else _ssl.create_default_context(cafile=ca_file),
        )
        self._renewable_token = callable(token)
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._reconnect_attempts = 0
        self._last_error: ConnectionClosedError | None = None
        self._close_code: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> TidewireClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Start the client and wait until it is connected.

        With `auto_reconnect`, failed attempts are retried with backoff (up to
        `max_reconnect_attempts`). Raises `ConnectionClosedError` (or `AuthenticationError`)
        when the client gives up, TimeoutError after `timeout` seconds; either way the
        client is closed again. Calling it on a running client just waits (and leaves the
        client running when the wait fails).
        """
        started = self._supervisor is None or self._supervisor.done()
        if started:
            self._closing = False
            self._last_error = None
            self._reconnect_attempts = 0
            self._backoff.reset()
            self._states.set(ConnectionState.CONNECTING)
            self._supervisor = asyncio.create_task(self._run(), name="tidewire-client")
        try:
            await self.wait_connected(timeout)
        except BaseException:
            if started:
                await self.close()
            raise

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the state is CONNECTED (returns at once when it is).

        Raises the client's `last_error` (a `ConnectionClosedError`) when it is or becomes
        closed, and TimeoutError after `timeout` seconds. A client not started yet is
        waited for until someone calls `connect()`.
        """
        async with asyncio.timeout(timeout):
            while self._states.state is not ConnectionState.CONNECTED:
                if self._states.state is ConnectionState.CLOSED:
                    raise self._last_error or ConnectionClosedError("the client is closed")
                await self._states.changed()

    async def close(self) -> None:
        """Close the connection (code 1000) and stop reconnecting.

        Subscriptions end (their iterators finish after the queued messages), pending
        requests fail with `ConnectionClosedError`, queued commands are discarded.
        """
        self._closing = True
        ws = self._link.ws
        if ws is not None:
            with suppress(Exception):
                await ws.close()
        task = self._supervisor
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            # asyncio.wait, not `await task`: the task's cancellation is expected, but a
            # cancellation of the caller must still propagate.
            await asyncio.wait([task])
        self._stop(None)

    # ------------------------------------------------------------------ commands

    async def send_message(self, message: dict[str, Any]) -> None:
        """Send a raw command object; queued (in order) while the client is not connected.

        Raises `QueueFull` when `message_queue_size` commands already wait, and
        `ConnectionClosedError` when the client is closed. Replies arrive at the message
        handlers (or use `request`); data of a raw `subscribe` reaches message handlers
        only, as it matches no `Subscription`.
        """
        if self._states.state is ConnectionState.CLOSED:
            raise self._last_error or ConnectionClosedError("the client is closed")
        ws = self._link.ws
        if ws is not None and self._states.state is ConnectionState.CONNECTED:
            try:
                await self._link.send(ws, message)
            except ConnectionClosed:
                # Lost between the state check and the write: send it on the next one.
                logger.debug("connection lost while sending; queueing %s", message.get("type"))
            else:
                self._inbound.sent(message)
                return
        self._outbound.put(message)

    async def request(
        self,
        message: Mapping[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Send a command and return the reply correlated with it (`correlation_id`).

        A `message_id` is added when missing. Raises `ServerError` for an `error` reply,
        `SubscriptionError` for `subscription_error`, `ConnectionClosedError` when the
        connection is lost after sending, TimeoutError after `timeout` seconds (default
        `request_timeout`). While disconnected the command is queued; on timeout it is
        withdrawn from the queue.
        """
        command = dict(message)
        message_id = command.setdefault("message_id", new_message_id())
        if not isinstance(message_id, str):
            raise TypeError("message_id must be a string")
        future = self._inbound.expect_reply(message_id)
        try:
            await self.send_message(command)
            async with asyncio.timeout(self._timeout(timeout)):
                return await future
        finally:
            self._inbound.release(message_id)
            self._outbound.remove(command)

    async def subscribe(
        self,
        stream: str,
        *,
        filters: Mapping[str, Any] | Filters | None = None,
        subscription_id: str | None = None,
        rate_limit: float | None = None,
        snapshot: bool | None = None,
        queue_size: int | None = None,
        since: StreamPosition | Mapping[str, Any] | None = None,
        on_resync: ResyncHandler | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Subscription:
        """Subscribe to `stream` and wait for the gateway's confirmation.

        `stream` is a stream name (canonical, singular or alias) or a topic: a stream with a
        key suffix, `market_data.AAPL`, meaning `symbols: ["AAPL"]`. `filters` are those of
        docs/protocol.md section 3 (a dict or a `Filters`; empty values mean no filter); the
        subscription id is generated when not given. `queue_size` overrides the client's
        `subscription_queue_size`. `since` (a `StreamPosition` or `{epoch, seq}`, e.g. a
        `position` saved by an earlier process) resumes the stream after it, as every
        resubscription after a reconnect does by itself. `on_resync(subscription, info)` is
        called for each gap of this subscription (see `add_resync_handler`). May be called
        before `connect()` or while reconnecting: the subscribe goes out with the next
        connection's resubscriptions. Raises `SubscriptionError(error_code,
        error_message)` when refused and TimeoutError after `timeout` seconds (default
        `request_timeout`).
        """
        if self._states.state is ConnectionState.CLOSED:
            raise self._last_error or ConnectionClosedError("the client is closed")
        if subscription_id is not None and subscription_id in self._inbound.subscriptions:
            raise ValueError(f"subscription {subscription_id!r} already exists")
        if since is not None and not isinstance(since, StreamPosition):
            position = position_of(since)
            if position is None:
                raise ValueError(f"since must be {{epoch, seq}}, not {since!r}")
            since = position
        subscription = new_subscription(
            self,
            stream,
            filters=filters,
            subscription_id=subscription_id,
            rate_limit=rate_limit,
            snapshot=snapshot,
            queue_size=queue_size or self._subscription_queue_size,
            since=since,
            on_resync=on_resync,
        )
        confirmed = self._inbound.add_subscription(subscription)
        ws = self._link.ws
        if ws is not None and self._states.state is ConnectionState.CONNECTED:
            # Otherwise the (re)connection sends every subscription not yet sent on it.
            with suppress(ConnectionClosed):
                await self._link.send_subscribe(ws, subscription)
        try:
            async with asyncio.timeout(self._timeout(timeout)):
                await confirmed
        except BaseException:
            if subscription.active:
                # Timed out or cancelled: tell the gateway without waiting for its answer.
                await self._drop_subscription(subscription, wait=False)
            raise
        return subscription

    async def unsubscribe(
        self,
        subscription_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """End a subscription: its iterator finishes after the queued messages.

        When the subscription is active on the gateway, waits for
        `unsubscription_confirmed`. Raises KeyError for an id this client does not have.
        """
        subscription = self._inbound.subscriptions.get(subscription_id)
        if subscription is None:
            raise KeyError(subscription_id)
        await self._drop_subscription(subscription, wait=True, timeout=timeout)

    async def list_subscriptions(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """The gateway's view of this connection's subscriptions (`list_subscriptions`),
        every page of it (the gateway answers at most `max_list_page` per reply)."""
        out: list[dict[str, Any]] = []
        command: dict[str, Any] = {"type": "list_subscriptions"}
        # Bounded: a gateway that kept answering `next` could not keep this loop going.
        for _ in range(MAX_LIST_PAGES):
            reply = await self.request(command, timeout=timeout)
            page = reply.get("subscriptions")
            out.extend(page if isinstance(page, list) else [])
            after = reply.get("next")
            if not isinstance(after, str):
                break
            command = {"type": "list_subscriptions", "after": after}
        return out

    async def ping(self, *, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """Send a heartbeat now and return its round trip in milliseconds.

        Also updates `message_latency`. Raises ConnectionClosedError when not connected.
        """
        ws = self._link.ws
        if ws is None or self._states.state is not ConnectionState.CONNECTED:
            raise ConnectionClosedError("not connected")
        future = self._inbound.expect_ping()
        try:
            await self._link.send(ws, self._inbound.heartbeats.start())
            async with asyncio.timeout(self._timeout(timeout)):
                return await future
        finally:
            self._inbound.release_ping(future)

    # ------------------------------------------------------------------ supervisor

    async def _run(self) -> None:
        try:
            await self._run_connections()
        except Exception as exc:
            # A bug must not leave the client looking alive: close it and say why.
            logger.exception("tidewire client failed")
            self._stop(ConnectionClosedError(f"internal client error: {exc!r}"))

    async def _run_connections(self) -> None:
        while True:
            code, reason = ABNORMAL_CLOSURE, ""
            try:
                ws = await self._link.open()
            except GiveUp as exc:
                self._stop(exc.error)
                return
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                logger.info("connecting to %s failed: %r", self.url, exc)
            else:
                self._reconnect_attempts = 0
                self._backoff.reset()
                logger.info("connected to %s as %s", self.url, self._inbound.connection_id)
                code, reason = await self._link.serve(
                    ws, lambda: self._states.set(ConnectionState.CONNECTED)
                )
                self._close_code = code
                if self._closing:
                    return
                logger.info("connection to %s closed: %s %s", self.url, code, reason)
            error = reconnect_refusal(
                code,
                reason,
                auto_reconnect=self._auto_reconnect,
                attempts=self._reconnect_attempts,
                max_attempts=self._max_reconnect_attempts,
                renewable_token=self._renewable_token,
            )
            if error is not None:
                self._stop(error)
                return
            self._states.set(ConnectionState.RECONNECTING)
            delay = self._backoff.next_delay(throttled=throttled(code))
            logger.info("reconnecting to %s in %.2fs", self.url, delay)
            await asyncio.sleep(delay)
            self._reconnect_attempts += 1

    def _stop(self, error: ConnectionClosedError | None) -> None:
        """Final cleanup of a run: end subscriptions, fail waiters, state CLOSED."""
        if error is not None:
            self._last_error = error
            logger.warning("tidewire client closed: %s", error)
        self._inbound.shut_down(error)
        self._outbound.clear()
        self._states.set(ConnectionState.CLOSED)

    # ------------------------------------------------------------------ helpers

    async def _drop_subscription(
        self,
        subscription: Subscription,
        *,
        wait: bool,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        self._inbound.forget(subscription, None)
        ws = self._link.ws
        # Only a subscription sent on the live connection exists on the gateway; the next
        # connection simply does not resubscribe the others.
        if ws is None or subscription.state.generation != self._link.generation:
            return
        command = {"type": "unsubscribe", "subscription_id": subscription.subscription_id}
        if not wait:
            with suppress(ConnectionClosed):
                await self._link.send(ws, {**command, "message_id": new_message_id()})
            return
        with suppress(ConnectionClosedError):
            try:
                await self.request(command, timeout=timeout)
            except ServerError as exc:
                # Refused or never confirmed: either way it no longer exists there.
                if exc.error_code != "not_found":
                    raise

    def _timeout(self, timeout: float | None) -> float:
        return self._request_timeout if timeout is None else timeout
