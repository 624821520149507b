"""Delivery guarantees on real sockets: snapshots, resume, rate limits, slow consumers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from messages import order, position, quote
from rawsockets import raw_subscriber, wait_for
from support import WsClient
from tidewire.server.app import Gateway

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]


async def test_latest_value_snapshot_then_live(gateway: Gateway, connect: Connect) -> None:
    for bid in (1.0, 2.0, 3.0):
        await gateway.publish(quote("AAPL", bid=bid, ask=bid + 0.1))
    await gateway.publish(quote("MSFT", bid=50.0, ask=50.1))
    await gateway.publish(quote("GOOG", bid=70.0, ask=70.1))
    client = await connect(gateway)
    confirmed = await client.subscribe("market_data", filters={"symbols": ["AAPL", "MSFT"]})
    assert confirmed["position"]["seq"] == 5
    snapshot = await client.data(2)
    assert [(m["symbol"], m["data"]["bid_price"]) for m in snapshot] == [
        ("AAPL", 3.0),
        ("MSFT", 50.0),
    ]
    await gateway.publish(quote("AAPL", bid=4.0, ask=4.1))
    live = await client.data(1)
    assert live[0]["seq"] == 6
    assert await client.no_data(gateway) == []


async def test_snapshot_false_sends_only_live(gateway: Gateway, connect: Connect) -> None:
    await gateway.publish(quote("AAPL"))
    client = await connect(gateway)
    await client.subscribe("market_data", snapshot=False)
    assert await client.no_data(gateway) == []


async def test_positions_snapshot_per_portfolio_and_symbol(
    gateway: Gateway, connect: Connect
) -> None:
    for portfolio, symbol, quantity in [
        ("PF-1", "AAPL", 10),
        ("PF-1", "MSFT", 5),
        ("PF-2", "AAPL", 7),
        ("PF-1", "AAPL", 12),
    ]:
        await gateway.publish(position(portfolio, symbol, quantity))
    client = await connect(gateway)
    confirmed = await client.subscribe("position_updates", filters={"portfolio_ids": ["PF-1"]})
    assert confirmed["position"]["seq"] == 4
    snapshot = await client.data(2)
    assert [(m["symbol"], m["data"]["quantity"]) for m in snapshot] == [
        ("MSFT", 5),
        ("AAPL", 12),
    ]
    assert await client.no_data(gateway) == []


async def test_resume_replays_exactly_what_was_missed(gateway: Gateway, connect: Connect) -> None:
    first = await connect(gateway)
    confirmed = await first.subscribe("order_updates", filters={"portfolio_ids": ["PF-A"]})
    epoch = confirmed["position"]["epoch"]
    for n in range(3):
        await gateway.publish(order("PF-A", n))
    received = await first.data(3)
    cursor = received[-1]["seq"]
    await first.close()
    for n in range(3, 8):
        await gateway.publish(order("PF-A" if n % 2 else "PF-B", n))
    again = await connect(gateway)
    resumed = await again.subscribe(
        "order_updates", filters={"portfolio_ids": ["PF-A"]}, since={"epoch": epoch, "seq": cursor}
    )
    assert resumed["recovered"] is True
    assert resumed["position"] == {"epoch": epoch, "seq": 8}
    replay = await again.data(3)
    assert [m["message_id"] for m in replay] == ["PF-A-3", "PF-A-5", "PF-A-7"]
    await gateway.publish(order("PF-A", 9))
    assert [m["message_id"] for m in await again.data(1)] == ["PF-A-9"]
    assert await again.no_data(gateway) == []


async def test_resume_with_another_epoch_is_not_recovered(
    gateway: Gateway, connect: Connect
) -> None:
    await gateway.publish(order("PF-A", 1))
    client = await connect(gateway)
    reply = await client.subscribe("order_updates", since={"epoch": "gone", "seq": 1})
    assert reply["recovered"] is False
    assert await client.no_data(gateway) == []  # order_updates has no snapshot


async def test_resume_past_trimmed_history_gets_snapshot_never_partial(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(history_max_messages=3)
    first = await connect(gateway)
    confirmed = await first.subscribe("position_updates", snapshot=False)
    epoch = confirmed["position"]["epoch"]
    for quantity in range(1, 7):
        await gateway.publish(position("PF-1", "AAPL", quantity))
    client = await connect(gateway)
    reply = await client.subscribe("position_updates", since={"epoch": epoch, "seq": 1})
    assert reply["recovered"] is False
    snapshot = await client.data(1)
    assert snapshot[0]["data"]["quantity"] == 6
    assert await client.no_data(gateway) == []


async def test_latest_value_resume(gateway: Gateway, connect: Connect) -> None:
    await gateway.publish(quote("AAPL", bid=1.0, ask=1.1))
    head = gateway.broker.position("market_data")
    client = await connect(gateway)
    current = {"epoch": head.epoch, "seq": head.seq}
    reply = await client.subscribe("market_data", since=current)
    assert reply["recovered"] is True
    assert len(await client.data(1)) == 1  # the snapshot comes all the same
    await gateway.publish(quote("AAPL", bid=2.0, ask=2.1))
    other = await connect(gateway)
    stale = await other.subscribe("market_data", since=current)
    assert stale["recovered"] is False
    assert (await other.data(1))[0]["data"]["bid_price"] == 2.0


async def test_rate_limit_conflates_and_keeps_order(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    reply = await client.subscribe("market_data", rate_limit=5, snapshot=False)
    assert reply["rate_limit"] == 5
    for i in range(40):
        await gateway.publish(quote("AAPL", bid=100 + i, ask=100.5 + i))
        await gateway.publish(quote("MSFT", bid=200 + i, ask=200.5 + i))
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while {m["symbol"]: m["data"]["bid_price"] for m in received} != {"AAPL": 139, "MSFT": 239}:
            received += await client.data(1)
    # The first message went at once, the rest were conflated to the newest per symbol.
    assert len(received) < 10
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(seqs)
    newest = {m["symbol"]: m["data"]["bid_price"] for m in received}
    assert newest == {"AAPL": 139, "MSFT": 239}


# ---------------------------------------------------------------- slow consumers


async def test_stalled_market_data_reader_is_conflated_then_cut_off(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(stall_timeout=1.0, max_outbox_bytes=256 * 1024)
    _, writer = await raw_subscriber(gateway, {"type": "subscribe", "stream": "market_data"})
    await wait_for(lambda: gateway.stats()["subscriptions"] == 1)
    (stalled,) = gateway.hub.connections.values()
    healthy = await connect(gateway)
    await healthy.subscribe("market_data", filters={"symbols": ["S0"]}, snapshot=False)
    padding = "x" * 2000  # big messages fill the gateway's socket buffer sooner
    for i in range(6000):
        message = quote(f"S{i % 10}", bid=float(i), ask=float(i) + 1)
        message["data"]["note"] = padding
        await gateway.publish(message)
        if i % 100 == 0:
            await asyncio.sleep(0)
    # Memory stays bounded by the number of keys while it is behind...
    assert stalled.write_paused
    assert len(stalled.outbox.latest) <= 10
    assert gateway.hub.counters.conflated > 0
    # ...and the healthy client got every one of its messages.
    # ...and the healthy client got its symbol in order up to the newest value (this test's
    # client shares the gateway's event loop, so it may fall behind too: then conflated).
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not got or got[-1]["data"]["bid_price"] != 5990.0:
            got += await healthy.data(1)
    bids = [m["data"]["bid_price"] for m in got]
    assert bids == sorted(set(bids)) and all(b % 10 == 0 for b in bids)
    # The stalled reader is cut off after stall_timeout.
    await wait_for(lambda: stalled.closed)
    assert stalled.close_code == 4008
    assert gateway.hub.counters.slow_consumer_closes == 1
    writer.close()


async def test_stalled_reliable_reader_is_closed_at_the_byte_limit(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(max_outbox_bytes=64 * 1024, stall_timeout=60)
    _, writer = await raw_subscriber(gateway, {"type": "subscribe", "stream": "order_updates"})
    await wait_for(lambda: gateway.stats()["subscriptions"] == 1)
    (stalled,) = gateway.hub.connections.values()
    for n in range(6000):
        message = order("PF-A", n)
        message["data"]["note"] = "x" * 2000
        await gateway.publish(message)
        if stalled.closed:
            break
        if n % 50 == 0:
            await asyncio.sleep(0)
    assert stalled.closed and stalled.close_code == 4008
    # Nothing was dropped silently: the history still holds what it missed.
    assert gateway.broker.position("order_updates").seq == n + 1
    other = await connect(gateway)
    assert (await other.subscribe("order_updates"))["type"] == "subscription_confirmed"
    writer.close()


async def test_resume_after_slow_consumer_close_recovers(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(max_outbox_bytes=64 * 1024)
    client = await connect(gateway)
    confirmed = await client.subscribe("order_updates")
    epoch = confirmed["position"]["epoch"]
    await gateway.publish(order("PF-A", 0))
    (first,) = await client.data(1)
    (connection,) = gateway.hub.connections.values()
    gateway.hub.slow_consumer(connection)
    with pytest.raises(ConnectionClosed):
        await client.recv_type("never")
    for n in range(1, 4):
        await gateway.publish(order("PF-A", n))
    again = await connect(gateway)
    reply = await again.subscribe("order_updates", since={"epoch": epoch, "seq": first["seq"]})
    assert reply["recovered"] is True
    assert [m["message_id"] for m in await again.data(3)] == ["PF-A-1", "PF-A-2", "PF-A-3"]


async def test_client_sockets_get_the_configured_send_buffer(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    """A bounded kernel send buffer makes a client that stops reading count as behind soon."""
    gateway = await make_gateway(socket_send_buffer=16_384)
    await connect(gateway)
    (connection,) = gateway.hub.connections.values()
    sock = connection.transport._raw.get_extra_info("socket")  # type: ignore[attr-defined]
    # Linux doubles the value asked for (bookkeeping overhead).
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 16_384
