"""The gateway with its Nautilus source on (settings `nautilus_url`, CLI `--nautilus`).

Recorded entries of a real backtest are written into a private Redis; a WebSocket client of
the gateway must receive them as Tidewire messages. Needs redis-server, not nautilus_trader.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner
from websockets.asyncio.client import connect as ws_connect

from redisproc import RedisProcess
from support import WsClient
from tidewire.cli import app
from tidewire.server.app import Gateway

pytestmark = pytest.mark.redis
TIMEOUT = 10.0


async def xadd(url: str, entries: list[tuple[str, str, dict[bytes, bytes]]]) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        pipe = client.pipeline(transaction=False)
        for stream, _, fields in entries:
            pipe.xadd(stream, dict(fields))  # type: ignore[arg-type]
        await pipe.execute()
    finally:
        await client.aclose()


async def test_a_subscribed_client_gets_nautilus_events(
    recording: Callable[[str], Any],
    redis_server: RedisProcess,
    make_gateway: Callable[..., Awaitable[Gateway]],
    connect: Callable[..., Awaitable[WsClient]],
) -> None:
    rec = recording("backtest_msgpack_one_stream")
    gateway = await make_gateway(nautilus_url=redis_server.url)
    client = await connect(gateway, path="/ws?decimals=string")
    for stream in ("order_updates", "trade_updates", "position_updates", "performance_updates"):
        reply = await client.subscribe(stream)
        assert reply["type"] == "subscription_confirmed", reply
    await xadd(redis_server.url, rec.entries)

    fills = rec.produced["fills"]
    trades: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        while len(trades) < len(fills):
            message = await client.recv()
            if message.get("stream") == "trade_updates":
                trades.append(message)
    by_trade = {t["data"]["trade_id"]: t for t in trades}
    for fill in fills:
        trade = by_trade[fill["trade_id"]]
        assert trade["data"]["price"] == fill["price"]  # exact, as a decimal string
        assert Decimal(trade["data"]["quantity"]) == Decimal(fill["quantity"])
        assert trade["source"] == "nautilus" and trade["portfolio_id"] == "SIM-001"
        assert trade["message_id"] == f"nt-{fill['event_id']}-trade"  # from Nautilus's id
    await client.no_data(gateway)  # read what is still queued (latest-value lane)
    kinds = {m["type"] for m in client.received if "stream" in m}
    assert {"order_update", "trade_updates", "position_update", "performance_update"} <= kinds

    async with httpx.AsyncClient(base_url=gateway.internal_url) as http:
        stats = (await http.get("/api/stats")).json()
    assert stats["nautilus"]["connected"] is True
    assert stats["nautilus"]["streams"] == 1


def test_workers_and_nautilus_are_refused() -> None:
    result = CliRunner().invoke(
        app, ["serve", "--workers", "2", "--nautilus", "redis://127.0.0.1:1"]
    )
    assert result.exit_code == 2
    assert "--nautilus reads in one process" in result.output


async def test_serve_with_nautilus_flags(redis_server: RedisProcess) -> None:
    """`tidewire serve --nautilus URL --nautilus-stream KEY` reads that stream only."""
    env = {**os.environ, "TIDEWIRE_NAUTILUS_OFFSETS_KEY": ""}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidewire",
        "serve",
        "--port",
        "0",
        "--internal-port",
        "0",
        "--nautilus",
        redis_server.url,
        "--nautilus-stream",
        "trader-CLI-001:stream",
        "--nautilus-stream",
        "trader-CLI-002:*",
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stderr is not None
        url = None
        async with asyncio.timeout(TIMEOUT):
            while url is None:
                line = (await process.stderr.readline()).decode()
                found = re.search(r"(ws://\S+/ws)", line)
                url = found.group(1) if found else None
        beat = {b"topic": b"health:heartbeat", b"payload": b"2026-11-26T14:47:11Z"}
        async with ws_connect(url, open_timeout=TIMEOUT) as ws:
            await ws.send(json.dumps({"type": "subscribe", "stream": "engine_status"}))
            await xadd(redis_server.url, [("trader-CLI-001:stream", "", beat)])
            await xadd(redis_server.url, [("trader-CLI-002:stream:health:heartbeat", "", beat)])
            await xadd(redis_server.url, [("trader-OTHER:stream", "", beat)])
            engines: set[str] = set()
            async with asyncio.timeout(TIMEOUT):
                while len(engines) < 2:
                    message = json.loads(await ws.recv())
                    if message.get("type") == "engine_status":
                        engines.add(message["engine_id"])
                        assert message["data"]["state"] == "running"
            assert engines == {"CLI-001", "CLI-002"}  # not OTHER: not a configured stream
    finally:
        process.terminate()
        await process.wait()
