"""The gateway reports on itself: a `system_health` message every `health_interval` seconds.

Component `gateway:<node>` (the `node_name` setting, else `<hostname>:<client port>`), on the
`system_health` stream like any producer's, so dashboards and alerting see the gateway
beside the engines it serves. `data`: `status` (healthy; degraded when readiness has a
problem other than the broker, or the broker lags by more than `LAG_DEGRADED` messages;
error when the broker does not answer), `active_connections`, `throughput` (deliveries per
second since the last report), `error_rate` (slow-consumer closes and inbound rule
violations per second), `cpu_usage` (percent of one core), `memory_usage` (RSS in percent of
the machine's memory) and, beside the canonical fields, `rss_bytes`, `subscriptions`,
`broker` and `broker_lag` (messages this node has yet to deliver, all streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from tidewire import __version__
from tidewire.brokers.base import BrokerUnavailable

if TYPE_CHECKING:
    from tidewire.server.app import Gateway

__all__ = ["HealthReporter"]

log = logging.getLogger("tidewire.health")

LAG_DEGRADED = 1000
"""Undelivered messages past which this node reports itself degraded."""
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident memory (Linux: /proc/self/statm)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def total_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * _PAGE
    except (ValueError, OSError, AttributeError):
        return 0


class HealthReporter:
    """Publishes the gateway's `system_health` on a timer (`start`/`stop`, like a source)."""

    def __init__(self, gateway: Gateway, interval: float, node: str = "") -> None:
        self._gateway = gateway
        self.interval = interval
        self.component = f"gateway:{node or f'{socket.gethostname()}:{gateway.port}'}"
        self._task: asyncio.Task[None] | None = None
        self._last = (time.monotonic(), time.process_time(), 0, 0)
        """(wall, CPU, deliveries, errors) at the last report: rates are since then."""
        self.reports = 0
        self._failing = False

    def start(self) -> None:
        self._last = (time.monotonic(), time.process_time(), *self._totals())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # the reporting period, not a synchronisation
            try:
                await self.report()
                self._failing = False
            except BrokerUnavailable as exc:
                if not self._failing:  # once per outage, not once per period
                    log.warning("cannot publish the gateway's health: %s", exc)
                self._failing = True
            except Exception:
                log.exception("the gateway's health report failed")

    def _totals(self) -> tuple[int, int]:
        gateway = self._gateway
        counters = gateway.hub.counters
        plane = getattr(gateway, "data_plane", None)
        violations = sum(plane.inbound_counters.violations.values()) if plane else 0
        return counters.deliveries, counters.slow_consumer_closes + violations

    async def measure(self) -> dict[str, Any]:
        """The `system_health` message of this node now (rates since the last call)."""
        gateway = self._gateway
        now, cpu = time.monotonic(), time.process_time()
        deliveries, errors = self._totals()
        then, cpu_then, deliveries_then, errors_then = self._last
        self._last = (now, cpu, deliveries, errors)
        seconds = max(now - then, 1e-6)
        problems = await gateway.readiness_problems()
        lag = await gateway.broker_lag()
        behind = sum(lag.values()) if lag is not None else None
        if lag is None or any(p.startswith("broker") for p in problems):
            status = "error"
        elif problems or (behind is not None and behind > LAG_DEGRADED):
            status = "degraded"
        else:
            status = "healthy"
        rss, total = rss_bytes(), total_memory_bytes()
        data: dict[str, Any] = {
            "status": status,
            "active_connections": len(gateway.hub.connections),
            "throughput": round((deliveries - deliveries_then) / seconds, 1),
            "error_rate": round((errors - errors_then) / seconds, 3),
            "cpu_usage": round(100.0 * (cpu - cpu_then) / seconds, 1),
            "memory_usage": round(100.0 * rss / total, 2) if total else 0.0,
            "uptime": round(gateway.clock() - gateway.started_at, 1),
            "version": __version__,
            "rss_bytes": rss,
            "subscriptions": sum(len(c.subscriptions) for c in gateway.hub.connections.values()),
            "broker": gateway.settings.broker_url.partition(":")[0],
            "broker_lag": behind,
        }
        if problems:
            data["problems"] = problems
        return {
            "type": "system_health",
            "component": self.component,
            "status": status,
            "data": data,
        }

    async def report(self) -> None:
        """Measure and publish one `system_health` message. Raises BrokerUnavailable."""
        await self._gateway.publish(await self.measure(), source="gateway")
        self.reports += 1
