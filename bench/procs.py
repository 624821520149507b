"""Child processes of a benchmark run: start, wait for readiness, measure, stop.

Everything started here is bounded: each child gets a lifetime bound on its command line,
and `Child.stop` escalates from "wait" to SIGTERM to SIGKILL on that one process id.
"""

from __future__ import annotations

import os
import platform
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil

REPO = Path(__file__).resolve().parent.parent

SERVERS: dict[str, str] = {
    "tidewire": "bench.peers.tidewire_server",
    "websockets": "bench.peers.websockets_broadcast",
    "starlette": "bench.peers.starlette_uvicorn",
    # Opt-in reference, not a peer: bare picows, the floor under Tidewire's transport.
    "picows": "bench.peers.picows_floor",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    """One child process with its stderr kept in a temp file (shown when it fails)."""

    name: str
    popen: subprocess.Popen[str]
    stderr: IO[str]
    process: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.process = psutil.Process(self.popen.pid)

    @classmethod
    def start(cls, name: str, module: str, args: list[str]) -> Child:
        stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the Child owns it
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        return cls(name, popen, stderr)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_line(self, prefix: str, timeout: float) -> str:
        """Read stdout until a line starting with `prefix`, within `timeout` seconds."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.popen.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not selector.select(left):
                    continue
                line = self.popen.stdout.readline()
                if not line:
                    break  # EOF: the child exited
                if line.startswith(prefix):
                    return line.strip()
        raise RuntimeError(f"{self.name} did not print {prefix!r}: {self.error_text()}")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process (all its threads), in seconds."""
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def system_cpu_seconds(self) -> float:
        """Kernel CPU time of the process: sends, wakeups and loopback TCP processing."""
        return float(self.process.cpu_times().system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def peak_rss(self) -> int:
        """Peak resident set size: the kernel's high-water mark (VmHWM) where available."""
        try:
            with open(f"/proc/{self.popen.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return self.rss()

    def pin(self, cpu: int) -> None:
        self.process.cpu_affinity([cpu])

    def stop(self, timeout: float = 10.0) -> str:
        """Wait for a voluntary exit, then SIGTERM, then SIGKILL; return its stdout rest."""
        out = ""
        try:
            out, _ = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.terminate()
            try:
                out, _ = self.popen.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                out, _ = self.popen.communicate()
        return out or ""

    def close(self) -> None:
        """Release the stderr file; call after `stop`."""
        self.stderr.close()

    def error_text(self, limit: int = 2000) -> str:
        self.stderr.seek(0)
        text = self.stderr.read()
        return text[-limit:] if text else f"(exit code {self.popen.poll()}, no stderr)"


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent not idle, since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def environment() -> dict[str, Any]:
    """What the numbers depend on, recorded with every result file."""
    versions: dict[str, str | None] = {}
    for package in ("picows", "websockets", "starlette", "uvicorn", "msgspec", "tidewire"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((ln.split(":", 1)[1].strip() for ln in info if "model name" in ln), "")
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "versions": versions,
    }
