"""The control plane over real HTTP: probes, introspection, publish, broadcast, disconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from messages import quote
from support import WsClient
from tidewire.server.app import Gateway

Connect = Callable[..., Awaitable[WsClient]]


async def test_probes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_publish_reaches_matching_subscribers(
    gateway: Gateway, connect: Connect, http: httpx.AsyncClient
) -> None:
    aapl = await connect(gateway)
    await aapl.subscribe("market_data", filters={"symbols": ["AAPL"]})
    every = await connect(gateway)
    await every.subscribe("market_data")
    response = await http.post("/api/publish", json=[quote("AAPL"), quote("MSFT")])
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [r["seq"] for r in body["results"]] == [1, 2]
    assert [m["symbol"] for m in await aapl.data(1)] == ["AAPL"]
    assert [m["symbol"] for m in await every.data(2)] == ["AAPL", "MSFT"]
    assert await aapl.no_data(gateway) == []


async def test_publish_single_object_and_idempotency(
    gateway: Gateway, connect: Connect, http: httpx.AsyncClient
) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data")
    first = (await http.post("/api/publish", json=quote("AAPL", message_id="m-1"))).json()
    again = (await http.post("/api/publish", json=quote("AAPL", message_id="m-1"))).json()
    assert first["results"][0] == {
        "message_id": "m-1",
        "seq": 1,
        "stream": "market_data",
        "epoch": first["results"][0]["epoch"],
    }
    assert again["accepted"] == 0
    assert again["results"][0]["duplicate"] is True and again["results"][0]["seq"] == 1
    assert len(await client.data(1)) == 1
    assert await client.no_data(gateway) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{nope", 400, "invalid_json"),
        (b"[]", 400, "invalid_message"),
        (
            json.dumps(
                [quote("AAPL"), {"type": "market_data", "data": {"bid": 1, "ask": 2}}]
            ).encode(),
            422,
            "invalid_message",
        ),
        (json.dumps({"type": "nope", "data": {}}).encode(), 422, "unknown_type"),
        (json.dumps({"stream": "nope", "data": {}}).encode(), 422, "unknown_stream"),
        (
            json.dumps(
                {"type": "risk_alert", "portfolio_id": "P", "data": {"metric": "x"}}
            ).encode(),
            422,
            "invalid_message",
        ),
    ],
)
async def test_invalid_publish_publishes_nothing(
    gateway: Gateway, connect: Connect, http: httpx.AsyncClient, body: bytes, status: int, code: str
) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data")
    response = await http.post(
        "/api/publish", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    error = response.json()
    assert error["error_code"] == code and error["error_message"]
    assert gateway.broker.position("market_data").seq == 0
    assert await client.no_data(gateway) == []


async def test_invalid_message_reports_its_index(http: httpx.AsyncClient) -> None:
    bad = {"type": "market_data", "data": {"bid": 1, "ask": 2}}
    response = await http.post("/api/publish", json=[quote("A"), quote("B"), bad])
    assert response.json()["details"]["index"] == 2


async def test_publish_batch_limit(make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gateway = await make_gateway(max_publish_batch=3)
    async with httpx.AsyncClient(base_url=gateway.internal_url) as http:
        response = await http.post("/api/publish", json=[quote("A")] * 4)
        assert response.status_code == 413
        assert response.json()["error_code"] == "message_too_large"
        assert (await http.post("/api/publish", json=[quote("A")] * 3)).status_code == 200


async def test_publish_body_limit(make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gateway = await make_gateway(max_publish_body_bytes=2048)
    async with httpx.AsyncClient(base_url=gateway.internal_url) as http:
        response = await http.post("/api/publish", json=[quote("A")] * 100)
        assert response.status_code == 413
        assert response.json()["error_code"] == "message_too_large"
    assert gateway.broker.position("market_data").seq == 0


async def test_introspection(gateway: Gateway, connect: Connect, http: httpx.AsyncClient) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data", filters={"symbols": ["AAPL"]}, subscription_id="px")
    await http.post("/api/publish", json=quote("AAPL"))
    await client.data(1)
    stats = (await http.get("/api/stats")).json()
    assert stats["connections"] == 1 and stats["subscriptions"] == 1
    assert stats["deliveries"] == 1
    assert stats["streams"]["market_data"]["seq"] == 1
    connections = (await http.get("/api/connections")).json()
    assert [c["connection_id"] for c in connections] == [client.welcome["connection_id"]]
    subscriptions = (await http.get("/api/subscriptions")).json()
    assert subscriptions[0]["subscription_id"] == "px"
    assert subscriptions[0]["filters"] == {"symbols": ["AAPL"]}
    assert subscriptions[0]["messages_delivered"] == 1
    streams = {s["stream"]: s for s in (await http.get("/api/streams")).json()}
    assert streams["market_data"]["subscribers"] == 1
    assert streams["order_updates"]["stream_class"] == "reliable"
    assert len(streams) == 12


async def test_disconnect_a_connection(
    gateway: Gateway, connect: Connect, http: httpx.AsyncClient
) -> None:
    victim = await connect(gateway)
    other = await connect(gateway)
    assert (await http.delete("/api/connections/nope")).status_code == 404
    response = await http.delete(f"/api/connections/{victim.welcome['connection_id']}")
    assert response.status_code == 204
    with pytest.raises(ConnectionClosed) as info:
        await victim.recv_type("never")
    # 4000, not 1000: an SDK reconnects after an operator's close, not after its own.
    assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    assert (await other.subscribe("market_data"))["type"] == "subscription_confirmed"


async def test_broadcast_reaches_everyone(
    gateway: Gateway, connect: Connect, http: httpx.AsyncClient
) -> None:
    subscribed = await connect(gateway)
    await subscribed.subscribe("events")
    idle = await connect(gateway)
    response = await http.post(
        "/api/broadcast", json={"message": "halt at 16:00", "severity": "high"}
    )
    assert response.status_code == 200
    assert response.json()["recipients"] == 2
    for client in (subscribed, idle):
        message = (await client.data(1))[0]
        assert message["type"] == "system_alert"
        assert message["data"]["description"] == "halt at 16:00"
        assert (message["component"], message["alert_type"]) == ("gateway", "operator_notice")
    # Delivered once, though the subscribed client also matches through its subscription.
    assert await subscribed.no_data(gateway) == []
    bad = await http.post("/api/broadcast", json={"text": "no"})
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "invalid_message"


async def test_openapi_docs(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/docs/openapi.json")).json()
    assert "/api/publish" in schema["paths"]
    assert (await http.get("/docs")).status_code == 200


async def test_unknown_route_uses_error_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/nothing")
    assert response.status_code == 404
    assert response.json()["error_code"] == "not_found"


async def test_stop_closes_clients_with_going_away(
    make_gateway: Callable[..., Awaitable[Gateway]], connect: Connect
) -> None:
    gateway = await make_gateway()
    client = await connect(gateway)
    await gateway.stop()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(client.recv_type("never"), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_dashboard_and_its_config(gateway: Gateway, http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and "<html" in page.text
    config = (await http.get("/api/config")).json()
    assert config["ws_url"] == f"ws://127.0.0.1:{gateway.port}/ws"


async def test_a_burst_of_readiness_probes_costs_one_broker_round_trip() -> None:
    from tidewire.brokers.memory import MemoryBroker
    from tidewire.settings import GatewaySettings

    class CountingBroker(MemoryBroker):
        probes = 0

        async def probe(self) -> None:
            CountingBroker.probes += 1
            await asyncio.sleep(0)  # a round trip takes a while: callers meanwhile share it

    gateway = Gateway(GatewaySettings(port=0, internal_port=0), broker=CountingBroker())
    await gateway.start()
    try:
        answers = await asyncio.gather(*(gateway.readiness_problems() for _ in range(20)))
        assert answers == [[]] * 20 and CountingBroker.probes == 1
        assert await gateway.readiness_problems() == [] and CountingBroker.probes == 2
    finally:
        await gateway.stop()
