"""`make demo-nautilus`: a private Redis, the gateway reading it, a live Nautilus node writing.

Starts three processes and stops them together on Ctrl-C (or after `--seconds`):

1. `redis-server` on a free port of 127.0.0.1 (no persistence; never the machine's own),
2. `tidewire serve --nautilus redis://127.0.0.1:PORT` (WebSocket 8765, control plane 8766),
3. `examples/nautilus_node.py`: a live, offline NautilusTrader node (synthetic quotes,
   sandbox execution, EMACross, DeskExerciser) publishing its message bus into that Redis.

Then watch it: the dashboard and API on http://127.0.0.1:8766, or
`.venv/bin/tidewire tail order_updates`, `tail market_data`, `tail engine_status`...
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765, help="gateway WebSocket port")
    parser.add_argument("--internal-port", type=int, default=8766, help="control-plane port")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    args = parser.parse_args(argv)

    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    redis_port = free_port()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too
    redis_url = f"redis://127.0.0.1:{redis_port}"
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tidewire-demo-") as data_dir:
        try:
            redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
            redis_args += ["--appendonly", "no", "--dir", data_dir, "--loglevel", "warning"]
            processes.append(subprocess.Popen([redis_server, *redis_args]))
            wait_for_port(redis_port)
            gateway = [sys.executable, "-m", "tidewire", "serve", "--nautilus", redis_url]
            gateway += ["--port", str(args.port), "--internal-port", str(args.internal_port)]
            processes.append(subprocess.Popen(gateway))
            wait_for_port(args.internal_port)
            node = [sys.executable, str(HERE / "nautilus_node.py"), "--redis", redis_url]
            processes.append(subprocess.Popen(node))
            print(
                f"\nNautilus demo: Redis {redis_url}; dashboard and API "
                f"http://127.0.0.1:{args.internal_port}; WebSocket "
                f"ws://127.0.0.1:{args.port}/ws\n"
                "Try: .venv/bin/tidewire tail order_updates  (Ctrl-C stops everything)\n",
                file=sys.stderr,
                flush=True,
            )
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            while deadline is None or time.monotonic() < deadline:
                if any(process.poll() is not None for process in processes):
                    print("a demo process exited; stopping the others", file=sys.stderr)
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            # Cleaning up must not be cut short by a second Ctrl-C or SIGTERM.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for process in reversed(processes):  # node first, then gateway, then Redis
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    try:
                        process.wait(15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
