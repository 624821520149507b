"""Fixtures that start real servers on free ports on 127.0.0.1.

`gateway` is a running Tidewire gateway (memory broker); `make_gateway(**settings)` starts
one with custom settings; `connect(gateway)` opens a raw WebSocket client (the `websockets`
library) with helpers to await replies with a timeout (`support.WsClient`). Producer
messages (`quote`, `order`, ...) are in messages.py, test doubles of the core in fakes.py,
shared helpers in support.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    started: list[Gateway] = []

    async def factory(**settings: Any) -> Gateway:
        settings.setdefault("port", 0)
        settings.setdefault("internal_port", 0)
        # The gateway's own system_health is a producer on a timer: tests that compare
        # what arrived with what they published ask for it (test_health_report.py).
        settings.setdefault("health_interval", 0)
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `gateway` every test that starts a real gateway (it asks for `make_gateway` or
    `connect`, directly or through another fixture): `make check` leaves them out."""
    for item in items:
        if {"make_gateway", "connect"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gateway)
