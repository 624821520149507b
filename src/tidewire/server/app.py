"""The gateway process: broker, hub, data plane and control plane in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from typing import TYPE_CHECKING, Any

from tidewire import __version__
from tidewire.brokers.base import Broker, BrokerUnavailable, Handlers, PublishOutcome
from tidewire.brokers.memory import MemoryBroker
from tidewire.core import expiry
from tidewire.core.auth import Authenticator
from tidewire.core.commands import CommandHandler, CommandLimits
from tidewire.core.heartbeats import sweep
from tidewire.core.hub import Hub
from tidewire.core.quotas import PublishRates
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.streams import STREAMS
from tidewire.security.browser import default_hosts, default_origins
from tidewire.security.tls import server_context
from tidewire.security.tokens import build_authenticator
from tidewire.server.control import ControlPlane
from tidewire.server.dataplane import DataPlane
from tidewire.server.health_report import HealthReporter
from tidewire.settings import GatewaySettings

if TYPE_CHECKING:
    from tidewire.sources.nautilus import NautilusSource

log = logging.getLogger("tidewire.gateway")

# How often the heartbeat sweep runs at most; it never runs less often than every interval/2.
MAX_TICK_SECONDS = 1.0


def make_broker(settings: GatewaySettings) -> Broker:
    """The broker `settings.broker_url` names: memory:// or redis://."""
    limits = {name: settings.history_limit(name) for name in STREAMS}
    url = settings.broker_url
    if url.startswith(("redis://", "rediss://", "unix://")):
        from tidewire.brokers.redis import RedisBroker

        return RedisBroker(
            url,
            prefix=settings.redis_prefix,
            history_limits=limits,
            idempotency_window=settings.idempotency_window,
            max_latest_keys=settings.max_latest_keys,
        )
    if url.startswith("memory:"):
        return MemoryBroker(
            history_limits=limits,
            idempotency_window=settings.idempotency_window,
            max_latest_keys=settings.max_latest_keys,
        )
    raise ValueError(f"unknown broker URL {url!r}: use memory:// or redis://host:port/db")


class Gateway:
    """One Tidewire node. `await start()`, then clients connect to `url`."""

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        broker: Broker | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.settings = settings or GatewaySettings()
        self.broker: Broker = broker or make_broker(self.settings)
        self.authenticator = authenticator or build_authenticator(self.settings)
        self.publish_rates = PublishRates(
            self.settings.max_publish_rate, self.settings.publish_burst
        )
        """One budget per publisher, shared by WebSocket `publish` and POST /api/publish."""
        self.ssl: ssl.SSLContext | None = (
            server_context(self.settings.tls_cert_file, self.settings.tls_key_file)
            if self.settings.tls_cert_file is not None
            else None
        )
        self.node_id = os.urandom(6).hex()
        """Names this node in control commands (it skips the ones it sent itself)."""
        self.allowed_hosts = (
            frozenset(h.lower() for h in self.settings.allowed_hosts)
            if self.settings.allowed_hosts is not None
            else default_hosts(self.settings.internal_host)
        )
        self.clock = time.monotonic
        self.started_at = 0.0
        self.running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._background: list[Any] = []
        self._probing: asyncio.Task[list[str]] | None = None
        configured = self.settings.allowed_origins
        self._origins: frozenset[str] = (
            frozenset(o.rstrip("/").lower() for o in configured)
            if configured is not None
            else frozenset()
        )
        self.nautilus: NautilusSource | None = None
        """The NautilusTrader source, when `settings.nautilus_url` is set."""
        self.health: HealthReporter | None = None
        """Publishes this node's own system_health (`health_interval`)."""
        self.hub: Hub
        self.data_plane: DataPlane
        self.control_plane: ControlPlane

    @property
    def port(self) -> int:
        """The bound client (WebSocket) port."""
        return self.data_plane.port

    @property
    def internal_port(self) -> int:
        """The bound control-plane (HTTP) port."""
        return self.control_plane.port

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl else "ws"
        return f"{scheme}://{self.settings.host}:{self.port}/ws"

    @property
    def internal_url(self) -> str:
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://{self.settings.internal_host}:{self.internal_port}"

    def allowed_origins(self) -> frozenset[str]:
        """Origins whose pages may open WebSocket connections (see `allowed_origins`).

        The default names the control plane's port, known once it listens: until then
        (the data plane starts first) no browser page of the dashboard can exist, and only
        programs without an Origin get in."""
        return self._origins

    async def start(self) -> None:
        """Start the node, all or nothing: if a part fails (the client port is taken, the
        broker is down), what had started is stopped again and the error re-raised, so no
        reader task, connection or socket outlives a failed start."""
        try:
            await self._start()
        except BaseException:
            await self._undo_start()
            raise

    async def _undo_start(self) -> None:
        """Stop whatever a failed `_start` got running; each step on its own, so that one
        failing does not hide the original error nor skip the others."""
        self.running = False
        steps: list[Any] = [source.stop for source in self._background]
        self._background.clear()
        if self._tick_task is not None:
            self._tick_task.cancel()
            steps.append(lambda: asyncio.wait([self._tick_task]))
        if "data_plane" in vars(self):
            steps.append(self.data_plane.stop)
        if "control_plane" in vars(self):
            steps.append(self.control_plane.stop)
        steps.append(self.broker.close)
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("stopping after a failed start")

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        settings = self.settings
        self.hub = Hub(
            loop,
            settings.max_outbox_bytes,
            clock=self.clock,
            stall_timeout=settings.stall_timeout,
            max_setup_buffer=settings.max_setup_buffer,
        )
        commands = CommandHandler(
            self.hub,
            self.broker,
            self.authenticator,
            CommandLimits(
                max_subscriptions=settings.max_subscriptions,
                max_message_bytes=settings.max_message_bytes,
                max_filter_values=settings.max_filter_values,
                max_filter_values_per_connection=settings.max_filter_values_per_connection,
                max_list_page=settings.max_list_page,
                max_query_messages=settings.max_query_messages,
                max_queries_in_flight=settings.max_queries_in_flight,
                max_subscriptions_per_user=settings.max_subscriptions_per_user,
                max_connections_per_user=settings.max_connections_per_user,
            ),
            clock=self.clock,
            publish_rates=self.publish_rates,
        )
        self.broker.attach(
            Handlers(message=self._consume, history_lost=self._history_lost, control=self._control)
        )
        await self.broker.start()
        self.data_plane = DataPlane(
            settings,
            self.hub,
            commands,
            self.authenticator,
            self.clock,
            allowed_origins=self.allowed_origins,
            ssl=self.ssl,
        )
        await self.data_plane.start()
        self.control_plane = ControlPlane(self)
        await self.control_plane.start()
        if settings.allowed_origins is None:
            self._origins = default_origins(
                self.allowed_hosts, self.control_plane.port, self.ssl is not None
            )
        self._tick_task = loop.create_task(self._heartbeats())
        self.started_at = self.clock()
        self.running = True
        if settings.simulator:
            from tidewire.sources.simulator import MarketSimulator

            simulator = MarketSimulator(self.broker.publish, rate=settings.simulator_rate)
            self._background.append(simulator)
            simulator.start()
        if settings.health_interval > 0:
            self.health = HealthReporter(self, settings.health_interval, settings.node_name)
            self._background.append(self.health)
            self.health.start()
        if settings.nautilus_url:
            from tidewire.sources.nautilus import NautilusConfig, NautilusSource

            self.nautilus = NautilusSource(
                self.broker.publish,
                NautilusConfig(
                    url=settings.nautilus_url,
                    streams=tuple(settings.nautilus_streams),
                    offsets_key=settings.nautilus_offsets_key or None,
                    portfolio_field=settings.nautilus_portfolio_field,
                    start_from=settings.nautilus_start_from,
                ),
            )
            self._background.append(self.nautilus)
            self.nautilus.start()
        log.info("tidewire %s serving %s (control %s)", __version__, self.url, self.internal_url)

    async def stop(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Stop producers, close every client with `code` (1001, or 1012 for a restart).

        Idempotent: a second call does nothing.
        """
        if not self.running:
            return
        self.running = False
        if self._probing is not None:
            self._probing.cancel()
        for source in self._background:
            await source.stop()
        self._background.clear()
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        await self.data_plane.stop(code)
        await self.control_plane.stop()
        await self.broker.close()

    async def publish(self, raw: dict[str, Any], source: str = "api") -> PublishOutcome:
        """Validate and publish a producer message (the Python-code producer path)."""
        return await self.broker.publish(build_data_message(raw, default_source=source))

    def _consume(self, message: DataMessage) -> None:
        """Broker delivery: fan-out, and operator notices to every client of this node."""
        self.hub.counters.published[message.stream, message.source] += 1
        self.hub.dispatch(message)
        if message.broadcast:
            self.hub.broadcast(message)

    async def disconnect_user(self, user_id: str) -> int:
        """Close every connection of `user_id` on every node with 4003; returns how many
        this node closed. Raises BrokerUnavailable (then only this node's are closed)."""
        closed = self._close_user(user_id)
        await self.broker.publish_control(
            {"op": "disconnect_user", "user_id": user_id, "node": self.node_id}
        )
        return closed

    def _close_user(self, user_id: str) -> int:
        connections = self.hub.ledger.connections_of(user_id)
        for connection in connections:
            self.hub.close(connection, CloseCode.FORBIDDEN, "disconnected by an operator")
        if connections:
            log.info("closed %d connection(s) of user %s", len(connections), user_id)
        return len(connections)

    def _control(self, command: dict[str, str]) -> None:
        """A control command from the broker (sent by any node, this one included)."""
        if command.get("node") == self.node_id:
            return  # applied when it was sent
        if command.get("op") == "disconnect_user" and command.get("user_id"):
            self._close_user(command["user_id"])

    async def readiness_problems(self) -> list[str]:
        """Why this node should not get traffic now; empty when it is ready.

        One probe at a time: callers that ask while one is under way share its answer.
        /readyz is open to anyone, and each probe is a write to the broker that every node
        reads, so a burst of requests costs one probe.
        """
        if self._probing is None or self._probing.done():
            self._probing = asyncio.get_running_loop().create_task(self._check_readiness())
        return await asyncio.shield(self._probing)

    async def _check_readiness(self) -> list[str]:
        problems = []
        if not self.running or self.data_plane.port == 0:
            problems.append("data plane not listening")
        timeout = self.settings.readiness_timeout
        try:
            async with asyncio.timeout(timeout):
                await self.broker.probe()
        except TimeoutError:
            problems.append(f"broker: a probe message did not come back within {timeout} s")
        except BrokerUnavailable as exc:
            problems.append(f"broker: {exc}")
        if self.nautilus is not None and self.nautilus.failing is not None:
            problems.append(f"nautilus source restarting after: {self.nautilus.failing}")
        return problems

    def _history_lost(self, stream: str) -> None:
        """The broker lost `stream`'s history (new epoch): its live subscribers missed what
        was lost. Close them with 1012 so they reconnect and resubscribe with `since`; the
        new epoch answers `recovered: false` and they resync instead of going on with a gap."""
        for connection in list(self.hub.connections.values()):
            if any(s.spec.name == stream for s in connection.subscriptions.values()):
                self.hub.close(connection, CloseCode.SERVICE_RESTART, f"{stream} history reset")

    async def broker_lag(self) -> dict[str, int] | None:
        try:
            return await self.broker.lag()
        except BrokerUnavailable:
            return None

    def stats(self) -> dict[str, Any]:
        counters = self.hub.counters
        sources = {} if self.nautilus is None else {"nautilus": self.nautilus.stats()}
        return {
            **sources,
            "version": __version__,
            "uptime_seconds": round(self.clock() - self.started_at, 3),
            "connections": len(self.hub.connections),
            "subscriptions": sum(len(c.subscriptions) for c in self.hub.connections.values()),
            "messages_dispatched": counters.messages_dispatched,
            "deliveries": counters.deliveries,
            "writes": self.hub.flusher.counters.writes,
            "bytes_written": self.hub.flusher.counters.bytes_written,
            "flushes": self.hub.flusher.counters.flushes,
            "conflated": counters.conflated,
            "connections_opened": counters.connections_opened,
            "connections_closed": counters.connections_closed,
            "slow_consumer_closes": counters.slow_consumer_closes,
            "setup_buffer_overflows": counters.setup_buffer_overflows,
            "feeds_under_way": len(self.hub.feeds),
            "feed_chunks": self.hub.feeds.chunks,
            "heartbeat_timeouts": counters.heartbeat_timeouts,
            **self._protection_stats(),
            "streams": {
                name: {"epoch": pos.epoch, "seq": pos.seq}
                for name in STREAMS
                for pos in (self.broker.position(name),)
            },
        }

    def _protection_stats(self) -> dict[str, Any]:
        """What bad input cost: inbound rule violations by kind, picows's own refusals,
        and (Redis) the foreign or malformed data the broker skipped."""
        plane = getattr(self, "data_plane", None)
        out: dict[str, Any] = {}
        if plane is not None:
            out["inbound_violations"] = dict(plane.inbound_counters.violations)
            out["warnings_suppressed"] = plane.inbound_counters.warnings_suppressed
            out["parser_errors"] = plane.picows_log.parser_errors
        broker_warnings = getattr(self.broker, "warnings", None)
        if broker_warnings is not None:
            out["broker_skipped"] = dict(broker_warnings.counters)
        return out

    async def _heartbeats(self) -> None:
        settings = self.settings
        period = min(
            MAX_TICK_SECONDS,
            settings.heartbeat_interval / 2,
            settings.stall_timeout / 2,
            settings.auth_timeout / 2,
        )
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            sweep(self.hub, now, settings.heartbeat_interval, settings.heartbeat_timeout)
            if self.authenticator.required:
                expiry.sweep(
                    self.hub, now, time.time(), settings.jwt_leeway, self.authenticator.revoked
                )
