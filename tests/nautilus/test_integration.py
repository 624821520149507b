"""A real NautilusTrader backtest publishing into Redis, read by the gateway, seen by a client.

examples/nautilus_backtest.py runs (in a subprocess: nautilus_trader is synchronous and
heavy) with NautilusTrader's default Redis layout for 1.221 (one stream per topic, msgpack
payloads) against a private redis-server; the gateway reads it through its Nautilus source;
a WebSocket client subscribed to market_data, order_updates, trade_updates and
position_updates must receive the quotes, orders, fills and positions the engine produced,
with its ids and exact prices (the expected values come from the engine's cache after the
run). In CI a missing nautilus_trader or redis-server fails the test; locally it skips.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from redisproc import RedisProcess
from support import WsClient
from tidewire.server.app import Gateway

pytestmark = [pytest.mark.slow, pytest.mark.nautilus, pytest.mark.redis]

BACKTEST = Path(__file__).resolve().parents[2] / "examples" / "nautilus_backtest.py"
STATUS = {
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "DENIED": "denied",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
}
STREAMS = ("market_data", "order_updates", "trade_updates", "position_updates")


async def run_backtest(redis_url: str, expect: Path, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BACKTEST),
        "--redis",
        redis_url,
        "--expect",
        str(expect),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()[-3000:]


async def receive_until(
    client: WsClient, done: Callable[[dict[str, list[dict[str, Any]]]], bool], timeout: float
) -> dict[str, list[dict[str, Any]]]:
    """Data messages per stream, until `done(received)` holds."""
    received: dict[str, list[dict[str, Any]]] = {stream: [] for stream in STREAMS}
    async with asyncio.timeout(timeout):
        while not done(received):
            message = await client.recv(timeout)
            if "stream" in message and "seq" in message:
                received[message["stream"]].append(message)
    return received


@pytest.mark.usefixtures("nautilus_trader")
async def test_backtest_to_websocket_client(
    tmp_path: Path,
    redis_server: RedisProcess,
    make_gateway: Callable[..., Awaitable[Gateway]],
    connect: Callable[..., Awaitable[WsClient]],
) -> None:
    gateway = await make_gateway(nautilus_url=redis_server.url)
    client = await connect(gateway, path="/ws?decimals=string")
    for stream in STREAMS:
        reply = await client.subscribe(stream)
        assert reply["type"] == "subscription_confirmed", reply

    expect = tmp_path / "produced.json"
    await run_backtest(redis_server.url, expect, "--quotes", "300", "--encoding", "msgpack")
    produced = json.loads(expect.read_text())
    fills, orders, positions = produced["fills"], produced["orders"], produced["positions"]
    last_quote = produced["quotes"][-1]

    final_positions = {p["position_id"]: Decimal(p["quantity"]) for p in positions}

    def done(received: dict[str, list[dict[str, Any]]]) -> bool:
        position_now = {
            m["data"]["position_id"]: Decimal(m["data"]["quantity"])
            for m in received["position_updates"]
        }
        final = {
            m["order_id"] for m in received["order_updates"] if m["order_status"] in STATUS.values()
        }
        quotes = [m for m in received["market_data"] if m["data_type"] == "quote"]
        return (
            len(received["trade_updates"]) >= len(fills)
            and len(final) >= len(orders)
            and all(position_now.get(p) == q for p, q in final_positions.items())
            and bool(quotes)
            and quotes[-1]["data"]["ts_event"] == last_quote["ts_event"]
        )

    received = await receive_until(client, done, timeout=60)

    # Fills: each one exactly once, with Nautilus's ids and exact prices.
    trades = received["trade_updates"]
    assert len(trades) == len(fills)
    by_trade = {m["data"]["trade_id"]: m for m in trades}
    for fill in fills:
        trade = by_trade[fill["trade_id"]]
        assert trade["message_id"] == f"nt-{fill['event_id']}-trade"
        assert trade["data"]["order_id"] == fill["order_id"]
        assert trade["data"]["price"] == fill["price"]
        assert Decimal(trade["data"]["quantity"]) == Decimal(fill["quantity"])
        assert Decimal(trade["data"]["commission"]) == Decimal(fill["commission"])
        assert trade["data"]["ts_event"] == fill["ts_event"]
        assert trade["portfolio_id"] == produced["account_id"]
        assert trade["user_id"] == produced["trader_id"]
        assert trade["data"]["status"] in ("partial", "filled")

    # Orders: the last update of each has the engine's final status and quantities.
    last_update: dict[str, dict[str, Any]] = {}
    for message in received["order_updates"]:
        last_update[message["order_id"]] = message
    assert set(last_update) == {order["order_id"] for order in orders}
    for order in orders:
        update = last_update[order["order_id"]]
        data = update["data"]
        assert update["order_status"] == STATUS[order["status"]], order
        assert Decimal(data["filled_quantity"]) == Decimal(order["filled_quantity"])
        assert data["side"] == order["side"].lower()
        if order["price"] is not None:
            assert data["price"] == order["price"]
        if order["avg_px"] is not None:
            assert abs(Decimal(data["avg_fill_price"]) - Decimal(order["avg_px"])) < Decimal(
                "1e-12"
            )
        if order["status"] == "DENIED":
            assert data["reject_reason"] == order["reason"]
    assert any(order["status"] == "DENIED" for order in orders)

    # Positions: the last update of each matches the engine's position.
    last_position: dict[str, dict[str, Any]] = {}
    for message in received["position_updates"]:
        last_position[message["data"]["position_id"]] = message["data"]
    for position in positions:
        data = last_position[position["position_id"]]
        assert Decimal(data["quantity"]) == Decimal(position["quantity"])
        assert Decimal(data["realized_pnl"]) == Decimal(position["realized_pnl"])
        assert Decimal(data["avg_price"]) == Decimal(repr(position["avg_px_open"]))

    # Quotes: every one received is one the engine produced, and the last one arrived.
    # (`produced` is the backtest's own record of its quotes, with its own names.)
    produced_quotes = {q["ts_event"]: (q["bid"], q["ask"]) for q in produced["quotes"]}
    quotes = [m for m in received["market_data"] if m["data_type"] == "quote"]
    assert quotes and all(m["symbol"] == "AUD/USD.SIM" for m in quotes)
    for message in quotes:
        bid_ask = (message["data"]["bid_price"], message["data"]["ask_price"])
        assert produced_quotes[message["data"]["ts_event"]] == bid_ask
    assert quotes[-1]["data"]["bid_price"] == last_quote["bid"]
