"""Prometheus metrics of one gateway node, served at `GET /metrics` on the control plane.

Nothing here runs on the hot path: the hub, the flusher, the data plane and the broker keep
their plain integer counters (`HubCounters`, `FlushCounters`, `InboundCounters`, ...), and
`GatewayCollector.collect` reads them when Prometheus scrapes, building the metric families
afresh each time (prometheus-client's custom-collector API). Gauges that describe the current
state (connections by wire format, subscriptions per stream, outbox depth) are computed by
walking the hub's connections at scrape time, O(connections), once per scrape.

Each gateway has its own `CollectorRegistry` (never the process-global one: one process may
run several gateways, as the tests do), holding this collector and a `ProcessCollector` (CPU
seconds, RSS, open files of the process). With `--workers N` every worker is its own process
with its own control port (`internal_port + index`), so each worker serves its own
`/metrics`; Prometheus scrapes every port and sums over the `instance` label.

Some metrics the issue asks for have no counter in the core yet; their families are declared
(HELP and TYPE, so dashboards and the test of docs/grafana/tidewire.json can name them) and
get samples as soon as the counter they read exists (`AWAITING_COUNTERS` names them, and
each reader below names the attribute it looks for).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from tidewire import __version__
from tidewire.core.latency import le_label
from tidewire.protocol.codec import WIRE_FORMATS
from tidewire.protocol.streams import STREAMS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tidewire.server.app import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4"
"""The Prometheus text exposition format that `generate_latest` writes (Litestar adds
`; charset=utf-8`)."""

PREFIX = "tidewire"

OUTBOX_BUCKETS: tuple[float, ...] = (0, 1024, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024)
"""Upper bounds (bytes) of the outbox-depth gauge histogram over the open connections."""

"""Upper bounds (seconds) of the publish-to-write latency histogram."""

AWAITING_COUNTERS = frozenset({"tidewire_nautilus_lag_messages"})
"""Families declared without samples until a counter reports them: the Nautilus source does
not measure how far behind its streams it reads yet."""

RECOVERY_OUTCOMES = ("recovered", "not_recovered_epoch", "not_recovered_trimmed")
"""The `outcome` label of `tidewire_recovery_requests_total`."""


def _name(short: str) -> str:
    return f"{PREFIX}_{short}"


def _counter(short: str, doc: str, value: float | None) -> CounterMetricFamily:
    """A counter family; `short` without `_total` (prometheus-client appends it)."""
    family = CounterMetricFamily(_name(short), doc)
    if value is not None:
        family.add_metric([], value)
    return family


def _labelled_counter(
    short: str, doc: str, label: str, values: Mapping[Any, float] | None
) -> CounterMetricFamily:
    family = CounterMetricFamily(_name(short), doc, labels=[label])
    for key, value in sorted((values or {}).items(), key=lambda kv: str(kv[0])):
        family.add_metric([str(key)], value)
    return family


def _gauge(short: str, doc: str, value: float | None, unit: str = "") -> GaugeMetricFamily:
    family = GaugeMetricFamily(_name(short), doc, unit=unit)
    if value is not None:
        family.add_metric([], value)
    return family


class GatewayCollector(Collector):
    """Builds every `tidewire_*` family from `gateway`'s counters on each scrape.

    `broker_lag` and `ready` are awaited by `GatewayMetrics.scrape` just before (the
    broker's `lag()` and the readiness probe are coroutines; `collect` is synchronous)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.broker_lag: dict[str, int] | None = None
        self.ready: bool | None = None

    def collect(self) -> Iterator[Metric]:
        gateway = self._gateway
        if "hub" not in vars(gateway):
            return  # not started: nothing to count yet
        yield from self._state(gateway)
        yield from self._hub(gateway)
        yield from self._inbound(gateway)
        yield from self._broker(gateway)
        yield from self._nautilus(gateway)

    # ------------------------------------------------------------------ state (gauges)

    def _state(self, gateway: Gateway) -> Iterator[Metric]:
        info = GaugeMetricFamily(_name("info"), "Version of this gateway", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield _gauge(
            "ready",
            "1 when the node is ready (broker round trip and data plane, as GET /readyz)",
            None if self.ready is None else float(self.ready),
        )
        yield _gauge(
            "uptime_seconds",
            "Seconds since the gateway started",
            gateway.clock() - gateway.started_at,
        )
        hub = gateway.hub
        by_format = dict.fromkeys(WIRE_FORMATS, 0)
        by_stream = dict.fromkeys(STREAMS, 0)
        paused = 0
        depth = [0] * (len(OUTBOX_BUCKETS) + 1)
        pending_sum = 0
        pending_max = 0
        for connection in hub.connections.values():
            by_format[connection.wire_format] = by_format.get(connection.wire_format, 0) + 1
            for subscription in connection.subscriptions.values():
                name = subscription.spec.name
                by_stream[name] = by_stream.get(name, 0) + 1
            paused += connection.write_paused
            pending = connection.outbox.pending_bytes
            depth[bisect.bisect_left(OUTBOX_BUCKETS, pending)] += 1
            pending_sum += pending
            pending_max = max(pending_max, pending)
        connections = GaugeMetricFamily(
            _name("connections"), "Open client connections by wire format", labels=["wire_format"]
        )
        for fmt, count in by_format.items():
            connections.add_metric([fmt.name.lower()], count)
        yield connections
        subscriptions = GaugeMetricFamily(
            _name("subscriptions"), "Live subscriptions by stream", labels=["stream"]
        )
        for stream, count in by_stream.items():
            subscriptions.add_metric([stream], count)
        yield subscriptions
        yield _gauge(
            "connections_write_paused",
            "Connections whose socket buffer is full (the client is behind)",
            paused,
        )
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(OUTBOX_BUCKETS, depth, strict=False):
            running += count
            cumulative.append((le_label(bound), running))
        cumulative.append(("+Inf", running + depth[-1]))
        yield GaugeHistogramMetricFamily(
            _name("outbox_pending_bytes"),
            "Open connections by bytes queued in the gateway and not yet written",
            buckets=cumulative,
            gsum_value=pending_sum,
        )
        yield _gauge(
            "outbox_max_pending_bytes",
            "The largest outbox of any open connection (bytes)",
            pending_max,
        )
        yield _gauge(
            "feeds_under_way",
            "Snapshots and replays being written to subscribers",
            len(hub.feeds),
        )

    # ------------------------------------------------------------------ hub and flusher

    def _hub(self, gateway: Gateway) -> Iterator[Metric]:
        hub = gateway.hub
        c = hub.counters
        flush = hub.flusher.counters
        yield _counter(
            "messages_dispatched",
            "Messages the broker handed to this node for fan-out (every stream and source)",
            c.messages_dispatched,
        )
        published = CounterMetricFamily(
            _name("messages_published"),
            "Messages the broker delivered to this node, by stream and source",
            labels=["stream", "source"],
        )
        for (stream, source), value in sorted(c.published.items()):
            published.add_metric([stream, source], value)
        yield published
        yield _counter(
            "deliveries", "Messages queued for a subscriber (one per connection)", c.deliveries
        )
        yield _labelled_counter(
            "stream_deliveries",
            "Messages queued for a subscriber, by stream",
            "stream",
            c.deliveries_by_stream,
        )
        yield _labelled_counter(
            "stream_bytes",
            "Bytes of data frames queued for subscribers, by stream",
            "stream",
            c.bytes_by_stream,
        )
        yield _counter("bytes_written", "Bytes handed to client sockets", flush.bytes_written)
        yield _counter("writes", "Socket writes (one per connection per flush)", flush.writes)
        yield _counter("flushes", "Flushes of the pending outboxes", flush.flushes)
        yield _counter(
            "frames_encoded",
            "Message encodings (at most one per message and wire format)",
            c.frames_encoded,
        )
        yield _counter(
            "conflated",
            "Latest-value messages replaced by a newer one before they were sent",
            c.conflated,
        )
        yield _counter(
            "throttled",
            "Messages held back by a subscription's rate limit",
            c.throttled,
        )
        yield _counter("connections_opened", "Client connections accepted", c.connections_opened)
        yield _counter("connections_closed", "Client connections gone", c.connections_closed)
        yield _labelled_counter(
            "connections_closed_by_code",
            "Client connections gone, by WebSocket close code",
            "code",
            {str(code): n for code, n in c.closed_by_code.items()},
        )
        yield _counter(
            "slow_consumer_closes",
            "Connections closed with 4008 (outbox or setup buffer over its limit, or stalled)",
            c.slow_consumer_closes,
        )
        yield _counter(
            "setup_buffer_overflows",
            "Subscriptions whose live messages outran their snapshot or replay",
            c.setup_buffer_overflows,
        )
        yield _counter("heartbeat_timeouts", "Connections closed for silence", c.heartbeat_timeouts)
        yield _counter("feed_chunks", "Snapshot and replay chunks written", hub.feeds.chunks)
        latency = hub.flusher.latency
        yield HistogramMetricFamily(
            _name("publish_to_write_seconds"),
            "Per flush, from the broker handing its first message to the hub to the writes",
            buckets=latency.buckets(),
            sum_value=latency.total,
        )

    # ------------------------------------------------------------------ inbound

    def _inbound(self, gateway: Gateway) -> Iterator[Metric]:
        plane = getattr(gateway, "data_plane", None)
        # CommandHandler.counters: inbound_messages, errors_by_code, recovery, replayed.
        commands = getattr(getattr(plane, "commands", None), "counters", None)
        yield _counter(
            "inbound_messages",
            "Client messages (commands) received",
            getattr(commands, "inbound_messages", None),
        )
        yield _labelled_counter(
            "inbound_errors",
            "Error replies sent to clients, by error code",
            "code",
            _mapping(commands, "errors_by_code"),
        )
        yield _labelled_counter(
            "recovery_requests",
            "Subscriptions with `since`, by outcome",
            "outcome",
            # Every outcome, zero included: alerting on a rate needs the series to exist.
            {o: _mapping(commands, "recovery").get(o, 0) for o in RECOVERY_OUTCOMES},
        )
        yield _counter(
            "replayed_messages",
            "Messages replayed from history to recovering subscribers",
            getattr(commands, "replayed", None),
        )
        if plane is None:
            return
        yield _labelled_counter(
            "inbound_violations",
            "Connections closed for breaking an inbound rule, by kind",
            "kind",
            plane.inbound_counters.violations,
        )
        yield _counter(
            "websocket_parser_errors",
            "Connections picows refused (bad framing)",
            plane.picows_log.parser_errors,
        )
        yield _counter(
            "warnings_suppressed",
            "Log warnings left out by the rate limiter",
            plane.inbound_counters.warnings_suppressed,
        )

    # ------------------------------------------------------------------ broker

    def _broker(self, gateway: Gateway) -> Iterator[Metric]:
        broker = gateway.broker
        lag = self.broker_lag
        yield _gauge(
            "broker_up",
            "1 when the broker answered the last lag query",
            float(lag is not None),
        )
        lags = GaugeMetricFamily(
            _name("broker_lag_messages"),
            "Messages the broker holds that this node has not delivered yet, by stream",
            labels=["stream"],
        )
        for stream, value in sorted((lag or {}).items()):
            lags.add_metric([stream], value)
        yield lags
        seqs = GaugeMetricFamily(
            _name("stream_last_seq"), "Last sequence number of each stream", labels=["stream"]
        )
        for stream in STREAMS:
            seqs.add_metric([stream], broker.position(stream).seq)
        yield seqs
        warnings = getattr(broker, "warnings", None)
        yield _labelled_counter(
            "broker_skipped",
            "Malformed or foreign broker data skipped, and reader restarts, by kind",
            "kind",
            _mapping(warnings, "counters"),
        )
        yield _counter(
            "broker_errors",
            "Broker operations that failed (BrokerUnavailable)",
            getattr(broker, "errors", None),
        )

    # ------------------------------------------------------------------ nautilus

    def _nautilus(self, gateway: Gateway) -> Iterator[Metric]:
        source = gateway.nautilus
        if source is None:
            return
        stats = source.stats()
        yield _gauge(
            "nautilus_connected", "1 while the Nautilus reader reaches Redis", stats["connected"]
        )
        yield _gauge(
            "nautilus_warmed_up", "1 once the Nautilus warm-up is done", stats["warmed_up"]
        )
        yield _gauge(
            "nautilus_failing",
            "1 while the Nautilus source restarts after an error",
            stats["failing"] is not None,
        )
        yield _gauge("nautilus_streams", "Nautilus streams being read", stats["streams"])
        for key, value in source.counters.items():
            yield _counter(f"nautilus_{key}", f"Nautilus source: {key.replace('_', ' ')}", value)
        engines = GaugeMetricFamily(
            _name("nautilus_engine_status"),
            "1 for each trader engine's current liveness status",
            labels=["engine", "status"],
        )
        for engine, status in sorted(stats["engines"].items()):
            engines.add_metric([str(engine), str(status)], 1)
        yield engines
        # NautilusSource.lag: dict[str, int], entries behind per Nautilus stream.
        lag = GaugeMetricFamily(
            _name("nautilus_lag_messages"),
            "Entries of each Nautilus stream not read yet",
            labels=["stream"],
        )
        for stream, behind in sorted(_mapping(source, "lag").items()):
            lag.add_metric([stream], behind)
        yield lag


def _mapping(holder: object, attribute: str) -> Mapping[Any, float]:
    value = getattr(holder, attribute, None)
    return value if isinstance(value, Mapping) else {}


class GatewayMetrics:
    """The registry of one gateway: its collector and the process's CPU and memory."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = GatewayCollector(gateway)
        self.registry.register(self.collector)
        ProcessCollector(namespace=PREFIX, registry=self.registry)
        self._building: asyncio.Task[bytes] | None = None

    async def scrape(self) -> bytes:
        """The exposition text. /metrics is open (like /readyz): callers that ask while a
        scrape is being built share it, so a burst of requests costs one build (a walk
        over the connections, a broker lag query, a readiness probe)."""
        if self._building is None or self._building.done():
            self._building = asyncio.get_running_loop().create_task(self._build())
        return await asyncio.shield(self._building)

    async def _build(self) -> bytes:
        """Await the broker's lag and readiness (each bounded by `readiness_timeout`), then
        build every family from the counters."""
        gateway = self._gateway
        timeout = gateway.settings.readiness_timeout
        collector = self.collector
        try:
            async with asyncio.timeout(timeout):
                collector.broker_lag = await gateway.broker_lag()
        except TimeoutError:
            collector.broker_lag = None
        try:
            # Shared with /readyz: concurrent callers share one probe.
            collector.ready = not await gateway.readiness_problems()
        except Exception:
            collector.ready = False
        return generate_latest(self.registry)
