"""NautilusSource against a private redis-server: discovery, resume, outages, bad input.

The recorded entries of a real backtest are written into the private Redis with XADD (as
NautilusTrader's message bus writes them), so these tests need redis-server but not
nautilus_trader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from redisproc import INSTALL_HINT, RedisProcess, free_port
from support import require_tool
from tidewire.brokers.base import BrokerUnavailable, Handlers, PublishOutcome
from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.messages import DataMessage
from tidewire.sources.nautilus import NautilusConfig, NautilusSource
from tidewire.sources.nautilus.entries import decode_entry
from tidewire.sources.nautilus.feed import NautilusFeed

pytestmark = pytest.mark.redis
TIMEOUT = 10.0
Entries = list[tuple[str, str, dict[bytes, bytes]]]


class Sink:
    """A memory broker (idempotent on message_id) recording what it delivered."""

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.delivered: list[DataMessage] = []
        self.duplicates = 0
        self.broker.attach(Handlers(message=self.delivered.append))

    async def publish(self, message: DataMessage) -> PublishOutcome:
        outcome = await self.broker.publish(message)
        self.duplicates += outcome.duplicate
        return outcome

    def of(self, kind: str) -> list[DataMessage]:
        return [m for m in self.delivered if m.type == kind]


def quote_payload(bid: str) -> str:
    return f'{{"type":"QuoteTick","instrument_id":"A.SIM","bid_price":"{bid}","ask_price":"2"}}'


async def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until `condition()` holds; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


async def positions_stored(
    client: aioredis.Redis, source: NautilusSource, key: str = "tidewire:nautilus:offsets"
) -> dict[str, str]:
    """Wait until the offsets hash in Redis holds the source's positions; returns it."""
    stored: dict[str, str] = {}
    for _ in range(int(TIMEOUT / 0.02)):
        raw: dict[bytes, bytes] = await client.hgetall(key)  # type: ignore[assignment]
        stored = {k.decode(): v.decode() for k, v in raw.items()}
        if source.positions and stored == source.positions:
            return stored
        await asyncio.sleep(0.02)
    raise AssertionError(f"positions {source.positions} not stored within {TIMEOUT} s: {stored}")


@pytest.fixture
async def client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


@pytest.fixture
async def run_source() -> AsyncIterator[Callable[..., Awaitable[NautilusSource]]]:
    started: list[NautilusSource] = []

    async def start(publish: Any, url: str, **config: Any) -> NautilusSource:
        config.setdefault("discover_interval", 0.05)
        config.setdefault("block_ms", 50)
        source = NautilusSource(publish, NautilusConfig(url=url, **config))
        source.start()
        started.append(source)
        return source

    yield start
    for source in started:
        await source.stop()


async def xadd_all(client: aioredis.Redis, entries: Entries, after: int = 0) -> int:
    """Write `entries` into their streams, in order, one millisecond apart.

    Redis numbers entries per stream, so two streams' entries of the same millisecond have
    no order between them; spacing them keeps the recorded (bus) order readable across
    streams, which is what these tests compare.
    """
    seconds, micros = await client.time()
    start = max(int(seconds) * 1000 + int(micros) // 1000, after) + 1
    pipe = client.pipeline(transaction=False)
    for index, (stream, _, fields) in enumerate(entries):
        pipe.xadd(stream, dict(fields), id=f"{start + index}-0")  # type: ignore[arg-type]
    await pipe.execute()
    return start + len(entries)  # the first free millisecond: pass it as `after` next time


def expected_ids(entries: Entries) -> list[str]:
    """The ids of the event messages a feed makes of `entries`, in order."""
    feed = NautilusFeed()
    out = []
    for stream, entry_id, fields in entries:
        for raw in feed.entry(decode_entry(stream, entry_id, fields), 0.0):
            if raw.get("message_id", "").startswith("nt-") and raw["type"] != "market_data":
                out.append(raw["message_id"])
    return out


def event_ids(sink: Sink) -> list[str]:
    """Ids of the event messages delivered (not market data, not liveness reports)."""
    return [
        m.message_id
        for m in sink.delivered
        if m.message_id.startswith("nt-") and m.type != "market_data"
    ]


@pytest.mark.parametrize("batch_size", [1000, 7])
async def test_reads_every_stream_in_bus_order(
    recording: Callable[[str], Any],
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
    batch_size: int,
) -> None:
    """One stream per topic: entries of ~20 streams are merged back into bus order, also
    when a stream has more entries than one XREAD returns."""
    rec = recording("backtest_json_per_topic")
    await xadd_all(client, rec.entries)
    sink = Sink()
    source = await run_source(sink.publish, redis_server.url, batch_size=batch_size)
    want = expected_ids(rec.entries)
    await eventually(lambda: len(event_ids(sink)) >= len(want))
    assert event_ids(sink) == want  # the same messages, in bus order across streams
    assert sink.duplicates == 0  # the fills copies never reach the broker
    assert len(sink.of("trade_updates")) == len(rec.produced["fills"])
    assert len(sink.of("market_data")) == 25 * 3  # recorded quotes, trade ticks and bars
    stats = source.stats()
    assert stats["connected"] and stats["streams"] == 20 and stats["bad_entries"] == 0
    await eventually(lambda: source.stats()["entries"] == len(rec.entries))
    # Per stream, the stored position is the last entry id processed.
    await positions_stored(client, source)


async def test_streams_created_later_are_read_from_their_first_entry(
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    sink = Sink()
    source = await run_source(sink.publish, redis_server.url, discover_interval=0.2)
    await eventually(lambda: source.warmed_up)
    for bid in ("1.1", "1.2"):
        payload = (
            f'{{"type":"QuoteTick","instrument_id":"A.SIM","bid_price":"{bid}","ask_price":"2"}}'
        )
        await client.xadd("trader-X-1:stream:data.quotes.SIM.A", {"topic": "q", "payload": payload})
    await client.xadd("not-nautilus", {"topic": "q", "payload": "{}"})  # pattern does not match
    await client.set("trader-X:cache:thing", "a string, not a stream")
    await eventually(lambda: len(sink.of("market_data")) == 2)
    assert [str(m.data["bid_price"]) for m in sink.of("market_data")] == ["1.1", "1.2"]
    assert list(source.positions) == ["trader-X-1:stream:data.quotes.SIM.A"]


async def test_order_within_one_stream_is_kept(
    recording: Callable[[str], Any],
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    rec = recording("backtest_msgpack_one_stream")
    await xadd_all(client, rec.entries)
    sink = Sink()
    await run_source(sink.publish, redis_server.url, streams=("trader-BACKTESTER-001:stream",))
    want = expected_ids(rec.entries)
    await eventually(lambda: len(event_ids(sink)) >= len(want))
    assert event_ids(sink) == want


async def test_resume_after_restart_publishes_only_what_is_new(
    recording: Callable[[str], Any],
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    rec = recording("backtest_msgpack_one_stream")
    cut = len(rec.entries) // 2
    first, rest = rec.entries[:cut], rec.entries[cut:]
    after_first = await xadd_all(client, first)
    before = Sink()
    source = await run_source(before.publish, redis_server.url)
    await eventually(lambda: len(event_ids(before)) >= len(expected_ids(first)))
    await eventually(lambda: bool(source.positions) and source.stats()["entries"] >= cut)
    await positions_stored(client, source)
    await source.stop()

    # A new gateway (new broker: a new epoch), while the node wrote on.
    await xadd_all(client, rest, after=after_first)
    after = Sink()
    await run_source(after.publish, redis_server.url)
    all_ids = expected_ids(rec.entries)
    new_ids = all_ids[len(expected_ids(first)) :]
    await eventually(lambda: set(new_ids) <= set(event_ids(after)))
    published = event_ids(after)
    restated = published[: len(published) - len(new_ids)]
    assert published[len(restated) :] == new_ids  # exactly the new events, in order
    # The restatement: latest balances, positions, engine statuses of the first half.
    kinds = {m.type for m in after.delivered if m.message_id in set(restated)}
    assert kinds <= {"performance_update", "position_update", "engine_status"}
    assert "performance_update" in kinds
    # Orders initialised before the restart are known after it (warm-up rebuilt them).
    assert all(m.symbol and m.order_id for m in after.of("order_update"))
    assert len(after.of("trade_updates")) + len(before.of("trade_updates")) == len(
        rec.produced["fills"]
    )


async def test_start_from_latest_skips_history(
    recording: Callable[[str], Any],
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    rec = recording("backtest_msgpack_one_stream")
    await xadd_all(client, rec.entries)
    sink = Sink()
    source = await run_source(sink.publish, redis_server.url, start_from="latest", offsets_key=None)
    await eventually(lambda: source.warmed_up)
    # The latest values are restated (a client's snapshot is complete)...
    await eventually(lambda: bool(sink.of("market_data") and sink.of("performance_update")))
    await eventually(lambda: source.stats()["entries"] >= len(rec.entries))
    # ...but none of the history's orders and fills is published.
    assert not sink.of("order_update") and not sink.of("trade_updates")


async def test_redis_outage_reports_down_and_recovers(
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    sink = Sink()
    source = await run_source(sink.publish, redis_server.url, reconnect_min=0.05, reconnect_max=0.2)
    heartbeat = {b"topic": b"health:heartbeat", b"payload": b"2026-11-26T14:47:11Z"}
    await client.xadd("trader-GW-001:stream:health:heartbeat", heartbeat)  # type: ignore[arg-type]

    def statuses() -> list[tuple[str, str]]:
        return [
            (m.data["state"], m.data["message"])
            for m in sink.of("engine_status")
            if m.engine_id == "GW-001"
        ]

    await eventually(lambda: ("running", "heartbeats arriving") in statuses())
    redis_server.stop()
    await eventually(lambda: any(s == "down" for s, _ in statuses()))
    _, message = statuses()[-1]
    assert message.startswith("Redis unreachable: ")
    assert not source.connected and source.stats()["last_error"]
    redis_server.start()  # same port, empty
    await eventually(lambda: source.connected)
    fresh = aioredis.Redis.from_url(redis_server.url)
    try:
        await fresh.xadd("trader-GW-001:stream:health:heartbeat", heartbeat)  # type: ignore[arg-type]
        await eventually(lambda: statuses()[-1][0] == "running")
    finally:
        await fresh.aclose()
    assert source.stats()["reconnects"] == 1


async def test_bad_entries_are_skipped(
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    sink = Sink()
    source = await run_source(sink.publish, redis_server.url)
    await client.xadd("trader-X-1:stream", {"topic": "data.quotes.SIM.A"})  # no payload
    await client.xadd("trader-X-1:stream", {"topic": "t", "payload": b"\x81\xa1"})  # bad msgpack
    quote = b'{"type":"QuoteTick","instrument_id":"A.SIM","bid_price":"1.5","ask_price":"1.6"}'
    await client.xadd("trader-X-1:stream", {"topic": "data.quotes.SIM.A", "payload": quote})
    await eventually(lambda: bool(sink.of("market_data")))
    assert source.stats()["bad_entries"] == 2
    assert str(sink.of("market_data")[0].data["bid_price"]) == "1.5"


async def test_broker_unavailable_is_retried_in_order(
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    sink = Sink()
    failures = [2]

    async def flaky(message: DataMessage) -> PublishOutcome:
        if failures[0] > 0:
            failures[0] -= 1
            raise BrokerUnavailable("redis broker down")
        return await sink.publish(message)

    await run_source(flaky, redis_server.url, reconnect_min=0.01)
    for bid in ("1.1", "1.2", "1.3"):
        payload = (
            f'{{"type":"QuoteTick","instrument_id":"A.SIM","bid_price":"{bid}","ask_price":"2"}}'
        )
        await client.xadd("trader-X-1:stream", {"topic": "data.quotes.SIM.A", "payload": payload})
    await eventually(lambda: len(sink.of("market_data")) == 3)
    assert [str(m.data["bid_price"]) for m in sink.of("market_data")] == ["1.1", "1.2", "1.3"]


async def test_a_stream_trimmed_past_the_stored_position_is_reported(
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    key = "trader-X-1:stream"
    for bid in ("1.1", "1.2"):
        await client.xadd(key, {"topic": "data.quotes.SIM.A", "payload": quote_payload(bid)})
    sink = Sink()
    source = await run_source(sink.publish, redis_server.url)
    await eventually(lambda: len(sink.of("market_data")) == 2)
    await positions_stored(client, source)
    await source.stop()
    for bid in ("1.3", "1.4", "1.5"):
        await client.xadd(key, {"topic": "data.quotes.SIM.A", "payload": quote_payload(bid)})
    await client.xtrim(key, maxlen=1, approximate=False)  # as autotrim_mins would
    later = Sink()
    restarted = await run_source(later.publish, redis_server.url)
    await eventually(lambda: bool(later.of("market_data")))
    assert restarted.stats()["trimmed_gaps"] == 1
    assert [str(m.data["bid_price"]) for m in later.of("market_data")] == ["1.5"]


async def test_redis_down_at_start_then_up(
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    binary = require_tool("redis-server", INSTALL_HINT)
    server = RedisProcess(binary, port=free_port())  # not started yet
    sink = Sink()
    source = await run_source(sink.publish, server.url, reconnect_min=0.05, reconnect_max=0.2)
    await eventually(lambda: bool(source.stats()["last_error"]))
    assert not source.connected
    with server:
        connection = aioredis.Redis.from_url(server.url)
        try:
            await eventually(lambda: source.connected)
            await connection.xadd(
                "trader-X-1:stream", {"topic": "data.quotes.SIM.A", "payload": quote_payload("1.7")}
            )
            await eventually(lambda: bool(sink.of("market_data")))
        finally:
            await connection.aclose()


async def test_a_configured_key_that_is_not_a_stream_is_left_out(
    redis_server: RedisProcess,
    client: aioredis.Redis,
    run_source: Callable[..., Awaitable[NautilusSource]],
) -> None:
    await client.set("trader-X-1:oops", "a string")
    sink = Sink()
    source = await run_source(
        sink.publish, redis_server.url, streams=("trader-X-1:oops", "trader-X-1:stream")
    )
    await client.xadd("trader-X-1:stream", {"topic": "q", "payload": quote_payload("1.9")})
    await eventually(lambda: bool(sink.of("market_data")))
    assert list(source.positions) == ["trader-X-1:stream"]  # followed before it existed
    assert source.connected
