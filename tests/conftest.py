"""Fixtures that start real servers on free ports on 127.0.0.1.

`gateway` is a running Tidewire gateway (memory broker); `make_gateway(**settings)` starts
one with custom settings; `connect(gateway)` opens a raw WebSocket client (the `websockets`
library) with helpers to await replies with a timeout. Producer messages (`quote`, `order`,
...) are in messages.py, test doubles of the core in fakes.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from messages import quote as quote  # re-exported for modules that import it from here
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings

TIMEOUT = 5.0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, install_hint: str) -> str:
    """Path of an external tool; in CI its absence fails the run, locally it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install_hint})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


class WsClient:
    """A raw protocol client for tests: JSON in, JSON out, every wait bounded."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            message = json.dumps(message)
        await self.ws.send(message)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        self.received.append(message)
        return message

    async def recv_type(self, *types: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message of one of `types`, skipping others (e.g. server heartbeats)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message["type"] in types:
                    return message

    async def request(self, message: dict[str, Any], *reply_types: str) -> dict[str, Any]:
        await self.send(message)
        return await self.recv_type(*reply_types)

    async def subscribe(self, stream: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request(
            {"type": "subscribe", "stream": stream, **fields},
            "subscription_confirmed",
            "subscription_error",
        )
        return reply

    async def data(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The next `count` data messages (messages carrying a `stream`)."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                message = await self.recv(timeout)
                if "stream" in message and "seq" in message:
                    out.append(message)
        return out

    async def no_data(self, gateway: Gateway) -> list[dict[str, Any]]:
        """Data messages that arrive before a marker round trip: proves nothing else is queued.

        Sends a heartbeat and collects everything until its response; the server answers in
        order, so anything queued for this client before the heartbeat shows up first.
        """
        await self.send({"type": "heartbeat", "client_timestamp": 1, "message_id": "marker"})
        extra: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.recv()
                if message.get("correlation_id") == "marker":
                    return extra
                if "seq" in message and "stream" in message:
                    extra.append(message)

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    started: list[Gateway] = []

    async def factory(**settings: Any) -> Gateway:
        settings.setdefault("port", 0)
        settings.setdefault("internal_port", 0)
        gateway = Gateway(GatewaySettings(**settings))
        await gateway.start()
        started.append(gateway)
        return gateway

    yield factory
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def gateway(make_gateway: Callable[..., Awaitable[Gateway]]) -> Gateway:
    return await make_gateway()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[WsClient]]]:
    clients: list[WsClient] = []

    async def factory(
        gateway: Gateway,
        path: str = "/ws",
        subprotocols: list[str] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> WsClient:
        """`token`: sent as Authorization: Bearer; `headers`: more handshake headers."""
        extra = dict(headers or {})
        if token is not None:
            extra["Authorization"] = f"Bearer {token}"
        ws = await ws_connect(
            f"ws://127.0.0.1:{gateway.port}{path}",
            subprotocols=subprotocols,  # type: ignore[arg-type]
            open_timeout=TIMEOUT,
            max_size=None,
            additional_headers=extra or None,
        )
        client = WsClient(ws)
        client.welcome = await client.recv_type("connection_established")
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as client:
        yield client
