"""The inbound side without a socket: frames in, subscriptions and waiters resolved."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from tidewire.client.codec import FrameCodec
from tidewire.client.dispatch import Dispatcher
from tidewire.client.errors import ConnectionClosedError, ServerError, SubscriptionError
from tidewire.client.subscription import Subscription
from tidewire.protocol.messages import StreamPosition


class Owner:
    async def unsubscribe(self, subscription_id: str) -> None:
        raise AssertionError("not used")


def sub(subscription_id: str, symbols: list[str] | None = None) -> Subscription:
    return Subscription(
        Owner(),  # type: ignore[arg-type]
        subscription_id=subscription_id,
        stream="market_data",
        filters={"symbols": symbols} if symbols else {},
        rate_limit=None,
        snapshot=None,
        queue_size=100,
        reliable=False,
    )


def quote(symbol: str, seq: int) -> dict[str, Any]:
    return {
        "type": "market_data",
        "stream": "market_data",
        "key": symbol,
        "symbol": symbol,
        "seq": seq,
        "epoch": "e1",
        "data": {"bid_price": 1.0, "ask_price": 1.1},
    }


def frame(message: dict[str, Any]) -> bytes:
    return msgspec.json.encode(message)


def confirmation(subscription_id: str, correlation_id: str) -> dict[str, Any]:
    return {
        "type": "subscription_confirmed",
        "correlation_id": correlation_id,
        "subscription_id": subscription_id,
        "stream": "market_data",
        "topic": "market_data",
        "filters": {},
        "position": {"epoch": "e1", "seq": 0},
        "updated": False,
    }


@pytest.fixture
def inbound() -> Dispatcher:
    return Dispatcher(FrameCodec())


async def subscribed(inbound: Dispatcher, subscription: Subscription) -> Subscription:
    confirmed = inbound.add_subscription(subscription)
    message_id = f"m-{subscription.subscription_id}"
    inbound.subscribe_sent(message_id, subscription.subscription_id)
    reply = confirmation(subscription.subscription_id, message_id)
    await inbound.handle_frame(inbound.codec.encode(reply))
    assert confirmed.done()
    return subscription


async def test_connection_established(inbound: Dispatcher) -> None:
    await inbound.handle_frame(
        frame(
            {
                "type": "connection_established",
                "connection_id": "c-1",
                "heartbeat_interval": 15,
                "limits": {"max_subscriptions": 100},
            }
        )
    )
    assert inbound.established
    assert inbound.connection_id == "c-1"
    assert inbound.server_limits == {"max_subscriptions": 100}
    assert inbound.server_heartbeat_interval == 15.0
    inbound.connection_lost(1006)
    assert not inbound.established


async def test_confirmation_by_correlation_id(inbound: Dispatcher) -> None:
    subscription = sub("s1")
    confirmed = inbound.add_subscription(subscription)
    inbound.subscribe_sent("m1", "s1")
    reply = confirmation("other-id", "m1")  # correlation names the subscribe exactly
    await inbound.handle_frame(frame(reply))
    assert (await asyncio.wait_for(confirmed, 1))["correlation_id"] == "m1"
    assert subscription.state.confirmed
    assert subscription.position == StreamPosition("e1", 0)


async def test_confirmation_without_correlation_matches_by_subscription_id(
    inbound: Dispatcher,
) -> None:
    confirmed = inbound.add_subscription(sub("s1"))
    reply = confirmation("s1", "unused")
    del reply["correlation_id"]
    await inbound.handle_frame(frame(reply))
    assert confirmed.done()


async def test_replies_to_raw_subscribes_leave_our_subscriptions_alone(
    inbound: Dispatcher,
) -> None:
    ours = await subscribed(inbound, sub("s1"))
    refusal = {
        "type": "subscription_error",
        "correlation_id": "raw-1",  # a subscribe sent with send_message
        "subscription_id": "s1",
        "error_code": "duplicate_subscription",
        "error_message": "in use",
    }
    await inbound.handle_frame(frame(refusal))
    assert ours.active
    assert "s1" in inbound.subscriptions


async def test_the_gateway_names_the_stream(inbound: Dispatcher) -> None:
    renamed = Subscription(
        Owner(),  # type: ignore[arg-type]
        subscription_id="r",
        stream="some_alias",
        filters={},
        rate_limit=None,
        snapshot=None,
        queue_size=10,
        reliable=False,
    )
    await subscribed(inbound, renamed)  # confirmed with stream "market_data"
    assert renamed.stream == "market_data"
    await inbound.handle_frame(frame(quote("A", 1)))
    assert renamed.pending == 1


async def test_data_goes_to_matching_confirmed_subscriptions_only(inbound: Dispatcher) -> None:
    aapl = await subscribed(inbound, sub("a", ["AAPL"]))
    every = await subscribed(inbound, sub("all"))
    waiting = sub("late")
    inbound.add_subscription(waiting)  # not confirmed yet
    for seq, symbol in enumerate(["AAPL", "MSFT", "AAPL"], start=1):
        await inbound.handle_frame(frame(quote(symbol, seq)))
    assert aapl.pending == 2
    assert every.pending == 3
    assert waiting.pending == 0
    assert inbound.messages_received == 2 + 3


async def test_batches_are_unpacked_in_order(inbound: Dispatcher) -> None:
    every = await subscribed(inbound, sub("all"))
    seen: list[Any] = []
    inbound.handlers["*"] = [lambda m: seen.append(m.get("seq", m["type"]))]
    batch = {"type": "batch", "messages": [quote("A", 1), {"type": "pong"}, quote("B", 2)]}
    await inbound.handle_frame(frame(batch))
    assert seen == [1, "pong", 2]
    assert every.pending == 2


async def test_msgpack_frames() -> None:
    inbound = Dispatcher(FrameCodec("tidewire.v3.msgpack"))
    every = await subscribed(inbound, sub("all"))
    await inbound.handle_frame(msgspec.msgpack.encode(quote("A", 1)))
    assert every.pending == 1


async def test_subscription_error_fails_the_subscribe_and_forgets_it(inbound: Dispatcher) -> None:
    subscription = sub("s1")
    confirmed = inbound.add_subscription(subscription)
    inbound.subscribe_sent("m1", "s1")
    await inbound.handle_frame(
        frame(
            {
                "type": "subscription_error",
                "correlation_id": "m1",
                "subscription_id": "s1",
                "error_code": "unknown_stream",
                "error_message": "no such stream",
            }
        )
    )
    with pytest.raises(SubscriptionError) as caught:
        await asyncio.wait_for(confirmed, 1)
    assert caught.value.error_code == "unknown_stream"
    assert caught.value.error_message == "no such stream"
    assert caught.value.subscription_id == "s1"
    assert "s1" not in inbound.subscriptions
    assert not subscription.active


async def test_an_error_reply_to_a_subscribe_fails_it(inbound: Dispatcher) -> None:
    confirmed = inbound.add_subscription(sub("s1"))
    inbound.subscribe_sent("m1", "s1")
    error = {"type": "error", "correlation_id": "m1", "error_code": "invalid_message"}
    await inbound.handle_frame(frame({**error, "error_message": "bad"}))
    with pytest.raises(SubscriptionError, match="invalid_message"):
        await asyncio.wait_for(confirmed, 1)


async def test_refused_resubscription_ends_the_iterator(inbound: Dispatcher) -> None:
    subscription = await subscribed(inbound, sub("s1"))
    inbound.connection_lost(1012)
    inbound.subscribe_sent("m2", "s1")
    refusal = {"type": "subscription_error", "correlation_id": "m2", "subscription_id": "s1"}
    await inbound.handle_frame(frame({**refusal, "error_code": "forbidden"}))
    with pytest.raises(SubscriptionError, match="forbidden"):
        await anext(subscription)


async def test_request_replies_and_errors(inbound: Dispatcher) -> None:
    ok = inbound.expect_reply("r1")
    bad = inbound.expect_reply("r2")
    await inbound.handle_frame(frame({"type": "subscriptions", "correlation_id": "r1"}))
    await inbound.handle_frame(
        frame(
            {
                "type": "error",
                "correlation_id": "r2",
                "error_code": "not_found",
                "error_message": "nope",
                "details": {"subscription_ids": ["x"]},
            }
        )
    )
    assert (await ok)["type"] == "subscriptions"
    with pytest.raises(ServerError) as caught:
        await bad
    assert caught.value.error_code == "not_found"
    assert caught.value.details == {"subscription_ids": ["x"]}


async def test_lost_connection_fails_only_requests_sent_on_it(inbound: Dispatcher) -> None:
    sent = inbound.expect_reply("r1")
    queued = inbound.expect_reply("r2")
    inbound.sent({"type": "list_subscriptions", "message_id": "r1"})
    inbound.connection_lost(1006)
    with pytest.raises(ConnectionClosedError):
        await sent
    assert not queued.done()
    inbound.release("r2")


async def test_heartbeat_response_sets_latency_and_positions(inbound: Dispatcher) -> None:
    every = await subscribed(inbound, sub("all"))
    ping = inbound.expect_ping()
    command = inbound.heartbeats.start()
    await inbound.handle_frame(
        frame(
            {
                "type": "heartbeat_response",
                "client_timestamp": command["client_timestamp"],
                "positions": {"market_data": {"epoch": "e1", "seq": 99}, "x": {"bad": 1}},
            }
        )
    )
    assert inbound.message_latency is not None
    assert await ping == inbound.message_latency
    assert every.position == StreamPosition("e1", 99)


async def test_handlers_sync_async_and_failing(
    inbound: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def slow(message: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # really suspends: the next handler must wait for it
        calls.append("async " + message["type"])

    def broken(message: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    inbound.handlers["pong"] = [broken, lambda m: calls.append("sync " + m["type"]), slow]
    inbound.handlers["*"] = [lambda m: calls.append("any " + m["type"])]
    with caplog.at_level("ERROR", logger="tidewire.client"):
        await inbound.handle_frame(frame({"type": "pong"}))
    assert calls == ["sync pong", "async pong", "any pong"]
    assert any("boom" in (r.exc_text or "") for r in caplog.records)


async def test_undecodable_frames_are_skipped(
    inbound: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="tidewire.client"):
        await inbound.handle_frame(b"{oops")
    assert inbound.messages_received == 0
    assert "ignoring a frame" in caplog.text


async def test_shut_down_ends_everything(inbound: Dispatcher) -> None:
    subscription = await subscribed(inbound, sub("s1"))
    pending = inbound.add_subscription(sub("s2"))
    reply = inbound.expect_reply("r1")
    inbound.shut_down(ConnectionClosedError("bye", code=4003))
    for future in (pending, reply):
        with pytest.raises(ConnectionClosedError, match="bye"):
            await future
    with pytest.raises(ConnectionClosedError):
        await anext(subscription)
    assert inbound.subscriptions == {}


# --------------------------------------------------------------------------- recovery


def positions_sub(subscription_id: str) -> Subscription:
    return Subscription(
        Owner(),  # type: ignore[arg-type]
        subscription_id=subscription_id,
        stream="position_updates",
        filters={},
        rate_limit=None,
        snapshot=None,
        queue_size=100,
        reliable=True,
    )


def position_message(seq: int, symbol: str = "AAPL") -> dict[str, Any]:
    return {
        "type": "position_update",
        "stream": "position_updates",
        "key": "P1",
        "portfolio_id": "P1",
        "symbol": symbol,
        "position_side": "long",
        "seq": seq,
        "epoch": "e1",
        "data": {"quantity": 1, "avg_price": 1.0, "unrealized_pnl": 0.0},
    }


async def confirm(inbound: Dispatcher, subscription: Subscription, seq: int, **extra: Any) -> None:
    """Send `subscription`'s (re)subscribe and feed the gateway's confirmation."""
    command = subscription.state.command("m-1")
    inbound.subscribe_sent(command["message_id"], subscription.subscription_id)
    reply = {
        **confirmation(subscription.subscription_id, command["message_id"]),
        "stream": subscription.stream,
        "position": {"epoch": "e1", "seq": seq},
        **extra,
    }
    await inbound.handle_frame(frame(reply))


def queued(subscription: Subscription) -> list[Any]:
    out: list[Any] = []
    while subscription._buffer:
        item = subscription._buffer.pop()
        out.append(item["seq"] if isinstance(item, dict) else item.marker["reason"])
    return out


async def test_a_message_buffered_for_a_new_subscription_is_not_delivered_twice(
    inbound: Dispatcher,
) -> None:
    # The gateway's order for one connection: `b` is being set up while live messages reach
    # `a`; the gateway buffers them for `b` and sends them again after `b`'s snapshot.
    # Replies overtake the market lane, so a live message queued before `b`'s confirmation
    # may arrive after it, ahead of the snapshot.
    a = await subscribed(inbound, sub("a"))
    b = sub("b")
    inbound.add_subscription(b)
    await inbound.handle_frame(frame(quote("MSFT", 4)))  # live, reaches `a` only
    await inbound.handle_frame(frame(quote("AAPL", 10)))
    await confirm(inbound, b, 11)
    for message in (
        quote("AAPL", 11),  # live, queued before the confirmation
        quote("MSFT", 4),  # b's snapshot: `a` has these
        quote("AAPL", 11),
        quote("AAPL", 10),  # b's buffered live messages
        quote("AAPL", 11),
        quote("AAPL", 12),  # live
    ):
        await inbound.handle_frame(frame(message))
    assert queued(a) == [4, 10, 11, 12]
    assert a.duplicates == 4
    assert queued(b) == [11, 4, 12]  # AAPL 11 came first: the snapshot's AAPL is not newer
    assert b.duplicates == 3


async def test_resync_handlers_run_before_the_messages_after_the_gap(inbound: Dispatcher) -> None:
    calls: list[str] = []

    async def client_handler(subscription: Subscription, info: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # really suspends: the reader must wait for it
        calls.append(f"client {subscription.subscription_id} {info['reason']}")

    inbound.resync_handlers.append(client_handler)
    inbound.handlers["*"] = [lambda m: calls.append(f"message {m['type']} {m.get('seq', '')}")]
    positions = positions_sub("p")
    positions.on_resync = lambda sub, info: calls.append(f"own {info['reason']}")
    inbound.add_subscription(positions)
    await confirm(inbound, positions, 5)
    await inbound.handle_frame(frame(position_message(5)))
    positions.state.on_disconnected()
    inbound.connection_lost(1006)
    calls.clear()
    await confirm(inbound, positions, 1, recovered=False)
    await inbound.handle_frame(frame(position_message(1)))
    assert calls == [
        "own not_recovered",
        "client p not_recovered",
        "message subscription_confirmed ",
        "message position_update 1",
    ]
    assert queued(positions) == [5, "not_recovered", 1]


async def test_overflow_calls_the_resync_handlers_once_per_gap(inbound: Dispatcher) -> None:
    infos: list[dict[str, Any]] = []
    inbound.resync_handlers.append(lambda sub, info: infos.append(info))
    positions = positions_sub("p")
    positions._buffer.maxsize = 1
    inbound.add_subscription(positions)
    await confirm(inbound, positions, 0)
    for seq in (1, 2, 3):
        await inbound.handle_frame(frame(position_message(seq)))
    assert [(i["reason"], i["dropped"], i["position"]) for i in infos] == [
        ("overflow", 1, {"epoch": "e1", "seq": 1})
    ]
    assert queued(positions) == [1, "overflow"]


async def test_a_reliable_snapshot_position_is_taken_at_the_next_reply(
    inbound: Dispatcher,
) -> None:
    positions = positions_sub("p")
    inbound.add_subscription(positions)
    await confirm(inbound, positions, 40)
    await inbound.handle_frame(frame(position_message(7)))
    # Lost here, the subscription would resume after 7 and get the rest of the snapshot.
    assert positions.position == StreamPosition("e1", 7)
    await inbound.handle_frame(frame({"type": "heartbeat", "counter": 1}))
    assert positions.position == StreamPosition("e1", 40)


async def test_heartbeat_positions_only_for_confirmed_subscriptions(inbound: Dispatcher) -> None:
    waiting = sub("late")
    inbound.add_subscription(waiting)
    await inbound.handle_frame(
        frame(
            {
                "type": "heartbeat_response",
                "client_timestamp": 1,
                "positions": {"market_data": {"epoch": "e1", "seq": 99}},
            }
        )
    )
    assert waiting.position is None
