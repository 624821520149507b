"""The gateway under test: `python -m tidewire serve` as a subprocess on fixed ports.

Restarting it means stopping the process (SIGTERM: clients are closed with 1001; SIGKILL:
they just lose the connection) and starting a new one on the same ports. With the memory
broker the new process has new epochs: resuming clients must be told `recovered: false`.
With `--broker redis://...` (a node of a multi-node run) sequencing and history live in
Redis: a restarted node keeps every epoch, and resuming clients must get `recovered: true`.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from checker import procs

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayError(RuntimeError):
    pass


class GatewayProcess:
    """One gateway at a time on `port` (WebSocket) and `internal_port` (HTTP)."""

    def __init__(
        self,
        workdir: Path,
        settings: Mapping[str, str],
        *,
        node: int | None = None,
        broker: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.settings = dict(settings)
        """TIDEWIRE_* environment variables of every incarnation."""
        self.node = node
        """Index of this node in a multi-node run (None: the single gateway)."""
        self.broker = broker
        """`--broker` URL (None: the default memory broker)."""
        self.port = free_port()
        self.internal_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self.http = httpx.AsyncClient(base_url=self.internal_url, timeout=5.0)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def name(self) -> str:
        return "gateway" if self.node is None else f"node {self.node}"

    def log_path(self, incarnation: int | None = None) -> Path:
        prefix = "gateway" if self.node is None else f"node{self.node}"
        return self.workdir / f"{prefix}-{incarnation or self.incarnation}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        """Start a new incarnation and wait until it answers /readyz."""
        if self.running:
            raise GatewayError("the gateway is already running")
        self.incarnation += 1
        self.process = procs.spawn(
            [
                "-m",
                "tidewire",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--internal-host",
                "127.0.0.1",
                "--internal-port",
                str(self.internal_port),
                "--log-level",
                "warning",
                *(["--broker", self.broker] if self.broker else []),
            ],
            log_path=self.log_path(),
            env=self.settings,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GatewayError(
                    f"gateway exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                response = await self.http.get("/readyz", timeout=1.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        raise GatewayError(f"gateway not ready after {READY_TIMEOUT}s: {self.log_tail()}")

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """Stop the running incarnation with `sig` (SIGKILL after STOP_TIMEOUT); its exit code."""
        process = self.process
        if process is None:
            return None
        procs.send(process, sig)
        if not await procs.wait_exit(process, STOP_TIMEOUT):
            procs.kill_now(process)
        return process.returncode

    async def restart(self, sig: signal.Signals) -> float:
        """Stop with `sig`, start again on the same ports; seconds the gateway was away."""
        started = time.monotonic()
        await self.stop(sig)
        await self.start()
        return time.monotonic() - started

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/api/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def connections(self) -> list[dict[str, Any]]:
        response = await self.http.get("/api/connections")
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def heads(self) -> dict[str, tuple[str, int]]:
        """Every stream's current (epoch, seq) as this node delivered it.

        From /api/streams, which answers from the node's memory: unlike /api/stats (broker
        lag), it does not wait for Redis while Redis is away.
        """
        response = await self.http.get("/api/streams")
        response.raise_for_status()
        return {
            row["stream"]: (row["position"]["epoch"], int(row["position"]["seq"]))
            for row in response.json()
        }

    async def close(self) -> None:
        """Stop whatever runs (bounded) and release the HTTP client."""
        if self.process is not None:
            await procs.terminate(self.process, grace=STOP_TIMEOUT)
        await self.http.aclose()

    def kill_now(self) -> None:
        """Last-resort cleanup, usable outside the event loop."""
        if self.process is not None:
            procs.kill_now(self.process)

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path().read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"
