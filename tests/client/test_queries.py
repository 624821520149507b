"""The SDK's one-answer commands against the real gateway: update_subscription,
get_snapshot, get_trade_history, sync, and subscriptions to a topic.

Every wait is bounded by TIMEOUT and waits for a reply or a message, never for time to pass.
"Nothing else is queued" is shown by publishing a sentinel afterwards and finding it next:
the gateway sends a subscription's messages in seq order, so anything queued before it
would come first.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from messages import order, position, quote, trade
from tidewire.client import (
    ClockSync,
    ConnectionClosedError,
    ServerError,
    Subscription,
    SubscriptionError,
    TidewireClient,
)
from tidewire.server.app import Gateway

TIMEOUT = 5.0


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[TidewireClient]:
    async with TidewireClient(gateway.url, heartbeat_interval=None) as client:
        yield client


async def next_message(subscription: Subscription) -> dict[str, Any]:
    return await asyncio.wait_for(anext(subscription), TIMEOUT)


async def take(subscription: Subscription, count: int) -> list[dict[str, Any]]:
    return [await next_message(subscription) for _ in range(count)]


# --------------------------------------------------------------------------- update


async def test_widening_a_market_data_subscription_sends_the_new_keys_latest_values(
    gateway: Gateway, client: TidewireClient
) -> None:
    await gateway.publish(quote("MSFT", 300.0))
    await gateway.publish(quote("GOOG", 150.0))
    quotes = await client.subscribe("market_data", filters={"symbols": ["AAPL"]}, snapshot=False)
    await quotes.update(filters={"symbols": ["AAPL", "MSFT"]}, rate_limit=50)
    assert quotes.filters == {"symbols": ["AAPL", "MSFT"]} and quotes.rate_limit == 50
    # MSFT's latest value, although older than the subscription's start (no snapshot asked).
    snapshot = await next_message(quotes)
    assert (snapshot["symbol"], snapshot["data"]["bid_price"]) == ("MSFT", 300.0)
    live = await gateway.publish(quote("MSFT", 301.0))
    await gateway.publish(quote("GOOG", 151.0))  # still not covered
    sentinel = await gateway.publish(quote("AAPL", 10.0))
    assert [m["seq"] for m in await take(quotes, 2)] == [live.message.seq, sentinel.message.seq]
    assert quotes.resyncs == 0 and quotes.duplicates == 0 and quotes.pending == 0
    assert quotes.position is not None and quotes.position.seq == sentinel.message.seq
    [view] = await client.list_subscriptions()
    assert view["filters"] == {"symbols": ["AAPL", "MSFT"]} and view["rate_limit"] == 50


async def test_widening_positions_delivers_the_new_portfolio_then_goes_on_live(
    gateway: Gateway, client: TidewireClient
) -> None:
    old = await gateway.publish(position("P2", "AAPL", 3))
    positions = await client.subscribe("position_updates", filters={"portfolio_ids": ["P1"]})
    mine = await gateway.publish(position("P1", "AAPL", 1))
    assert (await next_message(positions))["seq"] == mine.message.seq
    await client.update_subscription(
        positions.subscription_id, filters={"portfolio_ids": ["P1", "P2"]}
    )
    snapshot = await next_message(positions)
    # Older than what the subscription delivered: the snapshot of the newly covered P2.
    assert snapshot["seq"] == old.message.seq < mine.message.seq
    published = [
        await gateway.publish(position("P2", "MSFT", 4)),
        await gateway.publish(position("P1", "AAPL", 2)),
    ]
    assert [m["seq"] for m in await take(positions, 2)] == [p.message.seq for p in published]
    assert positions.resyncs == 0 and positions.duplicates == 0 and positions.pending == 0


async def test_narrowing_stops_the_old_keys_from_the_confirmation_on(
    gateway: Gateway, client: TidewireClient
) -> None:
    orders = await client.subscribe("order_updates")
    await orders.update(filters={"portfolio_ids": ["P1"]})
    await gateway.publish(order("P2", 1))
    sentinel = await gateway.publish(order("P1", 2))
    assert (await next_message(orders))["seq"] == sentinel.message.seq
    # Back to every portfolio: `{}` removes the filters.
    await orders.update(filters={})
    assert orders.filters == {}
    again = await gateway.publish(order("P2", 3))
    assert (await next_message(orders))["seq"] == again.message.seq


async def test_two_subscriptions_of_a_stream_are_routed_by_their_new_filters(
    gateway: Gateway, client: TidewireClient
) -> None:
    aapl = await client.subscribe("market_data", filters={"symbols": ["AAPL"]}, snapshot=False)
    msft = await client.subscribe("market_data", filters={"symbols": ["MSFT"]}, snapshot=False)
    await aapl.update(filters={"symbols": ["TSLA"]})
    await gateway.publish(quote("AAPL"))
    tsla = await gateway.publish(quote("TSLA"))
    other = await gateway.publish(quote("MSFT"))
    assert (await next_message(aapl))["seq"] == tsla.message.seq
    assert (await next_message(msft))["seq"] == other.message.seq
    assert aapl.pending == 0 and msft.pending == 0


async def test_a_refused_update_changes_nothing(gateway: Gateway, client: TidewireClient) -> None:
    quotes = await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
    with pytest.raises(ServerError) as refused:
        await quotes.update(filters={"portfolio_ids": ["P1"]})  # not a market_data filter
    assert refused.value.error_code == "invalid_filter"
    assert quotes.filters == {"symbols": ["AAPL"]} and quotes.active
    sentinel = await gateway.publish(quote("AAPL"))
    assert (await next_message(quotes))["seq"] == sentinel.message.seq
    with pytest.raises(ValueError, match="nothing to update"):
        await quotes.update()
    with pytest.raises(KeyError):
        await client.update_subscription("no-such-subscription", rate_limit=1)
    await quotes.unsubscribe()
    with pytest.raises(SubscriptionError) as ended:
        await quotes.update(rate_limit=1)
    assert ended.value.error_code == "not_found"


async def test_a_rate_limit_of_zero_removes_the_limit(
    gateway: Gateway, client: TidewireClient
) -> None:
    quotes = await client.subscribe("market_data", rate_limit=5)
    await quotes.update(rate_limit=0)
    assert quotes.rate_limit is None
    [view] = await client.list_subscriptions()
    assert view.get("rate_limit") is None


async def test_the_update_is_kept_across_a_reconnection(
    gateway: Gateway, client: TidewireClient
) -> None:
    orders = await client.subscribe("order_updates", filters={"portfolio_ids": ["P1"]})
    await orders.update(filters={"portfolio_ids": ["P2"]})
    first = await gateway.publish(order("P2", 1))
    assert (await next_message(orders))["seq"] == first.message.seq
    connection_id = client.connection_id
    reconnected = asyncio.Event()
    client.add_message_handler("subscription_confirmed", lambda _: reconnected.set())
    ws = client._link.ws
    assert ws is not None
    ws.transport.abort()  # a network drop: the client reconnects and resubscribes
    await asyncio.wait_for(reconnected.wait(), TIMEOUT)
    assert client.connection_id != connection_id
    await gateway.publish(order("P1", 2))
    sentinel = await gateway.publish(order("P2", 3))
    assert (await next_message(orders))["seq"] == sentinel.message.seq
    assert orders.resyncs == 0 and orders.recovered is True
    [view] = await client.list_subscriptions()
    assert view["filters"] == {"portfolio_ids": ["P2"]}


# --------------------------------------------------------------------------- topics


async def test_a_topic_is_its_stream_and_key_filter(
    gateway: Gateway, client: TidewireClient
) -> None:
    everything = await client.subscribe("market_data", snapshot=False)
    aapl = await client.subscribe("market_data.AAPL", snapshot=False)
    assert (aapl.stream, aapl.topic, aapl.filters) == (
        "market_data",
        "market_data.AAPL",
        {"symbols": ["AAPL"]},
    )
    assert everything.topic == "market_data"
    await gateway.publish(quote("MSFT"))
    sentinel = await gateway.publish(quote("AAPL"))
    # Routed by the key filter on the client too: MSFT reached `everything` only.
    assert (await next_message(aapl))["seq"] == sentinel.message.seq
    assert [m["symbol"] for m in await take(everything, 2)] == ["MSFT", "AAPL"]
    await aapl.update(filters={"symbols": ["MSFT"]})
    assert aapl.topic == "market_data"


async def test_a_topic_of_a_stream_without_a_key_filter_is_refused(
    gateway: Gateway, client: TidewireClient
) -> None:
    with pytest.raises(SubscriptionError) as refused:
        await client.subscribe("engine_status.E1")
    assert refused.value.error_code == "invalid_filter"


# --------------------------------------------------------------------------- queries


async def test_get_snapshot_returns_the_latest_value_per_key(
    gateway: Gateway, client: TidewireClient
) -> None:
    for symbol, bid in (("AAPL", 1.0), ("MSFT", 2.0), ("AAPL", 3.0), ("GOOG", 4.0)):
        await gateway.publish(quote(symbol, bid))
    latest = await client.get_snapshot("market_data", {"symbols": ["AAPL", "MSFT"]})
    assert [(m["symbol"], m["data"]["bid_price"]) for m in latest] == [
        ("MSFT", 2.0),
        ("AAPL", 3.0),
    ]
    assert [m["symbol"] for m in await client.get_snapshot("market_data", limit=2)] == [
        "AAPL",
        "GOOG",
    ]
    topic = await client.get_snapshot("market_data.GOOG")
    assert [m["data"]["bid_price"] for m in topic] == [4.0]
    assert await client.get_snapshot("market_data", filters={"min_price": 3.5}) == topic
    assert client.subscriptions == {}  # nothing was subscribed


async def test_get_snapshot_errors_are_server_errors(client: TidewireClient) -> None:
    with pytest.raises(ServerError) as unknown:
        await client.get_snapshot("no_such_stream")
    assert unknown.value.error_code == "unknown_stream"
    with pytest.raises(ServerError) as reliable:
        await client.get_snapshot("trade_updates")
    assert reliable.value.error_code == "invalid_message"
    with pytest.raises(ServerError) as bad_filter:
        await client.get_snapshot("market_data", {"portfolio_ids": ["P1"]})
    assert bad_filter.value.error_code == "invalid_filter"


async def test_trade_history_returns_recent_trades_oldest_first(
    gateway: Gateway, client: TidewireClient
) -> None:
    published = [await gateway.publish(trade("P1", n=n)) for n in range(1, 5)]
    await gateway.publish(trade("P2", n=9))
    trades = await client.trade_history({"portfolio_ids": ["P1"]})
    assert [t["seq"] for t in trades] == [p.message.seq for p in published]
    assert trades[0]["data"]["trade_id"] == "T-1" and trades[0]["portfolio_id"] == "P1"
    newest = await client.trade_history(limit=2)
    assert [t["data"]["trade_id"] for t in newest] == ["T-4", "T-9"]
    with pytest.raises(ServerError) as bad:
        await client.trade_history(limit=0)
    assert bad.value.error_code == "invalid_message"


async def test_sync_measures_the_gateways_clock(client: TidewireClient) -> None:
    clock = await client.sync()
    assert isinstance(clock, ClockSync)
    assert clock.round_trip >= 0 and math.isfinite(clock.offset)
    # One machine, one clock: whatever the offset is, it is far below a minute.
    assert abs(clock.offset) < 60_000
    assert clock.server_now(0.0) == clock.offset


async def test_sync_needs_a_connection(gateway: Gateway) -> None:
    client = TidewireClient(gateway.url)
    with pytest.raises(ConnectionClosedError, match="not connected"):
        await client.sync()


async def test_snapshot_replies_are_not_routed_to_subscriptions(
    gateway: Gateway, client: TidewireClient
) -> None:
    quotes = await client.subscribe("market_data", snapshot=False)
    await gateway.publish(quote("AAPL"))
    assert (await next_message(quotes))["symbol"] == "AAPL"
    assert len(await client.get_snapshot("market_data")) == 1
    sentinel = await gateway.publish(quote("MSFT"))
    assert (await next_message(quotes))["seq"] == sentinel.message.seq
    assert quotes.pending == 0 and quotes.duplicates == 0


async def test_an_update_right_after_subscribing_waits_for_the_snapshot(
    gateway: Gateway, client: TidewireClient
) -> None:
    # The gateway refuses an update (unavailable, retryable) while the subscription's
    # snapshot is being delivered; the SDK tries again until its timeout (see test_updates).
    for n in range(50):
        await gateway.publish(position("P1", f"S{n}", n))
    await gateway.publish(position("P2", "AAPL", 7))
    positions = await client.subscribe("position_updates", filters={"portfolio_ids": ["P1"]})
    await positions.update(filters={"portfolio_ids": ["P1", "P2"]})
    received = await take(positions, 51)
    assert sorted(m["symbol"] for m in received if m["portfolio_id"] == "P1") == sorted(
        f"S{n}" for n in range(50)
    )
    assert [(m["portfolio_id"], m["symbol"]) for m in received[-1:]] == [("P2", "AAPL")]
    assert positions.duplicates == 0 and positions.pending == 0


async def test_concurrent_queries_take_turns(gateway: Gateway, client: TidewireClient) -> None:
    """The gateway answers one query per connection at a time; the SDK queues the rest."""
    await gateway.publish(quote("AAPL"))
    await gateway.publish(trade("PF-1"))
    answers = await asyncio.gather(
        client.get_snapshot("market_data"),
        client.trade_history(),
        client.get_snapshot("market_data.AAPL"),
    )
    assert [len(a) for a in answers] == [1, 1, 1]


async def test_list_subscriptions_follows_every_page(make_gateway: Any) -> None:
    gateway = await make_gateway(max_list_page=2)
    async with TidewireClient(gateway.url, heartbeat_interval=None) as paged:
        for n in range(5):
            await paged.subscribe("market_data", subscription_id=f"q{n}", snapshot=False)
        listed = await paged.list_subscriptions()
    assert [s["subscription_id"] for s in listed] == ["q0", "q1", "q2", "q3", "q4"]
