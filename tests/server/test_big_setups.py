"""Snapshots and replays far bigger than `max_outbox_bytes`, on real sockets (core/feeds.py).

Default limits throughout except where a test says otherwise: a 100,000-key snapshot is
about 30 MB of frames against an 8 MiB outbox limit, and arrives whole; a client away for
100,000 fills recovers every one; clients that never read hold a chunk each, not the
snapshot, and are cut by `stall_timeout`.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from messages import order, quote
from rawsockets import raw_subscriber, wait_for
from redisproc import INSTALL_HINT, RedisProcess
from support import WsClient, require_tool
from tidewire.protocol.ingest import build_data_message
from tidewire.server.app import Gateway

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]

KEYS = 100_000
pytestmark = pytest.mark.slow


def publish_now(gateway: Gateway, raws: list[dict[str, Any]]) -> None:
    broker = gateway.broker
    for raw in raws:
        broker.publish_now(build_data_message(raw))  # type: ignore[attr-defined]


def instruments(count: int) -> list[dict[str, Any]]:
    return [quote(f"SYM{i:06d}", bid=100.0 + i % 7) for i in range(count)]


async def drain(client: WsClient, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The next `count` data messages (skipping heartbeats and replies)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            message = json.loads(await client.ws.recv())
            if "seq" in message and "stream" in message:
                out.append(message)
    return out


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_an_unfiltered_subscriber_gets_a_100000_key_snapshot_whole(
    gateway: Gateway, connect: Connect
) -> None:
    publish_now(gateway, instruments(KEYS))
    client = await connect(gateway)
    confirmed = await client.subscribe("market_data")
    assert confirmed["type"] == "subscription_confirmed"
    snapshot = await drain(client, KEYS)
    assert len({m["key"] for m in snapshot}) == KEYS
    seqs = [m["seq"] for m in snapshot]
    assert seqs == sorted(seqs)
    size = sum(len(json.dumps(m)) for m in snapshot)
    assert size > gateway.settings.max_outbox_bytes, "the test must exceed the outbox limit"
    # Live after the snapshot, and nobody was closed for it.
    publish_now(gateway, [quote("SYM000001", bid=1.5)])
    (live,) = await drain(client, 1)
    assert live["seq"] == KEYS + 1
    assert gateway.hub.counters.slow_consumer_closes == 0


async def test_a_client_away_for_100000_fills_recovers_every_one(
    gateway: Gateway, connect: Connect
) -> None:
    first = await connect(gateway)
    confirmed = await first.subscribe("order_updates")
    epoch = confirmed["position"]["epoch"]
    await first.close()
    publish_now(gateway, [order("PF-A", n) for n in range(1, KEYS + 1)])
    again = await connect(gateway)
    reply = await again.subscribe("order_updates", since={"epoch": epoch, "seq": 0})
    assert reply["recovered"] is True
    replay = await drain(again, KEYS)
    assert [m["seq"] for m in replay] == list(range(1, KEYS + 1))
    publish_now(gateway, [order("PF-A", KEYS + 1)])
    (live,) = await drain(again, 1)
    assert live["seq"] == KEYS + 1, "live messages follow the replay without a gap"


async def test_live_messages_during_a_big_replay_follow_it_in_order(
    gateway: Gateway, connect: Connect
) -> None:
    publish_now(gateway, [order("PF-A", n) for n in range(1, 50_001)])
    client = await connect(gateway)
    epoch = gateway.broker.position("order_updates").epoch
    await client.send(
        {"type": "subscribe", "stream": "order_updates", "since": {"epoch": epoch, "seq": 0}}
    )
    got: list[dict[str, Any]] = []
    n = 50_000
    async with asyncio.timeout(60):
        while len(got) < 51_000:
            if n < 51_000:  # keep publishing while the replay is being read
                n += 1
                await gateway.publish(order("PF-A", n))
            message = json.loads(await client.ws.recv())
            if "seq" in message:
                got.append(message)
    assert [m["seq"] for m in got] == list(range(1, 51_001))


async def test_clients_that_never_read_a_big_snapshot_hold_a_chunk_each_and_are_cut(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(stall_timeout=2.0)
    publish_now(gateway, instruments(KEYS))
    before = rss_kib()
    unfiltered = {"type": "subscribe", "stream": "market_data"}
    stalled = [await raw_subscriber(gateway, unfiltered) for _ in range(10)]
    await wait_for(lambda: gateway.stats()["subscriptions"] == 10)
    connections = list(gateway.hub.connections.values())  # the ten that never read
    # A reader beside them gets the whole snapshot meanwhile.
    reader = await connect(gateway)
    await reader.subscribe("market_data")
    assert len(await drain(reader, KEYS)) == KEYS
    grown_mib = (rss_kib() - before) / 1024
    # Each holds references to the broker's messages and a chunk, not 30 MB of frames
    # (before flow control: 10 x ~100 MB).
    assert grown_mib < 150, f"RSS grew {grown_mib:.0f} MiB"
    # Behind (or already cut, on a slow machine), never holding more than a chunk or so.
    assert all(c.closed or c.write_paused for c in connections)
    assert all(c.outbox.pending_bytes < 1024 * 1024 for c in connections)
    await wait_for(lambda: all(c.closed for c in connections), timeout=40)
    assert {c.close_code for c in connections} == {4008}
    assert len(gateway.hub.feeds) == 0
    assert not reader.ws.close_code, "the reader is not cut"
    for _, writer in stalled:
        writer.close()


async def test_a_slow_consumer_closed_with_4008_sees_4008(
    make_gateway: MakeGateway,
) -> None:
    """The close frame is not stuck behind the backlog: what is unsent stays in the outbox,
    which a slow consumer's close drops, so the client reads its way to the 4008."""
    gateway = await make_gateway(max_outbox_bytes=256 * 1024, stall_timeout=60)
    # max_queue=1: the library stops reading the socket after one unread message.
    ws = await ws_connect(f"ws://127.0.0.1:{gateway.port}/ws", max_queue=1, max_size=None)
    await ws.recv()  # connection_established
    await ws.send(json.dumps({"type": "subscribe", "stream": "order_updates"}))
    await wait_for(lambda: gateway.stats()["subscriptions"] == 1)
    (connection,) = gateway.hub.connections.values()
    for n in range(20_000):
        message = order("PF-A", n)
        message["data"]["note"] = "x" * 1000
        await gateway.publish(message)
        if connection.closed:
            break
        if n % 50 == 0:
            await asyncio.sleep(0)
    assert connection.close_code == 4008
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess(require_tool("redis-server", INSTALL_HINT)) as server:
        yield server


@pytest.mark.redis
async def test_on_redis_clients_that_never_read_a_long_replay_hold_a_page_each(
    redis_server: RedisProcess, make_gateway: MakeGateway, connect: Connect
) -> None:
    """A replay is read from Redis a page at a time as the client takes it: ten recovering
    clients that stop reading hold a page each, not 20,000 decoded messages each."""
    gateway = await make_gateway(broker_url=redis_server.url, stall_timeout=2.0)
    epoch = gateway.broker.position("order_updates").epoch
    count = 20_000
    messages = [build_data_message(order("PF-A", n)) for n in range(1, count + 1)]
    for first in range(0, count, 1000):
        await gateway.broker.publish_many(messages[first : first + 1000])
    await wait_for(lambda: gateway.broker.position("order_updates").seq == count)
    before = rss_kib()
    resume = {"type": "subscribe", "stream": "order_updates", "since": {"epoch": epoch, "seq": 0}}
    stalled = [await raw_subscriber(gateway, resume) for _ in range(10)]
    await wait_for(lambda: gateway.stats()["subscriptions"] == 10)
    connections = list(gateway.hub.connections.values())  # the ten that never read
    reader = await connect(gateway)
    reply = await reader.subscribe("order_updates", since={"epoch": epoch, "seq": 0})
    assert reply["recovered"] is True
    replay = await drain(reader, count)
    assert [m["seq"] for m in replay] == list(range(1, count + 1))
    assert all(c.closed or c.write_paused for c in connections), "behind, or already cut"
    grown_mib = (rss_kib() - before) / 1024
    # Ten whole replays decoded would be about 10 x 22 MB.
    assert grown_mib < 80, f"RSS grew {grown_mib:.0f} MiB"
    await wait_for(lambda: all(c.closed for c in connections), timeout=40)
    assert {c.close_code for c in connections} == {4008}
    for _, writer in stalled:
        writer.close()
