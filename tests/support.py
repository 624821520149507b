"""What tests share besides fixtures: the default timeout, whether this is CI, external
tools, and `WsClient`, a raw protocol client over the `websockets` library. Test modules
import these from here (never from conftest.py, which pytest loads on its own)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import ClientConnection

if TYPE_CHECKING:
    from tidewire.server.app import Gateway

TIMEOUT = 5.0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, install_hint: str) -> str:
    """Path of an external tool; in CI its absence fails the run, locally it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install_hint})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


class WsClient:
    """A raw protocol client for tests: JSON in, JSON out, every wait bounded."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            message = json.dumps(message)
        await self.ws.send(message)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        self.received.append(message)
        return message

    async def recv_type(self, *types: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message of one of `types`, skipping others (e.g. server heartbeats)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message["type"] in types:
                    return message

    async def request(self, message: dict[str, Any], *reply_types: str) -> dict[str, Any]:
        await self.send(message)
        return await self.recv_type(*reply_types)

    async def subscribe(self, stream: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request(
            {"type": "subscribe", "stream": stream, **fields},
            "subscription_confirmed",
            "subscription_error",
        )
        return reply

    async def data(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The next `count` data messages (messages carrying a `stream`)."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                message = await self.recv(timeout)
                if "stream" in message and "seq" in message:
                    out.append(message)
        return out

    async def no_data(self, gateway: Gateway) -> list[dict[str, Any]]:
        """Data messages that arrive before a marker round trip: proves nothing else is queued.

        Sends a heartbeat and collects everything until its response; the server answers in
        order, so anything queued for this client before the heartbeat shows up first.
        """
        await self.send({"type": "heartbeat", "client_timestamp": 1, "message_id": "marker"})
        extra: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.recv()
                if message.get("correlation_id") == "marker":
                    return extra
                if "seq" in message and "stream" in message:
                    extra.append(message)

    async def close(self) -> None:
        await self.ws.close()
