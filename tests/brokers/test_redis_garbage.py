"""Redis data the gateway did not write (or not correctly) cannot stop the Redis broker.

Each test writes the garbage with a plain Redis client into the private redis-server, as a
foreign or broken writer would, then checks that the node's reader goes on delivering, that
publishing keeps working and that subscribers of a stream that lost a seq are told (the
epoch listener, which the gateway turns into 1012 and `recovered: false`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from redisproc import RedisProcess
from tidewire.brokers.base import BrokerUnavailable, Handlers
from tidewire.brokers.redis import RedisBroker
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, StreamPosition

pytestmark = pytest.mark.redis

TIMEOUT = 5.0
POLL = 0.005
ORDERS = "order_updates"
QUOTES = "market_data"


def order(n: int) -> DataMessage:
    return build_data_message(
        {
            "type": "order_update",
            "portfolio_id": "PF-1",
            "message_id": f"garbage-order-{uuid.uuid4().hex}",
            "data": {
                "order_id": f"O-{n}",
                "symbol": "AAPL",
                "side": "buy",
                "order_type": "limit",
                "quantity": 1,
                "filled_quantity": 0,
                "status": "open",
            },
        }
    )


def quote(symbol: str) -> DataMessage:
    return build_data_message(
        {
            "type": "market_data",
            "symbol": symbol,
            "data_type": "quote",
            "message_id": f"garbage-quote-{uuid.uuid4().hex}",
            "data": {"bid": 100.0, "ask": 100.1},
        }
    )


class Node:
    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.delivered: list[DataMessage] = []
        self.resets: list[str] = []
        broker.attach(Handlers(message=self.delivered.append, history_lost=self.resets.append))

    def of(self, stream: str) -> list[DataMessage]:
        return [m for m in self.delivered if m.stream == stream]


@pytest.fixture
async def admin(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def nodes(redis_server: RedisProcess) -> AsyncIterator[Callable[..., Any]]:
    started: list[Node] = []
    prefix = f"g{uuid.uuid4().hex[:8]}"

    async def make() -> Node:
        node = Node(RedisBroker(redis_server.url, prefix=prefix))
        await node.broker.start()
        started.append(node)
        return node

    yield make
    for node in started:
        async with asyncio.timeout(TIMEOUT):
            await node.broker.close()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():  # noqa: ASYNC110 - the condition is another task's state
                await asyncio.sleep(POLL)
    except TimeoutError:
        pytest.fail(f"timed out after {TIMEOUT} s waiting until {what}")


def log_key(node: Node, stream: str) -> str:
    return f"{node.broker.prefix}:{stream}:log"


async def test_malformed_entries_are_skipped_counted_and_make_a_gap(
    nodes: Callable[..., Any], admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    node = await nodes()
    first = (await node.broker.publish(order(1))).message
    key = log_key(node, ORDERS)
    epoch = first.epoch
    wrong_shape = msgspec.msgpack.encode({"foo": 1})
    other_stream = msgspec.msgpack.encode(quote("AAPL").sequenced(2, epoch))
    with caplog.at_level(logging.WARNING, "tidewire.brokers.redis"):
        await admin.xadd(key, {"x": "y"}, id="2-0")  # fields missing
        await admin.xadd(key, {"e": epoch, "t": "1", "m": b"\xc1\xff"}, id="3-0")  # garbage
        await admin.xadd(key, {"e": epoch, "t": "1", "m": wrong_shape}, id="4-0")
        await admin.xadd(key, {"e": epoch, "t": "1", "m": other_stream}, id="5-0")
        await admin.xadd(key, {"e": "bogus", "t": "1", "m": other_stream}, id="6-0")
        # Publishing goes on after them; the other streams never stopped either.
        later = (await node.broker.publish(order(2))).message
        await node.broker.publish(quote("MSFT"))
        await wait_until(lambda: len(node.of(ORDERS)) == 2, "the later order delivered")
        await wait_until(lambda: len(node.of(QUOTES)) == 1, "the quote delivered")
    assert [m.seq for m in node.of(ORDERS)] == [1, later.seq] and later.seq == 7
    assert node.broker.position(ORDERS) == StreamPosition(epoch, 7)
    assert node.broker.warnings.counters["malformed_entries"] == 5
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and key in skipped[0].getMessage()  # once, rate-limited
    assert ORDERS in node.resets  # subscribers are sent to resync, never a silent hole
    # A replay across the garbage is not covered (the client resyncs); from after it, it is.
    assert await node.broker.history(ORDERS, StreamPosition(epoch, 1)) is None
    assert await node.broker.history(ORDERS, StreamPosition(epoch, 7)) == []
    assert [m.seq for m in await node.broker.recent(ORDERS, 10)] == [1, 7]


async def test_a_foreign_auto_id_entry_does_not_stop_publishing(
    nodes: Callable[..., Any], admin: aioredis.Redis
) -> None:
    node = await nodes()
    await node.broker.publish(order(1))
    foreign = (await admin.xadd(log_key(node, ORDERS), {"hello": "world"})).decode()  # type: ignore[union-attr]
    published = (await node.broker.publish(order(2))).message
    assert published.seq == int(foreign.split("-")[0]) + 1
    await wait_until(lambda: len(node.of(ORDERS)) == 2, "the order after it delivered")
    # A fresh node on that Redis starts, reads and publishes too.
    fresh = await nodes()
    again = (await fresh.broker.publish(order(3))).message
    assert again.seq == published.seq + 1
    for each in (node, fresh):
        await wait_until(lambda each=each: again in each.of(ORDERS), "delivered on both")  # type: ignore[misc]
    assert node.broker.warnings.counters["malformed_entries"] == 1


async def test_a_foreign_id_beyond_every_seq_starts_a_new_epoch(
    nodes: Callable[..., Any], admin: aioredis.Redis
) -> None:
    node = await nodes()
    old = (await node.broker.publish(order(1))).message
    await admin.xadd(log_key(node, ORDERS), {"a": "b"}, id="18446744073709551615-0")
    published = (await node.broker.publish(order(2))).message
    assert published.epoch != old.epoch and published.seq == 1
    await wait_until(lambda: published in node.of(ORDERS), "the new epoch's order delivered")
    assert ORDERS in node.resets


async def test_a_malformed_last_value_is_treated_as_absent(
    nodes: Callable[..., Any], admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    node = await nodes()
    await node.broker.publish(quote("AAPL"))
    kept = (await node.broker.publish(quote("MSFT"))).message
    last = f"{node.broker.prefix}:{QUOTES}:last"
    fields = [k.decode() for k in await admin.hkeys(last)]  # type: ignore[union-attr]
    aapl = next(f for f in fields if "AAPL" in f)
    await admin.hset(last, aapl, b"1\n\xc1garbage")
    await admin.hset(last, "ZZZ", b"not a seq\n")
    await admin.hset(last, "YYY", b"2\n" + msgspec.msgpack.encode(order(9)))  # other stream
    # A node that never delivered AAPL reads it from Redis: absent. Read once, then the
    # node's own copy answers (no second decode, no second warning).
    fresh = await nodes()
    with caplog.at_level(logging.WARNING, "tidewire.brokers.redis"):
        snapshot = await fresh.broker.snapshot(QUOTES)
        again = await fresh.broker.snapshot(QUOTES)
    assert [m.message_id for m in snapshot.messages] == [kept.message_id]
    assert again.messages == snapshot.messages
    assert fresh.broker.warnings.counters["malformed_last_values"] == 3
    assert len([r for r in caplog.records if "treated as absent" in r.getMessage()]) == 1
    # The node that delivered both keeps what it delivered: garbage written later over a
    # value it holds does not replace it.
    mine = await node.broker.snapshot(QUOTES)
    assert [m.symbol for m in mine.messages] == ["AAPL", "MSFT"]


async def test_the_reader_restarts_after_any_error_and_readiness_shows_it(
    nodes: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await nodes()
    broker = node.broker
    real = broker._xread
    broken = asyncio.Event()
    broken.set()

    async def failing() -> Any:
        if broken.is_set():
            raise RuntimeError("injected")
        return await real()

    monkeypatch.setattr(broker, "_xread", failing)
    await wait_until(lambda: broker.failure is not None, "the reader failed")
    with pytest.raises(BrokerUnavailable, match="reader is down"):
        await broker.probe()
    published = (await broker.publish(order(1))).message
    broken.clear()
    await wait_until(lambda: published in node.of(ORDERS), "delivered after the restart")
    assert broker.failure is None and broker.warnings.counters["reader_restarts"] >= 1
    await asyncio.wait_for(broker.probe(), TIMEOUT)


async def test_a_negative_since_is_not_covered(nodes: Callable[..., Any]) -> None:
    node = await nodes()
    published = (await node.broker.publish(order(1))).message
    await wait_until(lambda: published in node.of(ORDERS), "delivered")
    assert await node.broker.history(ORDERS, StreamPosition(published.epoch, -1)) is None
    assert await node.broker.history(ORDERS, StreamPosition(published.epoch, -5)) is None


@pytest.mark.parametrize(
    ("suffix", "kind"), [("seq", "a word"), ("epoch", "a list"), ("log", "a string")]
)
async def test_foreign_keys_of_a_stream_do_not_stop_it(
    nodes: Callable[..., Any], admin: aioredis.Redis, suffix: str, kind: str
) -> None:
    node = await nodes()
    old = (await node.broker.publish(order(1))).message
    key = f"{node.broker.prefix}:{ORDERS}:{suffix}"
    await admin.delete(key)
    if kind == "a list":
        await admin.rpush(key, "a", "list")
    else:
        await admin.set(key, kind)
    published = (await node.broker.publish(order(2))).message
    assert published.epoch != old.epoch and published.seq == 1  # lost history: renewed
    fresh = await nodes()  # starts on that Redis
    await wait_until(lambda: published in node.of(ORDERS), "delivered after it")
    again = (await fresh.broker.publish(order(3))).message
    await wait_until(lambda: again in fresh.of(ORDERS), "a fresh node delivers")
    assert (await node.broker.snapshot(ORDERS)).position.epoch == again.epoch
    assert (await node.broker.lag())[ORDERS] == 0


async def test_a_log_of_another_type_does_not_stop_the_other_streams(
    nodes: Callable[..., Any], admin: aioredis.Redis
) -> None:
    node = await nodes()
    await admin.set(log_key(node, ORDERS), "a string, not a stream")
    delivered = (await node.broker.publish(quote("AAPL"))).message
    await wait_until(lambda: delivered in node.of(QUOTES), "the other stream delivered")
    assert node.broker.warnings.counters["foreign_keys"] >= 1
    renewed = (await node.broker.publish(order(1))).message  # the publish renews the log
    await wait_until(lambda: renewed in node.of(ORDERS), "the renewed stream delivered")
