"""The Nautilus source survives bad entries and unexpected failures (private redis-server).

A bad entry is skipped, counted and logged once (rate-limited); any other failure restarts
the source with backoff from where it was, and `failing` (shown in readiness) says why
meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from redisproc import RedisProcess
from tidewire.brokers.base import Handlers
from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.messages import DataMessage
from tidewire.sources.nautilus import NautilusConfig, NautilusSource
from tidewire.sources.nautilus.reader import StreamReader

pytestmark = pytest.mark.redis
TIMEOUT = 10.0
STREAM = "trader-X-1:stream"


def quote(bid: str) -> dict[str, Any]:
    payload = f'{{"type":"QuoteTick","instrument_id":"A.SIM","bid_price":"{bid}","ask_price":"9"}}'
    return {"topic": "data.quotes.SIM.A", "payload": payload}


class Sink:
    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.delivered: list[DataMessage] = []
        self.broker.attach(Handlers(message=self.delivered.append))

    async def publish(self, message: DataMessage) -> object:
        return await self.broker.publish(message)

    def bids(self) -> list[str]:
        return [str(m.data["bid_price"]) for m in self.delivered if m.type == "market_data"]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():  # noqa: ASYNC110 - the condition is another task's state
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {TIMEOUT} s waiting until {what}")


@pytest.fixture
async def client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


@pytest.fixture
async def source(redis_server: RedisProcess) -> AsyncIterator[tuple[NautilusSource, Sink]]:
    sink = Sink()
    config = NautilusConfig(
        url=redis_server.url,
        discover_interval=0.05,
        block_ms=50,
        reconnect_min=0.05,
        reconnect_max=0.2,
    )
    running = NautilusSource(sink.publish, config)
    running.start()
    yield running, sink
    await running.stop()


async def test_bad_entries_are_skipped_counted_and_logged_once(
    source: tuple[NautilusSource, Sink],
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, sink = source
    real = running.feed.entry

    def entry(decoded: Any, now: float, warming: bool = False) -> Any:
        if decoded.payload and decoded.payload.get("bid_price") == "6.6":
            raise TypeError("a payload the mapping did not foresee")
        return real(decoded, now, warming=warming)

    monkeypatch.setattr(running.feed, "entry", entry)
    with caplog.at_level(logging.WARNING, "tidewire.sources.nautilus.source"):
        await client.xadd(STREAM, {"payload": "{}"})  # no topic
        await client.xadd(STREAM, {"topic": "t", "payload": b"\x81\xa1"})  # garbage
        await client.xadd(STREAM, quote("6.6"))  # type: ignore[arg-type]  # the feed fails on it
        await client.xadd(STREAM, quote("1.5"))  # type: ignore[arg-type]
        await eventually(lambda: sink.bids() == ["1.5"], "the later quote published")
    assert running.stats()["bad_entries"] == 3 and running.running
    assert len([r for r in caplog.records if "skipping entry" in r.getMessage()]) == 1


async def test_any_failure_restarts_the_source_which_goes_on(
    source: tuple[NautilusSource, Sink],
    client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, sink = source
    await client.xadd(STREAM, quote("1.1"))  # type: ignore[arg-type]
    await eventually(lambda: sink.bids() == ["1.1"], "the first quote published")
    real = StreamReader.read
    broken = asyncio.Event()
    broken.set()

    async def read(self: StreamReader) -> Any:
        if broken.is_set():
            raise RuntimeError("injected")
        return await real(self)

    monkeypatch.setattr(StreamReader, "read", read)
    await eventually(lambda: running.failing is not None, "the source failing")
    assert running.running and "injected" in str(running.stats()["failing"])
    await client.xadd(STREAM, quote("2.2"))  # type: ignore[arg-type]
    broken.clear()
    await eventually(lambda: sink.bids() == ["1.1", "2.2"], "the later quote published")
    assert running.failing is None and running.stats()["restarts"] >= 1
