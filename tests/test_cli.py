"""The `tidewire` command line, run as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from messages import order, quote, trade
from support import TIMEOUT
from tidewire.server.app import Gateway
from tokens import SECRET, SECURE, token

CLI = [sys.executable, "-m", "tidewire"]


async def run(
    *args: str, stdin: bytes | None = None, timeout: float = 20, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env={**os.environ, **env} if env is not None else None,
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
    assert lines[0]["data"]["bid_price"] == 100.0 and lines[0]["data_type"] == "quote"


async def test_tail_follows_a_topic_with_a_price_filter(gateway: Gateway) -> None:
    await gateway.publish(quote("AAPL", 50.0))  # the latest value, refused by --no-snapshot
    tail = asyncio.create_task(
        run(
            "tail",
            "market_data.AAPL",
            "--url",
            gateway.url,
            "--min-price",
            "100",
            "--no-snapshot",
            "--count",
            "1",
        )
    )
    async with asyncio.timeout(15):
        while gateway.stats()["subscriptions"] == 0:  # noqa: ASYNC110 - a subprocess subscribes
            await asyncio.sleep(0.02)
    for symbol, bid in (("MSFT", 200.0), ("AAPL", 99.0), ("AAPL", 150.0)):
        await gateway.publish(quote(symbol, bid))
    code, out, err = await tail
    assert code == 0, err
    assert [json.loads(line)["data"]["bid_price"] for line in out.splitlines()] == [150.0]


async def test_snapshot_and_trades_print_one_message_per_line(gateway: Gateway) -> None:
    for symbol, bid in (("AAPL", 1.0), ("MSFT", 2.0), ("AAPL", 3.0)):
        await gateway.publish(quote(symbol, bid))
    code, out, err = await run("snapshot", "market_data", "--url", gateway.url, "--symbols", "AAPL")
    assert code == 0, err
    assert [json.loads(line)["data"]["bid_price"] for line in out.splitlines()] == [3.0]
    for n, portfolio in enumerate(("P1", "P2", "P2"), start=1):
        await gateway.publish(trade(portfolio, n=n))
    code, out, err = await run("trades", "--url", gateway.url, "--portfolio-ids", "P2")
    assert code == 0, err
    assert [json.loads(line)["data"]["trade_id"] for line in out.splitlines()] == ["T-2", "T-3"]
    code, _, err = await run("snapshot", "trade_updates", "--url", gateway.url)
    assert code == 2 and "invalid_message" in err
    code, _, err = await run("trades", "--url", "ws://127.0.0.1:1/ws")
    assert code == 1 and "error: ws://127.0.0.1:1/ws: " in err


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


async def test_token_mints_from_the_configured_secret() -> None:
    code, out, err = await run(
        "token",
        "--sub",
        "alice",
        "--portfolios",
        "PF-ALPHA,PF-BETA",
        "--roles",
        "subscriber",
        "--ttl",
        "1h",
        env={"TIDEWIRE_JWT_SECRET": SECRET},
    )
    assert code == 0, err
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["portfolio_ids"] == ["PF-ALPHA", "PF-BETA"]
    assert claims["roles"] == ["subscriber"] and claims["exp"] - claims["iat"] == 3600
    assert claims["jti"]  # revocable


async def test_token_signs_rs256_with_a_private_key_and_refuses_without_a_key(
    tmp_path: Path,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code, out, err = await run("token", "--sub", "svc", "--private-key", str(pem), "--kid", "k1")
    assert code == 0, err
    assert jwt.get_unverified_header(out.strip()) == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    jwt.decode(out.strip(), key.public_key(), algorithms=["RS256"])
    code, _, err = await run("token", "--sub", "svc")
    assert code == 2 and "no key" in err
    code, _, err = await run("token", "--sub", "svc", env={"TIDEWIRE_JWT_SECRET": ""})
    assert code == 2 and "set but empty" in err


async def test_serve_refuses_a_short_or_empty_secret() -> None:
    code, _, err = await run("serve", "--port", "0", "--internal-port", "0", "--jwt-secret", "x")
    assert code == 2 and "at least 32 bytes" in err and "x" not in err.split("error:")[0]
    # A template that rendered nothing must not run the gateway open.
    serve = ("serve", "--port", "0", "--internal-port", "0")
    code, _, err = await run(*serve, env={"TIDEWIRE_JWT_SECRET": ""})
    assert code == 2 and "set but empty" in err


async def test_serve_reads_its_settings_file_and_refuses_a_bad_one(tmp_path: Any) -> None:
    serve = ("serve", "--port", "0", "--internal-port", "0", "--config")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("max_subscription = 5\n")
    code, _, err = await run(*serve, str(unknown))
    assert code == 2 and "unknown setting 'max_subscription'" in err
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("max_subscriptions = 0\n")  # read, and validated like a variable
    code, _, err = await run(*serve, str(invalid))
    assert code == 2 and "max_subscriptions" in err


async def test_tail_and_publish_take_a_token(make_gateway: Any) -> None:
    gateway: Gateway = await make_gateway(**SECURE)
    reader = token("alice", portfolios=["PF-A"])
    tail = asyncio.create_task(
        run("tail", "order_updates", "--url", gateway.url, "--count", "1", "--token", reader)
    )
    async with asyncio.timeout(15):
        while gateway.stats()["subscriptions"] == 0:  # noqa: ASYNC110 - a subprocess subscribes
            await asyncio.sleep(0.02)
    body = json.dumps([order("PF-B", 1), order("PF-A", 2)]).encode()
    feed = token("feed", portfolios=["*"], roles=["publisher"])
    code, out, err = await run(
        "publish", "-", "--url", gateway.internal_url, stdin=body, env={"TIDEWIRE_TOKEN": feed}
    )
    assert code == 0, err
    assert json.loads(out)["accepted"] == 2
    code, out, err = await tail
    assert code == 0, err
    assert [json.loads(line)["portfolio_id"] for line in out.splitlines()] == ["PF-A"]
    code, out, _ = await run("publish", "-", "--url", gateway.internal_url, stdin=body)
    assert code == 1 and json.loads(out)["error_code"] == "unauthorized"


async def test_status_shows_a_running_gateway(gateway: Gateway) -> None:
    url = gateway.internal_url
    code, out, err = await run("status", "--url", url, "--interval", "0.2", "--json")
    assert code == 0, err
    figures = json.loads(out)
    assert figures["ready"] is True and figures["broker_reachable"] is True
    assert figures["connections"] == 0 and figures["broker_lag"] == {}
    code, out, _ = await run("status", "--url", url, "--interval", "0.1")
    assert code == 0 and "ready" in out and "deliveries/s" in out


async def test_status_needs_the_admin_role_when_authentication_is_on(make_gateway: Any) -> None:
    gateway = await make_gateway(jwt_secret=SECRET)
    url = gateway.internal_url
    code, _, err = await run("status", "--url", url, "--interval", "0.1")
    assert code == 2 and "refused the token" in err
    admin = token(roles=["admin"])
    code, out, err = await run("status", "--url", url, "--interval", "0.1", "--json",
                               env={"TIDEWIRE_TOKEN": admin})  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["ready"] is True


async def test_status_of_an_unreachable_gateway_exits_1() -> None:
    code, _, err = await run("status", "--url", "http://127.0.0.1:9", "--interval", "0.1")
    assert code == 1 and "cannot read the gateway" in err
