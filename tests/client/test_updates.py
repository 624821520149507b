"""Filter updates, topics, query replies and clock sync without a socket: frames in, state out."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from tidewire.client.clock import clock_sync
from tidewire.client.codec import FrameCodec
from tidewire.client.connection import TidewireClient
from tidewire.client.dispatch import Dispatcher
from tidewire.client.errors import ConnectionClosedError, ServerError, SubscriptionError
from tidewire.client.subscription import Subscription, new_subscription
from tidewire.client.wire import topic_applies, topic_key_filter, with_topic_filter
from tidewire.protocol.messages import Filters, StreamPosition

TIMEOUT = 5.0


class Owner:
    async def unsubscribe(self, subscription_id: str) -> None:
        raise AssertionError("not used")

    async def update_subscription(self, subscription_id: str, **options: Any) -> dict[str, Any]:
        raise AssertionError("not used")


def quote(symbol: str, seq: int) -> dict[str, Any]:
    return {
        "type": "market_data",
        "stream": "market_data",
        "key": symbol,
        "symbol": symbol,
        "data_type": "quote",
        "seq": seq,
        "epoch": "e1",
        "data": {"bid_price": 1.0, "ask_price": 1.1},
    }


def frame(message: dict[str, Any]) -> bytes:
    return msgspec.json.encode(message)


def confirmed(subscription_id: str, correlation_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "subscription_confirmed",
        "correlation_id": correlation_id,
        "subscription_id": subscription_id,
        "stream": "market_data",
        "topic": "market_data",
        "filters": {},
        "position": {"epoch": "e1", "seq": 10},
        **extra,
    }


@pytest.fixture
def inbound() -> Dispatcher:
    return Dispatcher(FrameCodec())


async def subscribed(inbound: Dispatcher, stream: str = "market_data", **options: Any) -> Any:
    options.setdefault("filters", {"symbols": ["AAPL"]})
    subscription = new_subscription(
        Owner(),
        stream,
        subscription_id="s1",
        rate_limit=None,
        snapshot=False,
        queue_size=100,
        **options,
    )
    confirmation = inbound.add_subscription(subscription)
    command = subscription.state.command("m-1")
    inbound.subscribe_sent(command["message_id"], "s1")
    reply = confirmed("s1", command["message_id"], topic=command["stream"])
    await inbound.handle_frame(frame(reply))
    assert confirmation.done()
    return subscription


def drain(subscription: Subscription) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    while subscription._buffer:
        item = subscription._buffer.pop()
        assert isinstance(item, dict)
        out.append((item["symbol"], item["seq"]))
    return out


async def test_a_confirmed_update_switches_the_routing_before_the_next_message(
    inbound: Dispatcher,
) -> None:
    sub = await subscribed(inbound)
    wanted = {"symbols": ["MSFT"]}
    inbound.expect_update("u1", sub, wanted, 5.0)
    reply = inbound.expect_reply("u1")
    inbound.sent({"type": "update_subscription", "message_id": "u1"})
    wanted["symbols"].append("mutated later")  # the dispatcher holds what it was given
    batch = {
        "type": "batch",
        "messages": [
            quote("AAPL", 11),  # before the switch
            confirmed("s1", "u1", updated=True, filters={"symbols": ["MSFT"]}),
            quote("AAPL", 12),
            quote("MSFT", 3),  # MSFT's latest value: older than the floor
            quote("MSFT", 13),
        ],
    }
    await inbound.handle_frame(frame(batch))
    assert (await reply)["updated"] is True
    assert drain(sub) == [("AAPL", 11), ("MSFT", 3), ("MSFT", 13)]
    assert sub.rate_limit == 5.0 and sub.resyncs == 0
    assert sub.position == StreamPosition("e1", 13)


async def test_an_updated_confirmation_never_restarts_the_subscription(
    inbound: Dispatcher,
) -> None:
    sub = await subscribed(inbound, filters={"symbols": ["AAPL", "MSFT"]})
    await inbound.handle_frame(frame(quote("AAPL", 12)))
    inbound.expect_update("u1", sub, None, 0)
    inbound.sent({"type": "update_subscription", "message_id": "u1"})
    # Even one naming the subscription without a correlation id: not a resubscription.
    stray = confirmed("s1", "x", updated=True, position={"epoch": "e1", "seq": 2})
    del stray["correlation_id"]
    await inbound.handle_frame(frame(stray))
    await inbound.handle_frame(frame(confirmed("s1", "u1", updated=True)))
    await inbound.handle_frame(frame(quote("AAPL", 12)))  # a duplicate still
    assert sub.duplicates == 1 and sub.rate_limit is None
    assert sub.position == StreamPosition("e1", 12)
    assert sub.filters == {"symbols": ["AAPL", "MSFT"]}


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"type": "error", "error_code": "invalid_filter"}, ServerError),
        ({"type": "subscription_error", "error_code": "forbidden"}, SubscriptionError),
    ],
)
async def test_a_refused_update_leaves_the_subscription_as_it_was(
    inbound: Dispatcher, reply: dict[str, Any], error: type[Exception]
) -> None:
    sub = await subscribed(inbound)
    inbound.expect_update("u1", sub, {"symbols": ["MSFT"]}, None)
    waiter = inbound.expect_reply("u1")
    refusal = {**reply, "correlation_id": "u1", "subscription_id": "s1", "error_message": "no"}
    await inbound.handle_frame(frame(refusal))
    with pytest.raises(error):
        await waiter
    assert sub.active and sub.filters == {"symbols": ["AAPL"]}
    await inbound.handle_frame(frame(quote("MSFT", 11)))
    assert sub.pending == 0


async def test_a_sent_update_applies_even_when_its_caller_stopped_waiting(
    inbound: Dispatcher,
) -> None:
    sub = await subscribed(inbound)
    inbound.expect_update("sent", sub, {"symbols": ["MSFT"]}, None)
    inbound.sent({"type": "update_subscription", "message_id": "sent"})
    inbound.release_update("sent")  # timed out: the gateway applies it all the same
    inbound.expect_update("queued", sub, {"symbols": ["GOOG"]}, None)
    inbound.release_update("queued")  # withdrawn from the queue: never sent
    await inbound.handle_frame(frame(confirmed("s1", "queued", updated=True)))
    assert sub.filters == {"symbols": ["AAPL"]}
    await inbound.handle_frame(frame(confirmed("s1", "sent", updated=True)))
    assert sub.filters == {"symbols": ["MSFT"]}


async def test_a_lost_connection_forgets_the_updates_sent_on_it(inbound: Dispatcher) -> None:
    sub = await subscribed(inbound)
    inbound.expect_update("sent", sub, {"symbols": ["MSFT"]}, None)
    inbound.sent({"type": "update_subscription", "message_id": "sent"})
    inbound.expect_update("queued", sub, {"symbols": ["GOOG"]}, None)
    inbound.connection_lost(1006)
    # The next connection resubscribes with the filters the subscription has; the queued
    # update goes out after it and still applies.
    await inbound.handle_frame(frame(confirmed("s1", "sent", updated=True)))
    assert sub.filters == {"symbols": ["AAPL"]}
    await inbound.handle_frame(frame(confirmed("s1", "queued", updated=True)))
    assert sub.filters == {"symbols": ["GOOG"]}


async def test_an_update_of_an_unsubscribed_subscription_is_ignored(inbound: Dispatcher) -> None:
    sub = await subscribed(inbound)
    inbound.expect_update("u1", sub, {"symbols": ["MSFT"]}, None)
    inbound.forget(sub, None)
    await inbound.handle_frame(frame(confirmed("s1", "u1", updated=True)))
    assert inbound.router.targets(quote("MSFT", 11)) == []


async def test_query_replies_are_not_data_messages(inbound: Dispatcher) -> None:
    sub = await subscribed(inbound, filters={})
    waiter = inbound.expect_reply("q1")
    snapshot = {
        "type": "snapshot",
        "correlation_id": "q1",
        "stream": "market_data",
        "topic": "market_data",
        "position": {"epoch": "e1", "seq": 11},
        "messages": [quote("AAPL", 11)],
        "key": "AAPL",
        "seq": 11,
        "epoch": "e1",
    }
    await inbound.handle_frame(frame(snapshot))
    assert (await waiter)["messages"][0]["seq"] == 11
    assert sub.pending == 0 and sub.duplicates == 0


async def test_shut_down_forgets_pending_updates(inbound: Dispatcher) -> None:
    sub = await subscribed(inbound)
    inbound.expect_update("u1", sub, {"symbols": ["MSFT"]}, None)
    inbound.shut_down(ConnectionClosedError("bye"))
    assert inbound._updates == {}


# --------------------------------------------------------------------------- topics


def test_topics_name_a_stream_and_its_key_filter() -> None:
    spec, name, key = topic_key_filter("market_data.AAPL.XNAS")
    assert (spec and spec.name, name, key) == ("market_data", "symbols", "AAPL.XNAS")
    spec, name, key = topic_key_filter("position_update.P1")  # an alias with a key
    assert (spec and spec.name, name, key) == ("position_updates", "portfolio_ids", "P1")
    assert topic_key_filter("engine_status.E1")[1:] == (None, "E1")
    assert topic_key_filter("market_data")[1:] == (None, None)
    assert topic_key_filter("nope.X") == (None, None, None)


def test_a_topic_adds_its_key_filter_unless_the_filters_say_otherwise() -> None:
    spec, filters, topic = with_topic_filter("market_data.AAPL", {"venue": "XNAS"})
    assert spec is not None and spec.name == "market_data" and topic == "market_data.AAPL"
    assert filters == {"venue": "XNAS", "symbols": ["AAPL"]}
    assert with_topic_filter("market_data.AAPL", Filters(symbols=["AAPL"]))[1] == {
        "symbols": ["AAPL"]
    }
    # Conflicting or unselectable: sent as given, the gateway says why it refuses.
    assert with_topic_filter("market_data.AAPL", {"symbols": ["MSFT"]})[1:] == (
        {"symbols": ["MSFT"]},
        "market_data.AAPL",
    )
    assert with_topic_filter("engine_status.E1", None)[1:] == ({}, "engine_status.E1")
    assert with_topic_filter("orders", None)[0] is not None
    assert topic_applies("market_data.AAPL", {"symbols": ["AAPL"]})
    assert not topic_applies("market_data.AAPL", {"symbols": ["AAPL", "MSFT"]})


async def test_a_topic_subscription_sends_and_keeps_its_topic(inbound: Dispatcher) -> None:
    sub = await subscribed(inbound, "market_data.AAPL", filters=None)
    assert (sub.stream, sub.topic, sub.filters) == (
        "market_data",
        "market_data.AAPL",
        {"symbols": ["AAPL"]},
    )
    command = sub.state.command("m-1")
    assert (command["stream"], command["filters"]) == ("market_data.AAPL", {"symbols": ["AAPL"]})
    await inbound.handle_frame(frame(quote("MSFT", 11)))
    await inbound.handle_frame(frame(quote("AAPL", 12)))
    assert drain(sub) == [("AAPL", 12)]
    # Filters that no longer select the topic's key make it a plain stream subscription.
    sub.state.on_updated({"symbols": ["AAPL", "MSFT"]}, None)
    assert sub.topic == "market_data" and sub.state.command("m-1")["stream"] == "market_data"


def test_a_rate_limit_of_zero_is_no_limit() -> None:
    sub = new_subscription(
        Owner(),
        "market_data",
        filters=None,
        subscription_id=None,
        rate_limit=5,
        snapshot=None,
        queue_size=10,
    )
    sub.state.on_updated(None, 2.5)
    assert sub.rate_limit == 2.5 and sub.state.command("m-1")["rate_limit"] == 2.5
    sub.state.on_updated(None, 0)
    assert sub.rate_limit is None and "rate_limit" not in sub.state.command("m-1")


async def test_update_on_an_ended_subscription_raises() -> None:
    sub = new_subscription(
        Owner(),
        "market_data",
        filters=None,
        subscription_id="gone",
        rate_limit=None,
        snapshot=None,
        queue_size=10,
    )
    sub.finish(None)
    with pytest.raises(SubscriptionError) as ended:
        await asyncio.wait_for(sub.update(rate_limit=1), 1)
    assert (ended.value.error_code, ended.value.subscription_id) == ("not_found", "gone")


async def test_an_update_the_gateway_cannot_apply_yet_is_retried() -> None:
    client = TidewireClient("ws://127.0.0.1:1/ws", request_timeout=TIMEOUT)
    sub = new_subscription(
        client,
        "market_data",
        filters=None,
        subscription_id="s1",
        rate_limit=None,
        snapshot=None,
        queue_size=10,
    )
    client._inbound.subscriptions["s1"] = sub
    starting = ServerError("unavailable", "still starting", retryable=True)
    answers: list[Any] = [starting, starting, {"type": "subscription_confirmed"}]
    sent: list[dict[str, Any]] = []

    async def request(message: Any, *, timeout: float | None = None) -> dict[str, Any]:
        sent.append(dict(message))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, dict)
        return answer

    client.request = request  # type: ignore[method-assign]
    assert (await client.update_subscription("s1", rate_limit=1))[
        "type"
    ] == "subscription_confirmed"
    assert len({m["message_id"] for m in sent}) == 3  # each attempt is a new command
    assert all(m["rate_limit"] == 1 for m in sent) and client._inbound._updates == {}
    answers[:] = [ServerError("invalid_filter", "no", retryable=False)]
    with pytest.raises(ServerError, match="invalid_filter"):
        await client.update_subscription("s1", filters={"venue": 1})
    answers[:] = [starting] * 100
    with pytest.raises(ServerError, match="unavailable"):
        await client.update_subscription("s1", rate_limit=1, timeout=0.05)


# --------------------------------------------------------------------------- clock


def test_clock_sync_takes_the_middle_of_the_round_trip() -> None:
    clock = clock_sync(sent_at=1_000.0, round_trip=40.0, server_time=1_520.0)
    assert (clock.offset, clock.round_trip, clock.server_time) == (500.0, 40.0, 1_520.0)
    assert clock.server_now(2_000.0) == 2_500.0
    assert clock_sync(1_000.0, -1.0, 900.0).offset == -100.0  # a clock that went back
