"""Redis for the broker tests: private `redis-server` processes (tests/redisproc.py).

* `shared_redis`: one server for the whole session. Tests that share it never share keys:
  each broker they build gets its own key prefix, which is a separate history.
* `redis_server`: a server of this test alone, which it may stop, restart (empty), pause or
  flush.
* `redis_admin`: a plain redis-py client of `redis_server`, for faults and for looking at
  the keys.
* `settle(*brokers)`: waits until each Redis broker delivered everything Redis holds. Redis
  delivery is asynchronous (each node's XREAD loop), so a test awaits this condition, with
  a timeout, before it looks at what a node delivered or at its positions.

Without redis-server these fixtures skip the test locally (with the apt hint) and fail it in
CI (CI=true), like every missing tool (conftest.require_tool).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from redisproc import INSTALL_HINT, RedisProcess
from support import require_tool
from tidewire.brokers.redis import RedisBroker
from tidewire.protocol.messages import StreamPosition
from tidewire.protocol.streams import STREAMS

SETTLE_TIMEOUT = 5.0
POLL = 0.005

Settle = Callable[..., Awaitable[None]]


@pytest.fixture(scope="session")
def redis_binary() -> str:
    return require_tool("redis-server", INSTALL_HINT)


@pytest.fixture(scope="session")
def shared_redis(redis_binary: str) -> Iterator[RedisProcess]:
    with RedisProcess(redis_binary) as server:
        yield server


@pytest.fixture
def redis_server(redis_binary: str) -> Iterator[RedisProcess]:
    with RedisProcess(redis_binary) as server:
        yield server


@pytest.fixture
async def redis_admin(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url, socket_timeout=SETTLE_TIMEOUT)
    yield client
    await client.aclose()


async def redis_heads(client: aioredis.Redis, prefix: str) -> dict[str, StreamPosition]:
    """Every stream's position as Redis holds it (epoch and last seq given out)."""
    async with client.pipeline(transaction=True) as pipe:
        for stream in STREAMS:
            pipe.get(f"{prefix}:{stream}:epoch")
            pipe.get(f"{prefix}:{stream}:seq")
        values: list[Any] = await pipe.execute()
    return {
        stream: StreamPosition((epoch or b"").decode(), int(seq or 0))
        for stream, epoch, seq in zip(STREAMS, values[::2], values[1::2], strict=True)
    }


async def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT
) -> None:
    """Wait until `condition()` holds, checking every few ms; fails after `timeout` s."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - the condition is another task's state
                await asyncio.sleep(POLL)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting until {what}")


async def settle_brokers(*brokers: object, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until every Redis broker among `brokers` delivered all that Redis holds.

    Reads Redis's heads once, then waits for each node's positions to reach them; other
    brokers (memory) deliver synchronously and are skipped.
    """
    for broker in brokers:
        if not isinstance(broker, RedisBroker):
            continue
        client = aioredis.from_url(broker.url)
        try:
            heads = await redis_heads(client, broker.prefix)
        finally:
            await client.aclose()
        await wait_until(
            _reached(broker, heads),
            f"the node with prefix {broker.prefix} delivered up to {heads}",
            timeout,
        )


def _reached(broker: RedisBroker, heads: dict[str, StreamPosition]) -> Callable[[], bool]:
    return lambda: all(broker.position(stream) == head for stream, head in heads.items())


@pytest.fixture
def settle() -> Settle:
    return settle_brokers
