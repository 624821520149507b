"""Idle-connection memory: server RSS growth per subscribed, idle connection.

For each server: start it, open `--baseline` subscribed connections (so one-time costs such
as lazy imports and first-use caches are paid), read RSS, open the rest up to
`--connections`, let it settle, read RSS again. Memory per connection is the RSS growth
divided by the connections added. Nothing is published: the connections are idle.
Kernel socket buffers are not in RSS and not counted (they are the same for every server).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.control import ControlBlock, Field, Phase
from bench.fanout import tidewire_available, wait_stages
from bench.procs import REPO, SERVERS, Child, environment, free_port
from bench.report import idle_table, write_results

SETUP_TIMEOUT = 300.0


def settle(srv: Child, seconds: float) -> int:
    """RSS once it stops moving (or after `seconds`): allocators and GC finish lazily."""
    deadline = time.monotonic() + seconds
    previous = srv.rss()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = srv.rss()
        if current == previous:
            return current
        previous = current
    return previous


def measure(server: str, opts: argparse.Namespace) -> dict[str, Any]:
    ctl = ControlBlock.create()
    port = free_port()
    lifetime = str(SETUP_TIMEOUT + 120)
    children: list[Child] = []
    try:
        srv = Child.start(
            server,
            SERVERS[server],
            ["--port", str(port), "--control", str(ctl.path), "--max-seconds", lifetime],
        )
        children.append(srv)
        srv.wait_line("READY", 60.0)
        gen = Child.start(
            "loadgen",
            "bench.loadgen",
            [
                *("--url", f"ws://127.0.0.1:{port}/ws", "--control", str(ctl.path)),
                *("--connections", str(opts.connections), "--first", str(opts.baseline)),
                *("--max-seconds", lifetime),
            ],
        )
        children.append(gen)
        wait_stages(ctl, 1, gen, srv, SETUP_TIMEOUT)
        first = ctl.get(Field.SUBSCRIBED)
        before = settle(srv, opts.settle)
        ctl.set(Field.PROCEED, 1)
        wait_stages(ctl, 2, gen, srv, SETUP_TIMEOUT)
        total = ctl.get(Field.SUBSCRIBED)
        after = settle(srv, opts.settle)
        ctl.phase = Phase.STOP
        gen.stop()
        srv.stop()
    finally:
        ctl.phase = Phase.STOP
        for child in children:
            child.stop(timeout=5.0)
            child.close()
        ctl.unlink()
    added = total - first
    if added <= 0:
        raise RuntimeError(f"{server}: no connections were added after the baseline")
    return {
        "server": server,
        "connections": total,
        "baseline_connections": first,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "kib_per_connection": (after - before) / added / 1024,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--baseline", type=int, default=100, help="connections before RSS")
    parser.add_argument("--servers", default="tidewire,websockets,starlette")
    parser.add_argument("--settle", type=float, default=5.0, help="max seconds to settle")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    opts = parser.parse_args()
    opts.servers = [name.strip() for name in opts.servers.split(",") if name.strip()]
    unknown = set(opts.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return opts


def main() -> None:
    opts = parse_args()
    if "tidewire" in opts.servers and not tidewire_available():
        print("tidewire.server.app is not importable yet: skipping the Tidewire contender")
        opts.servers.remove("tidewire")
    env = environment()
    rows = []
    for server in opts.servers:
        row = measure(server, opts)
        rows.append(row)
        print(f"  {server:<10} {row['kib_per_connection']:.1f} KiB/connection", flush=True)
    print()
    print(f"{opts.connections} idle subscribed connections, RSS growth after {opts.baseline}")
    print()
    print(idle_table(rows))
    path = write_results("idle-memory", opts, env, {"rows": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
