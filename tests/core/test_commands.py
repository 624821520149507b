"""CommandHandler of core/commands.py fed raw frames, without sockets or an event loop.

Each test drives one connection (a recording FakeTransport) through `on_frame` and reads the
frames the hub writes back. Replies are checked against PROTOCOL.md sections 3 and 6.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tidewire.brokers.memory import MemoryBroker
from tidewire.core.auth import ROLE_SUBSCRIBER, AnonymousAuthenticator
from tidewire.core.commands import CommandHandler, CommandLimits
from tidewire.core.connection import Connection
from tidewire.core.hub import Hub
from tidewire.core.ratelimit import TokenBucket
from tidewire.protocol.codec import WireFormat
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import now_iso

# ------------------------------------------------------------------ fakes


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeScheduler:
    def __init__(self) -> None:
        self.soon: list[Callable[[], object]] = []
        self.later: list[Callable[[], object]] = []

    def call_soon(self, callback: Callable[[], object]) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        self.later.append(callback)

    def run(self) -> None:
        while self.soon or self.later:
            ready, self.soon, self.later = [*self.soon, *self.later], [], []
            for callback in ready:
                callback()


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closes: list[tuple[int, str]] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def write_buffer_size(self) -> int:
        return 0

    def ping(self) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        first, second = data[i], data[i + 1]
        length = second & 0x7F
        i += 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        frames.append((first & 0x0F, data[i : i + length]))
        i += length
    return frames


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
    ) -> None:
        self.clock = FakeClock(500.0)
        self.scheduler = FakeScheduler()
        self.hub = Hub(self.scheduler, max_outbox_bytes=1 << 20, clock=self.clock)
        self.broker = MemoryBroker(clock=self.clock)
        self.broker.set_consumer(self.hub.dispatch)
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
        )
        self.transport = FakeTransport()
        self.fmt = fmt
        self.connection = Connection(
            connection_id="c1",
            transport=self.transport,
            wire_format=fmt,
            principal=authenticator.authenticate(None),
            inbound=TokenBucket(inbound_rate, inbound_burst, self.clock()),
            now=self.clock(),
            connected_at=now_iso(),
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

    def received(self) -> list[dict[str, Any]]:
        """Messages written since the last call."""
        self.scheduler.run()
        out: list[dict[str, Any]] = []
        for write in self.transport.writes[self._read :]:
            for opcode, payload in parse_frames(write):
                out.append(
                    msgspec.msgpack.decode(payload) if opcode == 0x2 else json.loads(payload)
                )
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


def quote(symbol: str) -> dict[str, Any]:
    return {"type": "market_data", "symbol": symbol, "data": {"bid": 1.0, "ask": 1.1}}


def order(portfolio: str) -> dict[str, Any]:
    data = {
        "order_id": "o1",
        "symbol": "AAPL",
        "side": "buy",
        "order_type": "limit",
        "quantity": 10,
        "filled_quantity": 0,
        "status": "open",
    }
    return {"type": "order_update", "portfolio_id": portfolio, "data": data}


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
        "error",
        "invalid_message",
        REQ,
        id="invalid_message-subscribe-without-stream",
    ),
    pytest.param(
        {"type": "heartbeat", "message_id": REQ, "client_timestamp": "yesterday"},
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
        {**SUBSCRIBE, "stream": "market_data", "filters": {"symbols": []}},
        None,
        "subscription_error",
        "invalid_filter",
        REQ,
        id="invalid_filter-empty-list",
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


def test_subscribe_confirms_with_position_then_delivers() -> None:
    c = Client()
    c.publish(quote("AAPL"))
    c.publish(quote("MSFT"))
    reply = c.subscribe("market_data", message_id=REQ, filters={"symbols": ["AAPL"]})
    position = c.broker.position("market_data")
    assert reply["correlation_id"] == REQ
    assert reply["subscription_id"] == "sub-1"
    assert reply["stream"] == "market_data"
    assert reply["filters"] == {"symbols": ["AAPL"]}
    assert reply["position"] == {"epoch": position.epoch, "seq": 2}
    c.publish(quote("MSFT"))
    c.publish(quote("AAPL"))
    data = c.received()
    assert [(m["symbol"], m["seq"]) for m in data] == [("AAPL", 4)]


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
    client.publish(
        {
            "type": "risk_alert",
            "portfolio_id": "PF-1",
            "severity": "high",
            "data": {"metric": "var", "current_value": 2, "threshold": 1, "timestamp": now_iso()},
        }
    )
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


async def test_publish_with_the_publisher_role_is_acked_once() -> None:
    c = Client(roles=frozenset({ROLE_SUBSCRIBER, "publisher"}))
    c.subscribe("market_data")
    message = {**quote("AAPL"), "message_id": "p-1"}
    c.send({"type": "publish", "message_id": REQ, "message": message})
    await next(iter(c.handler._tasks))
    replies = c.received()
    assert [r["type"] for r in replies] == ["ack", "market_data"]
    ack = replies[0]
    assert ack["correlation_id"] == REQ
    assert ack["ack_message_id"] == "p-1"
    assert ack["seq"] == 1
    assert ack["status"] == "accepted"
    c.send({"type": "publish", "message_id": "req-2", "message": message})
    await next(iter(c.handler._tasks))
    replies = c.received()
    assert [r["type"] for r in replies] == ["ack"], "a duplicate is delivered to no one"
    assert replies[0]["seq"] == 1
    assert replies[0]["duplicate"] is True
    assert replies[0]["status"] == "duplicate"
