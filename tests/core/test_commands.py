"""CommandHandler of core/commands.py fed raw frames, without sockets or an event loop.

Each test drives one connection (a recording FakeTransport, tests/fakes.py) through `on_frame`
and reads the frames the hub writes back. Replies are checked against docs/protocol.md sections 3
and 6.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import pytest

from fakes import (
    FakeClock,
    FakeScheduler,
    FakeTransport,
    connection,
    decode_writes,
    received,
    run_to_completion,
)
from messages import order, position, quote, risk_alert, trade
from tidewire.brokers.base import BrokerUnavailable, Handlers, HistoryLimit, Snapshot
from tidewire.brokers.memory import MemoryBroker
from tidewire.core import recovery
from tidewire.core.auth import ROLE_SUBSCRIBER, AnonymousAuthenticator
from tidewire.core.commands import CommandHandler, CommandLimits
from tidewire.core.hub import Hub
from tidewire.protocol.codec import WireFormat
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, StreamPosition

# ------------------------------------------------------------------ fakes


Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Deferred:
    """A spawn that keeps each coroutine until the test runs it, one step at a time."""

    def __init__(self) -> None:
        self.coroutines: list[Coroutine[Any, Any, None]] = []

    def __call__(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.coroutines.append(coroutine)

    def step(self) -> None:
        """Run the oldest coroutine up to its first suspension (it must suspend)."""
        assert self.coroutines[0].send(None) is None

    def finish(self) -> None:
        """Run the oldest coroutine to its end."""
        run_to_completion(self.coroutines.pop(0))


class Suspend:
    """An awaitable that suspends its coroutine once, without an event loop."""

    def __await__(self) -> Any:
        yield


class SuspendingBroker(MemoryBroker):
    """Answers history and snapshot as of the call, then suspends before returning, as a
    remote broker would: messages published meanwhile are not in the answer."""

    async def history(
        self, stream: str, since: StreamPosition, limit: int | None = None
    ) -> list[DataMessage] | None:
        result = await super().history(stream, since, limit)
        await Suspend()
        return result

    async def snapshot(self, stream: str) -> Snapshot:
        result = await super().snapshot(stream)
        await Suspend()
        return result


class LateSnapshotBroker(MemoryBroker):
    """Suspends before it reads a snapshot: what is published meanwhile is in the answer,
    as with a remote broker that is ahead of the node."""

    async def snapshot(self, stream: str) -> Snapshot:
        await Suspend()
        return await super().snapshot(stream)


class DownBroker(MemoryBroker):
    async def history(
        self, stream: str, since: StreamPosition, limit: int | None = None
    ) -> list[DataMessage] | None:
        raise BrokerUnavailable("connection refused")

    async def snapshot(self, stream: str) -> Snapshot:
        raise BrokerUnavailable("connection refused")


# ------------------------------------------------------------------ harness

MAX_SUBSCRIPTIONS = 3
MAX_MESSAGE_BYTES = 1024


class Client:
    """One connection of a hub + MemoryBroker + CommandHandler, driven by raw frames."""

    def __init__(
        self,
        roles: frozenset[str] = frozenset({ROLE_SUBSCRIBER}),
        inbound_rate: float = 1000.0,
        inbound_burst: int = 1000,
        fmt: WireFormat = WireFormat.JSON,
        spawn: Spawn = run_to_completion,
        broker: type[MemoryBroker] = MemoryBroker,
    ) -> None:
        self.clock = FakeClock(500.0)
        self.scheduler = FakeScheduler()
        self.hub = Hub(self.scheduler, max_outbox_bytes=1 << 20, clock=self.clock)
        self.broker = broker(clock=self.clock)
        self.broker.attach(Handlers(message=self.hub.dispatch))
        authenticator = AnonymousAuthenticator(roles)
        self.handler = CommandHandler(
            self.hub,
            self.broker,
            authenticator,
            CommandLimits(
                max_subscriptions=MAX_SUBSCRIPTIONS,
                max_message_bytes=MAX_MESSAGE_BYTES,
                max_filter_values=10,
            ),
            self.clock,
            spawn=spawn,
        )
        self.transport = FakeTransport()
        self.fmt = fmt
        self.connection = connection(
            connection_id="c1",
            transport=self.transport,
            fmt=fmt,
            principal=authenticator.authenticate(None),
            inbound_rate=inbound_rate,
            inbound_burst=inbound_burst,
            now=self.clock(),
        )
        self.hub.add_connection(self.connection)
        self._read = 0

    def send(self, message: dict[str, Any] | bytes, binary: bool | None = None) -> None:
        if isinstance(message, dict):
            payload = (
                msgspec.msgpack.encode(message) if self.fmt.binary else json.dumps(message).encode()
            )
        else:
            payload = message
        self.handler.on_frame(
            self.connection, payload, self.fmt.binary if binary is None else binary
        )

    def received(self, timers: bool = True) -> list[dict[str, Any]]:
        """Messages written since the last call (timers fire first unless `timers` is False)."""
        self.scheduler.run(timers)
        out = decode_writes(self.transport.writes[self._read :])
        self._read = len(self.transport.writes)
        return out

    def request(
        self, message: dict[str, Any] | bytes, binary: bool | None = None
    ) -> dict[str, Any]:
        """Send one frame; exactly one reply must come back."""
        self.send(message, binary)
        replies = self.received()
        assert len(replies) == 1, replies
        return replies[0]

    def subscribe(self, stream: str, **fields: Any) -> dict[str, Any]:
        reply = self.request({"type": "subscribe", "stream": stream, **fields})
        assert reply["type"] == "subscription_confirmed", reply
        return reply

    def publish(self, raw: dict[str, Any]) -> None:
        self.broker.publish_now(build_data_message(raw))

    def position(self, stream: str, seq: int | None = None) -> dict[str, Any]:
        head = self.broker.position(stream)
        return {"epoch": head.epoch, "seq": head.seq if seq is None else seq}


@pytest.fixture
def client() -> Client:
    """A connection already holding subscriptions s1 (AAPL quotes) and s2 (PF-1 orders)."""
    c = Client()
    c.subscribe("market_data", subscription_id="s1", filters={"symbols": ["AAPL"]})
    c.subscribe("order_updates", subscription_id="s2", filters={"portfolio_ids": ["PF-1"]})
    return c


def state(c: Client) -> tuple[dict[str, Any], dict[str, int]]:
    return (
        dict(c.connection.subscriptions),
        {s: c.hub.subscriber_count(s) for s in ("market_data", "order_updates", "risk_alerts")},
    )


# ------------------------------------------------------------------ error paths

REQ = "req-1"
SUBSCRIBE = {"type": "subscribe", "message_id": REQ}

# (frame, binary frame?, reply type, error code, correlation_id expected)
ERRORS = [
    pytest.param(
        b'{"type": "subscribe", "message_id": "req-1"',
        False,
        "error",
        "invalid_json",
        None,
        id="invalid_json-truncated",
    ),
    pytest.param(
        b"\xff\xfe not text", False, "error", "invalid_json", None, id="invalid_json-not-utf8"
    ),
    pytest.param(
        json.dumps({**SUBSCRIBE, "stream": "market_data"}).encode(),
        True,
        "error",
        "invalid_message",
        None,
        id="invalid_message-binary-frame-on-json",
    ),
    pytest.param(
        b"[1, 2, 3]", False, "error", "invalid_message", None, id="invalid_message-not-an-object"
    ),
    pytest.param(
        {"message_id": REQ, "stream": "market_data"},
        None,
        "error",
        "invalid_message",
        REQ,
        id="invalid_message-no-type",
    ),
    pytest.param(
        SUBSCRIBE,
        None,
        "subscription_error",
        "invalid_message",
        REQ,
        id="invalid_message-subscribe-without-stream",
    ),
    pytest.param(
        {"type": "heartbeat", "message_id": REQ, "client_timestamp": ["yesterday"]},
        None,
        "error",
        "invalid_message",
        REQ,
        id="invalid_message-wrong-field-type",
    ),
    pytest.param(
        {"type": "unsubscribe", "message_id": REQ},
        None,
        "error",
        "invalid_message",
        REQ,
        id="invalid_message-unsubscribe-without-ids",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "subscription_id": "x" * 129},
        None,
        "subscription_error",
        "invalid_message",
        REQ,
        id="invalid_message-subscription-id-too-long",
    ),
    pytest.param(
        {"type": "frobnicate", "message_id": REQ},
        None,
        "error",
        "unknown_type",
        REQ,
        id="unknown_type",
    ),
    pytest.param(
        {"action": "dance", "message_id": REQ},
        None,
        "error",
        "unknown_type",
        REQ,
        id="unknown_type-legacy-action",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "version": "9.9"},
        None,
        "error",
        "unsupported_version",
        REQ,
        id="unsupported_version",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "weather", "subscription_id": "new"},
        None,
        "subscription_error",
        "unknown_stream",
        REQ,
        id="unknown_stream",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "filters": {"colour": "red"}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-unknown",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "filters": {"severity": "high"}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-not-on-stream",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "filters": {"symbols": "AAPL"}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-wrong-type",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "filters": {"symbols": [""] * 11}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-too-many-values",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "filters": {"min_price": 10, "max_price": 5}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-min-above-max",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "risk_alerts", "filters": {"severity": "extreme"}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-bad-severity",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "filters": ["AAPL"]},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-not-an-object",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "filters": {"symbols": list("ABCDEFGHIJK")}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-too-many-values",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "order_updates", "rate_limit": 5},
        None,
        "subscription_error",
        "invalid_rate_limit",
        REQ,
        id="invalid_rate_limit-reliable-stream",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "rate_limit": 0},
        None,
        "subscription_error",
        "invalid_rate_limit",
        REQ,
        id="invalid_rate_limit-zero",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "market_data", "rate_limit": -2.5},
        None,
        "subscription_error",
        "invalid_rate_limit",
        REQ,
        id="invalid_rate_limit-negative",
    ),
    pytest.param(
        {**SUBSCRIBE, "stream": "risk_alerts", "subscription_id": "s1"},
        None,
        "subscription_error",
        "duplicate_subscription",
        REQ,
        id="duplicate_subscription",
    ),
    pytest.param(
        {"type": "unsubscribe", "message_id": REQ, "subscription_id": "nope"},
        None,
        "error",
        "not_found",
        REQ,
        id="not_found",
    ),
    pytest.param(
        {"type": "unsubscribe", "message_id": REQ, "subscription_ids": ["s1", "nope"]},
        None,
        "error",
        "not_found",
        REQ,
        id="not_found-bulk-is-all-or-nothing",
    ),
    pytest.param(
        {"action": "unsubscribe", "message_id": REQ, "subscription_id": "nope"},
        None,
        "error",
        "not_found",
        REQ,
        id="not_found-legacy-action",
    ),
    pytest.param(
        {"type": "publish", "message_id": REQ, "message": quote("AAPL")},
        None,
        "error",
        "forbidden",
        REQ,
        id="forbidden-publish-without-role",
    ),
]


@pytest.mark.parametrize(("frame", "binary", "reply_type", "code", "correlation"), ERRORS)
def test_bad_request_gets_the_documented_reply_and_changes_nothing(
    client: Client,
    frame: dict[str, Any] | bytes,
    binary: bool | None,
    reply_type: str,
    code: str,
    correlation: str | None,
) -> None:
    before = state(client)
    reply = client.request(frame, binary)
    assert reply["type"] == reply_type
    assert reply["error_code"] == code
    assert isinstance(reply["error_message"], str) and reply["error_message"]
    assert reply["retryable"] is False
    assert reply.get("correlation_id") == correlation
    assert reply["version"] == "3.0"
    assert reply["timestamp"].endswith("Z")
    assert state(client) == before
    assert client.transport.closes == []
    assert not client.connection.closed
    assert client.connection.errors == 1


def test_subscription_error_echoes_the_subscription_id(client: Client) -> None:
    reply = client.request({**SUBSCRIBE, "stream": "weather", "subscription_id": "mine"})
    assert reply["subscription_id"] == "mine"
    assert reply["correlation_id"] == REQ


def test_not_found_names_the_unknown_ids(client: Client) -> None:
    reply = client.request(
        {"type": "unsubscribe", "message_id": REQ, "subscription_ids": ["s1", "x", "s2", "y"]}
    )
    assert reply["details"] == {"subscription_ids": ["x", "y"]}
    assert set(client.connection.subscriptions) == {"s1", "s2"}


def test_too_many_subscriptions(client: Client) -> None:
    client.subscribe("risk_alerts", subscription_id="s3")
    before = state(client)
    reply = client.request({**SUBSCRIBE, "stream": "risk_alerts", "subscription_id": "s4"})
    assert reply["type"] == "subscription_error"
    assert reply["error_code"] == "too_many_subscriptions"
    assert reply["correlation_id"] == REQ
    assert reply["retryable"] is False
    assert state(client) == before
    assert set(client.connection.subscriptions) == {"s1", "s2", "s3"}


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        # every problem at once: unknown_stream wins
        (
            {"stream": "weather", "filters": {"colour": 1}, "subscription_id": "s1"},
            "unknown_stream",
        ),
        (
            {"stream": "market_data", "filters": {"colour": 1}, "subscription_id": "s1"},
            "invalid_filter",
        ),
        ({"stream": "market_data", "subscription_id": "s1"}, "duplicate_subscription"),
        ({"stream": "market_data", "subscription_id": "s4"}, "too_many_subscriptions"),
    ],
)
def test_subscribe_reports_the_first_problem_in_protocol_order(
    client: Client, fields: dict[str, Any], code: str
) -> None:
    client.subscribe("risk_alerts", subscription_id="s3")  # at the limit now
    reply = client.request({**SUBSCRIBE, **fields})
    assert reply["error_code"] == code


def test_message_too_large(client: Client) -> None:
    before = state(client)
    frame = json.dumps({"type": "heartbeat", "message_id": REQ, "pad": "x" * MAX_MESSAGE_BYTES})
    reply = client.request(frame.encode())
    assert reply["type"] == "error"
    assert reply["error_code"] == "message_too_large"
    assert reply["details"] == {"limit": MAX_MESSAGE_BYTES, "size": len(frame)}
    # The frame is refused unread, so its message_id is unknown.
    assert "correlation_id" not in reply
    assert state(client) == before
    assert client.transport.closes == []


def test_message_at_the_size_limit_is_read(client: Client) -> None:
    base = json.dumps({"type": "heartbeat", "message_id": REQ, "pad": ""})
    frame = json.dumps(
        {"type": "heartbeat", "message_id": REQ, "pad": "x" * (MAX_MESSAGE_BYTES - len(base))}
    )
    assert len(frame) == MAX_MESSAGE_BYTES
    assert client.request(frame.encode())["type"] == "heartbeat_response"


def test_subscribe_without_the_subscriber_role_is_forbidden() -> None:
    c = Client(roles=frozenset())
    reply = c.request({**SUBSCRIBE, "stream": "market_data"})
    assert reply["type"] == "subscription_error"
    assert reply["error_code"] == "forbidden"
    assert reply["correlation_id"] == REQ
    assert c.connection.subscriptions == {}


def test_msgpack_connection_refuses_text_frames_and_bad_msgpack() -> None:
    c = Client(fmt=WireFormat.MSGPACK)
    assert c.request(b'{"type":"list_subscriptions"}', binary=False)["error_code"] == (
        "invalid_message"
    )
    assert c.request(b"\xc1", binary=True)["error_code"] == "invalid_message"
    reply = c.request({"type": "list_subscriptions", "message_id": REQ})
    assert reply == {**reply, "type": "subscriptions", "correlation_id": REQ, "subscriptions": []}


# ------------------------------------------------------------------ inbound rate


def test_inbound_flood_closes_with_4029_after_answering_what_was_allowed() -> None:
    c = Client(inbound_rate=1.0, inbound_burst=3)
    for i in range(3):
        c.send({"type": "heartbeat", "client_timestamp": i, "message_id": f"hb-{i}"})
    assert c.transport.closes == []
    c.send({"type": "heartbeat", "client_timestamp": 3, "message_id": "hb-3"})
    assert [code for code, _ in c.transport.closes] == [4029]
    assert c.connection.closed
    replies = c.received()
    assert [r["correlation_id"] for r in replies] == ["hb-0", "hb-1", "hb-2"]


def test_inbound_rate_refills_with_the_clock() -> None:
    c = Client(inbound_rate=2.0, inbound_burst=1)
    c.request({"type": "heartbeat", "client_timestamp": 1})
    c.clock.now += 0.5
    c.request({"type": "heartbeat", "client_timestamp": 2})
    assert c.transport.closes == []
    c.send({"type": "heartbeat", "client_timestamp": 3})
    assert [code for code, _ in c.transport.closes] == [4029]


def test_even_bad_frames_count_against_the_inbound_rate() -> None:
    c = Client(inbound_rate=1.0, inbound_burst=2)
    c.send(b"not json")
    c.send(b"x" * (MAX_MESSAGE_BYTES + 1))
    assert c.transport.closes == []
    c.send(b"not json")
    assert [code for code, _ in c.transport.closes] == [4029]


# ------------------------------------------------------------------ successful commands


def test_subscribe_confirms_with_position_then_snapshot_then_delivers() -> None:
    c = Client()
    c.publish(quote("AAPL"))
    c.publish(quote("MSFT"))
    c.send(
        {
            "type": "subscribe",
            "stream": "market_data",
            "message_id": REQ,
            "filters": {"symbols": ["AAPL"]},
        }
    )
    reply, *snapshot = c.received()
    position = c.broker.position("market_data")
    assert reply["type"] == "subscription_confirmed"
    assert reply["correlation_id"] == REQ
    assert reply["subscription_id"] == "sub-1"
    assert reply["stream"] == "market_data"
    assert reply["filters"] == {"symbols": ["AAPL"]}
    assert reply["position"] == {"epoch": position.epoch, "seq": 2}
    assert "recovered" not in reply, "no since: nothing to recover"
    # The snapshot: the latest AAPL quote, as an ordinary message of the stream.
    assert [(m["type"], m["symbol"], m["seq"]) for m in snapshot] == [("market_data", "AAPL", 1)]
    c.publish(quote("MSFT"))
    c.publish(quote("AAPL"))
    data = c.received()
    assert [(m["symbol"], m["seq"]) for m in data] == [("AAPL", 4)]


def test_subscribe_without_setup_confirms_at_once() -> None:
    def no_spawn(coroutine: Coroutine[Any, Any, None]) -> None:
        coroutine.close()
        raise AssertionError("a reliable stream without since needs no setup")

    c = Client(spawn=no_spawn)
    c.publish(order("PF-1"))
    reply = c.subscribe("order_updates", filters={"portfolio_ids": ["PF-1"]})
    assert reply["position"] == c.position("order_updates", 1)
    assert "recovered" not in reply
    c.publish(order("PF-1"))
    assert [m["seq"] for m in c.received()] == [2]


def test_snapshot_false_on_a_latest_value_stream_sends_only_the_confirmation() -> None:
    c = Client()
    c.publish(quote("AAPL"))
    reply = c.subscribe("market_data", snapshot=False)
    assert reply["position"] == c.position("market_data", 1)
    c.publish(quote("AAPL"))
    assert [m["seq"] for m in c.received()] == [2]


# ------------------------------------------------------------------ since (section 5)


def test_since_on_a_reliable_stream_replays_then_goes_live() -> None:
    c = Client()
    for n in range(6):
        c.publish(order("PF-1" if n % 2 == 0 else "PF-2"))
    since = c.position("order_updates", 2)
    c.send(
        {
            "type": "subscribe",
            "stream": "order_updates",
            "message_id": REQ,
            "filters": {"portfolio_ids": ["PF-1"]},
            "since": since,
        }
    )
    replies = c.received()
    assert [m["type"] for m in replies] == [
        "subscription_confirmed",
        "order_update",
        "order_update",
    ]
    confirmed = replies[0]
    assert confirmed["recovered"] is True
    assert confirmed["correlation_id"] == REQ
    assert confirmed["position"] == c.position("order_updates", 6)
    assert [(m["portfolio_id"], m["seq"]) for m in replies[1:]] == [("PF-1", 3), ("PF-1", 5)]
    c.publish(order("PF-2"))
    c.publish(order("PF-1"))
    assert [m["seq"] for m in c.received()] == [8]


def test_since_on_a_reliable_stream_that_cannot_be_recovered() -> None:
    c = Client()
    c.publish(order("PF-1"))
    c.send(
        {
            "type": "subscribe",
            "stream": "order_updates",
            "since": {"epoch": "lost", "seq": 40},
        }
    )
    (confirmed,) = c.received()
    assert confirmed["type"] == "subscription_confirmed"
    assert confirmed["recovered"] is False
    assert confirmed["position"] == c.position("order_updates", 1)
    c.publish(order("PF-1"))
    assert [m["seq"] for m in c.received()] == [2]


def test_since_on_a_latest_value_stream_gets_the_snapshot() -> None:
    c = Client()
    c.publish(quote("AAPL"))
    c.publish(quote("MSFT"))
    head = c.position("market_data")
    c.send({"type": "subscribe", "stream": "market_data", "since": head})
    confirmed, *snapshot = c.received()
    assert confirmed["recovered"] is True
    assert [m["seq"] for m in snapshot] == [1, 2]
    c.send(
        {
            "type": "subscribe",
            "stream": "market_data",
            "subscription_id": "again",
            "since": c.position("market_data", 1),
        }
    )
    confirmed, *snapshot = c.received()
    assert confirmed["recovered"] is False
    assert [m["seq"] for m in snapshot] == [1, 2]


def test_live_message_during_a_replay_is_delivered_exactly_once() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred)
    for _ in range(4):
        c.publish(order("PF-1"))
    c.send(
        {"type": "subscribe", "stream": "order_updates", "since": c.position("order_updates", 2)}
    )
    assert c.received() == [], "nothing before the setup ran"
    assert "sub-1" in c.connection.subscriptions, "registered at once: nothing is missed"
    c.publish(order("PF-1"))  # seq 5: buffered, and in history by the time of the replay
    assert c.received() == []
    deferred.finish()
    replies = c.received()
    assert replies[0]["type"] == "subscription_confirmed"
    assert replies[0]["position"] == c.position("order_updates", 5)
    assert [m["seq"] for m in replies[1:]] == [3, 4, 5]
    c.publish(order("PF-1"))
    assert [m["seq"] for m in c.received()] == [6]


def test_live_message_after_the_replay_was_fetched_follows_it_once() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred, broker=SuspendingBroker)
    for _ in range(3):
        c.publish(order("PF-1"))
    c.send(
        {"type": "subscribe", "stream": "order_updates", "since": c.position("order_updates", 1)}
    )
    deferred.step()  # history fetched (seq 2, 3), the answer not yet back
    c.publish(order("PF-1"))  # seq 4: not in the replay, buffered
    c.publish(order("PF-2"))  # seq 5
    assert c.received() == []
    deferred.finish()
    replies = c.received()
    assert replies[0]["recovered"] is True
    assert replies[0]["position"] == c.position("order_updates", 3)
    assert [m["seq"] for m in replies[1:]] == [2, 3, 4, 5]
    c.publish(order("PF-1"))
    assert [m["seq"] for m in c.received()] == [6]


def test_live_message_during_a_snapshot_is_delivered_once_after_it() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred, broker=SuspendingBroker)
    c.publish(quote("AAPL"))
    c.send({"type": "subscribe", "stream": "market_data"})
    deferred.step()  # snapshot taken at seq 1
    c.publish(quote("MSFT"))
    c.publish(quote("AAPL"))
    deferred.finish()
    confirmed, *data = c.received()
    assert confirmed["position"] == c.position("market_data", 1)
    assert [(m["symbol"], m["seq"]) for m in data] == [("AAPL", 1), ("MSFT", 2), ("AAPL", 3)]


def test_widening_update_delivers_in_seq_order_when_the_snapshot_is_ahead() -> None:
    """Confirmed at 2; while the snapshot is read, an old key (3) and a new key (4) tick:
    the client gets 3 then 4, never 4 (from the snapshot) before 3."""
    deferred = Deferred()
    c = Client(spawn=deferred, broker=LateSnapshotBroker)
    c.publish(position("PF-1", "AAPL", 1))
    c.publish(position("PF-2", "AAPL", 1))
    c.send(
        {"type": "subscribe", "stream": "position_updates", "subscription_id": "p"}
        | {"filters": {"portfolio_ids": ["PF-1"]}}
    )
    deferred.step()
    deferred.finish()
    assert [m["seq"] for m in c.received() if "seq" in m] == [1]
    c.send(
        {"type": "update_subscription", "subscription_id": "p"}
        | {"filters": {"portfolio_ids": ["PF-1", "PF-2", "PF-3"]}}
    )
    deferred.step()  # the snapshot read is pending
    c.publish(position("PF-1", "AAPL", 2))  # seq 3, an old key
    c.publish(position("PF-3", "AAPL", 1))  # seq 4, a new key
    deferred.finish()
    confirmed, *data = c.received()
    assert confirmed["updated"] is True and confirmed["position"]["seq"] == 2
    assert [(m["portfolio_id"], m["seq"]) for m in data] == [
        ("PF-2", 2),  # the new key's latest value as of the update
        ("PF-1", 3),
        ("PF-3", 4),
    ]


def test_subscription_removed_during_its_setup_gets_nothing() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred)
    c.publish(order("PF-1"))
    c.send(
        {
            "type": "subscribe",
            "stream": "order_updates",
            "subscription_id": "s1",
            "since": c.position("order_updates", 0),
        }
    )
    reply = c.request({"type": "unsubscribe", "subscription_id": "s1"})
    assert reply["type"] == "unsubscription_confirmed"
    c.publish(order("PF-1"))
    deferred.finish()
    assert c.received() == []
    assert c.hub._index == {}


def test_broker_unavailable_during_setup_is_a_retryable_subscription_error() -> None:
    c = Client(broker=DownBroker)
    reply = c.request({**SUBSCRIBE, "stream": "market_data", "subscription_id": "md"})
    assert reply["type"] == "subscription_error"
    assert reply["error_code"] == "unavailable"
    assert reply["retryable"] is True
    assert reply["subscription_id"] == "md"
    assert reply["correlation_id"] == REQ
    assert c.connection.subscriptions == {}
    assert c.hub._index == {}


def test_broker_unavailable_while_resuming_sends_the_client_to_reconnect() -> None:
    """A resubscription with `since` has no application waiting for its error: the client is
    closed with 1012 and recovers when it reconnects, instead of losing the subscription."""
    c = Client(broker=DownBroker)
    since = {"epoch": "e1", "seq": 4}
    c.send({**SUBSCRIBE, "stream": "order_updates", "subscription_id": "o", "since": since})
    assert c.transport.closes[-1][0] == 1012
    assert c.connection.subscriptions == {}
    assert c.hub._index == {}


def test_snapshot_does_not_count_against_the_rate_limit() -> None:
    c = Client()
    c.publish(quote("AAPL"))
    c.send({"type": "subscribe", "stream": "market_data", "rate_limit": 1})
    confirmed, *snapshot = c.received()
    assert confirmed["rate_limit"] == 1
    assert [m["seq"] for m in snapshot] == [1]
    c.publish(quote("AAPL"))  # straight through: the snapshot did not use the budget
    c.publish(quote("AAPL"))  # held until the next release
    c.publish(quote("AAPL"))  # replaces it
    assert len(c.scheduler.later) == 1
    assert [m["seq"] for m in c.received(timers=False)] == [2]
    assert [m["seq"] for m in c.received()] == [4], "released: the newest AAPL quote"


def test_heartbeat_response_follows_the_reliable_messages_it_reports(client: Client) -> None:
    client.publish(order("PF-1"))
    client.publish(quote("AAPL"))
    client.send({"type": "heartbeat", "client_timestamp": 1, "message_id": "hb"})
    replies = client.received()
    assert [m["type"] for m in replies] == ["order_update", "heartbeat_response", "market_data"]
    assert replies[1]["positions"]["order_updates"] == client.position("order_updates", 1)


def test_legacy_dialect_subscribes_with_singular_stream_and_loose_filters() -> None:
    c = Client()
    reply = c.request(
        {
            "action": "subscribe",
            "topic": "order_update",
            "portfolio_ids": ["PF-1"],
            "message_id": REQ,
        }
    )
    assert reply["type"] == "subscription_confirmed"
    assert reply["stream"] == "order_updates"
    assert reply["filters"] == {"portfolio_ids": ["PF-1"]}
    assert c.request({"action": "ping"})["type"] == "pong"


def test_unsubscribe_stops_delivery_and_empties_the_index(client: Client) -> None:
    reply = client.request(
        {"type": "unsubscribe", "message_id": REQ, "subscription_ids": ["s2", "s1", "s2"]}
    )
    assert reply["type"] == "unsubscription_confirmed"
    assert reply["subscription_ids"] == ["s2", "s1"]
    assert reply["correlation_id"] == REQ
    assert client.connection.subscriptions == {}
    assert client.hub._index == {}
    client.publish(quote("AAPL"))
    client.publish(order("PF-1"))
    assert client.received() == []


def test_heartbeat_response_echoes_and_reports_positions(client: Client) -> None:
    for _ in range(3):
        client.publish(quote("MSFT"))
    client.publish(order("PF-9"))
    client.publish(risk_alert("PF-1"))
    assert client.received() == [], "nothing matched the filters"
    reply = client.request(
        {"type": "heartbeat", "client_timestamp": 1700000000123.5, "message_id": "hb"}
    )
    assert reply["type"] == "heartbeat_response"
    assert reply["correlation_id"] == "hb"
    assert reply["client_timestamp"] == 1700000000123.5
    assert reply["server_timestamp"].endswith("Z")
    md, orders = client.broker.position("market_data"), client.broker.position("order_updates")
    # The streams this connection subscribes to, and only those.
    assert reply["positions"] == {
        "market_data": {"epoch": md.epoch, "seq": 3},
        "order_updates": {"epoch": orders.epoch, "seq": 1},
    }


def test_heartbeat_response_without_subscriptions_has_no_positions() -> None:
    reply = Client().request({"type": "heartbeat", "client_timestamp": 42})
    assert reply["positions"] == {}
    assert reply["client_timestamp"] == 42
    assert "correlation_id" not in reply


def test_list_subscriptions(client: Client) -> None:
    client.publish(quote("AAPL"))
    client.publish(quote("AAPL"))
    client.publish(order("PF-1"))
    client.received()
    reply = client.request({"type": "list_subscriptions", "message_id": REQ})
    assert reply["type"] == "subscriptions"
    assert reply["correlation_id"] == REQ
    listed = {s["subscription_id"]: s for s in reply["subscriptions"]}
    assert set(listed) == {"s1", "s2"}
    assert listed["s1"]["stream"] == "market_data"
    assert listed["s1"]["filters"] == {"symbols": ["AAPL"]}
    assert listed["s1"]["messages_delivered"] == 2
    assert listed["s2"]["stream"] == "order_updates"
    assert listed["s2"]["filters"] == {"portfolio_ids": ["PF-1"]}
    assert listed["s2"]["messages_delivered"] == 1
    assert listed["s2"]["created_at"].endswith("Z")


def test_generated_subscription_ids_do_not_collide() -> None:
    c = Client()
    c.subscribe("market_data", subscription_id="sub-2")
    reply = c.subscribe("risk_alerts")
    assert reply["subscription_id"] == "sub-3"
    reply = c.subscribe("order_updates")
    assert reply["subscription_id"] not in {"sub-2", "sub-3"}


def test_publish_with_the_publisher_role_is_acked_once() -> None:
    c = Client(roles=frozenset({ROLE_SUBSCRIBER, "publisher"}))
    c.subscribe("market_data")
    message = {**quote("AAPL"), "message_id": "p-1"}
    c.send({"type": "publish", "message_id": REQ, "message": message})
    replies = c.received()
    assert [r["type"] for r in replies] == ["ack", "market_data"]
    ack = replies[0]
    assert ack["correlation_id"] == REQ
    assert ack["ack_message_id"] == "p-1"
    assert ack["seq"] == 1
    assert ack["status"] == "accepted"
    c.send({"type": "publish", "message_id": "req-2", "message": message})
    replies = c.received()
    assert [r["type"] for r in replies] == ["ack"], "a duplicate is delivered to no one"
    assert replies[0]["seq"] == 1
    assert replies[0]["duplicate"] is True
    assert replies[0]["status"] == "duplicate"


class BrokenBroker(MemoryBroker):
    async def snapshot(self, stream: str) -> Snapshot:
        raise RuntimeError("a bug in the broker")


def test_a_failed_setup_ends_the_subscription_with_an_answer() -> None:
    # Anything but BrokerUnavailable, too: the subscription must not stay gated and buffer.
    c = Client(broker=BrokenBroker)
    reply = c.request({"type": "subscribe", "stream": "market_data", "message_id": REQ})
    assert reply["type"] == "subscription_error" and reply["error_code"] == "internal_error"
    assert reply["correlation_id"] == REQ and reply["retryable"] is True
    assert c.connection.subscriptions == {}
    assert c.hub.subscriber_count("market_data") == 0


# ------------------------------------------------------------------ the original hooks' commands


def test_one_query_at_a_time_per_connection() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred)
    c.publish(quote("AAPL"))
    c.send({"type": "get_snapshot", "stream": "market_data", "message_id": "q1"})
    second = c.request({"type": "get_trade_history", "message_id": "q2"})
    assert (second["error_code"], second["correlation_id"]) == ("rate_limited", "q2")
    assert second["retryable"] is True
    deferred.finish()
    [answer] = c.received()
    assert answer["type"] == "snapshot" and answer["correlation_id"] == "q1"
    c.send({"type": "get_trade_history", "message_id": "q3"})
    deferred.finish()
    [again] = c.received()
    assert again["type"] == "trade_history"  # the first one was counted out


def test_the_node_answers_a_bounded_number_of_queries_at_once() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred)
    queries = c.handler.queries
    queries.max_in_flight = 1
    other = connection(
        connection_id="c2",
        transport=FakeTransport(),
        fmt=WireFormat.JSON,
        principal=c.connection.principal,
        inbound_rate=1000.0,
        inbound_burst=1000,
        now=c.clock(),
    )
    c.hub.add_connection(other)
    c.send({"type": "get_snapshot", "stream": "market_data"})
    c.handler.on_frame(other, b'{"type": "get_snapshot", "stream": "market_data"}', False)
    c.scheduler.run(True)
    [refused] = received(other)
    assert refused["error_code"] == "rate_limited"
    assert refused["details"] == {"limit": 1}
    deferred.finish()
    assert c.received()[0]["type"] == "snapshot"


def test_a_throttled_subscription_widened_ends_on_the_newest_value() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred, broker=LateSnapshotBroker)
    c.send(
        {"type": "subscribe", "stream": "market_data", "snapshot": False, "rate_limit": 1.0}
        | {"filters": {"symbols": ["AAPL"]}}
    )
    assert c.received()[0]["type"] == "subscription_confirmed"
    c.publish(quote("AAPL", bid=1.0))  # seq 1: sent
    c.publish(quote("AAPL", bid=2.0))  # seq 2: held by the rate limit
    c.send(
        {"type": "update_subscription", "subscription_id": "sub-1"}
        | {"filters": {"symbols": ["AAPL", "MSFT"]}}
    )
    deferred.step()
    c.publish(quote("AAPL", bid=3.0))  # seq 3, while the new keys' snapshot is read
    deferred.finish()
    data = [m for m in c.received(timers=True) if "seq" in m]
    assert [m["seq"] for m in data] == [1, 2, 3]
    assert data[-1]["data"]["bid_price"] == 3.0


def test_unknown_ids_in_a_bulk_unsubscribe_are_named_within_bounds(client: Client) -> None:
    ids = [f"n{n}" for n in range(120)]
    reply = client.request({"type": "unsubscribe", "subscription_ids": ["s1", *ids]})
    assert reply["error_code"] == "not_found"
    assert len(reply["details"]["subscription_ids"]) == 100
    assert len(reply["error_message"]) < 300
    assert set(client.connection.subscriptions) == {"s1", "s2"}


def test_event_types_cannot_resume_with_since(client: Client) -> None:
    reply = client.request(
        {"type": "subscribe", "event_types": ["trade_executed", "order_status"]}
        | {"since": {"epoch": "e", "seq": 1}}
    )
    assert (reply["type"], reply["error_code"]) == ("subscription_error", "invalid_message")


def test_a_topic_suffix_problem_is_a_subscription_error(client: Client) -> None:
    reply = client.request(
        {"type": "subscribe", "topic": "engine_status.N1", "subscription_id": "e1"}
    )
    assert reply["type"] == "subscription_error"
    assert (reply["subscription_id"], reply["error_code"]) == ("e1", "invalid_filter")


# ------------------------------------------------------------------ setup: bound and failures


def test_setup_buffer_past_its_bound_closes_with_4008_and_frees_it() -> None:
    """Live messages that outrun a replay past `max_setup_buffer` are not kept without
    bound: the buffer is freed and the client sent to recover (4008), never a silent gap."""
    deferred = Deferred()
    c = Client(spawn=deferred, broker=SuspendingBroker)
    c.hub.max_setup_buffer = 3
    c.publish(order("PF-1"))
    c.send(
        {
            "type": "subscribe",
            "stream": "order_updates",
            "subscription_id": "s1",
            "since": c.position("order_updates", 0),
        }
    )
    deferred.step()  # the replay is fetched; the subscription buffers what comes meanwhile
    subscription = c.connection.subscriptions["s1"]
    for _ in range(3):
        c.publish(order("PF-1"))
    assert subscription.buffer is not None and len(subscription.buffer) == 3
    assert c.transport.closes == []
    for _ in range(5):
        c.publish(order("PF-1"))
    assert [code for code, _ in c.transport.closes] == [4008]
    assert subscription.buffer == []
    assert c.hub.counters.setup_buffer_overflows == 1
    deferred.finish()
    assert c.received() == [], "nothing delivered after the close: no partial replay"


def test_setup_buffer_within_its_bound_is_delivered_in_order() -> None:
    deferred = Deferred()
    c = Client(spawn=deferred, broker=SuspendingBroker)
    c.hub.max_setup_buffer = 3
    c.publish(order("PF-1"))
    c.send(
        {
            "type": "subscribe",
            "stream": "order_updates",
            "subscription_id": "s1",
            "since": c.position("order_updates", 0),
        }
    )
    deferred.step()
    for _ in range(3):
        c.publish(order("PF-1"))
    deferred.finish()
    replies = c.received()
    assert replies[0]["type"] == "subscription_confirmed"
    assert [r["seq"] for r in replies[1:]] == [1, 2, 3, 4]
    assert c.transport.closes == []


def test_a_failed_delivery_of_the_setup_closes_with_1011() -> None:
    """Confirmed and partly sent: the client must reconnect and recover, not go on with a
    gap or a gate that never opens."""
    c = Client()
    c.publish(quote("AAPL"))

    def broken(subscription: object, message: object) -> None:
        raise RuntimeError("a bug while delivering")

    c.hub.deliver = broken  # type: ignore[method-assign]
    c.send({"type": "subscribe", "stream": "market_data", "message_id": REQ})
    assert [code for code, _ in c.transport.closes] == [1011]
    assert c.received()[0]["type"] == "subscription_confirmed"


def test_heartbeat_leaves_out_streams_still_settling() -> None:
    """While an update's new keys (or a setup) are being fetched, the stream's position is
    ahead of what the subscription was sent: a client must not resume from it."""
    deferred = Deferred()
    c = Client(spawn=deferred, broker=LateSnapshotBroker)
    c.publish(quote("AAPL"))
    c.send({"type": "subscribe", "stream": "market_data", "subscription_id": "q"})
    deferred.step()
    settling = c.request({"type": "heartbeat", "client_timestamp": 1})
    assert settling["positions"] == {}
    deferred.finish()
    c.received()
    settled = c.request({"type": "heartbeat", "client_timestamp": 2})
    assert settled["positions"]["market_data"]["seq"] == 1


def test_a_query_the_broker_cannot_answer_is_unavailable_and_counted_out() -> None:
    c = Client(broker=DownBroker)
    first = c.request({"type": "get_snapshot", "stream": "market_data", "message_id": "q1"})
    assert (first["error_code"], first["retryable"]) == ("unavailable", True)
    again = c.request({"type": "get_snapshot", "stream": "market_data", "message_id": "q2"})
    assert again["error_code"] == "unavailable"  # not rate_limited: the first was counted out


def test_trade_history_looks_back_at_most_ten_times_its_limit() -> None:
    c = Client()
    c.publish(trade("PF-1", n=1))
    for n in range(2, 12):  # ten newer trades of another portfolio
        c.publish(trade("PF-2", n=n))
    request = {"type": "get_trade_history", "filters": {"portfolio_ids": ["PF-1"]}}
    assert c.request({**request, "limit": 1})["trades"] == []  # 10 x 1 looked at
    found = c.request({**request, "limit": 2})["trades"]  # 20 looked at
    assert [m["data"]["trade_id"] for m in found] == ["T-1"]


def test_trade_history_never_looks_past_the_newest_2000() -> None:
    c = Client()
    c.publish(trade("PF-1", n=1))
    for n in range(2, 2002):  # 2,000 newer trades of another portfolio
        c.publish(trade("PF-2", n=n))
    reply = c.request(
        {"type": "get_trade_history", "filters": {"portfolio_ids": ["PF-1"]}, "limit": 1000}
    )
    assert reply["trades"] == []  # 10 x 1000 would reach it; the cap is 2,000


# ------------------------------------------------------------------ replays in pages


class SmallHistoryBroker(MemoryBroker):
    """Keeps 300 order updates of history."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(history_limits={"order_updates": HistoryLimit(300)}, clock=clock)


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(recovery, "REPLAY_PAGE", 100)
    return 100


def test_a_long_replay_is_read_a_page_at_a_time_as_the_client_takes_it(small_pages: int) -> None:
    deferred = Deferred()
    c = Client(spawn=deferred)
    for n in range(250):
        c.publish(order("PF-1", n))
    c.send(
        {"type": "subscribe", "stream": "order_updates", "since": c.position("order_updates", 0)}
    )
    deferred.finish()  # the first page, confirmed at the head (seq 250)
    confirmed, *first = c.received()
    assert (confirmed["recovered"], confirmed["position"]["seq"]) == (True, 250)
    assert [m["seq"] for m in first] == list(range(1, 101))
    assert len(deferred.coroutines) == 1, "the next page is read only now"
    c.publish(order("PF-1", 250))  # live meanwhile: after the replay, once
    deferred.finish()
    assert [m["seq"] for m in c.received()] == list(range(101, 201))
    deferred.finish()
    assert [m["seq"] for m in c.received()] == [*range(201, 251), 251]
    assert deferred.coroutines == []
    c.publish(order("PF-1", 251))
    assert [m["seq"] for m in c.received()] == [252], "live from now on"


def test_a_replay_whose_rest_was_trimmed_meanwhile_closes_with_1012(small_pages: int) -> None:
    """Confirmed as recovered, partly sent: the client resubscribes from what it got and
    is told `recovered: false`, never left with a hole."""
    deferred = Deferred()
    c = Client(spawn=deferred, broker=SmallHistoryBroker)
    for n in range(250):
        c.publish(order("PF-1", n))
    c.send(
        {"type": "subscribe", "stream": "order_updates", "since": c.position("order_updates", 0)}
    )
    deferred.finish()
    assert len(c.received()) == 101
    c.hub.max_setup_buffer = 1_000
    for n in range(250, 600):  # history now starts at seq 301: seq 101.. are gone
        c.publish(order("PF-1", n))
    deferred.finish()
    assert [code for code, _ in c.transport.closes] == [1012]
    assert c.received() == [], "nothing after the hole"
    assert len(c.hub.feeds) == 0


def test_a_rate_limited_subscribe_sends_its_setup_buffer_through_the_limit() -> None:
    """Live messages buffered while a multi-chunk snapshot goes out are sent through the
    subscription's rate limit (the newest per key once a second), not all at once."""
    c = Client()
    c.hub.feeds.chunk_bytes = 4096
    for i in range(300):  # a snapshot of several chunks
        c.publish(quote(f"S{i:04d}", bid=1.0))
    c.send({"type": "subscribe", "stream": "market_data", "subscription_id": "q", "rate_limit": 1})
    assert c.connection.subscriptions["q"].buffer is not None, "its feed is still running"
    for n in range(2, 22):  # live meanwhile: buffered, fed after the snapshot
        c.publish(quote("AAPL", bid=float(n)))
    out = c.received(timers=False)
    aapl = [m["data"]["bid_price"] for m in out if m.get("symbol") == "AAPL"]
    assert len(aapl) <= 1, aapl
    later = c.received()  # the rate limit's release: the newest AAPL
    assert [m["data"]["bid_price"] for m in later if m.get("symbol") == "AAPL"] == [21.0]
