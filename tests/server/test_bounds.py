"""Bounds on what one connection may make the gateway hold or answer (issue 11, item 2):
filter values per connection, paged listings, and positions that cannot exist."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import httpx

from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]


async def test_filter_values_are_bounded_per_connection(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(max_filter_values=100, max_filter_values_per_connection=250)
    client = await connect(gateway)
    symbols = [f"S{n}" for n in range(100)]
    for _ in range(2):
        reply = await client.subscribe("market_data", filters={"symbols": symbols}, snapshot=False)
        assert reply["type"] == "subscription_confirmed", reply
    refused = await client.subscribe("market_data", filters={"symbols": symbols})
    assert (refused["type"], refused["error_code"]) == ("subscription_error", "invalid_filter")
    assert refused["retryable"] is False
    # An update may not grow past it either, but may shrink.
    too_big = await client.request(
        {"type": "update_subscription", "subscription_id": "sub-1"}
        | {"filters": {"symbols": symbols + [f"T{n}" for n in range(60)]}},
        "error",
    )
    assert too_big["error_code"] == "invalid_filter"
    smaller = await client.request(
        {"type": "update_subscription", "subscription_id": "sub-1", "filters": {"symbols": ["A"]}},
        "subscription_confirmed",
    )
    assert smaller["filters"] == {"symbols": ["A"]}
    third = await client.subscribe("market_data", filters={"symbols": symbols}, snapshot=False)
    assert third["type"] == "subscription_confirmed"  # room again: 1 + 100 + 100


async def test_list_subscriptions_is_paged(make_gateway: MakeGateway, connect: Connect) -> None:
    gateway = await make_gateway(max_list_page=2)
    client = await connect(gateway)
    for n in range(5):
        await client.subscribe("market_data", subscription_id=f"q{n}", snapshot=False)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        request = {"type": "list_subscriptions", "limit": 10} | ({"after": after} if after else {})
        reply = await client.request(request, "subscriptions")
        pages += 1
        seen += [s["subscription_id"] for s in reply["subscriptions"]]
        after = reply.get("next")
        if after is None:
            break
    assert seen == ["q0", "q1", "q2", "q3", "q4"] and pages == 3
    unknown = await client.request({"type": "list_subscriptions", "after": "nope"}, "error")
    assert unknown["error_code"] == "not_found"


async def test_operator_listings_are_paged(make_gateway: MakeGateway, connect: Connect) -> None:
    gateway = await make_gateway(max_api_page=3)
    clients = [await connect(gateway) for _ in range(4)]
    for client in clients:
        await client.subscribe("market_data", snapshot=False)
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        first = await http.get("/api/subscriptions")
        assert len(first.json()) == 3
        assert (first.headers["x-total-count"], first.headers["x-next-offset"]) == ("4", "3")
        rest = await http.get("/api/subscriptions", params={"offset": 3})
        assert len(rest.json()) == 1 and "x-next-offset" not in rest.headers
        connections = await http.get("/api/connections", params={"limit": 2})
        assert len(connections.json()) == 2 and connections.headers["x-next-offset"] == "2"
        bad = await http.get("/api/connections", params={"offset": -1})
        assert bad.status_code == 400 and bad.json()["error_code"] == "invalid_message"


async def test_a_negative_since_is_an_invalid_position(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    reply = await client.subscribe(
        "order_updates", subscription_id="o", since={"epoch": "e", "seq": -1}
    )
    assert (reply["type"], reply["error_code"]) == ("subscription_error", "invalid_position")
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_a_frame_that_never_finishes_is_cut_by_the_heartbeat_timeout(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    """picows buffers an unfinished frame (up to 2 x max_frame_bytes): a connection that
    never completes one sends no frame at all, so the heartbeat timeout closes it."""
    gateway = await make_gateway(heartbeat_interval=0.2, heartbeat_timeout=1.0)
    healthy = await connect(gateway)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    size = gateway.settings.max_frame_bytes
    writer.write(struct.pack("!BBQ", 0x81, 0x80 | 127, size) + bytes(4) + b"a" * (size - 1))
    await writer.drain()
    close_code = None
    async with asyncio.timeout(10):
        while close_code is None:
            first, length = await reader.readexactly(2)
            length &= 0x7F
            if length >= 126:
                length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8), "big")
            payload = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                close_code = int.from_bytes(payload[:2], "big")
    assert close_code == 4010
    await healthy.send({"type": "ping", "message_id": "p"})
    assert (await healthy.recv_type("pong"))["correlation_id"] == "p"
    writer.close()
