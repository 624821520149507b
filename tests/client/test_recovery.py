"""Recovery after reconnections, and delivery exactly once, against the real gateway.

docs/protocol.md section 5 seen from the SDK: after a 4008, a network drop or a gateway restart
the client resubscribes with `since` by itself; a recovered replay gives exactly the missed
messages, a gap that cannot be recovered gives one resync marker (and one call of the resync
handlers) followed by the snapshot where the stream has one. Several subscriptions of one
connection matching one message never get it twice.

Every wait is bounded by TIMEOUT and waits for an event (a state change, a message, a resync
handler call), never for time to pass. "Nothing else is queued" is shown by publishing a
sentinel afterwards and finding it next: the gateway sends a subscription's messages in
seq order, so anything queued before it would come first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from messages import order, position, quote
from tidewire.client import (
    ConnectionState,
    StreamPosition,
    Subscription,
    TidewireClient,
    is_resync,
)
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings

TIMEOUT = 5.0
MakeGateway = Callable[..., Awaitable[Gateway]]
FAST: dict[str, Any] = {"reconnect_interval": 0.01, "max_reconnect_interval": 0.05}


class Watch:
    """A client's states and resync handler calls, with ways to wait for them."""

    def __init__(self, client: TidewireClient) -> None:
        self.states: list[ConnectionState] = []
        self.resyncs: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        client.add_state_handler(self._on_state)
        client.add_resync_handler(self._on_resync)

    def _on_state(self, previous: ConnectionState, current: ConnectionState) -> None:
        self.states.append(current)
        self._changed.set()

    async def _on_resync(self, subscription: Subscription, info: dict[str, Any]) -> None:
        # A coroutine handler: the reader awaits it.
        self.resyncs.append((subscription.subscription_id, info))
        self._changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def reconnected(self, after: int) -> None:
        """Wait for RECONNECTING then CONNECTED, both after state number `after`."""
        await self.until(lambda: ConnectionState.RECONNECTING in self.states[after:])
        lost = self.states.index(ConnectionState.RECONNECTING, after)
        await self.until(lambda: ConnectionState.CONNECTED in self.states[lost:])


async def next_message(subscription: Subscription) -> dict[str, Any]:
    return await asyncio.wait_for(anext(subscription), TIMEOUT)


async def take(subscription: Subscription, count: int) -> list[dict[str, Any]]:
    return [await next_message(subscription) for _ in range(count)]


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[TidewireClient]:
    async with TidewireClient(gateway.url, heartbeat_interval=None, **FAST) as client:
        yield client


async def sever(how: str, gateway: Gateway, client: TidewireClient) -> None:
    """End the client's connection the way `how` says, without yielding to the loop."""
    if how == "slow_consumer":
        assert client.connection_id is not None
        gateway.hub.slow_consumer(gateway.hub.connections[client.connection_id])
    else:  # the network goes away under the client: it sees 1006
        ws = client._link.ws
        assert ws is not None
        ws.transport.abort()


# --------------------------------------------------------------------------- recovered


@pytest.mark.parametrize("how", ["slow_consumer", "network_drop"])
async def test_a_lost_connection_replays_exactly_the_missed_messages(
    gateway: Gateway, client: TidewireClient, how: str
) -> None:
    watch = Watch(client)
    mine = await client.subscribe("order_updates", filters={"portfolio_ids": ["P1"]})
    every = await client.subscribe("order_updates")  # overlaps `mine`
    before = [await gateway.publish(order(p, n)) for n, p in enumerate(["P1", "P2", "P1"])]
    assert seqs(await take(mine, 2)) == [before[0].message.seq, before[2].message.seq]
    assert len(await take(every, 3)) == 3

    states = len(watch.states)
    # `await gateway.publish` does not yield, so these are queued for the connection but
    # never written when it is closed ...
    missed = [await gateway.publish(order(p, n)) for n, p in enumerate(["P1", "P2"], 3)]
    await sever(how, gateway, client)
    # ... and these are published while it is gone.
    missed += [await gateway.publish(order(p, n)) for n, p in enumerate(["P2", "P1", "P1"], 5)]
    await watch.reconnected(states)
    if how == "slow_consumer":
        assert client.close_code == 4008

    missed_seqs = [m.message.seq for m in missed]
    mine_missed = [m.message.seq for m in missed if m.message.portfolio_id == "P1"]
    assert seqs(await take(mine, 3)) == mine_missed
    assert seqs(await take(every, 5)) == missed_seqs
    sentinel = await gateway.publish(order("P1", 99))
    assert (await next_message(mine))["seq"] == sentinel.message.seq
    assert (await next_message(every))["seq"] == sentinel.message.seq
    assert mine.pending == every.pending == 0
    assert mine.recovered is every.recovered is True
    assert watch.resyncs == [] and mine.resyncs == every.resyncs == 0
    # `every`'s replay of P1's messages also matched `mine`, which had them already.
    assert mine.duplicates == len(mine_missed)
    assert (
        mine.position
        == every.position
        == StreamPosition(sentinel.message.epoch, sentinel.message.seq)
    )


# --------------------------------------------------------------------------- not recovered


@pytest.mark.parametrize("code", [1001, 1012])
async def test_a_gateway_restart_gives_one_resync_then_live_messages(
    make_gateway: MakeGateway, code: int
) -> None:
    first = await make_gateway()
    async with TidewireClient(first.url, heartbeat_interval=None, **FAST) as client:
        watch = Watch(client)
        own: list[dict[str, Any]] = []
        orders = await client.subscribe(
            "order_updates", on_resync=lambda sub, info: own.append(info)
        )
        sent = await first.publish(order("P1", 1))
        assert (await next_message(orders))["seq"] == sent.message.seq

        states = len(watch.states)
        await first.stop(code)
        second = await make_gateway(port=first.port)  # a new in-memory broker: a new epoch
        await watch.reconnected(states)
        assert client.close_code == code
        await watch.until(lambda: len(watch.resyncs) == 1)  # the resubscription's reply
        live = await second.publish(order("P1", 2))

        marker = await next_message(orders)
        assert is_resync(marker)
        assert marker == {
            "type": "resync",
            "reason": "not_recovered",
            "subscription_id": orders.subscription_id,
            "stream": "order_updates",
            "position": {"epoch": sent.message.epoch, "seq": sent.message.seq},
            "resume_position": {"epoch": live.message.epoch, "seq": 0},
            "snapshot": False,  # order_updates keeps no snapshot
            "loss": True,
            "dropped": None,
        }
        assert watch.resyncs == [(orders.subscription_id, marker)]
        assert own == [marker]
        message = await next_message(orders)
        assert (message["seq"], message["epoch"]) == (live.message.seq, live.message.epoch)
        assert orders.resyncs == 1 and orders.recovered is False
        assert orders.pending == 0


async def test_position_updates_after_a_restart_resync_then_snapshot_then_live(
    make_gateway: MakeGateway,
) -> None:
    first = await make_gateway()
    port = first.port
    async with TidewireClient(first.url, heartbeat_interval=None, **FAST) as client:
        watch = Watch(client)
        positions = await client.subscribe("position_updates", filters={"portfolio_ids": ["P1"]})
        old = await first.publish(position("P1", "AAPL", 1))
        assert (await next_message(positions))["seq"] == old.message.seq

        states = len(watch.states)
        await first.stop()
        # The restarted gateway has positions before the client can reconnect to it.
        second = Gateway(GatewaySettings(port=port, internal_port=0))
        published = [
            await second.publish(position("P1", "AAPL", 5)),
            await second.publish(position("P1", "MSFT", 7)),
            await second.publish(position("P2", "AAPL", 9)),  # not P1
            await second.publish(position("P1", "AAPL", 6)),
        ]
        await second.start()
        try:
            await watch.reconnected(states)
            marker = await next_message(positions)
            assert (marker["type"], marker["reason"]) == ("resync", "not_recovered")
            assert (marker["snapshot"], marker["loss"]) == (True, True)
            assert marker["position"] == {"epoch": old.message.epoch, "seq": old.message.seq}
            # The snapshot: the newest position per (portfolio, symbol), in seq order.
            snapshot = await take(positions, 2)
            assert [(m["symbol"], m["data"]["quantity"]) for m in snapshot] == [
                ("MSFT", 7),
                ("AAPL", 6),
            ]
            assert seqs(snapshot) == [published[1].message.seq, published[3].message.seq]
            live = await second.publish(position("P1", "MSFT", 8))
            assert (await next_message(positions))["seq"] == live.message.seq
            assert positions.resyncs == 1 and len(watch.resyncs) == 1
            assert positions.pending == 0
            assert positions.position == StreamPosition(live.message.epoch, live.message.seq)
        finally:
            await second.stop()


async def test_latest_value_stream_gets_the_snapshot_after_a_reconnect(
    gateway: Gateway, client: TidewireClient
) -> None:
    watch = Watch(client)
    quotes = await client.subscribe("market_data", filters={"symbols": ["AAPL", "MSFT"]})
    first = await gateway.publish(quote("AAPL", 1.0))
    assert (await next_message(quotes))["seq"] == first.message.seq

    states = len(watch.states)
    await sever("slow_consumer", gateway, client)
    for symbol, bid in (("AAPL", 2.0), ("MSFT", 3.0), ("GOOG", 4.0), ("AAPL", 5.0)):
        await gateway.publish(quote(symbol, bid))
    await watch.reconnected(states)

    marker = await next_message(quotes)
    assert (marker["type"], marker["reason"]) == ("resync", "not_recovered")
    # Published after `since`: not recovered, but a latest-value stream loses nothing the
    # snapshot does not replace.
    assert (marker["snapshot"], marker["loss"]) == (True, False)
    snapshot = await take(quotes, 2)
    assert [(m["symbol"], m["data"]["bid_price"]) for m in snapshot] == [
        ("MSFT", 3.0),
        ("AAPL", 5.0),
    ]
    live = await gateway.publish(quote("MSFT", 6.0))
    assert (await next_message(quotes))["seq"] == live.message.seq
    assert quotes.resyncs == 1 and quotes.pending == 0


async def test_history_trimmed_while_disconnected_gives_a_resync(
    make_gateway: MakeGateway,
) -> None:
    gateway = await make_gateway(history_max_messages=3)
    async with TidewireClient(gateway.url, heartbeat_interval=None, **FAST) as client:
        watch = Watch(client)
        orders = await client.subscribe("order_updates")
        first = await gateway.publish(order("P1", 1))
        assert (await next_message(orders))["seq"] == first.message.seq

        states = len(watch.states)
        await sever("slow_consumer", gateway, client)
        gone = [await gateway.publish(order("P1", n)) for n in range(2, 7)]
        await watch.reconnected(states)
        await watch.until(lambda: len(watch.resyncs) == 1)
        live = await gateway.publish(order("P1", 7))

        marker = await next_message(orders)
        assert (marker["reason"], marker["snapshot"], marker["loss"]) == (
            "not_recovered",
            False,
            True,
        )
        assert marker["position"] == {"epoch": first.message.epoch, "seq": first.message.seq}
        assert marker["resume_position"] == {
            "epoch": gone[-1].message.epoch,
            "seq": gone[-1].message.seq,
        }
        assert (await next_message(orders))["seq"] == live.message.seq
        assert orders.resyncs == 1 and orders.pending == 0


# --------------------------------------------------------------------------- one connection


async def test_snapshots_of_other_subscriptions_are_not_delivered_twice(
    gateway: Gateway, client: TidewireClient
) -> None:
    everything = await client.subscribe("position_updates")
    published = [
        await gateway.publish(position("P1", "AAPL", 1)),
        await gateway.publish(position("P1", "MSFT", 2)),
        await gateway.publish(position("P2", "AAPL", 3)),
    ]
    assert seqs(await take(everything, 3)) == [p.message.seq for p in published]

    # Its snapshot (seq <= its confirmed position) also matches `everything`, which has it.
    p1 = await client.subscribe("position_updates", filters={"portfolio_ids": ["P1"]})
    assert seqs(await take(p1, 2)) == [published[0].message.seq, published[1].message.seq]
    # Refuses the snapshot: the others' snapshots are older than its place in the stream.
    live_only = await client.subscribe("position_updates", snapshot=False)
    again = await client.subscribe("position_updates")
    assert len(await take(again, 3)) == 3  # its snapshot is not dropped

    sentinel = await gateway.publish(position("P1", "AAPL", 4))
    for subscription in (everything, p1, live_only, again):
        assert (await next_message(subscription))["seq"] == sentinel.message.seq
        assert subscription.pending == 0
    assert everything.duplicates == 2 + 3  # p1's snapshot, then again's
    assert p1.duplicates == 2  # again's snapshot, P1's part
    assert live_only.duplicates == 3
    assert again.duplicates == 0


async def test_latest_value_snapshots_of_other_subscriptions_are_not_delivered_twice(
    gateway: Gateway, client: TidewireClient
) -> None:
    every_symbol = await client.subscribe("market_data")
    for symbol, bid in (("AAPL", 1.0), ("MSFT", 2.0), ("AAPL", 3.0)):
        await gateway.publish(quote(symbol, bid))
    assert len(await take(every_symbol, 3)) == 3
    aapl = await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
    snapshot = await next_message(aapl)
    assert (snapshot["symbol"], snapshot["data"]["bid_price"]) == ("AAPL", 3.0)
    sentinel = await gateway.publish(quote("AAPL", 4.0))
    assert (await next_message(every_symbol))["seq"] == sentinel.message.seq
    assert (await next_message(aapl))["seq"] == sentinel.message.seq
    assert every_symbol.duplicates == 1 and every_symbol.pending == 0


async def test_overflow_is_a_resync_marker_and_a_handler_call(
    gateway: Gateway, client: TidewireClient
) -> None:
    watch = Watch(client)
    routed: list[dict[str, Any]] = []

    def seen(message: dict[str, Any]) -> None:
        routed.append(message)
        watch._changed.set()

    client.add_message_handler("order_update", seen)
    orders = await client.subscribe("order_updates", queue_size=2)
    published = [await gateway.publish(order("P1", n)) for n in range(5)]
    await watch.until(lambda: len(routed) == 5)  # message handlers run after routing
    assert orders.dropped == 3 and orders.overflowed
    assert [reason for _, info in watch.resyncs for reason in [info["reason"]]] == ["overflow"]
    received = await take(orders, 3)
    assert seqs(received[:2]) == [published[0].message.seq, published[1].message.seq]
    assert received[2]["reason"] == "overflow" and received[2]["dropped"] == 3
    assert received[2]["position"]["seq"] == published[1].message.seq
    last = await gateway.publish(order("P1", 5))
    assert (await next_message(orders))["seq"] == last.message.seq
    assert orders.resyncs == 1


async def test_resync_handlers_can_be_removed(make_gateway: MakeGateway) -> None:
    first = await make_gateway()
    async with TidewireClient(first.url, heartbeat_interval=None, **FAST) as client:
        watch = Watch(client)
        removed: list[dict[str, Any]] = []

        def handler(subscription: Subscription, info: dict[str, Any]) -> None:
            removed.append(info)

        assert client.add_resync_handler(handler) is handler
        client.remove_resync_handler(handler)
        client.remove_resync_handler(handler)  # unknown: ignored
        quotes = await client.subscribe("market_data")
        await first.publish(quote("AAPL", 1.0))
        await next_message(quotes)
        states = len(watch.states)
        await first.stop()
        await make_gateway(port=first.port)
        await watch.reconnected(states)
        await watch.until(lambda: len(watch.resyncs) == 1)
        assert removed == []
        assert is_resync(await next_message(quotes))
