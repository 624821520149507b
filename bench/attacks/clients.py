"""The clients every attack is built from, and what they share.

`Target` names the gateway under attack, `AttackResult` is what an attack returns, `until`
polls a condition with a bound. `RawClient` writes whatever WebSocket frames it is given
(`frame` builds one) and reads the gateway's answers frame by frame; `WsSession` speaks the
protocol properly over `websockets`; `Publisher` publishes over POST /api/publish, retrying
on 429; `stats` reads /api/stats. Nothing here attacks or asserts.
"""

from __future__ import annotations

import asyncio
import base64
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


async def stats(target: Target) -> dict[str, Any]:
    """GET /api/stats."""
    async with httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT) as http:
        response = await http.get("/api/stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


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


def close_code_of(payload: bytes) -> int:
    """The code of a close frame's payload (1005: a close frame without one)."""
    return int.from_bytes(payload[:2], "big") if payload else 1005


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
                    raise ConnectionError(f"closed with {close_code_of(payload)}")
                if opcode == TEXT:
                    value: dict[str, Any] = json.loads(payload)
                    return value

    async def close_code(self, timeout: float = TIMEOUT) -> int | None:  # noqa: ASYNC109
        """Read (and drop) frames until the gateway's close frame: its code (None: the
        connection ended without one). For a non-reader this drains what the kernel still
        holds for it."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    opcode, payload = await self.next_frame()
                    if opcode == CLOSE:
                        return close_code_of(payload)
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
                    return close_code_of(data)

    async def flood_until_closed(
        self, frames: bytes, max_seconds: float, attack: str = "flood"
    ) -> AttackResult:
        """Write `frames` over and over until the gateway closes (reading what it answers
        meanwhile, so the cut is the flood's and not a slow consumer's)."""
        per_batch = max(1, 8192 // len(frames))
        batch = frames * per_batch
        result = AttackResult(attack)
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


# ------------------------------------------------------------------ protocol clients


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
