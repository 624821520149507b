"""A WebSocket client that subscribes to everything and never reads: the gateway must cut it off.

It does the handshake by hand on a socket with a tiny receive buffer, subscribes to every
reliable stream without filters, and keeps sending heartbeats (so it looks alive and only
its not reading can get it closed: 4008 after the stall timeout or past the outbox limit).
Afterwards `drain` reads what the gateway had sent, to find the close frame's code.
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
from typing import Any

from checker.model import RELIABLE_STREAMS

RECEIVE_BUFFER = 4096
HEARTBEAT_INTERVAL = 0.5


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked (client-to-server) WebSocket frame, FIN set."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def close_code_of(data: bytes) -> int | None:
    """The code of the first close frame among the server frames in `data` (None if none)."""
    offset = 0
    while offset + 2 <= len(data):
        opcode = data[offset] & 0x0F
        length = data[offset + 1] & 0x7F
        offset += 2
        if length == 126:
            if offset + 2 > len(data):
                return None
            (length,) = struct.unpack_from("!H", data, offset)
            offset += 2
        elif length == 127:
            if offset + 8 > len(data):
                return None
            (length,) = struct.unpack_from("!Q", data, offset)
            offset += 8
        if opcode == 0x8:
            if length >= 2 and offset + 2 <= len(data):
                code: int = struct.unpack_from("!H", data, offset)[0]
                return code
            return None
        offset += length
    return None


class RawClient:
    """The never-reading client; `local_address` identifies it in /api/connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.local_address = ""
        self.sent_heartbeats = 0
        self.send_error: str | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    async def open(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A tiny window: the gateway's writes back up after a few kilobytes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setblocking(False)
        self.sock = sock
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, ("127.0.0.1", self.port))
            host, port = sock.getsockname()[:2]
            self.local_address = f"{host}:{port}"
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            # Read the handshake answer only (byte by byte, so no frame is consumed).
            answer = b""
            while not answer.endswith(b"\r\n\r\n"):
                chunk = await loop.sock_recv(sock, 1)
                if not chunk:
                    raise ConnectionError("the gateway closed during the handshake")
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"handshake refused: {answer[:100]!r}")
            for index, stream in enumerate(RELIABLE_STREAMS):
                await self.send(
                    {"type": "subscribe", "stream": stream, "subscription_id": f"raw{index}"}
                )
        self._heartbeats = asyncio.create_task(self._heartbeat_loop())

    async def send(self, message: dict[str, Any]) -> None:
        assert self.sock is not None
        frame = client_frame(json.dumps(message).encode())
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(
                    self.send({"type": "heartbeat", "client_timestamp": int(time.time() * 1000)}),
                    HEARTBEAT_INTERVAL,
                )
            except (OSError, TimeoutError) as exc:
                # The gateway closed the connection (or its window for us is full).
                self.send_error = repr(exc)
                return
            self.sent_heartbeats += 1
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def drain(self, timeout: float = 5.0) -> tuple[int, int | None, str]:  # noqa: ASYNC109
        """Read everything the gateway sent, up to EOF; (bytes, close code, how it ended)."""
        await self._stop_heartbeats()
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        received = bytearray()
        ending = "timeout"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await loop.sock_recv(self.sock, 1 << 20)
                    if not chunk:
                        ending = "eof"
                        break
                    received += chunk
        except TimeoutError:
            pass
        except OSError as exc:
            ending = f"error {exc.__class__.__name__}"
        return len(received), _last_close_code(bytes(received)), ending

    async def _stop_heartbeats(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
            self._heartbeats = None

    async def close(self) -> None:
        await self._stop_heartbeats()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _last_close_code(data: bytes) -> int | None:
    # Frames start right after the handshake answer: scan them from the start.
    return close_code_of(data)
