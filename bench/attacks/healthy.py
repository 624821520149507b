"""The healthy side of every attack: the flow, the client that checks it, and the gauges.

`Producer` publishes `rate` messages per second on `HEALTHY_STREAM` (a reliable stream
nothing else writes to), each stamped with its publish time (`data.sent_ns`) and counted
(`data.n`). `HealthyProbe` subscribes to it beside the attack, counts messages, checks that
`seq` and `data.n` have no gap and records the receive latency. `HealthMonitor` polls
`/healthz` meanwhile; `RssSampler` samples a process's RSS (before, peak, after).
The documented outcome of every attack: nothing lost, no gap, the probe never closed,
/healthz answering throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.attacks.clients import TIMEOUT, Publisher, Target, WsSession

HEALTHY_STREAM = "risk_alerts"
"""Reliable, and written to by nothing but the `Producer`: every seq must arrive."""


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Stop a background loop of this module and wait until it has."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def healthy_message(n: int, run: str) -> dict[str, Any]:
    """Message n of the healthy flow: `data.n` counts, `data.sent_ns` is the publish time."""
    return {
        "type": "risk_alert",
        "message_id": f"healthy-{run}-{n}",
        "portfolio_id": "HEALTHY",
        "severity": "low",
        "data": {
            "metric": "probe",
            "current_value": float(n),
            "threshold": 1e18,
            "n": n,
            "sent_ns": time.time_ns(),
        },
    }


class Producer:
    """The healthy flow: `rate` messages per second on HEALTHY_STREAM, in small batches."""

    def __init__(self, target: Target, rate: float, run: str | None = None, first: int = 0) -> None:
        """`first`: the `data.n` of the first message (a flow resumed by a new Producer:
        the previous one's `published`); `published` is then the next n, not a count."""
        self.publisher = Publisher(target.http_url)
        self.rate = rate
        self.run = run or os.urandom(4).hex()
        self.first = first
        self.published = first
        self.errors: list[str] = []
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        tick = 0.02
        started = time.perf_counter()
        while not self._stopping:
            due = self.first + int((time.perf_counter() - started) * self.rate)
            if due > self.published:
                batch = [healthy_message(n, self.run) for n in range(self.published, due)]
                try:
                    await self.publisher.publish(batch[:1000])
                    self.published += min(len(batch), 1000)
                except Exception as exc:
                    self.errors.append(repr(exc)[:200])
            await asyncio.sleep(tick)  # pacing, not synchronisation

    async def stop(self) -> None:
        """Let the batch in flight finish (so that `published` counts exactly what the
        gateway accepted), then stop; cancel only if that takes longer than TIMEOUT."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), TIMEOUT)
        await _cancel(self._task)
        await self.publisher.close()


@dataclass
class ProbeReport:
    received: int
    gaps: int
    """Breaks in seq or data.n continuity (each counts once)."""
    out_of_order: int
    closed: int | None
    """The probe's close code if the gateway closed it; None: still connected."""
    latencies_ns: list[int]


class HealthyProbe:
    """One healthy client: subscribes to HEALTHY_STREAM (no snapshot to replay) and reads."""

    def __init__(self, ws: ClientConnection, keep_latency: bool = True) -> None:
        self.ws = ws
        self.keep_latency = keep_latency
        self.received = 0
        self.gaps = 0
        self.out_of_order = 0
        self.first_n: int | None = None
        self.last_n: int | None = None
        self.last_seq: int | None = None
        self.closed: int | None = None
        self.latencies_ns: list[int] = []
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, target: Target, keep_latency: bool = True) -> HealthyProbe:
        session = await WsSession.open(target)
        reply = await session.subscribe(HEALTHY_STREAM)
        if reply["type"] == "subscription_error":
            raise RuntimeError(f"healthy subscribe refused: {reply}")
        probe = cls(session.ws, keep_latency)
        probe._task = asyncio.get_running_loop().create_task(probe._read())
        return probe

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("stream") != HEALTHY_STREAM or "seq" not in message:
                    continue
                now = time.time_ns()
                data = message["data"]
                n, seq = int(data["n"]), int(message["seq"])
                if self.last_seq is not None and seq != self.last_seq + 1:
                    if seq <= self.last_seq:
                        self.out_of_order += 1
                    else:
                        self.gaps += 1
                if self.last_n is not None and n != self.last_n + 1:
                    self.gaps += 1
                if self.first_n is None:
                    self.first_n = n
                self.last_seq, self.last_n = seq, n
                self.received += 1
                if self.keep_latency:
                    self.latencies_ns.append(now - int(data["sent_ns"]))
                self.arrived.set()
        except ConnectionClosed:
            pass
        self.closed = self.ws.close_code

    def has(self, n: int) -> bool:
        """Whether message n (0-based) of the producer has arrived (or it never will)."""
        return self.closed is not None or (self.last_n is not None and self.last_n >= n)

    def report(self) -> ProbeReport:
        return ProbeReport(
            self.received, self.gaps, self.out_of_order, self.closed, list(self.latencies_ns)
        )

    def reset_latencies(self) -> None:
        self.latencies_ns.clear()

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, TIMEOUT)


class HealthMonitor:
    """GET /healthz every `interval` s while an attack runs; counts failures and the
    slowest answer."""

    def __init__(self, target: Target, interval: float = 0.2) -> None:
        self.http = httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT)
        self.interval = interval
        self.checks = 0
        self.failures = 0
        self.slowest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        started = time.perf_counter()
        try:
            ok = (await self.http.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            ok = False
        self.slowest = max(self.slowest, time.perf_counter() - started)
        self.checks += 1
        self.failures += not ok
        return ok

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await self.check()
                await asyncio.sleep(self.interval)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        await _cancel(self._task)
        await self.http.aclose()


# ------------------------------------------------------------------ memory


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) of a process from /proc/<pid>/status."""
    return _status_field(pid, "VmRSS:")


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set size (VmHWM) of a process from /proc/<pid>/status."""
    return _status_field(pid, "VmHWM:")


def _status_field(pid: int | str, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no {name} in /proc/{pid}/status")


class RssSampler:
    """Samples a process's RSS every `interval` s while an attack runs: before, peak, after
    (VmHWM is useless for a test process that lives across many attacks)."""

    def __init__(self, pid: int | str = "self", interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.before = rss_bytes(pid)
        self.peak = self.before
        self.last = self.before
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        async def loop() -> None:
            while True:
                self.sample()
                await asyncio.sleep(self.interval)

        self._task = asyncio.get_running_loop().create_task(loop())
        return self

    def sample(self) -> int:
        try:
            self.last = rss_bytes(self.pid)
        except (OSError, ValueError):
            return self.last
        self.peak = max(self.peak, self.last)
        return self.last

    @property
    def growth(self) -> int:
        """Peak minus before, in bytes."""
        return self.peak - self.before

    async def stop(self) -> int:
        await _cancel(self._task)
        return self.sample()
