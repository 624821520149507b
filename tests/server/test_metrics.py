"""GET /metrics: every family is declared, and the values move with the traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from messages import order
from promscrape import Connect, scrape, serve_traffic, wait_scrape
from tidewire.core.latency import LatencyHistogram
from tidewire.protocol.streams import STREAMS
from tidewire.server.app import Gateway
from tidewire.server.metrics import AWAITING_COUNTERS, GatewayMetrics

MakeGateway = Callable[..., Awaitable[Gateway]]

FAMILIES = {
    "tidewire_info",
    "tidewire_ready",
    "tidewire_uptime_seconds",
    "tidewire_connections",
    "tidewire_connections_write_paused",
    "tidewire_subscriptions",
    "tidewire_outbox_pending_bytes",
    "tidewire_outbox_max_pending_bytes",
    "tidewire_feeds_under_way",
    "tidewire_messages_dispatched_total",
    "tidewire_messages_published_total",
    "tidewire_deliveries_total",
    "tidewire_stream_deliveries_total",
    "tidewire_stream_bytes_total",
    "tidewire_bytes_written_total",
    "tidewire_writes_total",
    "tidewire_flushes_total",
    "tidewire_frames_encoded_total",
    "tidewire_conflated_total",
    "tidewire_throttled_total",
    "tidewire_connections_opened_total",
    "tidewire_connections_closed_total",
    "tidewire_connections_closed_by_code_total",
    "tidewire_slow_consumer_closes_total",
    "tidewire_setup_buffer_overflows_total",
    "tidewire_heartbeat_timeouts_total",
    "tidewire_feed_chunks_total",
    "tidewire_publish_to_write_seconds",
    "tidewire_inbound_messages_total",
    "tidewire_inbound_errors_total",
    "tidewire_recovery_requests_total",
    "tidewire_replayed_messages_total",
    "tidewire_inbound_violations_total",
    "tidewire_websocket_parser_errors_total",
    "tidewire_warnings_suppressed_total",
    "tidewire_broker_up",
    "tidewire_broker_lag_messages",
    "tidewire_stream_last_seq",
    "tidewire_broker_skipped_total",
    "tidewire_broker_errors_total",
    "tidewire_process_cpu_seconds_total",
    "tidewire_process_resident_memory_bytes",
}


async def test_every_family_is_declared(gateway: Gateway) -> None:
    result = await scrape(gateway)
    assert result.declared >= FAMILIES, FAMILIES - result.declared
    assert result.declared | {"tidewire_nautilus_lag_messages"} >= AWAITING_COUNTERS
    assert result.value("tidewire_ready") == 1
    assert result.value("tidewire_broker_up") == 1
    assert result.value("tidewire_process_resident_memory_bytes") > 0
    assert {dict(labels)["stream"] for labels in result.samples["tidewire_subscriptions"]} == set(
        STREAMS
    )


async def test_values_move_with_traffic(gateway: Gateway, connect: Connect) -> None:
    before = await scrape(gateway)
    assert before.value("tidewire_connections", wire_format="json") == 0
    first, _ = await serve_traffic(gateway, connect)
    after = await scrape(gateway)
    assert after.value("tidewire_connections", wire_format="json") == 2
    assert after.value("tidewire_subscriptions", stream="market_data") == 2
    assert after.value("tidewire_connections_opened_total") == 2
    assert after.value("tidewire_messages_dispatched_total") == 2
    assert after.value("tidewire_deliveries_total") == 3
    assert after.value("tidewire_frames_encoded_total") == 2
    assert after.value("tidewire_stream_last_seq", stream="market_data") == 2
    for name in ("tidewire_bytes_written_total", "tidewire_writes_total", "tidewire_flushes_total"):
        assert after.value(name) > before.value(name), name
    # Every open connection is in the outbox histogram's +Inf bucket.
    assert after.value("tidewire_outbox_pending_bytes_bucket", le="+Inf") == 2
    assert after.value("tidewire_process_cpu_seconds_total") > 0
    await first.close()
    closed = await wait_scrape(
        gateway,
        lambda s: s.value("tidewire_connections_closed_total") == 1,
        "the closed connection is counted",
    )
    assert closed.value("tidewire_connections", wire_format="json") == 1
    assert closed.value("tidewire_subscriptions", stream="market_data") == 1


async def test_open_with_authentication_on(make_gateway: MakeGateway) -> None:
    """A scraper holds no token: /metrics answers while /api/stats wants `admin`."""
    gateway = await make_gateway(jwt_secret="s" * 32)
    assert gateway.authenticator.required
    async with httpx.AsyncClient(base_url=gateway.internal_url) as client:
        assert (await client.get("/api/stats")).status_code == 401
        assert (await client.get("/metrics")).status_code == 200


async def test_refuses_a_foreign_host(gateway: Gateway) -> None:
    """Not exempt from the Host check (unlike the probes): list the scrape address in
    `allowed_hosts`."""
    async with httpx.AsyncClient(base_url=gateway.internal_url) as client:
        response = await client.get("/metrics", headers={"Host": "evil.example"})
    assert response.status_code == 421


def test_latency_histogram_buckets() -> None:
    histogram = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 2.0):
        histogram.observe(seconds)
    assert histogram.buckets() == [("0.001", 2), ("0.01", 3), ("+Inf", 4)]
    assert histogram.total == pytest.approx(2.0065)


async def test_the_core_counters_reach_the_scrape(gateway: Gateway, connect: Connect) -> None:
    """Published per stream and source, deliveries and bytes per stream, recoveries and
    replayed messages, error replies by code, closes by code, and the flush latency."""
    first = await connect(gateway)
    confirmed = await first.subscribe("order_updates")
    epoch = confirmed["position"]["epoch"]
    for n in range(3):
        await gateway.publish(order("PF-A", n), source="api")
    assert len(await first.data(3)) == 3
    again = await connect(gateway)
    reply = await again.subscribe("order_updates", since={"epoch": epoch, "seq": 1})
    assert reply["recovered"] is True
    assert len(await again.data(2)) == 2
    refused = await again.subscribe("no_such_stream")
    assert refused["error_code"] == "unknown_stream"
    await first.close()
    result = await wait_scrape(
        gateway,
        lambda r: r.total("tidewire_connections_closed_by_code_total") >= 1,
        "the closed connection counted",
    )
    assert (
        result.value("tidewire_messages_published_total", stream="order_updates", source="api") == 3
    )
    assert result.value("tidewire_stream_deliveries_total", stream="order_updates") == 3 + 2
    assert result.value("tidewire_stream_bytes_total", stream="order_updates") > 0
    assert result.value("tidewire_recovery_requests_total", outcome="recovered") == 1
    assert result.value("tidewire_replayed_messages_total") == 2
    assert result.value("tidewire_inbound_errors_total", code="unknown_stream") == 1
    assert result.total("tidewire_publish_to_write_seconds_count") > 0


async def test_concurrent_scrapes_share_one_build(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/metrics is open: a burst of requests must not cost one build each."""
    builds = 0
    real = gateway.broker_lag

    async def counted() -> dict[str, int] | None:
        nonlocal builds
        builds += 1
        return await real()

    monkeypatch.setattr(gateway, "broker_lag", counted)
    metrics = GatewayMetrics(gateway)
    texts = await asyncio.gather(*(metrics.scrape() for _ in range(8)))
    assert builds == 1 and len(set(texts)) == 1
    await metrics.scrape()
    assert builds == 2, "a later scrape builds afresh"
