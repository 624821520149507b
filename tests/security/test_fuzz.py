"""Fuzzing what strangers send: inbound frames, producer messages, REST publish bodies.

(a) `CommandHandler.on_frame` on the core fakes (tests/fakes.py) with arbitrary bytes and
    arbitrary JSON-ish values, as text and binary frames, on JSON and msgpack connections,
    for an anonymous (auth off), an authenticated and a not-yet-authenticated connection:
    it never raises, answers every frame within the protocol's rules, keeps the connection
    open (floods aside) and never touches another connection.
(b) `build_data_message` on arbitrary JSON returns a DataMessage or raises ProtocolError,
    and what it returns every wire format can encode; and the real POST /api/publish never
    answers 5xx and publishes all of a request or nothing.

Each found bug also has a plain test with the smallest input that shows it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from fakes import FakeClock, FakeScheduler, connection, decode_writes, run_to_completion, transport
from messages import engine_status, order, position, quote, risk_alert, system_alert
from support import TIMEOUT, WsClient
from tidewire.brokers.base import Handlers
from tidewire.brokers.memory import MemoryBroker
from tidewire.core.auth import UNAUTHENTICATED, AnonymousAuthenticator, Principal
from tidewire.core.commands import CommandHandler, CommandLimits
from tidewire.core.connection import Connection
from tidewire.core.hub import Hub
from tidewire.core.quotas import PublishRates
from tidewire.protocol.codec import ENCODE, WireFormat, decode_object
from tidewire.protocol.errors import CloseCode, ErrorCode, ProtocolError
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.streams import STREAMS
from tidewire.security.tokens import JwtAuthenticator
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings
from tokens import SECURE, token

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]

FUZZ = settings(
    deadline=None,
    max_examples=250,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MAX_MESSAGE_BYTES = 2048
MAX_SUBSCRIPTIONS = 4
ERROR_CODES = frozenset(code.value for code in ErrorCode)
REPLY_TYPES = frozenset(
    {
        "error",
        "subscription_error",
        "subscription_confirmed",
        "unsubscription_confirmed",
        "subscriptions",
        "heartbeat_response",
        "pong",
        "auth_ok",
        "ack",
        "snapshot",
        "trade_history",
        "sync_response",
    }
)
PRE_AUTH_ERRORS = frozenset(
    {"unauthorized", "invalid_json", "invalid_message", "unknown_type", "unsupported_version"}
    | {"message_too_large"}
)

JWT = JwtAuthenticator(GatewaySettings(**SECURE))
ANONYMOUS = AnonymousAuthenticator(frozenset({"subscriber", "publisher"}))
VICTIM_TOKEN = token("victim", portfolios=["PF-1"], roles=["subscriber", "publisher"])
VICTIM = JWT.authenticate(VICTIM_TOKEN)
BYSTANDER = JWT.authenticate(token("bystander", portfolios=["*"], roles=["subscriber"]))
TOKENS = [
    VICTIM_TOKEN,
    token("victim", portfolios=[], roles=["subscriber"]),
    token("victim", portfolios=["*"], roles=["admin"]),
    token("bystander"),
    token("victim", ttl=-60),
    token("victim", key="not-the-gateways-secret-but-32-bytes-long"),
    "not-a-jwt",
    "",
]


# ------------------------------------------------------------------ strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
names = st.sampled_from(
    [*STREAMS, "trade_update", "orders", "nope", "", "market_data.AAPL", "engine_status.E1"]
)
ids = st.sampled_from(["s1", "s2", "sub-1", "", "x" * 200]) | json_values
portfolio_lists = st.lists(st.sampled_from(["PF-1", "PF-2", "*", ""]), max_size=3)
filters = (
    st.fixed_dictionaries(
        {},
        optional={
            "symbols": st.lists(st.sampled_from(["AAPL", "MSFT", ""]), max_size=12) | json_values,
            "portfolio_ids": portfolio_lists | json_values,
            "strategy_ids": st.lists(st.text(max_size=3), max_size=3),
            "user_id": st.sampled_from(["victim", "bystander", ""]) | json_values,
            "severity": st.sampled_from(["low", "high", "critical", "loud"]) | json_values,
            "min_price": st.floats() | json_values,
            "max_price": st.floats(allow_nan=False),
            "venue": st.text(max_size=4),
            "unknown": json_values,
        },
    )
    | json_values
)
DATA = [
    quote("AAPL")["data"],
    order("PF-1")["data"],
    position("PF-1", "AAPL", 1.0)["data"],
    risk_alert("PF-1")["data"],
    system_alert()["data"],
    engine_status("E1", "running")["data"],
]
PRODUCER_TYPES = (
    *("market_data", "order_update", "position_update", "risk_alert", "system_alert"),
    *("engine_status", "event", "nope"),
)
COMMAND_TYPES = (
    *("subscribe", "unsubscribe", "list_subscriptions", "heartbeat", "auth", "refresh"),
    *("publish", "ping", "nope", "batch"),
    # the original hooks' commands
    *("update_subscription", "update_filters", "get_snapshot", "get_trade_history", "sync"),
    *("subscribe_order_book", "unsubscribe_order_book"),
)
producer_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(PRODUCER_TYPES) | json_values},
    optional={
        "symbol": st.sampled_from(["AAPL", ""]) | json_values,
        "portfolio_id": st.sampled_from(["PF-1", "PF-2"]) | json_values,
        "engine_id": st.just("E1"),
        "severity": st.sampled_from(["high", "warn", "x"]),
        "risk_type": st.just("exposure"),
        "data": st.sampled_from(DATA) | json_values,
        "message_id": st.text(max_size=6) | json_values,
        "priority": st.integers(-1, 6) | json_values,
        "stream": names | json_values,
        "source": st.sampled_from(["operator", "api", ""]),
        "broadcast": st.booleans(),
        "user_id": st.sampled_from(["victim", "bystander"]),
    },
)
valid_messages = st.sampled_from(
    [
        quote("AAPL"),
        quote("MSFT", bid=2.0),
        order("PF-1"),
        position("PF-2", "AAPL", 3.0),
        risk_alert("PF-1"),
        system_alert(),
        engine_status("E1", "running"),
    ]
)
commands = st.fixed_dictionaries(
    {"type": st.sampled_from(COMMAND_TYPES)},
    optional={
        "stream": names | json_values,
        "filters": filters,
        "subscription_id": ids,
        "subscription_ids": st.lists(ids, max_size=3) | json_values,
        "message_id": st.sampled_from(["m1", "m2", ""]) | json_values,
        "since": st.fixed_dictionaries({"epoch": st.text(max_size=3), "seq": st.integers(-5, 5)})
        | json_values,
        "snapshot": st.booleans() | json_values,
        "rate_limit": st.floats() | json_values,
        "token": st.sampled_from(TOKENS) | json_values,
        "message": valid_messages | producer_messages | json_values,
        "version": st.sampled_from(["1.0", "2.0", "3.0", "9.9", 3]) | json_values,
        "client_timestamp": st.floats() | json_values,
        "priority": json_values,
        "data": filters,
        "topic": names | json_values,
        "event_types": st.lists(
            st.sampled_from(["trade_executed", "order_status", "pnl_update", "nope"]), max_size=4
        )
        | json_values,
        "limit": st.integers(-2, 2000) | json_values,
    },
)
legacy = st.fixed_dictionaries(
    {"action": st.sampled_from(["subscribe", "unsubscribe", "ping", "publish"]) | json_values},
    optional={
        "message_type": names,
        "topic": names,
        "channel": names,
        "symbols": json_values,
        "portfolio_ids": portfolio_lists,
        "data": filters,
        "subscription_id": ids,
    },
)
values = commands | legacy | json_values


def encode(value: Any, binary: bool) -> bytes:
    return msgspec.msgpack.encode(value) if binary else json.dumps(value).encode()


FRAME_KINDS = ["native"] * 6 + ["other", "bytes", "bytes-as-text", "big", "mutated", "deep"]


@st.composite
def frames(draw: st.DrawFn, fmt: WireFormat, kinds: list[str] = FRAME_KINDS) -> tuple[bytes, bool]:
    """(payload, binary): mostly the connection's own encoding, sometimes the other one,
    raw bytes, a few bytes changed, deep nesting, or past max_message_bytes."""
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(st.binary(max_size=200)), fmt.binary
    if kind == "bytes-as-text":
        return draw(st.binary(max_size=200)), not fmt.binary
    if kind == "deep":  # nesting within max_message_bytes, around the decoder's limit
        depth = draw(st.integers(500, 1500))
        if fmt.binary:
            return b"\x91" * depth + b"\xc0", True
        return b"[" * depth + b"]" * draw(st.sampled_from([0, depth])), False
    value = draw(values)
    if kind == "big" and isinstance(value, dict):
        value = {**value, "padding": "x" * MAX_MESSAGE_BYTES}
    binary = fmt.binary if kind != "other" else not fmt.binary
    payload = encode(value, binary)
    if kind == "mutated" and payload:  # a few bytes changed: broken strings, lengths, tags
        mutable = bytearray(payload)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(mutable) - 1))
            mutable[at] = draw(
                st.sampled_from([0x80, 0xBF, 0xC0, 0xED, 0xFF]) | st.integers(0, 255)
            )
        payload = bytes(mutable)
    return payload, binary


# ------------------------------------------------------------------ the harness


class Harness:
    """One hub + MemoryBroker + CommandHandler; the fuzzed `victim` connection and a
    `bystander` with subscriptions, whose state must never change."""

    def __init__(
        self,
        mode: str,
        fmt: WireFormat,
        burst: int = 10_000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.mode = mode
        self.clock = FakeClock(1000.0)
        self.scheduler = FakeScheduler(self.clock)
        self.hub = Hub(self.scheduler, 1 << 22, clock=self.clock)
        self.broker = MemoryBroker(clock=self.clock)
        self.broker.attach(Handlers(message=self.hub.dispatch))
        authenticator = ANONYMOUS if mode == "anonymous" else JWT
        self.handler = CommandHandler(
            self.hub,
            self.broker,
            authenticator,
            CommandLimits(
                max_subscriptions=MAX_SUBSCRIPTIONS,
                max_message_bytes=max_message_bytes,
                max_filter_values=8,
                max_subscriptions_per_user=6,
                max_connections_per_user=5,
            ),
            self.clock,
            spawn=run_to_completion,
            publish_rates=PublishRates(1e6, 10**6),
        )
        principal: Principal = {
            "anonymous": ANONYMOUS.principal,
            "authenticated": VICTIM,
            "unauthenticated": UNAUTHENTICATED,
        }[mode]
        self.victim = connection(
            fmt=fmt,
            principal=principal,
            inbound_rate=1.0,
            inbound_burst=burst,
            now=self.clock(),
            connection_id="victim",
        )
        self.bystander = connection(
            principal=ANONYMOUS.principal if mode == "anonymous" else BYSTANDER,
            now=self.clock(),
            connection_id="bystander",
        )
        self.hub.add_connection(self.bystander)
        self.hub.add_connection(self.victim)
        for stream in ("market_data", "order_updates", "events"):
            request = {"type": "subscribe", "stream": stream, "subscription_id": stream}
            self.handler.on_frame(self.bystander, json.dumps(request).encode(), False)
        self.scheduler.run()
        self.bystander_state = self._bystander_state()
        self._read = {"victim": 0, "bystander": len(transport(self.bystander).writes)}

    def _bystander_state(self) -> Any:
        b = self.bystander
        return (sorted(b.subscriptions), b.principal, b.closed, transport(b).closes)

    def new_writes(self, conn: Connection) -> list[Any]:
        writes = transport(conn).writes
        start = self._read[conn.connection_id]
        self._read[conn.connection_id] = len(writes)
        return decode_writes(writes[start:])

    def feed(self, payload: bytes, binary: bool) -> list[Any]:
        """One frame; must not raise. Returns what the victim got for it."""
        self.handler.on_frame(self.victim, payload, binary)
        self.scheduler.run()
        replies = self.new_writes(self.victim)
        if self.victim.closed and self.victim.connection_id in self.hub.connections:
            self.hub.remove_connection(self.victim)  # what the data plane does on disconnect
        return replies

    def check_invariants(self) -> None:
        # The bystander only ever receives data messages, and keeps its state.
        for message in self.new_writes(self.bystander):
            assert is_data(message), message
        assert self._bystander_state() == self.bystander_state
        # The hub's index and the quotas agree with the connections' subscriptions.
        live = [c for c in (self.victim, self.bystander) if c.connection_id in self.hub.connections]
        for stream in STREAMS:
            held = sum(1 for c in live for s in c.subscriptions.values() if s.spec.name == stream)
            assert self.hub.subscriber_count(stream) == held, stream
        user = self.victim.user_id
        if user is not None:
            # The victim may present the bystander's own token: count every connection of
            # that user.
            held_by_user = sum(len(c.subscriptions) for c in live if c.user_id == user)
            assert self.hub.ledger.subscription_count(user) == held_by_user
        assert len(self.victim.subscriptions) <= MAX_SUBSCRIPTIONS


def is_data(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("type") not in REPLY_TYPES
        and "stream" in message
        and "seq" in message
    )


def expected_correlation(payload: bytes, binary: bool, fmt: WireFormat) -> str | None:
    if len(payload) > MAX_MESSAGE_BYTES:
        return None
    try:
        raw = decode_object(payload, binary, fmt)
    except ProtocolError:
        return None
    message_id = raw.get("message_id")
    return message_id if isinstance(message_id, str) else None


def check_answer(
    h: Harness, replies: list[Any], payload: bytes, binary: bool, was_authenticated: bool
) -> None:
    """The rules every answer follows (docs/protocol.md: commands, replies and errors)."""
    answers = [r for r in replies if not is_data(r)]
    if h.victim.closed:
        # Only a failed first `auth` (4001) or the user's connection quota (4009) closes.
        assert not was_authenticated, transport(h.victim).closes
        assert [code for code, _ in transport(h.victim).closes] in ([4001], [4009])
        assert not [r for r in replies if is_data(r)]
        return
    assert transport(h.victim).closes == []
    assert answers, f"no answer to {payload[:120]!r}"
    for reply in answers:
        assert isinstance(reply, dict) and reply.get("type") in REPLY_TYPES, reply
        if reply["type"] in ("error", "subscription_error"):
            assert reply["error_code"] in ERROR_CODES, reply
            assert reply["error_code"] != "internal_error", reply
            assert isinstance(reply["error_message"], str) and reply["error_message"]
            assert isinstance(reply["retryable"], bool)
    first = answers[0]
    assert first.get("correlation_id") == expected_correlation(
        payload, binary, h.victim.wire_format
    )
    # More than one answer only after a refresh that ended subscriptions.
    for extra in answers[1:]:
        assert first["type"] == "auth_ok", answers
        assert extra["type"] == "subscription_error" and extra.get("correlation_id") is None
        assert extra["error_code"] == "forbidden"
    if not was_authenticated:
        assert first["type"] in ("error", "pong", "auth_ok"), first
        if first["type"] == "error":
            assert first["error_code"] in PRE_AUTH_ERRORS, first
        assert not [r for r in replies if is_data(r)]


MODES = ["anonymous", "authenticated", "unauthenticated"]
FORMATS = list(WireFormat)


@pytest.mark.parametrize("mode", MODES)
@FUZZ
@given(data=st.data())
def test_any_frame_gets_a_rule_abiding_answer(mode: str, data: Any) -> None:
    fmt = data.draw(st.sampled_from(FORMATS), label="wire format")
    h = Harness(mode, fmt)
    for _ in range(data.draw(st.integers(1, 4), label="frames")):
        payload, binary = data.draw(frames(fmt), label="frame")
        authenticated = h.victim.principal.authenticated or h.victim.principal.open_access
        subscriptions_before = set(h.victim.subscriptions)
        replies = h.feed(payload, binary)
        check_answer(h, replies, payload, binary, authenticated)
        if not authenticated:
            assert set(h.victim.subscriptions) == subscriptions_before == set()
        h.check_invariants()
        if h.victim.closed:
            break


@settings(FUZZ, max_examples=100)
@given(
    burst=st.integers(1, 3),
    payloads=st.lists(frames(WireFormat.JSON, ["native", "other", "big"]), min_size=4, max_size=6),
)
def test_a_flood_closes_with_4029_whatever_the_frames(
    burst: int, payloads: list[tuple[bytes, bool]]
) -> None:
    h = Harness("authenticated", WireFormat.JSON, burst=burst)
    for n, (payload, binary) in enumerate(payloads):
        replies = h.feed(payload, binary)
        if n < burst:
            assert not h.victim.closed and [r for r in replies if not is_data(r)]
        else:
            assert transport(h.victim).closes == [
                (CloseCode.INBOUND_RATE_EXCEEDED, "inbound rate exceeded")
            ]
            assert [r for r in replies if not is_data(r)] == []
            break
    h.check_invariants()


DEEP = {
    "json-array": (b"[" * 5000, False),
    "json-object": (b'{"a":' * 5000, False),
    "json-balanced": (b"[" * 1500 + b"]" * 1500, False),
    "msgpack-array": (b"\x91" * 5000, True),
    "msgpack-map": (b"\x81\xa1a" * 5000, True),
}
BAD_UTF8 = {
    "json-string": (b'"\x80"', False),
    "json-key": (b'{"type\xff": "ping"}', False),
    "json-surrogate": (b'{"type": "ping", "x": "\xed\xa0\x80"}', False),
    "msgpack-string": (b"\xa5\x00\x00\x00\x00\x80", True),
    "msgpack-key": (b"\x81\xa1\x80\x01", True),
}
GATEWAY_MAX_MESSAGE_BYTES = GatewaySettings().max_message_bytes


@pytest.mark.parametrize(
    ("payload", "binary"), [*DEEP.values(), *BAD_UTF8.values()], ids=[*DEEP, *BAD_UTF8]
)
def test_undecodable_frame_is_answered_not_fatal(payload: bytes, binary: bool) -> None:
    """Frames within max_message_bytes that the decoder cannot read (nesting deeper than
    its recursion limit, invalid UTF-8) get an error reply like any bad JSON; an exception
    out of on_frame ends the connection with 1011 and logs a traceback."""
    assert len(payload) <= GATEWAY_MAX_MESSAGE_BYTES
    fmt = WireFormat.MSGPACK if binary else WireFormat.JSON
    for mode in MODES:
        h = Harness(mode, fmt, max_message_bytes=GATEWAY_MAX_MESSAGE_BYTES)
        replies = h.feed(payload, binary)
        assert [r["type"] for r in replies] == ["error"]
        assert replies[0]["error_code"] in ("invalid_json", "invalid_message")
        assert not h.victim.closed


@pytest.mark.parametrize(
    ("payload", "binary"),
    [
        DEEP["json-array"],
        BAD_UTF8["json-string"],
        DEEP["msgpack-array"],
        BAD_UTF8["msgpack-string"],
    ],
    ids=["json-deep", "json-utf8", "msgpack-deep", "msgpack-utf8"],
)
async def test_undecodable_frame_does_not_kill_the_connection(
    payload: bytes, binary: bool, make_gateway: MakeGateway
) -> None:
    """Even before authenticating: a stranger's few bytes must not end the connection with
    1011 (and log a traceback each time: a log flood for anyone who can connect). An error
    reply, or a 1007 close for a text frame that is not UTF-8, are both fine."""
    gateway = await make_gateway(**SECURE)
    protocol = "tidewire.v3.msgpack" if binary else "tidewire.v3.json"
    decode = msgspec.msgpack.decode if binary else json.loads
    async with ws_connect(gateway.url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
        decode(await asyncio.wait_for(ws.recv(), TIMEOUT))  # type: ignore[arg-type]  # connection_established
        await ws.send(payload, text=not binary)
        try:
            reply = decode(await asyncio.wait_for(ws.recv(), TIMEOUT))  # type: ignore[arg-type]
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            assert code == 1007 and not binary, f"closed with {code}"
            return
        assert reply["type"] == "error"
        assert reply["error_code"] in ("invalid_json", "invalid_message")
        await ws.send(encode({"type": "ping"}, binary), text=not binary)
        assert decode(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "pong"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000, b'{"a":' * 5000, b'{"type": "\x80"}', b'{"message": "\xff"}'],
    ids=["deep-array", "deep-object", "bad-utf8", "bad-utf8-broadcast"],
)
async def test_undecodable_rest_body_is_a_400(body: bytes, make_gateway: MakeGateway) -> None:
    gateway = await make_gateway()
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        for path in ("/api/publish", "/api/broadcast"):
            answer = await http.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
            assert answer.json()["error_code"] in ("invalid_json", "invalid_message")
    assert published(gateway) == 0


# ------------------------------------------------------------------ (b) producer messages


def check_built(raw: Any) -> DataMessage | None:
    try:
        message = build_data_message(raw)
    except ProtocolError as exc:
        assert exc.code in ErrorCode
        assert isinstance(exc.message, str) and exc.message
        return None
    assert isinstance(message, DataMessage)
    assert message.stream in STREAMS and message.key
    assert message.broadcast is False  # only the operator endpoint sets it
    assert message.seq == 0 and 1 <= message.priority <= 4
    for encode_as in ENCODE:  # the fan-out encodes it for every wire format in use
        encode_as(message)
    return message


@FUZZ
@given(raw=producer_messages | valid_messages | json_values)
def test_build_data_message_returns_a_message_or_raises_protocol_error(raw: Any) -> None:
    check_built(json.loads(json.dumps(raw)))


extension_values = st.builds(msgspec.msgpack.Ext, st.integers(0, 127), st.binary(max_size=8))


@FUZZ
@given(
    base=valid_messages,
    extra=st.dictionaries(
        st.sampled_from(["note", "x", "tags"]),
        scalars | st.binary(max_size=8) | extension_values,
        min_size=1,
        max_size=2,
    ),
)
def test_messages_published_over_msgpack_can_be_sent_to_json_clients(
    base: dict[str, Any], extra: dict[str, Any]
) -> None:
    """A msgpack frame can carry values JSON has no form for (extension types): a message
    built from one must be refused, or be encodable for every wire format."""
    raw = {**base, "data": {**base["data"], **extra}}
    frame = msgspec.msgpack.encode({"type": "publish", "message": raw})
    decoded = decode_object(frame, True, WireFormat.MSGPACK)
    check_built(decoded["message"])


async def test_msgpack_publish_cannot_poison_json_subscribers(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(anonymous_roles=["subscriber", "publisher"])
    reader = await connect(gateway)
    await reader.subscribe("market_data")
    async with ws_connect(gateway.url, subprotocols=["tidewire.v3.msgpack"]) as publisher:  # type: ignore[list-item]
        await asyncio.wait_for(publisher.recv(), TIMEOUT)  # connection_established
        poisoned = quote("EXT")
        poisoned["data"]["note"] = msgspec.msgpack.Ext(5, b"ab")
        await publisher.send(
            msgspec.msgpack.encode({"type": "publish", "message": poisoned, "message_id": "p"})
        )
        reply = msgspec.msgpack.decode(await asyncio.wait_for(publisher.recv(), 2))  # type: ignore[arg-type]
        assert reply["type"] in ("ack", "error"), reply
        assert reply.get("correlation_id") == "p"
    # Whatever the answer, JSON readers go on: live, and from a snapshot.
    late = await connect(gateway)
    assert (await late.subscribe("market_data"))["type"] == "subscription_confirmed"
    await gateway.publish(quote("AAPL"))
    for client in (reader, late):
        got = await client.data(1 if reply["type"] == "error" else 2, timeout=2)
        assert got[-1]["symbol"] == "AAPL"


# ------------------------------------------------------------------ (b) the real REST endpoint


@pytest.fixture
async def rest_gateway(
    make_gateway: MakeGateway,
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gateway = await make_gateway()
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        yield gateway, http


def published(gateway: Gateway) -> int:
    return sum(gateway.broker.position(stream).seq for stream in STREAMS)


rest_items = valid_messages | producer_messages | json_values
rest_bodies = (
    st.lists(rest_items, min_size=1, max_size=4).map(json.dumps)
    | rest_items.map(json.dumps)
    | st.lists(valid_messages, min_size=1, max_size=3).map(json.dumps)
    | st.binary(max_size=100).map(lambda b: b.decode("latin-1"))
)


@settings(
    deadline=None,
    max_examples=150,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=rest_bodies)
async def test_rest_publish_is_never_a_5xx_and_all_or_nothing(
    rest_gateway: tuple[Gateway, httpx.AsyncClient], body: str
) -> None:
    gateway, http = rest_gateway
    before = published(gateway)
    answer = await http.post(
        "/api/publish",
        content=body.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.status_code == 200:
        result = answer.json()
        assert published(gateway) == before + result["accepted"]
        assert len(result["results"]) >= result["accepted"]
    else:
        assert 400 <= answer.status_code < 500
        error = answer.json()
        assert set(error) <= {"error_code", "error_message", "details"}
        assert error["error_code"] in ERROR_CODES
        assert published(gateway) == before, "a refused request published something"
