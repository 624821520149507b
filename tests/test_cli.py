"""The `tidewire` command line, run as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from conftest import TIMEOUT, quote
from tidewire.server.app import Gateway

CLI = [sys.executable, "-m", "tidewire"]


async def run(*args: str, stdin: bytes | None = None, timeout: float = 20) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_tail_prints_matching_messages_one_per_line(gateway: Gateway) -> None:
    tail = asyncio.create_task(
        run("tail", "market_data", "--url", gateway.url, "--symbols", "AAPL,MSFT", "--count", "3")
    )
    async with asyncio.timeout(15):
        while gateway.stats()["subscriptions"] == 0:  # noqa: ASYNC110 - a subprocess subscribes
            await asyncio.sleep(0.02)
    for symbol in ("AAPL", "GOOG", "MSFT", "AAPL"):
        await gateway.publish(quote(symbol))
    code, out, err = await tail
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [m["symbol"] for m in lines] == ["AAPL", "MSFT", "AAPL"]


async def test_tail_reports_a_bad_stream(gateway: Gateway) -> None:
    code, _, err = await run("tail", "no_such_stream", "--url", gateway.url)
    assert code == 2
    assert "unknown_stream" in err


async def test_publish_from_stdin_and_file(gateway: Gateway, tmp_path: Any) -> None:
    lines = "\n".join(json.dumps(quote(s)) for s in ("AAPL", "MSFT")).encode()
    code, out, err = await run("publish", "-", "--url", gateway.internal_url, stdin=lines)
    assert code == 0, err
    assert json.loads(out)["accepted"] == 2
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"type": "market_data", "data": {"bid": 1, "ask": 2}}))
    code, out, _ = await run("publish", str(path), "--url", gateway.internal_url)
    assert code == 1
    assert json.loads(out)["error_code"] == "invalid_message"
    assert gateway.broker.position("market_data").seq == 2


async def test_schema_outputs() -> None:
    code, out, _ = await run("schema")
    assert code == 0
    assert "$defs" in json.loads(out)
    code, out, _ = await run("schema", "--typescript")
    assert code == 0 and "export interface DataMessage" in out


@pytest.mark.slow
async def test_serve_demo_runs_and_shuts_down_cleanly() -> None:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--demo",
        "--port",
        "0",
        "--internal-port",
        "0",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        urls: dict[str, str] = {}
        async with asyncio.timeout(20):
            while len(urls) < 2:
                line = (await process.stderr.readline()).decode()
                assert line, "serve exited before printing its URLs"
                if match := re.search(r"(ws://\S+)", line):
                    urls["ws"] = match.group(1)
                if match := re.search(r"Control plane: (http://\S+)", line):
                    urls["http"] = match.group(1)
        async with httpx.AsyncClient(base_url=urls["http"], timeout=TIMEOUT) as http:
            assert (await http.get("/readyz")).status_code == 200
        async with ws_connect(urls["ws"]) as ws:
            await ws.send(json.dumps({"type": "subscribe", "stream": "market_data"}))
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                while len([m for m in seen if m.get("type") == "market_data"]) < 5:
                    seen.append(json.loads(await ws.recv()))
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
