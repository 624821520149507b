"""Driver side of bench.delivery_server: start it, send it commands, ask its control plane.

`GatewayChild` wraps a `bench.procs.Child` whose stdin is a pipe (the command channel of
bench.delivery_server); `ControlPlane` is an HTTP/1.1 client of the gateway's
control plane (GET /api/stats, GET /api/connections).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.procs import REPO, Child


@dataclass
class Ready:
    port: int
    internal_port: int
    epoch: str


class PipedChild:
    """A child process that takes commands on stdin and answers with lines on stdout.

    A thread reads stdout into a queue: a select() on the pipe would miss a line that
    arrived in the same read as the previous one and sits in the reader's buffer. Use
    `end`/`kill` of this class, not `child.stop` (which reads stdout itself).
    """

    def __init__(self, name: str, module: str, args: list[str]) -> None:
        stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the Child owns it
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        self.child = Child(name, popen, stderr)
        self.name = name
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.child.popen.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.child.popen.pid

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The next line starting with `prefix` (others are skipped), within `timeout` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._lines.put(None)  # stays at end of stream
                raise RuntimeError(f"{self.name} exited: {self.child.error_text()}")
            if line.startswith(prefix):
                return line
        raise RuntimeError(f"{self.name} did not print {prefix!r} in {timeout:g} s")

    def command(self, line: str) -> None:
        stdin = self.child.popen.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def end(self, timeout: float = 10.0) -> None:
        """Close stdin, wait for the exit, then SIGTERM, then SIGKILL (this process only)."""
        popen = self.child.popen
        if popen.stdin is not None and not popen.stdin.closed:
            with contextlib.suppress(OSError):
                popen.stdin.close()
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.terminate()
            try:
                popen.wait(3.0)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        self._reader.join(timeout=2.0)

    def kill(self) -> None:
        """Last resort (a `finally`): make sure the process is gone, release its files."""
        if self.child.alive():
            self.child.popen.kill()
        self.end(timeout=5.0)
        if self.child.popen.stdout is not None:
            self.child.popen.stdout.close()
        self.child.close()


class GatewayChild(PipedChild):
    """A bench.delivery_server process and its command channel."""

    def __init__(self, name: str, args: list[str]) -> None:
        super().__init__(name, "bench.delivery_server", args)

    def wait_ready(self, timeout: float = 60.0) -> Ready:
        _, port, internal, epoch = self.wait_line("READY", timeout).split()
        return Ready(int(port), int(internal), epoch)

    def publish(self) -> None:
        self.command("publish")

    def pause(self, timeout: float = 30.0) -> dict[str, Any]:
        self.command("pause")
        line = self.wait_line("PAUSED", timeout)
        summary: dict[str, Any] = json.loads(line.split(" ", 1)[1])
        return summary

    def stop(self, code: int = 1001, timeout: float = 30.0) -> dict[str, Any]:
        """Close every client with `code`, wait for the process to exit; its summary."""
        summary: dict[str, Any] = {}
        if self.child.alive():
            try:
                self.command(f"stop {code}")
                line = self.wait_line("STOPPED", timeout)
                summary = json.loads(line.split(" ", 1)[1])
            except (OSError, RuntimeError) as exc:
                summary = {"error": str(exc)}
        self.end(timeout=10.0)
        return summary


class ControlPlane:
    """HTTP client of one gateway's control plane, one connection per request.

    Not keep-alive on purpose: the control plane's accepted sockets lack TCP_NODELAY (its
    listening socket is created without IPPROTO_TCP, so asyncio does not set it), and on a
    reused connection the response body then waits for the client's delayed ACK: about
    40 ms per request instead of about 1 ms. A fresh connection per request avoids it.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def request(self, method: str, path: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        return response.status, json.loads(body) if body else None

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.get("/api/stats")
        return stats

    def connections(self) -> list[dict[str, Any]]:
        connections: list[dict[str, Any]] = self.get("/api/connections")
        return connections
