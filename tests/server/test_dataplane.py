"""The data plane on real sockets: handshake, subscriptions, filters, errors, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from messages import order, quote, risk_alert
from support import WsClient
from tidewire.server.app import Gateway

Connect = Callable[..., Awaitable[WsClient]]


async def test_welcome_carries_connection_id_and_limits(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    welcome = client.welcome
    assert welcome["version"] == "3.0"
    assert welcome["connection_id"]
    assert welcome["limits"]["max_subscriptions"] == gateway.settings.max_subscriptions
    assert welcome["heartbeat_interval"] == gateway.settings.heartbeat_interval
    assert welcome["timestamp"].endswith("Z")


async def test_two_symbols_only_with_increasing_seq(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    confirmed = await client.subscribe("market_data", filters={"symbols": ["AAPL", "MSFT"]})
    assert confirmed["type"] == "subscription_confirmed"
    for i in range(5):
        for symbol in ("AAPL", "GOOG", "MSFT"):
            await gateway.publish(quote(symbol, bid=100 + i, ask=100.5 + i))
    received = await client.data(10)
    assert {m["symbol"] for m in received} == {"AAPL", "MSFT"}
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert await client.no_data(gateway) == []


async def test_original_path_and_legacy_dialect(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway, path="/ws/realtime")
    reply = await client.request(
        {"action": "subscribe", "topic": "risk_alert", "portfolio_ids": ["PF-1"]},
        "subscription_confirmed",
    )
    assert reply["stream"] == "risk_alerts"
    assert reply["filters"] == {"portfolio_ids": ["PF-1"]}
    assert (await client.request({"action": "ping"}, "pong"))["type"] == "pong"


async def test_portfolio_filter_excludes_other_portfolios(
    gateway: Gateway, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.subscribe("order_updates", filters={"portfolio_ids": ["PF-A"]})
    for portfolio in ("PF-B", "PF-A", "PF-C", "PF-A"):
        await gateway.publish(order(portfolio))
    received = await client.data(2)
    assert [m["portfolio_id"] for m in received] == ["PF-A", "PF-A"]
    assert await client.no_data(gateway) == []


# Each case: stream, filters, messages to publish, indexes of those that must arrive.
FILTER_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], list[int]]] = [
    (
        "market_data",
        {"symbols": ["AAPL"]},
        [quote("AAPL"), quote("MSFT")],
        [0],
    ),
    (
        "order_updates",
        {"portfolio_ids": ["P1", "P2"]},
        [order("P1"), order("P3"), order("P2")],
        [0, 2],
    ),
    (
        "order_updates",
        {"strategy_ids": ["S-9"]},
        [order("P1", strategy_id="S-1"), order("P1", strategy_id="S-9")],
        [1],
    ),
    (
        "order_updates",
        {"user_id": "alice"},
        [order("P1", user_id="bob"), order("P1", user_id="alice"), order("P1")],
        [1],
    ),
    (
        "risk_alerts",
        {"severity": "high"},
        [
            risk_alert("P1", "low"),
            risk_alert("P1", "critical"),
            risk_alert("P1", "medium"),
            risk_alert("P1", "high"),
        ],
        [1, 3],
    ),
    (
        "market_data",
        {"min_price": 100, "max_price": 200},
        [
            quote("A", bid=99, ask=99.2),
            quote("B", bid=150, ask=150.2),
            quote("C", bid=250, ask=250.2),
            {"type": "market_data", "symbol": "D", "data": {"price": 120.0, "size": 5}},
        ],
        [1, 3],
    ),
    (
        "market_data",
        {"venue": "XNAS"},
        [quote("A", venue="XNYS"), quote("B", venue="XNAS"), quote("C")],
        [1],
    ),
    (
        "market_data",
        {"asset_class": "crypto"},
        [quote("BTC", asset_class="crypto"), quote("AAPL", asset_class="equity")],
        [0],
    ),
    (
        "order_updates",
        {"symbols": ["MSFT"], "portfolio_ids": ["P1"]},
        [order("P1", symbol="AAPL"), order("P2", symbol="MSFT"), order("P1", symbol="MSFT")],
        [2],
    ),
]


@pytest.mark.parametrize(("stream", "filters", "messages", "expected"), FILTER_CASES)
async def test_every_filter(
    gateway: Gateway,
    connect: Connect,
    stream: str,
    filters: dict[str, Any],
    messages: list[dict[str, Any]],
    expected: list[int],
) -> None:
    client = await connect(gateway)
    confirmed = await client.subscribe(stream, filters=filters)
    assert confirmed["type"] == "subscription_confirmed", confirmed
    ids = []
    for message in messages:
        ids.append((await gateway.publish(message)).message.message_id)
    received = await client.data(len(expected))
    assert [m["message_id"] for m in received] == [ids[i] for i in expected]
    assert await client.no_data(gateway) == []


async def test_two_subscriptions_matching_one_message_deliver_it_once(
    gateway: Gateway, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
    await client.subscribe("market_data")
    await gateway.publish(quote("AAPL"))
    assert len(await client.data(1)) == 1
    assert await client.no_data(gateway) == []


async def test_encode_once_identical_bytes_for_every_recipient(
    gateway: Gateway, connect: Connect
) -> None:
    clients = [await connect(gateway) for _ in range(3)]
    for client in clients:
        await client.subscribe("market_data")
    await gateway.publish(quote("AAPL"))
    raw = [await asyncio.wait_for(c.ws.recv(), 5) for c in clients]
    assert raw[0] == raw[1] == raw[2]
    assert "subscription_id" not in json.loads(raw[0])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"type": "subscribe", "stream": "nope"}, "unknown_stream"),
        (
            {"type": "subscribe", "stream": "market_data", "filters": {"colour": "red"}},
            "invalid_filter",
        ),
        (
            {"type": "subscribe", "stream": "market_data", "filters": {"portfolio_ids": ["P"]}},
            "invalid_filter",
        ),
        (
            {"type": "subscribe", "stream": "market_data", "filters": {"symbols": "AAPL"}},
            "invalid_filter",
        ),
        (
            {"type": "subscribe", "stream": "market_data", "filters": {"symbols": "AAPL"}},
            "invalid_filter",
        ),
        (
            {
                "type": "subscribe",
                "stream": "market_data",
                "filters": {"min_price": 5, "max_price": 1},
            },
            "invalid_filter",
        ),
        ({"type": "subscribe", "stream": "order_updates", "rate_limit": 5}, "invalid_rate_limit"),
        ({"type": "subscribe", "stream": "market_data", "rate_limit": -1}, "invalid_rate_limit"),
        # Several problems: unknown_stream is reported first.
        ({"type": "subscribe", "stream": "nope", "filters": {"colour": 1}}, "unknown_stream"),
    ],
)
async def test_bad_subscribe_is_refused_and_connection_keeps_working(
    gateway: Gateway, connect: Connect, request_: dict[str, Any], code: str
) -> None:
    client = await connect(gateway)
    other = await connect(gateway)
    await other.subscribe("market_data")
    reply = await client.request({**request_, "message_id": "bad"}, "subscription_error")
    assert reply["error_code"] == code
    assert reply["correlation_id"] == "bad"
    assert reply["error_message"]
    # Nothing changed: no subscription was added, both clients still work.
    listing = await client.request({"type": "list_subscriptions"}, "subscriptions")
    assert listing["subscriptions"] == []
    await client.subscribe("market_data")
    await gateway.publish(quote("AAPL"))
    assert len(await client.data(1)) == 1
    assert len(await other.data(1)) == 1


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", "invalid_json"),
        ('["a list"]', "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"no_type": 1}', "invalid_message"),
        ('{"type": "subscribe", "stream": "market_data", "version": "9.9"}', "unsupported_version"),
        ('{"type": "heartbeat", "client_timestamp": ["soon"]}', "invalid_message"),
        (msgspec.msgpack.encode({"type": "ping"}), "invalid_message"),
    ],
)
async def test_bad_frames_get_documented_errors(
    gateway: Gateway, connect: Connect, payload: str | bytes, code: str
) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data")
    await client.send(payload)
    reply = await client.recv_type("error")
    assert reply["error_code"] == code
    assert reply["retryable"] is False
    await gateway.publish(quote("AAPL"))
    assert len(await client.data(1)) == 1


async def test_duplicate_subscription_id(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data", subscription_id="prices")
    reply = await client.subscribe("order_updates", subscription_id="prices")
    assert reply["error_code"] == "duplicate_subscription"
    assert reply["subscription_id"] == "prices"
    listing = await client.request({"type": "list_subscriptions"}, "subscriptions")
    assert [(s["subscription_id"], s["stream"]) for s in listing["subscriptions"]] == [
        ("prices", "market_data")
    ]


async def test_too_many_subscriptions(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    gateway = await make_gateway(max_subscriptions=2)
    client = await connect(gateway)
    assert (await client.subscribe("market_data"))["type"] == "subscription_confirmed"
    assert (await client.subscribe("order_updates"))["type"] == "subscription_confirmed"
    reply = await client.subscribe("risk_alerts")
    assert reply["error_code"] == "too_many_subscriptions"
    await client.request(
        {"type": "unsubscribe", "subscription_id": "sub-1"}, "unsubscription_confirmed"
    )
    assert (await client.subscribe("risk_alerts"))["type"] == "subscription_confirmed"


async def test_too_many_filter_values(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    gateway = await make_gateway(max_filter_values=3)
    client = await connect(gateway)
    reply = await client.subscribe("market_data", filters={"symbols": ["A", "B", "C", "D"]})
    assert reply["error_code"] == "invalid_filter"


async def test_oversize_message_is_refused_connection_survives(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    gateway = await make_gateway(max_message_bytes=1024)
    client = await connect(gateway)
    big = {"type": "subscribe", "stream": "market_data", "message_id": "x", "pad": "y" * 2000}
    await client.send(big)
    reply = await client.recv_type("error")
    assert reply["error_code"] == "message_too_large"
    assert reply["details"]["limit"] == 1024
    assert (await client.subscribe("market_data"))["type"] == "subscription_confirmed"


async def test_frame_over_hard_cap_closes_with_1009(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    gateway = await make_gateway(max_message_bytes=1024, max_frame_bytes=4096)
    client = await connect(gateway)
    survivor = await connect(gateway)
    await client.send("x" * 10_000)
    with pytest.raises(ConnectionClosed) as info:
        await client.recv_type("never")
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert (await survivor.subscribe("market_data"))["type"] == "subscription_confirmed"


async def test_inbound_flood_closes_with_4029(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    gateway = await make_gateway(max_inbound_per_second=1, inbound_burst=5)
    client = await connect(gateway)
    survivor = await connect(gateway)
    for _ in range(10):
        await client.send({"type": "ping"})
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 4029
    assert len([m for m in client.received if m["type"] == "pong"]) == 5
    assert (await survivor.subscribe("market_data"))["type"] == "subscription_confirmed"


async def test_unsubscribe_unknown_is_not_found_and_changes_nothing(
    gateway: Gateway, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data", subscription_id="a")
    reply = await client.request(
        {"type": "unsubscribe", "subscription_ids": ["a", "zzz"], "message_id": "u"}, "error"
    )
    assert reply["error_code"] == "not_found"
    assert reply["correlation_id"] == "u"
    await gateway.publish(quote("AAPL"))
    assert len(await client.data(1)) == 1
    done = await client.request(
        {"type": "unsubscribe", "subscription_ids": ["a"]}, "unsubscription_confirmed"
    )
    assert done["subscription_ids"] == ["a"]
    await gateway.publish(quote("AAPL"))
    assert await client.no_data(gateway) == []


async def test_heartbeat_echoes_timestamp_and_reports_positions(
    gateway: Gateway, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data", filters={"symbols": ["NONE"]})
    await gateway.publish(quote("AAPL"))
    await gateway.publish(quote("AAPL"))
    reply = await client.request(
        {"type": "heartbeat", "client_timestamp": 1234.5}, "heartbeat_response"
    )
    assert reply["client_timestamp"] == 1234.5
    assert reply["positions"]["market_data"]["seq"] == 2


async def test_server_heartbeat_on_idle_and_dead_peer_close(
    make_gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    gateway = await make_gateway(heartbeat_interval=0.2, heartbeat_timeout=0.6)
    # A raw socket that completes the handshake and then never answers, not even pings.
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    frames: list[tuple[int, bytes]] = []
    async with asyncio.timeout(5):
        while not frames or frames[-1][0] != 0x8:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            frames.append((head[0] & 0x0F, await reader.readexactly(length)))
    writer.close()
    types = [json.loads(p)["type"] for op, p in frames if op == 0x1]
    assert "heartbeat" in types
    assert any(op == 0x9 for op, _ in frames), "no WebSocket ping before the timeout"
    assert int.from_bytes(frames[-1][1][:2], "big") == 4010
    assert gateway.hub.counters.heartbeat_timeouts == 1


async def test_msgpack_subprotocol(gateway: Gateway) -> None:
    async with ws_connect(gateway.url, subprotocols=["tidewire.v3.msgpack"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "tidewire.v3.msgpack"
        welcome = msgspec.msgpack.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
        assert welcome["type"] == "connection_established"
        await ws.send(msgspec.msgpack.encode({"type": "subscribe", "stream": "market_data"}))
        confirmed = msgspec.msgpack.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
        assert confirmed["type"] == "subscription_confirmed"
        await gateway.publish(quote("AAPL", bid=1.5, ask=1.75))
        message = msgspec.msgpack.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
        assert message["data"] == {
            "bid_price": 1.5,
            "ask_price": 1.75,
            "timestamp": message["timestamp"],
        }
        await ws.send('{"type":"ping"}')  # a text frame on a msgpack connection
        error = msgspec.msgpack.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
        assert error["error_code"] == "invalid_message"


async def test_unknown_subprotocol_is_refused(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        await ws_connect(gateway.url, subprotocols=["graphql-ws"])  # type: ignore[list-item]
    assert info.value.response.status_code == 400


async def test_decimals_as_strings_and_batches(gateway: Gateway) -> None:
    from decimal import Decimal

    url = f"ws://127.0.0.1:{gateway.port}/ws?decimals=string&batch_ms=20"
    async with ws_connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["type"] == "batch"
        assert first["messages"][0]["type"] == "connection_established"
        await ws.send(json.dumps({"type": "subscribe", "stream": "market_data"}))
        json.loads(await asyncio.wait_for(ws.recv(), 5))
        for i in range(3):
            await gateway.publish(quote("AAPL", bid=Decimal("1.10") + i, ask=Decimal("1.20") + i))  # type: ignore[arg-type]
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while len(got) < 3:
                frame = json.loads(await ws.recv())
                assert frame["type"] == "batch"
                got.extend(frame["messages"])
        assert [m["data"]["bid_price"] for m in got] == ["1.10", "2.10", "3.10"]


async def test_bad_handshake_options(gateway: Gateway) -> None:
    for query in ("batch_ms=abc", "batch_ms=999999", "decimals=roman"):
        with pytest.raises(InvalidStatus) as info:
            await ws_connect(f"ws://127.0.0.1:{gateway.port}/ws?{query}")
        assert info.value.response.status_code == 400


async def test_max_connections(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    gateway = await make_gateway(max_connections=2)
    await connect(gateway)
    await connect(gateway)
    with pytest.raises(InvalidStatus) as info:
        await ws_connect(gateway.url)
    assert info.value.response.status_code == 503


async def test_ws_publish_needs_publisher_role(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    plain = await make_gateway()
    client = await connect(plain)
    reply = await client.request({"type": "publish", "message": quote("AAPL")}, "error")
    assert reply["error_code"] == "forbidden"
    assert plain.broker.position("market_data").seq == 0

    gateway = await make_gateway(anonymous_roles=["subscriber", "publisher"])
    publisher = await connect(gateway)
    reader = await connect(gateway)
    await reader.subscribe("market_data")
    ack = await publisher.request(
        {"type": "publish", "message_id": "p1", "message": quote("AAPL", message_id="q-1")}, "ack"
    )
    assert ack == {
        **ack,
        "ack_message_id": "q-1",
        "seq": 1,
        "status": "accepted",
        "correlation_id": "p1",
    }
    again = await publisher.request(
        {"type": "publish", "message": quote("AAPL", message_id="q-1")}, "ack"
    )
    assert again["duplicate"] is True and again["seq"] == 1
    assert [m["message_id"] for m in await reader.data(1)] == ["q-1"]
    assert await reader.no_data(gateway) == []


async def test_healthz_on_client_port(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b'{"status":"ok"}')
