"""The gateway's own system_health (server/health_report.py) on a real gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from messages import quote
from support import WsClient
from tidewire.server.app import Gateway
from tidewire.server.health_report import HealthReporter

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]


async def test_the_gateway_reports_its_health_on_system_health(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(health_interval=0.2, node_name="node-a")
    client = await connect(gateway)
    reply = await client.subscribe("system_health", snapshot=False)
    assert reply["type"] == "subscription_confirmed"
    (report,) = await client.data(1)
    assert (report["component"], report["key"], report["source"]) == (
        "gateway:node-a",
        "gateway:node-a",
        "gateway",
    )
    data = report["data"]
    assert report["status"] == data["status"] == "healthy"
    assert data["active_connections"] == 1 and data["subscriptions"] == 1
    assert data["rss_bytes"] > 0 and 0 < data["memory_usage"] < 100
    assert data["broker"] == "memory" and data["broker_lag"] == 0


async def test_throughput_counts_the_deliveries_since_the_last_report(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(health_interval=0)  # reported on demand below
    assert gateway.health is None
    reporter = HealthReporter(gateway, 1.0, "n")
    reporter.start()
    await reporter.stop()
    client = await connect(gateway)
    await client.subscribe("market_data", snapshot=False)
    for n in range(50):
        await gateway.publish(quote("AAPL", bid=float(n)))
    await client.data(50)
    first = (await reporter.measure())["data"]
    assert first["throughput"] > 0 and first["error_rate"] == 0
    quiet = (await reporter.measure())["data"]
    assert quiet["throughput"] == 0, "nothing was delivered since"


async def test_a_broker_that_does_not_answer_is_an_error(
    make_gateway: MakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await make_gateway(health_interval=0)

    async def unreachable() -> dict[str, int] | None:
        return None

    async def problems() -> list[str]:
        return ["broker: Redis at redis://x: no answer within 2 s"]

    monkeypatch.setattr(gateway, "broker_lag", unreachable)
    monkeypatch.setattr(gateway, "readiness_problems", problems)
    report: dict[str, Any] = await HealthReporter(gateway, 1.0).measure()
    assert report["status"] == "error" and report["data"]["problems"]
    assert report["component"].startswith("gateway:")
