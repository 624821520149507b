"""Scraping a gateway's `GET /metrics` in tests: the families it declares and its samples."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from messages import quote
from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway

Connect = Callable[..., Awaitable[WsClient]]
Labels = frozenset[tuple[str, str]]


@dataclass
class Scrape:
    declared: set[str] = field(default_factory=set)
    """Every family's name as queried in PromQL (counters with `_total`), and for
    histograms the `_bucket`, `_sum` and `_count` series names too."""
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        """The sample `name{labels}`; 0 when absent."""
        return self.samples.get(name, {}).get(frozenset(labels.items()), 0.0)

    def total(self, name: str) -> float:
        return sum(self.samples.get(name, {}).values())


async def scrape(gateway: Gateway) -> Scrape:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = Scrape()
    for family in text_string_to_metric_families(response.text):
        if family.type == "counter":
            out.declared.add(f"{family.name}_total")
        elif family.type in ("histogram", "gaugehistogram"):
            out.declared.update(f"{family.name}{s}" for s in ("", "_bucket", "_sum", "_count"))
        else:
            out.declared.add(family.name)
        for sample in family.samples:
            out.samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


async def wait_scrape(gateway: Gateway, condition: Callable[[Scrape], bool], what: str) -> Scrape:
    """Scrape until `condition` holds (bounded by TIMEOUT): for what the gateway counts
    after the client saw its side (a disconnect)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            result = await scrape(gateway)
            if condition(result):
                return result
            await asyncio.sleep(0.01)
    raise AssertionError(what)  # pragma: no cover (the timeout raises first)


async def serve_traffic(gateway: Gateway, connect: Connect) -> tuple[WsClient, WsClient]:
    """Two market_data subscribers (one for every symbol, one for AAPL) and two quotes
    published through POST /api/publish, received; returns the two clients."""
    first = await connect(gateway)
    assert (await first.subscribe("market_data"))["type"] == "subscription_confirmed"
    second = await connect(gateway)
    assert (await second.subscribe("market_data", filters={"symbols": ["AAPL"]}))[
        "type"
    ] == "subscription_confirmed"
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as client:
        response = await client.post("/api/publish", json=[quote("AAPL"), quote("MSFT")])
    assert response.status_code == 200, response.text
    assert len(await first.data(2)) == 2
    assert len(await second.data(1)) == 1
    return first, second
