"""Every message shape of the original frontend, published over REST and over WebSocket
`publish`, arrives at a subscriber with every original field in its place.

The shapes are tests/vectors/original_shapes.json (one per type: every required field of
the original interface, where the original put it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec.inspect as mi
import pytest

from support import TIMEOUT, WsClient
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE
from tidewire.protocol.shapes import SHAPES
from tidewire.protocol.streams import STREAM_OF_TYPE
from tidewire.server.app import Gateway

VECTORS = Path(__file__).parents[1] / "vectors" / "original_shapes.json"
ORIGINAL: dict[str, dict[str, Any]] = json.loads(VECTORS.read_text())["messages"]
Connect = Callable[..., Awaitable[WsClient]]


def required_data_fields(message_type: str) -> list[str]:
    info = mi.type_info(PAYLOAD_OF_TYPE[message_type])
    assert isinstance(info, mi.StructType)
    return [field.name for field in info.fields if field.required]


def test_the_vectors_hold_every_original_shape() -> None:
    # 16 interfaces of the original (command_response included), plus notification.
    assert set(ORIGINAL) == set(SHAPES)
    assert len(ORIGINAL) == 17


async def until(client: WsClient, message_id: str) -> dict[str, Any]:
    """The data message `message_id` (a stream may carry the gateway's own messages too)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            for message in await client.data(1):
                if message["message_id"] == message_id:
                    return message


def assert_delivered_as_sent(sent: dict[str, Any], received: dict[str, Any]) -> None:
    """Every field the producer sent is where it sent it, with its value; every required
    field of the original shape is there; `sequence` is `seq`."""
    message_type = received["type"]
    for name, value in sent.items():
        if name != "data":
            assert received[name] == value, name
    for name, value in sent["data"].items():
        assert received["data"][name] == value, f"data.{name}"
    for name in SHAPES[message_type].required:
        assert name in received, name
    for name in required_data_fields(message_type):
        assert name in received["data"], f"data.{name}"
    assert received["stream"] == STREAM_OF_TYPE[message_type]
    assert received["sequence"] == received["seq"] >= 1


@pytest.mark.parametrize("message_type", sorted(ORIGINAL))
async def test_original_shape_over_rest(
    gateway: Gateway, http: httpx.AsyncClient, connect: Connect, message_type: str
) -> None:
    sent = {**ORIGINAL[message_type], "message_id": f"rest-{message_type}"}
    client = await connect(gateway)
    await client.subscribe(STREAM_OF_TYPE[message_type], snapshot=False)
    response = await http.post("/api/publish", json=sent)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert_delivered_as_sent(sent, await until(client, sent["message_id"]))


@pytest.mark.parametrize("message_type", sorted(ORIGINAL))
async def test_original_shape_over_websocket_publish(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect, message_type: str
) -> None:
    gateway = await make_gateway(anonymous_roles=["subscriber", "publisher"])
    sent = {**ORIGINAL[message_type], "message_id": f"ws-{message_type}"}
    reader, publisher = await connect(gateway), await connect(gateway)
    await reader.subscribe(STREAM_OF_TYPE[message_type], snapshot=False)
    ack = await publisher.request({"type": "publish", "message": sent}, "ack", "error")
    assert ack["type"] == "ack" and ack["status"] == "accepted", ack
    assert ack["ack_message_id"] == sent["message_id"]
    assert_delivered_as_sent(sent, await until(reader, sent["message_id"]))


async def test_a_01_quote_goes_out_canonical(
    gateway: Gateway, http: httpx.AsyncClient, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data", snapshot=False)
    old = {"type": "market_data", "symbol": "AAPL", "data": {"bid": 1.1, "ask": 1.3}}
    assert (await http.post("/api/publish", json={**old, "message_id": "q"})).status_code == 200
    received = await until(client, "q")
    assert {"bid_price": 1.1, "ask_price": 1.3}.items() <= received["data"].items()
    assert not {"bid", "ask"} & set(received["data"])
    assert received["data"]["timestamp"] == received["timestamp"]


async def test_01_risk_metrics_over_rest_are_one_message_per_metric(
    gateway: Gateway, http: httpx.AsyncClient, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.subscribe("risk_metrics", snapshot=False)
    old = {
        "type": "risk_metrics",
        "portfolio_id": "PF-1",
        "message_id": "rm",
        "data": {"var_95": 1.5, "leverage": 2.0},
    }
    response = await http.post("/api/publish", json=old)
    assert response.status_code == 200
    assert [r["message_id"] for r in response.json()["results"]] == ["rm.var_95", "rm.leverage"]
    received = await client.data(2)
    assert [(m["metric_type"], m["data"]["value"]) for m in received] == [
        ("var_95", 1.5),
        ("leverage", 2.0),
    ]
    # One metric never replaces another: a new subscriber's snapshot holds both.
    late = await connect(gateway)
    await late.subscribe("risk_metrics")
    assert sorted(m["metric_type"] for m in await late.data(2)) == ["leverage", "var_95"]


async def test_an_unmappable_message_is_refused_naming_the_field(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/api/publish", json={"type": "engine_status", "data": {"status": "running"}}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "invalid_message" and "`uptime`" in body["error_message"]
