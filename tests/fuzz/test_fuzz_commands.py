"""Seeded, time-budgeted mutation fuzz of the command decoder (protocol/codec.py) and of
`CommandHandler.on_frame` (core/commands.py).

Every iteration takes a valid command of docs/protocol.md (subscribe with filters, since,
topic or event_types, unsubscribe, update_subscription, list_subscriptions, get_snapshot,
get_trade_history, sync, heartbeat, publish, auth, refresh, ping, the order-book commands,
the original `action` dialect) and mutates it: fields dropped, duplicated (a JSON object with
the same key twice), retyped, renamed; huge and negative numbers (negative `seq`, 2**64,
1e308, NaN); deep nesting; unicode (surrogates, NUL, right-to-left marks); big lists; msgpack
maps with non-string keys, bin and ext values; bytes of the encoding flipped or cut; the
frame kind the subprotocol does not use. JSON goes in text frames, msgpack in binary ones.

(1) pure: `on_frame` on the core fakes (tests/fakes.py), authentication off (with the
    publisher role) and on (a connection that must send `auth` first); many iterations.
(2) live: the same mutations through a real gateway, over WebSocket, on a JSON and a
    msgpack connection.

Both check: nothing raises and nothing is logged at ERROR (a traceback); every answer is a
reply of the protocol, a refusal is `error` / `subscription_error` with an `ErrorCode` of
protocol/errors.py (never `internal_error`); a connection is closed only with a documented
code (never 1011); and where it was not closed it still answers a `ping` afterwards.

The loop runs until its time budget is spent (time is a budget, never an assertion); the
inputs of iteration `n` depend only on the seed and `n`, so any failure names both.

    TIDEWIRE_FUZZ_SECONDS   seconds per file (default 30: 1/3 pure, 2/3 live)
    TIDEWIRE_FUZZ_SEED      the seed (default fixed, so CI is reproducible)
    TIDEWIRE_FUZZ_ITERATION replay only this iteration (with the seed of the failure)

Replay a failure:  TIDEWIRE_FUZZ_SEED=<seed> TIDEWIRE_FUZZ_ITERATION=<n> \\
                       .venv/bin/pytest -q -p no:cacheprovider tests/fuzz/test_fuzz_commands.py
An hour (both files, 1800 s each):  make fuzz   (TIDEWIRE_FUZZ_SECONDS=... to change it)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from fakes import FakeClock, FakeScheduler, connection, decode_writes, run_to_completion, transport
from messages import order, quote
from support import TIMEOUT
from tidewire.brokers.base import Handlers
from tidewire.brokers.memory import MemoryBroker
from tidewire.core.auth import UNAUTHENTICATED, AnonymousAuthenticator, Authenticator
from tidewire.core.commands import CommandHandler, CommandLimits
from tidewire.core.connection import Connection
from tidewire.core.hub import Hub
from tidewire.core.quotas import PublishRates
from tidewire.protocol.codec import WireFormat
from tidewire.protocol.errors import CloseCode, ErrorCode
from tidewire.protocol.streams import STREAMS
from tidewire.security.tokens import JwtAuthenticator
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings
from tokens import SECURE, token

MakeGateway = Callable[..., Awaitable[Gateway]]

SECONDS = float(os.environ.get("TIDEWIRE_FUZZ_SECONDS", "30"))
SEED = int(os.environ.get("TIDEWIRE_FUZZ_SEED", "6455"))
_REPLAY = os.environ.get("TIDEWIRE_FUZZ_ITERATION")
REPLAY = int(_REPLAY) if _REPLAY else None

ERROR_CODES = frozenset(code.value for code in ErrorCode) - {ErrorCode.INTERNAL_ERROR.value}
"""What a refusal may carry: internal_error means a command raised (a bug)."""
REPLY_TYPES = frozenset(
    {
        *("error", "subscription_error", "subscription_confirmed", "unsubscription_confirmed"),
        *("subscriptions", "heartbeat_response", "pong", "auth_ok", "ack", "snapshot"),
        *("trade_history", "sync_response"),
    }
)
CLOSE_CODES = frozenset(
    {
        CloseCode.AUTH_FAILED,  # a bad or expired token in auth / refresh
        CloseCode.FORBIDDEN,
        CloseCode.TOO_MANY_CONNECTIONS,  # auth as a user with too many connections
        CloseCode.INBOUND_RATE_EXCEEDED,
        1007,  # live: a text frame that is not UTF-8 (the mutations flip bytes)
    }
)
"""The closes a command may cause (docs/protocol.md, close codes)."""
MAX_MESSAGE_BYTES = 16_384


def iterations(name: str, seconds: float) -> Iterator[tuple[int, random.Random]]:
    """(n, the rng of iteration n) until `seconds` are spent; one only when replaying."""
    if REPLAY is not None:
        yield REPLAY, random.Random(f"{SEED}/{name}/{REPLAY}")
        return
    deadline = time.monotonic() + seconds
    for n in itertools.count():
        if n and time.monotonic() >= deadline:
            return
        yield n, random.Random(f"{SEED}/{name}/{n}")


def where(name: str, n: int) -> str:
    return f"[replay: TIDEWIRE_FUZZ_SEED={SEED} TIDEWIRE_FUZZ_ITERATION={n}, test {name}]"


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        + (f"\n{logging.Formatter().formatException(r.exc_info)}" if r.exc_info else "")
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


# ------------------------------------------------------------------ valid commands

STREAM_NAMES = sorted(STREAMS)
SYMBOLS = ["AAPL", "MSFT", "EUR/USD", "AUD/USD.SIM", "BRK.B"]
TOKENS = [
    token("fuzzer", portfolios=["PF-1"], roles=["subscriber", "publisher"]),
    token("fuzzer", portfolios=["*"], roles=["admin"]),
    token("fuzzer", ttl=-60),
    token("fuzzer", key="not-the-gateways-secret-but-32-bytes-long"),
    "not-a-jwt",
]


def valid_command(rng: random.Random, n: int) -> dict[str, Any]:
    """One command as docs/protocol.md describes it."""
    stream = rng.choice(STREAM_NAMES)
    sid = rng.choice(["s1", "s2", f"sub-{n}", "market_data"])
    filters = rng.choice(
        [
            {},
            {"symbols": rng.sample(SYMBOLS, rng.randint(1, 3))},
            {"portfolio_ids": ["PF-1"]},
            {"severity": rng.choice(["low", "medium", "high", "critical"])},
            {"min_price": 1.5, "max_price": 200},
            {"venue": "NASDAQ", "asset_class": "equity"},
            {"strategy_ids": ["S-1"], "user_id": "fuzzer"},
        ]
    )
    since = {"epoch": rng.choice(["", "e1", "x" * 20]), "seq": rng.randint(0, 50)}
    commands: list[dict[str, Any]] = [
        {"type": "subscribe", "stream": stream, "filters": filters, "subscription_id": sid},
        {"type": "subscribe", "stream": "market_data", "since": since, "snapshot": True},
        {"type": "subscribe", "topic": f"market_data.{rng.choice(SYMBOLS)}", "rate_limit": 2.5},
        {
            "type": "subscribe",
            "event_types": ["trade_executed", "pnl_update"],
            "subscription_id": sid,
        },
        {"type": "unsubscribe", "subscription_id": sid},
        {"type": "unsubscribe", "subscription_ids": [sid, "s2"]},
        {"type": "update_subscription", "subscription_id": sid, "filters": filters},
        {"type": "update_filters", "subscription_id": sid, "rate_limit": 0},
        {"type": "list_subscriptions", "limit": rng.randint(1, 5)},
        {"type": "list_subscriptions", "after": sid},
        {"type": "get_snapshot", "stream": "market_data", "filters": filters, "limit": 10},
        {"type": "get_snapshot", "topic": f"market_data.{rng.choice(SYMBOLS)}"},
        {"type": "get_trade_history", "filters": {"portfolio_ids": ["PF-1"]}, "limit": 5},
        {"type": "sync", "client_timestamp": rng.choice([1, 1.5, "2026-01-01T00:00:00Z"])},
        {"type": "heartbeat", "client_timestamp": rng.randint(0, 2**41)},
        {"type": "publish", "message": quote(rng.choice(SYMBOLS), bid=rng.random() * 100)},
        {"type": "publish", "message": order("PF-1", rng.randint(1, 100))},
        {"type": "auth", "token": rng.choice(TOKENS)},
        {"type": "refresh", "token": rng.choice(TOKENS)},
        {"type": "ping"},
        {"type": "subscribe_order_book", "symbol": "AAPL", "venue": "NASDAQ"},
        {"type": "unsubscribe_order_book", "symbol": "AAPL"},
        {"action": "subscribe", "topic": f"market_data.{rng.choice(SYMBOLS)}"},
        {"action": "ping"},
    ]
    command = rng.choice(commands)
    if rng.random() < 0.9:
        command["message_id"] = f"m{n}"
    if rng.random() < 0.2:
        command["version"] = rng.choice(["3.0", "2.0", "1.0"])
    return command


# ------------------------------------------------------------------ mutations

DEEP = "\x00deep\x00"
"""A placeholder value, replaced by deep nesting once encoded (no recursion to build it)."""
UNICODE = ["\ud800", "\udfff", "\u0000", "\u202e", "😀" * 50, "é", "\ufeff", "a\u0301", "x" * 5000]
HUGE = [2**63, 2**64, -(2**63) - 1, 2**64 - 1, -1, -(2**31), 10**30, 1e308, -0.0, 1e-320]


def random_value(rng: random.Random, binary: bool, depth: int = 0) -> Any:
    pick = rng.randrange(13 if depth < 3 else 9)
    match pick:
        case 0:
            return None
        case 1:
            return rng.choice([True, False])
        case 2:
            return rng.choice(HUGE)
        case 3:
            return rng.randint(-5, 5)
        case 4:
            return rng.choice([float("nan"), float("inf")]) if binary else rng.random()
        case 5:
            return rng.choice(UNICODE)
        case 6:
            return rng.choice(["", "AAPL", "*", "market_data", "ping", "s1"])
        case 7:
            return rng.randbytes(rng.randint(0, 8)) if binary else "bytes"
        case 8:
            return msgspec.msgpack.Ext(rng.randint(-128, 127), b"ab") if binary else DEEP
        case 9 | 10:
            return [random_value(rng, binary, depth + 1) for _ in range(rng.randint(0, 4))]
        case _:
            keys: list[Any] = [rng.choice(["type", "seq", "epoch", "symbols", "a", ""])]
            if binary:
                keys += [rng.randint(-2, 2), b"k", 1.5, None]
            return {rng.choice(keys): random_value(rng, binary, depth + 1) for _ in range(3)}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside dicts and lists."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from paths(inner, (*prefix, i))


def parent_of(root: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        root = root[step]
    return root


def mutate(rng: random.Random, command: dict[str, Any], binary: bool) -> dict[str, Any]:
    """One structural change somewhere in `command` (in place; returns it)."""
    inner = [p for p in paths(command) if p]
    if not inner:
        command["type"] = random_value(rng, binary)
        return command
    path = rng.choice(inner)
    parent = parent_of(command, path)
    key = path[-1]
    match rng.randrange(11):
        case 0:  # drop
            del parent[key]
        case 1:  # retype
            parent[key] = random_value(rng, binary)
        case 2:  # huge or negative numbers, negative seq
            parent[key] = rng.choice(HUGE)
            if rng.random() < 0.5:
                command["since"] = {"epoch": "e", "seq": rng.choice([-1, -(2**63), 2**70])}
        case 3:  # deep nesting
            parent[key] = DEEP
        case 4:  # unicode
            parent[key] = rng.choice(UNICODE)
        case 5:  # wrap in a list or an object
            parent[key] = rng.choice([[parent[key]], {"value": parent[key]}])
        case 6:  # an unknown field, or a known one of another command
            name = rng.choice(["filters", "since", "limit", "token", "message", "zz", "action"])
            command[name] = random_value(rng, binary)
        case 7:  # another command's type
            command["type"] = rng.choice(
                [
                    *("subscribe", "unsubscribe", "publish", "auth", "get_snapshot", "sync"),
                    *(
                        "update_subscription",
                        "list_subscriptions",
                        "heartbeat",
                        "Ping",
                        "",
                        "batch",
                    ),
                ]
            )
        case 8:  # a big list
            parent[key] = [rng.choice(SYMBOLS) for _ in range(rng.choice([100, 1001, 3000]))]
        case 9:  # duplicated: in a list, and at encoding time as a repeated JSON key
            if isinstance(parent, list):
                parent.append(parent[key])
            else:
                command["\x00dup\x00"] = key
        case _:
            parent[key] = random_value(rng, binary)
    return command


def nested(rng: random.Random, binary: bool) -> bytes:
    depth = rng.choice([10, 100, 500, 1000, 1500, 3000])
    if binary:
        return rng.choice([b"\x91" * depth + b"\xc0", b"\x81\xa1a" * depth + b"\xc0"])
    closed = rng.random() < 0.7
    return (b"[" * depth + (b"]" * depth if closed else b"")) or b"[]"


def encode(rng: random.Random, command: dict[str, Any], binary: bool) -> bytes:
    """The frame's payload; duplicated keys and deep nesting spliced into the encoding."""
    duplicate = command.pop("\x00dup\x00", None)
    try:
        if binary:
            payload = msgspec.msgpack.encode(command)
            marker = msgspec.msgpack.encode(DEEP)
        else:
            payload = json.dumps(
                command, ensure_ascii=rng.random() < 0.5, allow_nan=True, default=repr
            ).encode("utf-8", "surrogatepass")
            marker = json.dumps(DEEP).encode()
    except (TypeError, ValueError, OverflowError):
        return b'{"type": "ping", "message_id": "unencodable"}'
    while marker in payload:
        payload = payload.replace(marker, nested(rng, binary), 1)
    if duplicate is not None and not binary and isinstance(duplicate, str) and payload[:1] == b"{":
        again = json.dumps({duplicate: random_value(rng, False)})[1:-1].encode()
        payload = b"{" + again + b", " + payload[1:]
    return payload


def frame_of(rng: random.Random, n: int, binary: bool) -> tuple[bytes, bool]:
    """(payload, binary) of iteration n for a connection of that kind."""
    command = valid_command(rng, n)
    for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3, 5])):
        mutate(rng, command, binary)
    payload = encode(rng, command, binary)
    pick = rng.random()
    if pick < 0.1 and payload:  # bytes of the encoding flipped
        data = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice(
                [0x00, 0x80, 0xC1, 0xFF, rng.randrange(256)]
            )
        payload = bytes(data)
    elif pick < 0.15:  # cut
        payload = payload[: rng.randrange(len(payload) + 1)]
    elif pick < 0.2:  # the other frame kind
        binary = not binary
    elif pick < 0.22:  # past max_message_bytes
        payload = payload + b" " * MAX_MESSAGE_BYTES
    return payload, binary


# ------------------------------------------------------------------ checks


def is_data(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("type") not in REPLY_TYPES
        and "stream" in message
        and "seq" in message
    )


def check_replies(replies: list[Any], info: str) -> list[dict[str, Any]]:
    """The replies among `replies` (data messages left out), each checked."""
    out: list[dict[str, Any]] = []
    for reply in replies:
        assert isinstance(reply, dict), f"not an object: {reply!r:.200} {info}"
        if is_data(reply) or reply.get("type") == "heartbeat":
            continue
        kind = reply.get("type")
        assert kind in REPLY_TYPES, f"unknown reply {reply!r:.300} {info}"
        if kind in ("error", "subscription_error"):
            assert reply.get("error_code") in ERROR_CODES, f"refused with {reply!r:.400} {info}"
            assert isinstance(reply.get("error_message"), str), f"{reply!r:.300} {info}"
        out.append(reply)
    return out


# ------------------------------------------------------------------ (1) pure on_frame

ANONYMOUS = AnonymousAuthenticator(frozenset({"subscriber", "publisher"}))
JWT = JwtAuthenticator(GatewaySettings(**SECURE))


class Harness:
    """A hub, a MemoryBroker and a CommandHandler on the fakes; one fuzzed connection at a
    time (replaced when it is closed)."""

    def __init__(self, rng: random.Random) -> None:
        self.secure = rng.random() < 0.3
        self.authenticator: Authenticator = JWT if self.secure else ANONYMOUS
        self.clock = FakeClock(1000.0)
        self.scheduler = FakeScheduler(self.clock)
        self.hub = Hub(self.scheduler, 1 << 24, clock=self.clock)
        self.broker = MemoryBroker(clock=self.clock)
        self.broker.attach(Handlers(message=self.hub.dispatch))
        self.handler = CommandHandler(
            self.hub,
            self.broker,
            self.authenticator,
            CommandLimits(
                max_subscriptions=8,
                max_message_bytes=MAX_MESSAGE_BYTES,
                max_filter_values=100,
                max_subscriptions_per_user=20,
                max_connections_per_user=5,
            ),
            self.clock,
            spawn=run_to_completion,
            publish_rates=PublishRates(1e9, 10**9),
        )
        self.fmt = rng.choice(
            [WireFormat.JSON, WireFormat.MSGPACK, WireFormat.MSGPACK_DECIMAL_STRINGS]
        )
        self.log_in = rng.random() < 0.5
        """Secure: whether each new connection sends a valid `auth` first."""
        self.read = 0
        self.conn = self.open()

    def open(self) -> Connection:
        principal = UNAUTHENTICATED if self.secure else ANONYMOUS.principal
        conn = connection(
            fmt=self.fmt,
            principal=principal,
            inbound_rate=1e9,
            inbound_burst=10**9,
            now=self.clock(),
        )
        self.hub.add_connection(conn)
        self.read = 0
        if self.secure and self.log_in:
            auth = {"type": "auth", "token": TOKENS[0]}
            payload = msgspec.msgpack.encode(auth) if self.fmt.binary else json.dumps(auth).encode()
            self.handler.on_frame(conn, payload, self.fmt.binary)
            self.scheduler.run()
            self.read = len(transport(conn).writes)
            assert conn.principal.authenticated, "the valid token was refused"
        return conn

    def feed(self, payload: bytes, binary: bool, info: str) -> list[Any]:
        try:
            self.handler.on_frame(self.conn, payload, binary)
            self.scheduler.run()
        except Exception as exc:
            raise AssertionError(f"on_frame raised {exc!r} on {payload[:300]!r} {info}") from exc
        writes = transport(self.conn).writes
        replies = decode_writes(writes[self.read :])
        self.read = len(writes)
        return replies

    def closed(self, info: str) -> bool:
        closes = transport(self.conn).closes
        for code, reason in closes:
            assert code in CLOSE_CODES, f"closed with {code} {reason!r} {info}"
        if self.conn.closed or closes:
            if self.conn.connection_id in self.hub.connections:
                self.hub.remove_connection(self.conn)  # what the data plane does
            self.conn = self.open()
            return True
        return False


def probe(binary: bool, message_id: str) -> bytes:
    command = {"type": "ping", "message_id": message_id}
    return msgspec.msgpack.encode(command) if binary else json.dumps(command).encode()


def test_command_handler_fuzz(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    count = closes = 0
    replied: dict[str, int] = {}
    harness: Harness | None = None
    for n, rng in iterations("pure-commands", SECONDS / 3):
        if harness is None or n % 200 == 0:
            harness = Harness(rng)
        fmt = harness.fmt
        payload, binary = frame_of(rng, n, fmt.binary)
        info = f"(frame {payload[:200]!r}, binary={binary}, format {fmt.name}) {where('pure', n)}"
        replies = check_replies(harness.feed(payload, binary, info), info)
        for reply in replies:
            replied[reply["type"]] = replied.get(reply["type"], 0) + 1
        errors = errors_logged(caplog)
        assert not errors, f"logged {errors} {info}"
        if harness.closed(info):
            closes += 1
        else:
            assert replies, f"no answer {info}"
            pongs = check_replies(harness.feed(probe(fmt.binary, f"p{n}"), fmt.binary, info), info)
            assert [(r["type"], r.get("correlation_id")) for r in pongs] == [("pong", f"p{n}")], (
                f"no pong after the frame: {pongs!r:.300} {info}"
            )
        count += 1
    elapsed = time.monotonic() - started
    print(
        f"\npure commands: seed {SEED}, {count} frames in {elapsed:.1f} s "
        f"({count / elapsed:.0f}/s), {closes} closes; replies {dict(sorted(replied.items()))}"
    )


# ------------------------------------------------------------------ (2) live, over WebSocket


class LiveClient:
    """A websockets client of one subprotocol, every wait bounded."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary

    @classmethod
    async def open(cls, gateway: Gateway, binary: bool) -> LiveClient:
        protocol = "tidewire.v3.msgpack" if binary else "tidewire.v3.json"
        ws = await ws_connect(
            gateway.url,
            subprotocols=[protocol],  # type: ignore[list-item]
            open_timeout=TIMEOUT,
            max_size=None,
        )
        client = cls(ws, binary)
        welcome = await client.recv()
        assert welcome["type"] == "connection_established", welcome
        return client

    async def recv(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        value = msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else json.loads(raw)
        assert isinstance(value, dict), value
        return value

    async def send(self, payload: bytes, binary: bool) -> None:
        await self.ws.send(payload, text=not binary)

    async def until_pong(self, message_id: str, info: str) -> list[dict[str, Any]]:
        """Everything up to the pong of `message_id`."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.recv()
                out.append(message)
                if message.get("type") == "pong" and message.get("correlation_id") == message_id:
                    return out


async def test_live_commands_fuzz(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gateway = await make_gateway(
        anonymous_roles=["subscriber", "publisher"],
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_inbound_per_second=1e6,
        inbound_burst=10**6,
        max_inbound_frames_per_second=1e6,
        inbound_frame_burst=10**6,
        max_publish_rate=1e6,
    )
    clients = {binary: await LiveClient.open(gateway, binary) for binary in (False, True)}
    started = time.monotonic()
    count = closes = 0
    replied: dict[str, int] = {}
    try:
        for n, rng in iterations("live-commands", SECONDS * 2 / 3):
            side = rng.random() < 0.5
            client = clients[side]
            payload, binary = frame_of(rng, n, side)
            info = f"(frame {payload[:200]!r}, binary={binary}, on {'msgpack' if side else 'json'})"
            info = f"{info} {where('live', n)}"
            try:
                await client.send(payload, binary)
                await client.send(probe(side, f"p{n}"), side)
                answers = check_replies(await client.until_pong(f"p{n}", info), info)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                assert code in CLOSE_CODES, f"closed with {code} ({exc}) {info}"
                closes += 1
                clients[side] = await LiveClient.open(gateway, side)
                continue
            except TimeoutError:
                raise AssertionError(f"no pong within {TIMEOUT} s {info}") from None
            # No count of answers here: publish, queries and snapshots answer from a task, so
            # after the pong (their answers are checked with the next iteration's).
            for reply in answers:
                replied[reply["type"]] = replied.get(reply["type"], 0) + 1
            if n % 100 == 0:
                errors = errors_logged(caplog)
                assert not errors, f"logged {errors} by iteration {n} {info}"
            count += 1
    finally:
        for client in clients.values():
            await client.ws.close()
    assert not errors_logged(caplog), errors_logged(caplog)
    elapsed = time.monotonic() - started
    print(
        f"\nlive commands: seed {SEED}, {count} frames in {elapsed:.1f} s "
        f"({count / elapsed:.0f}/s), {closes} closes; replies {dict(sorted(replied.items()))}"
    )
