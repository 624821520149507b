"""Defects from review (issue 11, item 6) that need a real gateway.

`Gateway.start` is all or nothing: a client or control port that is taken leaves no broker
reader, no Redis connection, no listening socket and no task of the gateway behind. (The
setup buffer bound is in tests/core/test_commands.py, the ping interval in
tests/core/test_heartbeats.py, the operator close in tests/client/test_connection.py.)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from redisproc import INSTALL_HINT, RedisProcess
from support import require_tool
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess(require_tool("redis-server", INSTALL_HINT)) as server:
        yield server


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 another socket listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


async def _client_count(admin: aioredis.Redis) -> int:
    clients = await admin.client_list()
    return len(clients)


@pytest.mark.redis
async def test_start_on_a_taken_port_leaves_nothing_running(
    redis_server: RedisProcess, taken_port: int
) -> None:
    admin = aioredis.from_url(redis_server.url)
    try:
        before_clients = await _client_count(admin)
        before_tasks = asyncio.all_tasks()
        gateway = Gateway(
            GatewaySettings(broker_url=redis_server.url, port=taken_port, internal_port=0)
        )
        with pytest.raises(OSError):
            await gateway.start()
        assert not gateway.running
        # The broker's reader (a task blocked in XREAD) and its connections are gone.
        assert getattr(gateway.broker, "_reader", None) is None
        leftover = {t for t in asyncio.all_tasks() - before_tasks if not t.done()}
        assert leftover == set()
        async with asyncio.timeout(5):
            while await _client_count(admin) > before_clients:  # noqa: ASYNC110 - redis-server state
                await asyncio.sleep(0.01)
    finally:
        await admin.aclose()


async def test_start_on_a_taken_port_with_the_memory_broker_raises_cleanly(
    taken_port: int,
) -> None:
    before_tasks = asyncio.all_tasks()
    gateway = Gateway(GatewaySettings(port=taken_port, internal_port=0))
    with pytest.raises(OSError):
        await gateway.start()
    assert not gateway.running
    assert {t for t in asyncio.all_tasks() - before_tasks if not t.done()} == set()
    await gateway.stop()  # a failed start needs no stop; calling it anyway is harmless


async def test_a_taken_control_port_stops_the_data_plane_again(taken_port: int) -> None:
    """The data plane starts first: a control port that is taken must not leave it
    listening (a load balancer would send clients to a node that never came up)."""
    before_tasks = asyncio.all_tasks()
    gateway = Gateway(GatewaySettings(port=0, internal_port=taken_port))
    with pytest.raises(OSError):
        await gateway.start()
    client_port = gateway.data_plane.port
    assert client_port != 0
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", client_port)
        writer.close()
    assert {t for t in asyncio.all_tasks() - before_tasks if not t.done()} == set()
