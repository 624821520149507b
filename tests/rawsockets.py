"""Clients below the WebSocket library: a subscriber that never reads, and polling a
server-side condition with a timeout (the gateway's internals have no event to await)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from typing import Any

from tidewire.server.app import Gateway


async def raw_subscriber(
    gateway: Gateway, subscribe: dict[str, Any]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that completes the handshake, subscribes, and then never reads."""
    # A small receive window (set before connecting) keeps the kernel from absorbing much.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gateway.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    payload = json.dumps(subscribe).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes((0x81, 0x80 | len(payload))) + mask + masked)
    await writer.drain()
    return reader, writer


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a server-side condition (no event to await on the gateway's internals)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - no event to await on gateway internals
            await asyncio.sleep(0.01)
