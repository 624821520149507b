"""Garbage in Redis against live gateways: clients are sent to recover, nothing hangs.

Real gateways on a private redis-server, real WebSocket clients; the garbage is written
with a plain Redis client, as a foreign or broken writer would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from messages import order, quote
from redisproc import RedisProcess
from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway

pytestmark = pytest.mark.redis

MakeGateway = Callable[..., Awaitable[Gateway]]
Connect = Callable[..., Awaitable[WsClient]]


@pytest.fixture
async def admin(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"gw{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def nodes(redis_server: RedisProcess, make_gateway: MakeGateway, prefix: str) -> MakeGateway:
    async def make(**settings: Any) -> Gateway:
        return await make_gateway(broker_url=redis_server.url, redis_prefix=prefix, **settings)

    return make


async def post(gateway: Gateway, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=3 * TIMEOUT) as http:
        return await http.post("/api/publish", json=body)


async def readyz(gateway: Gateway) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=3 * TIMEOUT) as http:
        return await http.get("/readyz")


async def closed_with(client: WsClient) -> int | None:
    """Read until the server closes the connection; its close code."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await client.recv()
    return client.ws.close_code


async def test_a_malformed_entry_sends_subscribers_to_recover_and_delivery_goes_on(
    nodes: MakeGateway, connect: Connect, admin: aioredis.Redis, prefix: str
) -> None:
    gateway = await nodes()
    client = await connect(gateway)
    await client.subscribe("order_updates")
    assert (await post(gateway, order("P1", 1))).status_code == 200
    [first] = await client.data(1)
    await admin.xadd(f"{prefix}:order_updates:log", {"m": b"\xc1"}, id="2-0")
    assert await closed_with(client) == 1012  # never a silent hole
    again = await connect(gateway)
    since = {"epoch": first["epoch"], "seq": first["seq"]}
    confirmed = await again.subscribe("order_updates", since=since)
    assert confirmed["type"] == "subscription_confirmed" and confirmed["recovered"] is False
    response = await post(gateway, order("P1", 2))
    assert response.status_code == 200, response.text
    [later] = await again.data(1)
    assert later["message_id"] == "P1-2" and later["seq"] == 3
    assert gateway.stats()["broker_skipped"]["malformed_entries"] >= 1  # in /api/stats


async def test_a_foreign_auto_id_entry_leaves_every_node_publishing(
    nodes: MakeGateway, connect: Connect, admin: aioredis.Redis, prefix: str
) -> None:
    gateway = await nodes()
    assert (await post(gateway, order("P1", 1))).status_code == 200
    await admin.xadd(f"{prefix}:order_updates:log", {"foreign": "writer"})
    assert (await post(gateway, order("P1", 2))).status_code == 200
    fresh = await nodes()  # a node started on that Redis is not dead either
    assert (await readyz(fresh)).status_code == 200
    client = await connect(fresh)
    await client.subscribe("order_updates", snapshot=False)
    response = await post(fresh, order("P1", 3))
    assert response.status_code == 200, response.text
    [delivered] = await client.data(1)
    assert delivered["message_id"] == "P1-3"


async def test_a_garbage_last_value_does_not_hang_a_snapshot(
    nodes: MakeGateway, connect: Connect, admin: aioredis.Redis, prefix: str
) -> None:
    gateway = await nodes()
    assert (await post(gateway, [quote("AAPL"), quote("MSFT")])).status_code == 200
    last = f"{prefix}:market_data:last"
    aapl = next(k for k in await admin.hkeys(last) if b"AAPL" in k)
    await admin.hset(last, aapl, b"1\n\xc1garbage")
    # Another node, which never delivered AAPL, reads the latest values from Redis.
    client = await connect(await nodes())
    confirmed = await client.subscribe("market_data")
    assert confirmed["type"] == "subscription_confirmed"
    [snapshot] = await client.data(1)
    assert snapshot["symbol"] == "MSFT"
    assert await client.no_data(gateway) == []


async def test_readyz_shows_a_reader_that_is_down_until_it_is_back(
    nodes: MakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await nodes(readiness_timeout=2.0)
    broker: Any = gateway.broker
    real = broker._xread
    broken = asyncio.Event()
    broken.set()

    async def failing() -> Any:
        if broken.is_set():
            raise RuntimeError("injected")
        return await real()

    monkeypatch.setattr(broker, "_xread", failing)
    async with asyncio.timeout(TIMEOUT):
        while broker.failure is None:  # noqa: ASYNC110 - the reader task's state
            await asyncio.sleep(0.01)
    response = await readyz(gateway)
    assert response.status_code == 503
    assert any("reader is down" in p for p in response.json()["problems"])
    broken.clear()
    async with asyncio.timeout(TIMEOUT):
        while (await readyz(gateway)).status_code != 200:  # noqa: ASYNC110 - HTTP state
            await asyncio.sleep(0.05)
