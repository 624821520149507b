"""What only the Redis broker has: several nodes on one Redis, and Redis faults.

Two `RedisBroker`s with the same key prefix are two gateway nodes of one Tidewire: they
share sequencing, history, last values and the idempotency window. The faults are real:
the private redis-server of the test is stopped and started again (empty, as a Redis
without persistence comes back), flushed, paused with `CLIENT PAUSE` (unresponsive, data
kept), or a node's connections are killed with `CLIENT KILL`.

Every wait is for a condition, bounded by a timeout. Where the subject is time itself (the
idempotency window, the age of history, an unresponsive Redis), the test waits for that
time, and keeps it around a second.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from redisproc import RedisProcess
from tidewire.brokers.base import BrokerUnavailable, Handlers, HistoryLimit, PublishOutcome
from tidewire.brokers.redis import RedisBroker
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, StreamPosition
from tidewire.protocol.streams import STREAMS

pytestmark = pytest.mark.redis

TIMEOUT = 5.0
POLL = 0.005
_ids = itertools.count(1)


def order(portfolio: str = "PF-1", message_id: str | None = None) -> DataMessage:
    n = next(_ids)
    return build_data_message(
        {
            "type": "order_update",
            "portfolio_id": portfolio,
            "message_id": message_id or f"redis-order-{n}",
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


def quote(symbol: str = "AAPL", message_id: str | None = None) -> DataMessage:
    n = next(_ids)
    return build_data_message(
        {
            "type": "market_data",
            "symbol": symbol,
            "data_type": "quote",
            "message_id": message_id or f"redis-quote-{n}",
            "data": {"bid": 100.0 + n, "ask": 100.1 + n},
        }
    )


class Node:
    """A RedisBroker and everything its consumer and epoch listener were given."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.delivered: list[DataMessage] = []
        self.resets: list[str] = []
        broker.attach(Handlers(message=self.delivered.append, history_lost=self.resets.append))

    def of(self, stream: str) -> list[DataMessage]:
        return [m for m in self.delivered if m.stream == stream]

    def seqs(self, stream: str) -> list[int]:
        return [m.seq for m in self.of(stream)]


MakeNode = Callable[..., Any]


@pytest.fixture
async def nodes(redis_server: RedisProcess) -> AsyncIterator[MakeNode]:
    """`await nodes(**options)`: a started node of one Tidewire (one key prefix) on the
    test's private Redis; every node of a test shares the prefix unless given another."""
    started: list[Node] = []
    prefix = f"t{uuid.uuid4().hex[:8]}"

    async def make(url: str | None = None, **options: Any) -> Node:
        options.setdefault("prefix", prefix)
        node = Node(RedisBroker(url or redis_server.url, **options))
        await node.broker.start()
        started.append(node)
        return node

    yield make
    for node in started:
        async with asyncio.timeout(TIMEOUT):
            await node.broker.close()


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - the condition is another task's state
                await asyncio.sleep(POLL)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting until {what}")


async def delivered(node: Node, stream: str, count: int) -> list[DataMessage]:
    """The node's first `count` messages of `stream`, once it delivered them."""
    await wait_until(lambda: len(node.of(stream)) >= count, f"{count} {stream} delivered")
    return node.of(stream)[:count]


async def renewed(node: Node, streams: set[str]) -> None:
    """Wait until the node told its listener about each of `streams`."""
    await wait_until(lambda: set(node.resets) >= streams, f"{streams} renewed")


async def delivered_up_to(node: Node, stream: str, seq: int) -> None:
    """Wait until the node's position in `stream` reached `seq`."""
    await wait_until(lambda: node.broker.position(stream).seq >= seq, f"{stream} at {seq}")


def key(node: Node, *parts: str) -> str:
    return ":".join((node.broker.prefix, *parts))


async def redis_up(admin: aioredis.Redis) -> None:
    """Wait until Redis takes writes again (after a pause)."""
    async with asyncio.timeout(TIMEOUT):
        await admin.set("tidewire-test:probe", 1)


# ------------------------------------------------------------------ several nodes


async def test_two_nodes_share_sequencing_and_deliver_everything_in_order(
    nodes: MakeNode, settle: Callable[..., Any]
) -> None:
    a, b = await nodes(), await nodes()
    assert a.broker.position("order_updates") == b.broker.position("order_updates")
    outcomes: list[PublishOutcome] = []
    for i in range(20):  # interleaved: each node publishes every other message
        publisher = (a, b)[i % 2].broker
        outcomes.append(await publisher.publish(order(f"PF-{i % 3}")))
    outcomes += await a.broker.publish_many([quote("AAPL"), order("PF-9"), quote("MSFT")])
    assert [o.message.seq for o in outcomes if o.message.stream == "order_updates"] == list(
        range(1, 22)
    ), "one counter for both nodes"
    await settle(a.broker, b.broker)
    for stream in ("order_updates", "market_data"):
        published = [o.message for o in outcomes if o.message.stream == stream]
        assert a.of(stream) == published
        assert b.of(stream) == published, "same seq, epoch and content on both nodes"
        assert a.broker.position(stream) == b.broker.position(stream)


async def test_idempotency_is_shared_by_all_nodes(
    nodes: MakeNode, settle: Callable[..., Any]
) -> None:
    a, b = await nodes(), await nodes()
    first = await a.broker.publish(order("PF-1", message_id="shared-id"))
    await b.broker.publish(order("PF-1"))
    repeat = await b.broker.publish(order("PF-2", message_id="shared-id"))
    assert repeat.duplicate is True
    assert repeat.message == first.message, "node B answers with node A's original"
    batch = await b.broker.publish_many([order("PF-1"), quote(message_id="shared-id")])
    assert [o.duplicate for o in batch] == [False, True]
    assert batch[1].message == first.message
    await settle(a.broker, b.broker)
    for node in (a, b):
        assert node.seqs("order_updates") == [1, 2, 3]
        assert [m.message_id for m in node.delivered].count("shared-id") == 1
        assert node.of("market_data") == []


async def test_snapshots_are_shared_by_all_nodes(nodes: MakeNode) -> None:
    a, b = await nodes(), await nodes()
    outcomes = await a.broker.publish_many([quote(s) for s in ("AAPL", "MSFT", "AAPL")])
    outcomes.append(await b.broker.publish(quote("IBM")))
    expected = [outcomes[1].message, outcomes[2].message, outcomes[3].message]
    for node in (a, b):
        snapshot = await node.broker.snapshot("market_data")
        assert snapshot.messages == expected
        assert snapshot.position == StreamPosition(outcomes[0].message.epoch, 4)
        assert node.broker.position("market_data") == snapshot.position


async def test_a_node_replays_what_another_node_published(
    nodes: MakeNode, settle: Callable[..., Any]
) -> None:
    a, b = await nodes(), await nodes()
    outcomes = await a.broker.publish_many([order() for _ in range(5)])
    await settle(b.broker)
    epoch = outcomes[0].message.epoch
    assert await b.broker.history("order_updates", StreamPosition(epoch, 2)) == [
        o.message for o in outcomes[2:]
    ]


async def test_a_node_behind_redis_answers_a_snapshot_only_once_it_caught_up(
    nodes: MakeNode,
) -> None:
    """The gateway goes live right after a snapshot: a node that is behind Redis must not
    return a snapshot newer than what it delivered, or the older live messages that follow
    would overwrite newer values (and arrive out of seq order)."""
    a, b = await nodes(), await nodes()
    for _ in range(3):  # 3000 messages: node B needs several XREADs (1000 each) to follow
        await a.broker.publish_many([quote(f"S{i % 10}") for i in range(1000)])
    behind = b.broker.position("market_data").seq
    snapshot = await b.broker.snapshot("market_data")
    assert snapshot.position.seq == 3000
    assert len(b.of("market_data")) == 3000, (
        f"the snapshot is at 3000; the node was at {behind} when asked and has delivered "
        f"{len(b.of('market_data'))}: the rest would follow the snapshot"
    )
    assert b.broker.position("market_data") == snapshot.position
    await a.broker.publish(quote("S1"))
    assert [m.seq for m in (await delivered(b, "market_data", 3001))[3000:]] == [3001]


async def test_a_replay_from_beyond_the_node_waits_until_it_caught_up(nodes: MakeNode) -> None:
    """A client that saw seq N on another node resumes on a node still behind N: the replay
    is empty and the node has delivered N by then, so nothing up to N comes live again."""
    a, b = await nodes(), await nodes()
    for _ in range(3):
        await a.broker.publish_many([order() for _ in range(1000)])
    epoch = a.broker.position("order_updates").epoch
    assert await b.broker.history("order_updates", StreamPosition(epoch, 3000)) == []
    assert b.broker.position("order_updates") == StreamPosition(epoch, 3000)


# ------------------------------------------------------------------ publishing and faults


async def test_publish_while_redis_is_down_raises_and_writes_nothing(
    nodes: MakeNode, redis_server: RedisProcess, redis_admin: aioredis.Redis
) -> None:
    node = await nodes()
    await node.broker.publish(order())
    redis_server.stop()
    batch = [order(message_id=f"down-{i}") for i in range(3)] + [quote(message_id="down-q")]
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await node.broker.publish_many(batch)
    with pytest.raises(BrokerUnavailable):
        await node.broker.publish(order())
    assert time.monotonic() - started < 2.0, "a stopped Redis is refused at once"
    redis_server.start()  # empty, like a Redis without persistence
    await wait_until(lambda: node.resets != [], "the node noticed that Redis lost its streams")
    assert await redis_admin.keys(f"{node.broker.prefix}:id:down-*") == []
    again = await node.broker.publish_many(batch)
    assert [o.duplicate for o in again] == [False] * 4, "none of the ids was recorded"
    assert [o.message.seq for o in again] == [1, 2, 3, 1]


async def test_publish_that_redis_never_answers_times_out_and_writes_nothing(
    nodes: MakeNode, redis_admin: aioredis.Redis
) -> None:
    """CLIENT PAUSE WRITE: Redis holds every write (the publish script too) without
    answering. The publish gives up after operation_timeout with BrokerUnavailable, and
    nothing of its batch is written when Redis resumes: not a seq, not an entry, not an id."""
    node = await nodes(operation_timeout=0.5)
    await node.broker.publish(order())
    before = await redis_admin.xlen(key(node, "order_updates", "log"))
    await redis_admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")  # type: ignore[no-untyped-call]
    try:
        with pytest.raises(BrokerUnavailable, match="no answer"):
            await node.broker.publish_many([order(message_id=f"held-{i}") for i in range(5)])
    finally:
        await redis_admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
    await redis_up(redis_admin)
    assert await redis_admin.get(key(node, "order_updates", "seq")) == b"1"
    assert await redis_admin.xlen(key(node, "order_updates", "log")) == before == 1
    assert await redis_admin.keys(f"{node.broker.prefix}:id:held-*") == []
    outcome = await node.broker.publish(order(message_id="held-0"))
    assert (outcome.duplicate, outcome.message.seq) == (False, 2)


async def test_redis_restarting_empty_starts_a_new_epoch_on_every_node(
    nodes: MakeNode, redis_server: RedisProcess, settle: Callable[..., Any]
) -> None:
    a, b = await nodes(), await nodes()
    old = (await a.broker.publish_many([order() for _ in range(3)]))[-1].message
    await settle(a.broker, b.broker)
    redis_server.stop()
    redis_server.start()
    for node in (a, b):
        await renewed(node, set(STREAMS))
        assert node.broker.position("order_updates").epoch != old.epoch
        assert node.broker.position("order_updates").seq == 0
    assert a.broker.position("order_updates") == b.broker.position("order_updates")
    assert await a.broker.history("order_updates", StreamPosition(old.epoch, 3)) is None
    assert await a.broker.history("order_updates", StreamPosition(old.epoch, 1)) is None
    new = await b.broker.publish_many([order() for _ in range(2)])
    assert [o.message.seq for o in new] == [1, 2]
    assert new[0].message.epoch == a.broker.position("order_updates").epoch
    for node in (a, b):
        assert await delivered(node, "order_updates", 5) == [
            *node.of("order_updates")[:3],
            *[o.message for o in new],
        ]


async def test_a_flushed_redis_is_read_from_the_new_epochs_first_message(
    nodes: MakeNode, redis_admin: aioredis.Redis, settle: Callable[..., Any]
) -> None:
    """FLUSHALL while the nodes wait in XREAD after seq 3: the new epoch's publish reaches
    them as seq 4..10 first (ids after 3-0); they must deliver the new epoch from seq 1."""
    a, b = await nodes(), await nodes()
    old = (await a.broker.publish_many([order() for _ in range(3)]))[-1].message
    await settle(a.broker, b.broker)
    await redis_admin.flushall()
    new = await a.broker.publish_many([order() for _ in range(10)])
    assert new[0].message.epoch != old.epoch and new[0].message.seq == 1
    for node in (a, b):
        await delivered(node, "order_updates", 13)
        assert node.of("order_updates")[3:] == [o.message for o in new]
        assert "order_updates" in node.resets


async def test_a_lost_seq_counter_starts_a_new_epoch(
    nodes: MakeNode, redis_admin: aioredis.Redis, settle: Callable[..., Any]
) -> None:
    """The counter alone is gone (evicted by an allkeys-* maxmemory policy, deleted): seqs
    would restart at 1 under the old epoch, and XADD would refuse every id at or below the
    log's last one, so the stream could never be published to again."""
    node = await nodes()
    old = (await node.broker.publish_many([order() for _ in range(3)]))[-1].message
    await settle(node.broker)
    await redis_admin.delete(key(node, "order_updates", "seq"))
    outcome = await node.broker.publish(order())
    assert outcome.message.seq == 1 and outcome.message.epoch != old.epoch
    await wait_until(lambda: "order_updates" in node.resets, "the node saw the new epoch")
    assert (await delivered(node, "order_updates", 4))[3] == outcome.message


async def test_a_node_that_lost_its_connections_continues_from_its_last_id(
    nodes: MakeNode, redis_admin: aioredis.Redis, settle: Callable[..., Any]
) -> None:
    a, b = await nodes(), await nodes()
    first = await a.broker.publish_many([order() for _ in range(5)])
    await settle(b.broker)
    reconnects = b.broker.reconnects
    # Every connection but this one: both nodes' publishing and reading connections.
    await redis_admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
    second = await a.broker.publish_many([order() for _ in range(5)])
    await wait_until(lambda: b.broker.reconnects > reconnects, "node B reconnected")
    assert await delivered(b, "order_updates", 10) == [o.message for o in first + second]
    assert b.resets == [], "nothing was lost: no resync"


async def test_history_is_trimmed_to_max_messages(
    nodes: MakeNode, redis_admin: aioredis.Redis
) -> None:
    """Redis trims the log approximately (whole nodes of 100 entries) and keeps at least
    max_messages; a replay never reaches further back than max_messages all the same."""
    limit = 150
    node = await nodes(history_limits={"order_updates": HistoryLimit(max_messages=limit)})
    outcomes: list[PublishOutcome] = []
    for batch in range(10):  # 1000 messages, 100 per batch, each read before the next
        outcomes += await node.broker.publish_many([order() for _ in range(100)])
        await delivered(node, "order_updates", 100 * (batch + 1))
    assert node.resets == [], "the node read every message before it was trimmed"
    length = await redis_admin.xlen(key(node, "order_updates", "log"))
    assert limit <= length < 1000, f"Redis keeps {length} entries"
    epoch = outcomes[0].message.epoch
    kept = await node.broker.history("order_updates", StreamPosition(epoch, 1000 - limit))
    assert kept == [o.message for o in outcomes[-limit:]]
    for since in (0, 1000 - limit - 1):
        assert await node.broker.history("order_updates", StreamPosition(epoch, since)) is None


async def test_messages_trimmed_before_a_node_read_them_send_its_clients_to_resync(
    nodes: MakeNode,
) -> None:
    """One batch of 1000 with a history of 10: Redis trims most of it inside the script,
    before any node's XREAD sees it. A node must not go on as if seq 1.. had never
    existed: it tells its listener (the gateway closes those subscribers with 1012 and they
    come back to `recovered: false`)."""
    limits = {"order_updates": HistoryLimit(max_messages=10)}
    a, b = await nodes(history_limits=limits), await nodes(history_limits=limits)
    outcomes = await a.broker.publish_many([order() for _ in range(1000)])
    for node in (a, b):
        await delivered_up_to(node, "order_updates", 1000)
        assert node.resets == ["order_updates"]
        seqs = node.seqs("order_updates")
        assert seqs[0] > 1 and seqs == list(range(seqs[0], 1001)), "no gap after the resync"
    epoch = outcomes[0].message.epoch
    assert await a.broker.history("order_updates", StreamPosition(epoch, 0)) is None


async def test_a_failing_consumer_does_not_stop_the_node(nodes: MakeNode) -> None:
    node = await nodes()
    received: list[DataMessage] = []

    def consumer(message: DataMessage) -> None:
        if message.seq == 2:
            raise RuntimeError("a bug in the hub")
        received.append(message)

    node.broker.attach(Handlers(message=consumer))
    await node.broker.publish_many([order() for _ in range(3)])
    await wait_until(lambda: len(received) == 2, "seq 3 delivered after seq 2 failed")
    assert [m.seq for m in received] == [1, 3]
    await node.broker.probe()


# ------------------------------------------------------------------ time


async def test_idempotency_window_is_the_ttl_of_the_id_key(
    nodes: MakeNode, redis_admin: aioredis.Redis
) -> None:
    """Redis expires the idempotency record: the key's TTL is the window. With a window of
    1 s, waiting for the key to expire (EXISTS polled) ends the window for every node."""
    default = await nodes()
    await default.broker.publish(order(message_id="ttl-300"))
    assert 298 <= await redis_admin.ttl(key(default, "id", "ttl-300")) <= 300
    a = await nodes(idempotency_window=1.0, prefix=f"t{uuid.uuid4().hex[:8]}")
    b = await nodes(idempotency_window=1.0, prefix=a.broker.prefix)
    first = await a.broker.publish(order(message_id="short"))
    assert (await b.broker.publish(order(message_id="short"))).duplicate is True
    id_key = key(a, "id", "short")
    assert await redis_admin.ttl(id_key) == 1
    async with asyncio.timeout(3.0):  # Redis expires keys by its own clock
        while await redis_admin.exists(id_key):  # noqa: ASYNC110 - state of another process
            await asyncio.sleep(0.05)
    again = await b.broker.publish(order(message_id="short"))
    assert again.duplicate is False
    assert again.message.seq == first.message.seq + 1


async def test_history_older_than_max_age_is_gone(nodes: MakeNode) -> None:
    """History ages by Redis's clock (the entry's `t`): 1 s of max age, waited for."""
    node = await nodes(history_limits={"order_updates": HistoryLimit(max_age_seconds=1.0)})
    early = await node.broker.publish_many([order() for _ in range(2)])
    published_at = time.monotonic()
    await delivered(node, "order_updates", 2)
    epoch = early[0].message.epoch
    assert await node.broker.history("order_updates", StreamPosition(epoch, 0)) == [
        o.message for o in early
    ]
    await asyncio.sleep(max(0.0, published_at + 1.1 - time.monotonic()))  # the age itself
    late = await node.broker.publish_many([order() for _ in range(3)])
    await delivered(node, "order_updates", 5)
    assert await node.broker.history("order_updates", StreamPosition(epoch, 0)) is None
    assert await node.broker.history("order_updates", StreamPosition(epoch, 1)) is None
    assert await node.broker.history("order_updates", StreamPosition(epoch, 2)) == [
        o.message for o in late
    ]


# ------------------------------------------------------------------ probe and lag


async def test_probe_is_a_round_trip_and_fails_while_redis_does_not_answer(
    nodes: MakeNode, redis_server: RedisProcess
) -> None:
    node = await nodes()
    async with asyncio.timeout(TIMEOUT):
        await node.broker.probe()
    pauser = aioredis.from_url(redis_server.url)
    try:
        # Unresponsive without losing anything; ALL: reads wait too. Not even CLIENT
        # UNPAUSE is answered, so the pause runs its course (1.5 s).
        await pauser.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # type: ignore[no-untyped-call]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await node.broker.probe()
        assert time.monotonic() - started < 1.0
    finally:
        await pauser.aclose()
    async with asyncio.timeout(TIMEOUT):
        await node.broker.probe()  # answered again once the pause is over
    outcome = await node.broker.publish(order())
    assert outcome.message.seq == 1, "the connection the timeout cut left nothing behind"


async def test_probe_and_lag_raise_when_redis_is_down(
    nodes: MakeNode, redis_server: RedisProcess
) -> None:
    node = await nodes()
    assert await node.broker.lag() == dict.fromkeys(STREAMS, 0)
    redis_server.stop()
    with pytest.raises(BrokerUnavailable):
        async with asyncio.timeout(TIMEOUT):
            await node.broker.probe()
    with pytest.raises(BrokerUnavailable):
        await node.broker.lag()


async def test_lag_is_what_redis_holds_beyond_the_node(nodes: MakeNode) -> None:
    a, b = await nodes(), await nodes()
    await a.broker.publish_many([order() for _ in range(3000)])
    lag = await b.broker.lag()
    behind = 3000 - b.broker.position("order_updates").seq
    assert lag["order_updates"] >= behind >= 0
    await delivered(b, "order_updates", 3000)
    assert (await b.broker.lag())["order_updates"] == 0


async def test_start_without_redis_raises(redis_server: RedisProcess) -> None:
    url = redis_server.url
    redis_server.stop()
    broker = RedisBroker(url, operation_timeout=0.5)
    with pytest.raises(BrokerUnavailable):
        await broker.start()
    await broker.close()


async def test_close_returns_promptly_whatever_the_reader_is_doing(
    redis_server: RedisProcess,
) -> None:
    """redis-py with a socket timeout sends through asyncio.wait_for, which on Python 3.11
    can swallow the cancellation (CPython gh-86296): close() used to hang for good."""
    slowest = 0.0
    for attempt in range(20):
        broker = RedisBroker(redis_server.url, prefix=f"close-{attempt}")
        await broker.start()
        await broker.publish(order())
        await asyncio.sleep(0.001 * (attempt % 5))  # land the close anywhere in the loop
        started = time.monotonic()
        # Not asyncio.timeout: a close() that swallows its own cancellation would pass.
        closing = asyncio.create_task(broker.close())
        done, _ = await asyncio.wait({closing}, timeout=2.0)
        assert done, f"close() still running after 2 s (attempt {attempt})"
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.5, f"the slowest close() took {slowest:.2f} s"
