"""A private `redis-server` on a free port of 127.0.0.1, for tests and benchmarks.

Never the machine's own Redis: each `RedisProcess` runs its own server with persistence off
(`--save ""`, `--appendonly no`) in a temporary directory, waits until it answers PING and
stops it again. `stop()` followed by `start()` restarts it on the same port, empty, which is
how tests make Redis unreachable for a while.

    with RedisProcess() as redis:
        print(redis.url)        # redis://127.0.0.1:41234/0
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

INSTALL_HINT = "apt-get install redis-server"
START_TIMEOUT = 10.0


def _die_with_parent() -> None:
    """In the child: ask Linux for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server on `port` answers PING (raw RESP: no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """One private redis-server process; `start`, `stop`, or use it as a context manager."""

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        """`binary`: path of redis-server (default: found on PATH). `port`: fixed port
        (default: a free one, chosen at the first start and kept across restarts)."""
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError(f"redis-server is not installed ({INSTALL_HINT})")
        self.binary = found
        self.port = port or 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisProcess:
        """Start the server and wait until it answers PING; retries on a lost port race."""
        if self.running:
            return self
        fixed = self.port != 0
        for _attempt in range(3):
            port = self.port if fixed else free_port()
            if self._start_on(port):
                self.port = port
                return self
            if fixed:
                break
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port or port}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); its data is gone."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_on(self, port: int) -> bool:
        self._dir = tempfile.TemporaryDirectory(prefix="tidewire-redis-")
        self._process = subprocess.Popen(
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
                self._dir.name,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # The server dies with the process that started it, even a killed test run.
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:  # exited: port taken or bad arguments
                break
            if ping(port):
                return True
            time.sleep(0.02)
        with contextlib.suppress(Exception):
            self.stop()
        return False
