"""The life of one WebSocket connection to the gateway: open, catch up, read until closed.

A `Link` is reused for every connection of a client; `ws` is the open connection or None.
`TidewireClient` decides when to open one and what to do after it closed; the link does the
work in between: the handshake, `connection_established`, re-sending subscriptions and
flushing queued commands, heartbeats, and feeding frames to the dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from tidewire.client.codec import FrameCodec
from tidewire.client.dispatch import Dispatcher
from tidewire.client.errors import AuthenticationError, ConnectionClosedError
from tidewire.client.outbound import OutboundQueue
from tidewire.client.reconnect import ABNORMAL_CLOSURE
from tidewire.client.subscription import Subscription
from tidewire.client.tokens import (
    TokenSource,
    refresh_delay,
    refresh_retry_delay,
    resolve_token,
    seconds_until,
)
from tidewire.protocol.codec import SUBPROTOCOL_MSGPACK
from tidewire.protocol.messages import new_message_id

logger = logging.getLogger("tidewire.client")

# Server frames can be batches of many messages; the gateway bounds what it sends.
MAX_FRAME_BYTES = 64 * 1024 * 1024


def redacted(message: dict[str, Any]) -> dict[str, Any]:
    """`message` for the debug log: tokens never reach a log."""
    return {**message, "token": "***"} if "token" in message else message


class GiveUp(Exception):
    """A connection attempt failed in a way that retrying cannot fix."""

    def __init__(self, error: ConnectionClosedError) -> None:
        super().__init__(str(error))
        self.error = error


class Link:
    """Opens and serves the connections of one client, one at a time."""

    def __init__(
        self,
        url: str,
        codec: FrameCodec,
        inbound: Dispatcher,
        outbound: OutboundQueue,
        *,
        connect_timeout: float,
        heartbeat_interval: float | None,
        heartbeat_timeout: float | None,
        debug: bool,
        token: TokenSource | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`token`: a fixed token or a provider (called before each connection and again
        before the token expires); `ssl_context`: for wss:// (None: the system's CAs)."""
        self.url = url
        self.token = token
        self.ssl_context = ssl_context
        self.codec = codec
        self.inbound = inbound
        self.outbound = outbound
        self.connect_timeout = connect_timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.debug = debug
        self.ws: ClientConnection | None = None
        """The connection being served (catching up or connected), None between them."""
        self.generation = 0
        """Number of the current connection; subscriptions remember the one they were sent on."""
        self._last_received = 0.0

    async def open(self) -> ClientConnection:
        """Connect and read up to `connection_established`.

        Raises GiveUp when retrying cannot help (bad URL, handshake refused with a 4xx,
        subprotocol not accepted), and OSError, TimeoutError, InvalidHandshake or
        ConnectionClosed when it can.
        """
        try:
            token = await resolve_token(self.token)
        except Exception as exc:
            # A provider that cannot reach its issuer now may next time: retried with backoff.
            raise OSError(f"the token provider failed: {exc!r}") from exc
        options: dict[str, Any] = {}
        if token is not None:
            options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        if self.ssl_context is not None and self.url.startswith("wss:"):
            options["ssl"] = self.ssl_context
        try:
            ws = await connect(
                self.url,
                subprotocols=[Subprotocol(self.codec.subprotocol)],
                open_timeout=self.connect_timeout,
                **options,
                # The protocol's own heartbeats measure latency and detect dead connections.
                ping_interval=None,
                compression=None,
                max_size=MAX_FRAME_BYTES,
            )
        except InvalidURI as exc:
            raise GiveUp(ConnectionClosedError(f"invalid gateway URL: {exc}")) from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise GiveUp(AuthenticationError(f"handshake refused: {exc}")) from exc
            # Other 4xx (bad path, bad query option, refused subprotocol) will not change.
            if 400 <= status < 500 and status not in (408, 429):
                raise GiveUp(ConnectionClosedError(f"handshake refused: {exc}")) from exc
            raise
        if ws.subprotocol is None and self.codec.subprotocol == SUBPROTOCOL_MSGPACK:
            await ws.close()
            raise GiveUp(ConnectionClosedError("the gateway did not accept tidewire.v3.msgpack"))
        self.inbound.established = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                while not self.inbound.established:
                    await self.inbound.handle_frame(await ws.recv(decode=False))
        except BaseException:
            await ws.close()
            raise
        return ws

    async def serve(self, ws: ClientConnection, on_ready: Callable[[], None]) -> tuple[int, str]:
        """Catch up, call `on_ready()`, then read until the connection ends.

        Returns the close code (1006 when the connection just went away) and reason.
        """
        self.generation += 1
        self.ws = ws
        self._last_received = time.monotonic()
        heartbeat: asyncio.Task[None] | None = None
        refresh: asyncio.Task[None] | None = None
        try:
            await self._send_backlog(ws)
            # No await between the end of the backlog and the state change, so no command
            # sent meanwhile can overtake the queued ones.
            on_ready()
            if self.heartbeat_interval is not None:
                heartbeat = asyncio.create_task(self._heartbeat_loop(ws, self.heartbeat_interval))
            if callable(self.token):
                refresh = asyncio.create_task(self._refresh_loop(ws))
            while True:
                frame = await ws.recv(decode=False)
                self._last_received = time.monotonic()
                await self.inbound.handle_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            for task in (heartbeat, refresh):
                if task is not None:
                    task.cancel()
                    await asyncio.wait([task])
            self.ws = None
            self.inbound.connection_lost(ws.close_code or ABNORMAL_CLOSURE)
        return ws.close_code or ABNORMAL_CLOSURE, ws.close_reason or ""

    async def send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        """Write one command on `ws`. Raises ConnectionClosed when it is gone."""
        if self.debug:
            logger.debug("send %s", redacted(message))
        await ws.send(self.codec.encode(message), text=not self.codec.binary)

    async def send_subscribe(self, ws: ClientConnection, subscription: Subscription) -> None:
        """(Re)send a subscription on `ws`, with `since` when it has a position."""
        subscription.state.generation = self.generation
        command = subscription.state.command(new_message_id())
        self.inbound.subscribe_sent(command["message_id"], subscription.subscription_id)
        await self.send(ws, command)

    async def _send_backlog(self, ws: ClientConnection) -> None:
        # Subscriptions first (so queued commands may refer to them), then queued commands
        # in order. Both may grow while sending; the loop runs until both are done.
        while True:
            pending = next(
                (
                    s
                    for s in self.inbound.subscriptions.values()
                    if s.state.generation != self.generation
                ),
                None,
            )
            if pending is not None:
                await self.send_subscribe(ws, pending)
                continue
            message = self.outbound.popleft()
            if message is None:
                return
            try:
                await self.send(ws, message)
            except ConnectionClosed:
                self.outbound.requeue(message)
                raise
            self.inbound.sent(message)

    async def _refresh_loop(self, ws: ClientConnection) -> None:
        """Send `refresh` with the provider's new token before the current one expires.

        A failure (the provider raised, the gateway refused) is retried; if the token
        expires anyway the gateway closes with 4001 and the next connection asks the
        provider again.
        """
        while True:
            left = seconds_until(self.inbound.expires_at, time.time())
            if left is None:
                return  # the gateway did not say when the token expires
            await asyncio.sleep(refresh_delay(left))
            message_id = new_message_id()
            future = self.inbound.expect_reply(message_id)
            before = self.inbound.expires_at
            try:
                token = await resolve_token(self.token)
                await self.send(ws, {"type": "refresh", "token": token, "message_id": message_id})
                async with asyncio.timeout(self.connect_timeout):
                    await future
                if self.inbound.expires_at == before:
                    raise ValueError("the provider returned a token that expires no later")
            except ConnectionClosed:
                return
            except Exception as exc:  # the provider's or the gateway's refusal: try again
                logger.warning("token refresh failed: %s", exc)
                left = seconds_until(self.inbound.expires_at, time.time()) or 0.0
                await asyncio.sleep(refresh_retry_delay(left))
            finally:
                self.inbound.release(message_id)

    async def _heartbeat_loop(self, ws: ClientConnection, interval: float) -> None:
        timeout = self.heartbeat_timeout
        try:
            while True:
                await self.send(ws, self.inbound.heartbeats.start())
                await asyncio.sleep(interval)
                silence = time.monotonic() - self._last_received
                if timeout is not None and silence > timeout:
                    logger.warning(
                        "no frame from the gateway for %.1fs; dropping the connection", silence
                    )
                    # A closing handshake needs a live peer; abort so the reader sees 1006.
                    ws.transport.abort()
                    return
        except ConnectionClosed:
            return
