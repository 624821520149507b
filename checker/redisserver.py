"""The private Redis of a multi-node run: one `redis-server` on a free port of 127.0.0.1.

Never the machine's own Redis. Persistence is off (`--save ""`, `--appendonly no`) and every
incarnation gets a fresh directory, so `restart()` brings it back EMPTY on the same port: the
gateways' streams lose their history and must start new epochs. `pause()` makes it
unreachable for a while without losing anything: `CLIENT PAUSE ms ALL` (sent over a raw
socket: no redis-cli needed) or SIGSTOP/SIGCONT of the process. Like every child of the
checker it dies with the harness (`checker.procs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

from checker import procs
from checker.gateway import free_port

INSTALL_HINT = "apt-get install redis-server"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class RedisUnavailable(RuntimeError):
    """redis-server is not installed, or would not start."""


def find_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RedisUnavailable(f"redis-server is not installed ({INSTALL_HINT})")
    return found


def command(*words: str) -> bytes:
    """One command in RESP (what redis-cli would send)."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisServer:
    """One private redis-server; `start`, `stop`, `restart` (empty), `pause`."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.workdir = workdir
        self.binary = binary or find_binary()
        self.port = 0
        """Chosen at the first start, kept across restarts."""
        self.incarnation = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_path(self) -> Path:
        return self.workdir / f"redis-{self.incarnation}.log"

    async def start(self) -> None:
        """Start a new (empty) incarnation and wait until it answers PING."""
        if self.running:
            raise RedisUnavailable("redis-server is already running")
        fixed = self.port != 0
        for _attempt in range(1 if fixed else 3):
            port = self.port if fixed else free_port()
            if await self._start_on(port):
                self.port = port
                return
        raise RedisUnavailable(f"redis-server did not start on 127.0.0.1:{port}: {self.log_tail()}")

    async def _start_on(self, port: int) -> bool:
        self.incarnation += 1
        data = self.workdir / f"redis-{self.incarnation}"
        data.mkdir(parents=True, exist_ok=True)
        self.process = procs.spawn(
            [
                self.binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
                "--loglevel",
                "warning",
            ],
            log_path=self.log_path(),
            python=False,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:  # exited: port taken or bad arguments
                return False
            if await self.ping(port):
                return True
            await asyncio.sleep(0.02)
        procs.kill_now(self.process)
        return False

    async def stop(self) -> None:
        """Stop the server (SIGCONT first, in case it was stopped; SIGTERM, then SIGKILL)."""
        if self.process is not None:
            await procs.terminate(self.process, grace=STOP_TIMEOUT)

    async def restart(self, outage: float) -> None:
        """Stop, stay away `outage` seconds, start again EMPTY on the same port."""
        await self.stop()
        await asyncio.sleep(outage)
        await self.start()

    async def client_pause(self, milliseconds: int) -> None:
        """`CLIENT PAUSE milliseconds ALL`: every client's commands wait, nothing is lost."""
        reply = await self._call(command("CLIENT", "PAUSE", str(milliseconds), "ALL"))
        if not reply.startswith(b"+OK"):
            raise RedisUnavailable(f"CLIENT PAUSE answered {reply!r}")

    def signal(self, sig: signal.Signals) -> bool:
        return self.process is not None and procs.send(self.process, sig)

    async def ping(self, port: int | None = None) -> bool:
        try:
            return (await self._call(command("PING"), port)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False

    async def _call(self, request: bytes, port: int | None = None) -> bytes:
        async with asyncio.timeout(2.0):
            reader, writer = await asyncio.open_connection("127.0.0.1", port or self.port)
            try:
                writer.write(request)
                await writer.drain()
                return await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    def kill_now(self) -> None:
        """Last-resort cleanup, usable outside the event loop."""
        if self.process is not None:
            procs.send(self.process, signal.SIGCONT)
            procs.kill_now(self.process)

    def log_tail(self, limit: int = 1500) -> str:
        try:
            return self.log_path().read_text(errors="replace")[-limit:] or "(empty log)"
        except OSError:
            return "(no log)"
