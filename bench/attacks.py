"""The attacks of the resilience suite, one implementation each, and the healthy-client probe.

Used by the short CI suite (tests/resilience/test_attacks.py, in-process gateway, small
settings) and by the long run (bench/resilience.py, gateway in a child process). Each attack
is an async function taking a `Target` (the gateway's WebSocket and HTTP URLs, and Redis
where it needs one) and a size or duration scale; it returns what the attacker saw (close
codes, counts). It asserts nothing: the callers compare with the documented outcome
(docs/protocol.md, "Decisions where the original protocol is silent" and "Close codes"):

a. floods (`ping_flood`, `continuation_flood`, `message_flood`): one connection writing PING
   frames, 1-byte continuation frames, or small data messages as fast as it can: closed with
   4029 once past `inbound_frame_burst` frames beyond `max_inbound_frames_per_second` (or the
   byte budget, `inbound_bytes_burst` beyond `max_inbound_bytes_per_second`, or the message
   budget, `inbound_burst` beyond `max_inbound_per_second`).
b. Redis garbage (`redis_garbage`): entries written straight into the gateway's Redis stream
   logs (fields missing, a body that does not decode, an `XADD *` id) and a garbage latest
   value in `<prefix>:market_data:last`: skipped and counted (`/api/stats` `broker_skipped`);
   subscribers of the reliable stream are closed with 1012 and resubscribe to
   `recovered: false`; publishing and new snapshot subscriptions keep working.
c. big snapshots and replays (`big_snapshot`, `stalled_snapshot`, `long_absence`): an
   unfiltered subscriber to a stream with tens of thousands of instruments gets its whole
   snapshot without 4008; non-reading subscribers to a huge snapshot are cut with 4008 (after
   `stall_timeout`) while memory stays bounded and readers are served; a client away for a
   long stretch of reliable messages recovers exactly (`recovered: true`, every seq).
d. filter values (`filter_values`): connections x subscriptions x symbols: refused with
   `subscription_error` `invalid_filter` past `max_filter_values_per_connection`;
   `list_subscriptions` is paged (`max_list_page`, `next`); `/api/subscriptions` and
   `/api/connections` are paged (`max_api_page`, `X-Total-Count`, `X-Next-Offset`).
e. reassembly (`reassembly_hold`): many connections each holding an unfinished fragmented
   message: the process holds at most `max_reassembly_bytes`; the fragment past it closes its
   connection with 1009.
f. latest values (`latest_keys`): many distinct symbols published once each: the stream keeps
   at most `max_latest_keys` latest values, evicting the least recently updated key.
g. framing and parsing (`framing_rules`): invalid UTF-8 in a text frame 1007; JSON nested
   1,000 deep `error` `invalid_json` with the connection kept; on REST both 4xx with
   `{error_code, error_message}`; RSV bits, interleaved and lone continuation frames, close
   codes 1005/1006/1015/5000: 1002; `Sec-WebSocket-Version: 8`: 426 with a
   `Sec-WebSocket-Version` header; a negative `since.seq`: `invalid_position`.

`HealthyProbe` is the client beside the attack: it subscribes to `HEALTHY_STREAM` (a reliable
stream nothing else writes to), counts messages, checks that `seq` and the producer's
counter `data.n` have no gap, and records the receive latency (`data.sent_ns` is stamped by
`Producer` just before it publishes). `HealthMonitor` polls `/healthz` meanwhile.

No pytest here: the callers decide what is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 10.0
"""Bound of every single wait of an attack (a reply, a close frame, a condition)."""

HEALTHY_STREAM = "risk_alerts"
"""Reliable, and written to by nothing but the `Producer`: every seq must arrive."""

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Target:
    """Where the gateway under attack listens."""

    ws_url: str
    """ws://host:port (the data plane; paths are added by the attacks)."""
    http_url: str
    """http://host:port (the control plane)."""
    redis_url: str | None = None
    redis_prefix: str = "tw"

    @property
    def host(self) -> str:
        return urlsplit(self.ws_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.ws_url).port or 80


@dataclass
class AttackResult:
    """What the attacker saw."""

    attack: str
    close_code: int | None = None
    """The gateway's close code to the (first) attacking connection; None: never closed."""
    seconds_to_cut: float | None = None
    """From the attack's first frame to the gateway's close frame."""
    frames_sent: int = 0
    bytes_sent: int = 0
    counts: dict[str, Any] = field(default_factory=dict)


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:  # noqa: ASYNC109
    """Poll an (async) condition every 20 ms until it holds; TimeoutError naming `what`."""
    try:
        async with asyncio.timeout(timeout):
            while not await condition():  # noqa: ASYNC110 - another task's or process's state
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:g} s waiting until {what}") from None


# ------------------------------------------------------------------ raw WebSocket frames


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame; `rsv`: the three RSV bits (0-7)."""
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    mask = os.urandom(4)
    if not payload:
        return header + mask
    repeated = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        size, "big"
    )
    return header + mask + masked


class RawClient:
    """A WebSocket client that writes whatever frames it is given (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def handshake(
        cls,
        target: Target,
        version: str = "13",
        path: str = "/ws",
        rcvbuf: int = 0,
        limit: int = 2**16,
    ) -> tuple[RawClient, bytes, bytes]:
        """Connect and send the upgrade: the client, the status line and the headers.

        `rcvbuf`: SO_RCVBUF set before connecting (a small TCP window); `limit`: the stream
        reader's buffer (it stops reading the socket past twice that)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (target.host, target.port)),
                TIMEOUT,
            )
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {target.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: {version}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status, _, headers = head.partition(b"\r\n")
        return cls(reader, writer), status, headers

    @classmethod
    async def open(cls, target: Target, rcvbuf: int = 0, limit: int = 2**16) -> RawClient:
        """Upgraded, `connection_established` read."""
        client, status, _ = await cls.handshake(target, rcvbuf=rcvbuf, limit=limit)
        if not status.startswith(b"HTTP/1.1 101"):
            client.abort()
            raise ConnectionError(f"upgrade refused: {status!r}")
        welcome = await client.message()
        if welcome.get("type") != "connection_established":
            raise ConnectionError(f"no welcome: {welcome}")
        return client

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(frame(TEXT, json.dumps(message).encode()))

    async def next_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)

    async def message(self, timeout: float = TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next text message (pongs skipped); ConnectionError on a close frame."""
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.next_frame()
                if opcode == CLOSE:
                    raise ConnectionError(f"closed with {int.from_bytes(payload[:2], 'big')}")
                if opcode == TEXT:
                    value: dict[str, Any] = json.loads(payload)
                    return value

    async def close_code(self, timeout: float = TIMEOUT) -> int | None:  # noqa: ASYNC109
        """Read (and drop) frames until the gateway's close frame: its code (None: the
        connection ended without one)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    opcode, payload = await self.next_frame()
                    if opcode == CLOSE:
                        return int.from_bytes(payload[:2], "big") if payload else 1005
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return None  # ended without a close frame, or still open after `timeout`

    async def pong_or_close(self, payload: bytes, timeout: float = TIMEOUT) -> int | None:  # noqa: ASYNC109
        """After a PING with `payload`: None when its PONG came, else the close code."""
        async with asyncio.timeout(timeout):
            while True:
                opcode, data = await self.next_frame()
                if opcode == PONG and data == payload:
                    return None
                if opcode == CLOSE:
                    return int.from_bytes(data[:2], "big") if data else 1005

    async def flood_until_closed(self, frames: bytes, max_seconds: float) -> AttackResult:
        """Write `frames` over and over until the gateway closes (reading what it answers
        meanwhile, so the cut is the flood's and not a slow consumer's)."""
        per_batch = max(1, 8192 // len(frames))
        batch = frames * per_batch
        result = AttackResult("flood")
        closed = asyncio.ensure_future(self.close_code(timeout=max_seconds + TIMEOUT))
        started = time.perf_counter()
        deadline = started + max_seconds
        try:
            while not closed.done() and time.perf_counter() < deadline:
                self.writer.write(batch)
                result.bytes_sent += len(batch)
                result.frames_sent += per_batch
                try:
                    await asyncio.wait_for(self.writer.drain(), TIMEOUT)
                except (ConnectionError, TimeoutError):
                    break
                await asyncio.sleep(0)  # let the reader see the close frame
            result.close_code = await closed
            result.seconds_to_cut = time.perf_counter() - started
            return result
        finally:
            closed.cancel()
            self.abort()

    def abort(self) -> None:
        self.writer.transport.abort()


# ------------------------------------------------------------------ producer and healthy probe


def healthy_message(n: int, run: str) -> dict[str, Any]:
    """Message n of the healthy flow: `data.n` counts, `data.sent_ns` is the publish time."""
    return {
        "type": "risk_alert",
        "message_id": f"healthy-{run}-{n}",
        "portfolio_id": "HEALTHY",
        "severity": "low",
        "data": {
            "metric": "probe",
            "current_value": float(n),
            "threshold": 1e18,
            "n": n,
            "sent_ns": time.time_ns(),
        },
    }


class Publisher:
    """POST /api/publish with retries on 429 (the publish rate limit), one fresh
    connection per request (the control plane's delayed-ACK caveat, bench/gateway_child.py)."""

    def __init__(self, http_url: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=http_url,
            timeout=TIMEOUT,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def publish(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Publish `messages` (at most max_publish_batch); the results (seq, duplicate)."""
        async with asyncio.timeout(3 * TIMEOUT):
            while True:
                response = await self.http.post("/api/publish", json=messages)
                if response.status_code == 429:
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                if response.status_code != 200:
                    raise RuntimeError(f"publish: {response.status_code} {response.text[:300]}")
                acks: list[dict[str, Any]] = response.json()["results"]
                return acks

    async def publish_many(self, messages: list[dict[str, Any]], batch: int = 1000) -> None:
        for start in range(0, len(messages), batch):
            await self.publish(messages[start : start + batch])

    async def close(self) -> None:
        await self.http.aclose()


class Producer:
    """The healthy flow: `rate` messages per second on HEALTHY_STREAM, in small batches."""

    def __init__(self, target: Target, rate: float, run: str | None = None) -> None:
        self.publisher = Publisher(target.http_url)
        self.rate = rate
        self.run = run or os.urandom(4).hex()
        self.published = 0
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        tick = 0.02
        started = time.perf_counter()
        while True:
            due = int((time.perf_counter() - started) * self.rate)
            if due > self.published:
                batch = [healthy_message(n, self.run) for n in range(self.published, due)]
                try:
                    await self.publisher.publish(batch[:1000])
                    self.published += min(len(batch), 1000)
                except Exception as exc:
                    self.errors.append(repr(exc)[:200])
            await asyncio.sleep(tick)  # pacing, not synchronisation

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.publisher.close()


@dataclass
class ProbeReport:
    received: int
    gaps: int
    """Breaks in seq or data.n continuity (each counts once)."""
    out_of_order: int
    closed: int | None
    """The probe's close code if the gateway closed it; None: still connected."""
    latencies_ns: list[int]


class HealthyProbe:
    """One healthy client: subscribes to HEALTHY_STREAM (no snapshot to replay) and reads."""

    def __init__(self, ws: ClientConnection, keep_latency: bool = True) -> None:
        self.ws = ws
        self.keep_latency = keep_latency
        self.received = 0
        self.gaps = 0
        self.out_of_order = 0
        self.first_n: int | None = None
        self.last_n: int | None = None
        self.last_seq: int | None = None
        self.closed: int | None = None
        self.latencies_ns: list[int] = []
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, target: Target, keep_latency: bool = True) -> HealthyProbe:
        ws = await ws_connect(target.ws_url + "/ws", open_timeout=TIMEOUT, max_size=None)
        probe = cls(ws, keep_latency)
        async with asyncio.timeout(TIMEOUT):
            while json.loads(await ws.recv()).get("type") != "connection_established":
                pass
            await ws.send(json.dumps({"type": "subscribe", "stream": HEALTHY_STREAM}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("type") == "subscription_confirmed":
                    break
                if reply.get("type") == "subscription_error":
                    raise RuntimeError(f"healthy subscribe refused: {reply}")
        probe._task = asyncio.get_running_loop().create_task(probe._read())
        return probe

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("stream") != HEALTHY_STREAM or "seq" not in message:
                    continue
                now = time.time_ns()
                data = message["data"]
                n, seq = int(data["n"]), int(message["seq"])
                if self.last_seq is not None and seq != self.last_seq + 1:
                    if seq <= self.last_seq:
                        self.out_of_order += 1
                    else:
                        self.gaps += 1
                if self.last_n is not None and n != self.last_n + 1:
                    self.gaps += 1
                if self.first_n is None:
                    self.first_n = n
                self.last_seq, self.last_n = seq, n
                self.received += 1
                if self.keep_latency:
                    self.latencies_ns.append(now - int(data["sent_ns"]))
                self.arrived.set()
        except ConnectionClosed:
            pass
        self.closed = self.ws.close_code

    def has(self, n: int) -> bool:
        """Whether message n (0-based) of the producer has arrived (or it never will)."""
        return self.closed is not None or (self.last_n is not None and self.last_n >= n)

    def report(self) -> ProbeReport:
        return ProbeReport(
            self.received, self.gaps, self.out_of_order, self.closed, list(self.latencies_ns)
        )

    def reset_latencies(self) -> None:
        self.latencies_ns.clear()

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, TIMEOUT)


class HealthMonitor:
    """GET /healthz every `interval` s while an attack runs; counts failures and the
    slowest answer."""

    def __init__(self, target: Target, interval: float = 0.2) -> None:
        self.http = httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT)
        self.interval = interval
        self.checks = 0
        self.failures = 0
        self.slowest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        started = time.perf_counter()
        try:
            ok = (await self.http.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            ok = False
        self.slowest = max(self.slowest, time.perf_counter() - started)
        self.checks += 1
        self.failures += not ok
        return ok

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await self.check()
                await asyncio.sleep(self.interval)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.http.aclose()


async def stats(target: Target) -> dict[str, Any]:
    """GET /api/stats."""
    async with httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT) as http:
        response = await http.get("/api/stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


# ------------------------------------------------------------------ a. floods (4029)


async def ping_flood(target: Target, max_seconds: float = 10.0) -> AttackResult:
    """PING frames (1-byte payload) as fast as the socket takes them."""
    client = await RawClient.open(target)
    result = await client.flood_until_closed(frame(PING, b"x"), max_seconds)
    result.attack = "ping_flood"
    return result


async def continuation_flood(target: Target, max_seconds: float = 10.0) -> AttackResult:
    """A text message started once, then 1-byte continuation frames that never finish it."""
    client = await RawClient.open(target)
    client.send(frame(TEXT, b'{"type": "pi', fin=False))
    result = await client.flood_until_closed(frame(CONT, b"n", fin=False), max_seconds)
    result.attack = "continuation_flood"
    return result


async def message_flood(target: Target, max_seconds: float = 10.0) -> AttackResult:
    """Small whole data messages (`{"type":"ping"}`, each answered) as fast as possible."""
    client = await RawClient.open(target)
    result = await client.flood_until_closed(frame(TEXT, b'{"type":"ping"}'), max_seconds)
    result.attack = "message_flood"
    return result


# ------------------------------------------------------------------ b. Redis garbage


def order_message(n: int, run: str) -> dict[str, Any]:
    return {
        "type": "order_update",
        "message_id": f"order-{run}-{n}",
        "portfolio_id": "VICTIM",
        "order_id": f"O{n}",
        "symbol": "AAPL",
        "order_status": "open",
        "data": {"side": "buy", "quantity": 100, "filled_quantity": 0, "n": n},
    }


def quote_message(symbol: str, n: int = 0) -> dict[str, Any]:
    bid = 100.0 + (n % 1000) / 100.0
    return {
        "type": "market_data",
        "symbol": symbol,
        "venue": "SIM",
        "data_type": "quote",
        "data": {"bid_price": bid, "ask_price": round(bid + 0.02, 2), "n": n},
    }


def event_message(n: int, run: str) -> dict[str, Any]:
    return {
        "type": "event",
        "message_id": f"event-{run}-{n}",
        "event_type": "probe",
        "data": {"description": f"event {n}"},
    }


class WsSession:
    """A `websockets` client for attacks that speak the protocol properly."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, target: Target, path: str = "/ws") -> WsSession:
        ws = await ws_connect(target.ws_url + path, open_timeout=TIMEOUT, max_size=None)
        session = cls(ws)
        await session.recv_type("connection_established")
        return session

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def recv_type(self, *types: str, timeout: float = TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message.get("type") in types:
                    return message

    async def request(self, message: dict[str, Any], *types: str) -> dict[str, Any]:
        await self.ws.send(json.dumps(message))
        return await self.recv_type(*types)

    async def subscribe(self, stream: str, **fields: Any) -> dict[str, Any]:
        return await self.request(
            {"type": "subscribe", "stream": stream, **fields},
            "subscription_confirmed",
            "subscription_error",
        )

    async def data(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:  # noqa: ASYNC109
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                message = await self.recv(timeout)
                if "stream" in message and "seq" in message:
                    out.append(message)
        return out

    async def closed_with(self, timeout: float = TIMEOUT) -> int | None:  # noqa: ASYNC109
        """Read until the gateway closes: its close code (None: not within `timeout`)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except ConnectionClosed:
            return self.ws.close_code
        except TimeoutError:
            return None

    async def close(self) -> None:
        await self.ws.close()


async def redis_garbage(target: Target) -> AttackResult:
    """Garbage written with a plain Redis client into the gateway's keys (see module doc).

    counts: victim_close (1012 expected), victim_recovered (False expected),
    publish_after (the seq a publish to the poisoned stream got), auto_id_publish_seq,
    snapshot_symbols (of a new snapshot subscription after the `:last` garbage),
    broker_skipped (from /api/stats)."""
    import redis.asyncio as aioredis

    assert target.redis_url is not None, "redis_garbage needs the gateway's Redis"
    run = os.urandom(4).hex()
    prefix = target.redis_prefix
    result = AttackResult("redis_garbage")
    admin = aioredis.from_url(target.redis_url)
    publisher = Publisher(target.http_url)
    victim = await WsSession.open(target)
    try:
        confirmed = await victim.subscribe("order_updates", snapshot=False)
        assert confirmed["type"] == "subscription_confirmed", confirmed
        await publisher.publish([order_message(0, run)])
        [first] = await victim.data(1)
        seq = int(first["seq"])
        log = f"{prefix}:order_updates:log"
        # Fields missing, then a body that does not decode, at the ids of the next seqs.
        await admin.xadd(log, {"foreign": "writer"}, id=f"{seq + 1}-0")
        await admin.xadd(log, {"m": b"\xc1garbage", "e": b"x", "t": b"1"}, id=f"{seq + 2}-0")
        result.close_code = await victim.closed_with()
        again = await WsSession.open(target)
        resumed = await again.subscribe(
            "order_updates", since={"epoch": first["epoch"], "seq": seq}, snapshot=False
        )
        result.counts["victim_resubscribe"] = resumed.get("type")
        result.counts["victim_recovered"] = resumed.get("recovered")
        await publisher.publish([order_message(1, run)])
        [later] = await again.data(1)
        result.counts["publish_after"] = later["seq"]
        result.counts["publish_after_id"] = later["message_id"]
        await again.close()
        # An entry with an auto id (XADD *) in another stream's log: publishing goes on.
        await admin.xadd(f"{prefix}:events:log", {"foreign": "writer"})
        acks = await publisher.publish([event_message(0, run)])
        result.counts["auto_id_publish_seq"] = acks[0].get("seq")
        # A garbage latest value: a new snapshot subscription still answers, without it.
        await publisher.publish([quote_message("GOOD", 1), quote_message("BAD", 2)])
        last = f"{prefix}:market_data:last"

        async def both_stored() -> bool:
            keys = await admin.hkeys(last)
            return any(b"BAD" in k for k in keys) and any(b"GOOD" in k for k in keys)

        await until(both_stored, "both last values are in Redis", TIMEOUT)
        bad = next(k for k in await admin.hkeys(last) if b"BAD" in k)
        await admin.hset(last, bad, b"1\n\xc1garbage")
        reader = await WsSession.open(target)
        snap = await reader.subscribe("market_data", filters={"symbols": ["GOOD", "BAD"]})
        result.counts["snapshot_confirmed"] = snap.get("type")
        got = await reader.data(1)
        result.counts["snapshot_symbols"] = sorted(m["symbol"] for m in got)
        await reader.close()
        result.counts["broker_skipped"] = (await stats(target)).get("broker_skipped", {})
        return result
    finally:
        await victim.close()
        await publisher.close()
        await admin.aclose()


# ------------------------------------------------------------------ c. big snapshots


async def publish_instruments(target: Target, count: int, prefix: str = "I") -> None:
    """One quote each for `count` distinct symbols `<prefix>0`..."""
    publisher = Publisher(target.http_url)
    try:
        await publisher.publish_many([quote_message(f"{prefix}{n}", n) for n in range(count)])
    finally:
        await publisher.close()


async def big_snapshot(target: Target, instruments: int, publish: bool = True) -> AttackResult:
    """An unfiltered subscriber to market_data holding `instruments` symbols: how much of
    its snapshot arrived before it was closed (expected: all of it, never closed)."""
    if publish:
        await publish_instruments(target, instruments)
    result = AttackResult("big_snapshot")
    session = await WsSession.open(target)
    started = time.perf_counter()
    symbols: set[str] = set()
    try:
        confirmed = await session.subscribe("market_data")
        if confirmed["type"] != "subscription_confirmed":
            result.counts.update(refused=confirmed, snapshot_messages=0)
            return result
        position = int(confirmed["position"]["seq"])
        async with asyncio.timeout(TIMEOUT + instruments / 2000):
            while len(symbols) < instruments:
                message = await session.recv(timeout=TIMEOUT)
                if message.get("stream") == "market_data" and message["seq"] <= position:
                    symbols.add(message["symbol"])
    except ConnectionClosed:
        result.close_code = session.ws.close_code
    except TimeoutError:
        result.counts["timed_out"] = True
    finally:
        await session.close()
    result.seconds_to_cut = time.perf_counter() - started
    result.counts["snapshot_messages"] = len(symbols)
    return result


async def _drain_close(client: RawClient, timeout: float) -> int | None:  # noqa: ASYNC109
    """Read what the kernel still holds for a non-reader, up to its close frame."""
    return await client.close_code(timeout=timeout)


async def stalled_snapshot(
    target: Target,
    keys: int,
    stallers: int = 10,
    readers: int = 1,
    publish: bool = True,
    rcvbuf: int = 4096,
    cut_timeout: float = 60.0,
) -> AttackResult:
    """`stallers` sockets subscribe unfiltered to market_data (a `keys`-key snapshot) and
    never read; `readers` subscribe too and read the whole snapshot. The stallers' close
    codes (expected 4008 each) once /api/stats counts them cut, readers' snapshot sizes."""
    if publish:
        await publish_instruments(target, keys)
    result = AttackResult("stalled_snapshot")
    before = int((await stats(target))["slow_consumer_closes"])
    held: list[RawClient] = []
    started = time.perf_counter()
    for _ in range(stallers):
        client = await RawClient.open(target, rcvbuf=rcvbuf, limit=1024)
        client.send_json({"type": "subscribe", "stream": "market_data"})
        held.append(client)
    reader_runs = [big_snapshot(target, keys, publish=False) for _ in range(readers)]
    read = await asyncio.gather(*reader_runs)
    result.counts["reader_snapshot_messages"] = [r.counts["snapshot_messages"] for r in read]
    result.counts["reader_close_codes"] = [r.close_code for r in read]

    async def all_cut() -> bool:
        return int((await stats(target))["slow_consumer_closes"]) - before >= stallers

    try:
        await until(all_cut, f"{stallers} stalled clients were cut", cut_timeout)
    except TimeoutError:
        result.counts["not_cut"] = True
    result.seconds_to_cut = time.perf_counter() - started
    codes = await asyncio.gather(*(_drain_close(c, TIMEOUT) for c in held))
    for client in held:
        client.abort()
    result.counts["staller_close_codes"] = list(codes)
    result.close_code = codes[0] if codes else None
    result.counts["slow_consumer_closes"] = (
        int((await stats(target))["slow_consumer_closes"]) - before
    )
    return result


async def long_absence(target: Target, messages: int) -> AttackResult:
    """A client subscribed to order_updates goes away while `messages` are published, then
    resubscribes with `since`: recovered?, and whether it got every seq exactly once."""
    run = os.urandom(4).hex()
    result = AttackResult("long_absence")
    publisher = Publisher(target.http_url)
    try:
        first = await WsSession.open(target)
        confirmed = await first.subscribe("order_updates", snapshot=False)
        position = confirmed["position"]
        await first.close()
        await publisher.publish_many([order_message(n, run) for n in range(messages)])
        back = await WsSession.open(target)
        resumed = await back.subscribe(
            "order_updates", since={"epoch": position["epoch"], "seq": position["seq"]}
        )
        result.counts["confirmed"] = resumed.get("type")
        result.counts["recovered"] = resumed.get("recovered")
        expected = list(range(int(position["seq"]) + 1, int(position["seq"]) + messages + 1))
        seqs: list[int] = []
        try:
            async with asyncio.timeout(TIMEOUT + messages / 2000):
                while len(seqs) < messages:
                    message = await back.recv()
                    if message.get("stream") == "order_updates":
                        seqs.append(int(message["seq"]))
        except ConnectionClosed:
            result.close_code = back.ws.close_code
        except TimeoutError:
            result.counts["timed_out"] = True
        result.counts["received"] = len(seqs)
        result.counts["exact"] = seqs == expected
        await back.close()
        return result
    finally:
        await publisher.close()


# ------------------------------------------------------------------ d. filter values


async def filter_values(
    target: Target,
    connections: int = 4,
    subscriptions: int = 100,
    symbols: int = 1000,
    list_limit: int = 1000,
) -> tuple[AttackResult, list[WsSession]]:
    """Each connection asks `subscriptions` subscriptions of `symbols` symbols each.

    Returns the result and the open sessions (the caller measures memory, then closes them).
    counts: confirmed / refused per connection, the refusals' error codes, the pages of
    list_subscriptions on the first connection and of /api/subscriptions, /api/connections."""
    result = AttackResult("filter_values")
    sessions = [await WsSession.open(target) for _ in range(connections)]
    confirmed: list[int] = []
    refused: list[int] = []
    codes: set[str] = set()
    for c, session in enumerate(sessions):
        ok = bad = 0
        for s in range(subscriptions):
            values = [f"C{c}S{s}V{v}" for v in range(symbols)]
            reply = await session.subscribe(
                "market_data", filters={"symbols": values}, snapshot=False
            )
            if reply["type"] == "subscription_confirmed":
                ok += 1
            else:
                bad += 1
                codes.add(reply["error_code"])
        confirmed.append(ok)
        refused.append(bad)
    result.counts.update(confirmed=confirmed, refused=refused, error_codes=sorted(codes))
    # list_subscriptions, paged by the gateway (max_list_page).
    pages: list[int] = []
    after: str | None = None
    while True:
        request: dict[str, Any] = {"type": "list_subscriptions", "limit": list_limit}
        if after is not None:
            request["after"] = after
        reply = await sessions[0].request(request, "subscriptions")
        pages.append(len(reply["subscriptions"]))
        after = reply.get("next")
        if after is None or len(pages) > 1000:
            break
    result.counts["list_pages"] = pages
    async with httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT) as http:
        for path in ("/api/subscriptions", "/api/connections"):
            rows: list[int] = []
            offset: str | None = "0"
            total = None
            while offset is not None and len(rows) < 1000:
                response = await http.get(path, params={"offset": offset})
                rows.append(len(response.json()))
                total = response.headers.get("x-total-count")
                offset = response.headers.get("x-next-offset")
            result.counts[path] = {"pages": rows, "total": total}
    return result, sessions


# ------------------------------------------------------------------ e. reassembly


async def reassembly_hold(
    target: Target, connections: int, fragment_bytes: int
) -> tuple[AttackResult, list[RawClient]]:
    """`connections` connections each start a text message of `fragment_bytes` and never
    finish it. After each fragment a PING: its PONG says the fragment is held, a close
    frame (expected 1009 past max_reassembly_bytes) that it was refused.

    Returns the result and the holders still open (the caller measures, then aborts them)."""
    result = AttackResult("reassembly_hold")
    head = b'{"type": "ping", "pad": "' + b"x" * max(0, fragment_bytes - 25)
    holders: list[RawClient] = []
    refused: list[int | None] = []
    for n in range(connections):
        client = await RawClient.open(target)
        marker = str(n).encode()
        client.send(frame(TEXT, head, fin=False), frame(PING, marker))
        code = await client.pong_or_close(marker)
        if code is None:
            holders.append(client)
        else:
            refused.append(code)
            client.abort()
            if result.close_code is None:
                result.close_code = code
        result.frames_sent += 2
        result.bytes_sent += len(head)
    result.counts.update(
        held=len(holders),
        refused=len(refused),
        refused_codes=sorted({c for c in refused if c is not None}),
    )
    return result, holders


# ------------------------------------------------------------------ f. latest values


async def latest_keys(target: Target, symbols: int, cap: int) -> AttackResult:
    """Publish `symbols` distinct symbols once each (L0...), update the oldest one the cap
    keeps, then publish one more new symbol: with an LRU of `cap` keys the stream keeps the
    updated one and evicts the next oldest. A new unfiltered subscription's snapshot is then
    read up to a sentinel published after its confirmation (live messages follow the
    snapshot). counts: kept (latest values in the snapshot), lru_ok (exactly the expected
    set), missing / unexpected (a few of each)."""
    result = AttackResult("latest_keys")
    publisher = Publisher(target.http_url)
    session = await WsSession.open(target)
    try:
        await publisher.publish_many([quote_message(f"L{n}", n) for n in range(symbols)])
        oldest_kept = max(0, symbols - cap)
        await publisher.publish([quote_message(f"L{oldest_kept}", symbols)])
        await publisher.publish([quote_message("LNEW", symbols + 1)])
        confirmed = await session.subscribe("market_data")
        if confirmed["type"] != "subscription_confirmed":
            result.counts["error"] = confirmed
            return result
        position = int(confirmed["position"]["seq"])
        await publisher.publish([quote_message("LSENTINEL", symbols + 2)])
        kept: set[str] = set()
        snapshot_messages = 0
        try:
            async with asyncio.timeout(TIMEOUT + cap / 2000):
                while True:
                    message = await session.recv()
                    if message.get("stream") != "market_data":
                        continue
                    if message["symbol"] == "LSENTINEL" and message["seq"] > position:
                        break
                    if message["seq"] <= position:
                        snapshot_messages += 1
                        kept.add(message["symbol"])
        except ConnectionClosed:
            result.close_code = session.ws.close_code
        expected = {f"L{n}" for n in range(oldest_kept + 2, symbols)}
        expected |= {f"L{oldest_kept}", "LNEW"}
        result.counts.update(
            kept=len(kept),
            snapshot_messages=snapshot_messages,
            lru_ok=kept == expected,
            missing=sorted(expected - kept)[:5],
            unexpected=sorted(kept - expected)[:5],
        )
        return result
    finally:
        await session.close()
        await publisher.close()


# ------------------------------------------------------------------ g. framing and parsing


FRAMING_CASES: dict[str, tuple[list[bytes], int]] = {
    "invalid-utf8": ([frame(TEXT, b'{"type": "\xff"}')], 1007),
    "rsv-bits": ([frame(TEXT, b'{"type": "ping"}', rsv=4)], 1002),
    "interleaved": ([frame(TEXT, b'{"type":', fin=False), frame(TEXT, b'{"type": "ping"}')], 1002),
    "lone-continuation": ([frame(CONT, b'{"type": "ping"}')], 1002),
    "close-1005": ([frame(CLOSE, struct.pack("!H", 1005))], 1002),
    "close-1006": ([frame(CLOSE, struct.pack("!H", 1006))], 1002),
    "close-1015": ([frame(CLOSE, struct.pack("!H", 1015))], 1002),
    "close-5000": ([frame(CLOSE, struct.pack("!H", 5000))], 1002),
}
"""Case name: (frames, the documented close code)."""

DEEP_JSON = b"[" * 1000 + b"]" * 1000


async def framing_rules(target: Target) -> AttackResult:
    """Every case of FRAMING_CASES on its own connection, deep JSON, version 8, negative
    since, and the two bad bodies on POST /api/publish. counts: observed close codes by
    case, the deep-JSON reply and whether the connection stayed, the 426 and its header,
    the negative-since error code, the REST statuses and bodies."""
    result = AttackResult("framing_rules")
    observed: dict[str, int | None] = {}
    for name, (frames, _code) in FRAMING_CASES.items():
        client = await RawClient.open(target)
        client.send(*frames)
        observed[name] = await client.close_code()
        client.abort()
    result.counts["close_codes"] = observed
    raw = await RawClient.open(target)
    raw.send(frame(TEXT, DEEP_JSON))
    reply = await raw.message()
    result.counts["deep_json"] = (reply.get("type"), reply.get("error_code"))
    raw.send(frame(TEXT, b'{"type": "ping"}'))
    result.counts["deep_json_connection_kept"] = (await raw.message()).get("type") == "pong"
    raw.abort()
    refused, status, headers = await RawClient.handshake(target, version="8")
    refused.abort()
    result.counts["version_8_status"] = int(status.split()[1])
    result.counts["version_8_header"] = b"sec-websocket-version: 13" in headers.lower()
    session = await WsSession.open(target)
    negative = await session.subscribe("order_updates", since={"epoch": "e", "seq": -1})
    result.counts["negative_since"] = negative.get("error_code")
    result.counts["negative_since_connection_kept"] = (
        await session.request({"type": "ping"}, "pong")
    )["type"] == "pong"
    await session.close()
    rest: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT) as http:
        bodies = {"invalid-utf8": b'{"type": "\xff"}', "deep-json": DEEP_JSON}
        for name, body in bodies.items():
            response = await http.post(
                "/api/publish", content=body, headers={"Content-Type": "application/json"}
            )
            try:
                parsed = response.json()
            except ValueError:
                parsed = response.text[:200]
            rest[name] = {"status": response.status_code, "body": parsed}
    result.counts["rest"] = rest
    return result


# ------------------------------------------------------------------ memory


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) of a process from /proc/<pid>/status."""
    return _status_field(pid, "VmRSS:")


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process from /proc/<pid>/status."""
    return _status_field(pid, "VmHWM:")


def _status_field(pid: int | str, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no {name} in /proc/{pid}/status")


class RssSampler:
    """Samples a process's RSS every `interval` s while an attack runs: before, peak, after
    (VmHWM is useless for a test process that lives across many attacks)."""

    def __init__(self, pid: int | str = "self", interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.before = rss_bytes(pid)
        self.peak = self.before
        self.last = self.before
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        async def loop() -> None:
            while True:
                self.sample()
                await asyncio.sleep(self.interval)

        self._task = asyncio.get_running_loop().create_task(loop())
        return self

    def sample(self) -> int:
        try:
            self.last = rss_bytes(self.pid)
        except (OSError, ValueError):
            return self.last
        self.peak = max(self.peak, self.last)
        return self.last

    @property
    def growth(self) -> int:
        """Peak minus before, in bytes."""
        return self.peak - self.before

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.sample()
