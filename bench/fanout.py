"""Fan-out benchmark: server CPU per delivery, Tidewire against its peers, in one run.

For each burst size and server: start the server, connect the load generator (1000
subscribed connections by default), publish for a warm-up, then measure over a fixed window
the server process's CPU time (user + system) and the deliveries the clients received.
See bench/README.md for the method; run `python -m bench.fanout --help` for options.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from bench.control import ControlBlock, Field, Phase
from bench.procs import REPO, SERVERS, Child, environment, free_port, machine_busy_seconds
from bench.report import fanout_table, write_results
from bench.stats import median

SETUP_TIMEOUT = 120.0


def tidewire_available() -> bool:
    try:
        return importlib.util.find_spec("tidewire.server.app") is not None
    except ModuleNotFoundError:
        return False


def sleep_watching(seconds: float, *children: Child) -> None:
    """Sleep, but fail fast when a child dies (a crashed server must not look idle)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited: {child.error_text()}")
        time.sleep(min(0.25, left))


def wait_stages(
    ctl: ControlBlock, stages: int, loadgen: Child, server: Child, timeout: float
) -> None:
    """Wait until the load generator has opened its connections (`stages` batches)."""
    deadline = time.monotonic() + timeout
    while ctl.get(Field.STAGES) < stages:
        for child in (loadgen, server):
            if not child.alive():
                raise RuntimeError(f"{child.name} exited: {child.error_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"loadgen did not finish connecting in {timeout:g} s; "
                f"{server.name} stderr: {server.error_text(800)}"
            )
        time.sleep(0.05)


def server_args(port: int, ctl: ControlBlock, burst: int, opts: argparse.Namespace) -> list[str]:
    return [
        *("--port", str(port), "--control", str(ctl.path), "--burst", str(burst)),
        *("--window", str(opts.window), "--rate", str(opts.rate)),
        *("--symbols", str(opts.symbols), "--max-seconds", str(lifetime(opts))),
    ]


def lifetime(opts: argparse.Namespace) -> float:
    """Bound on every child's life: setup, warm-up, window and a margin to shut down."""
    return SETUP_TIMEOUT + float(opts.warmup) + float(opts.seconds) + 60.0


def run_once(server: str, burst: int, opts: argparse.Namespace) -> dict[str, Any]:
    ctl = ControlBlock.create()
    port = free_port()
    children: list[Child] = []
    try:
        srv = Child.start(server, SERVERS[server], server_args(port, ctl, burst, opts))
        children.append(srv)
        srv.wait_line("READY", 60.0)
        gen = Child.start(
            "loadgen",
            "bench.loadgen",
            [
                *("--url", f"ws://127.0.0.1:{port}/ws", "--control", str(ctl.path)),
                *("--connections", str(opts.connections)),
                *("--sample-every", str(opts.sample_every), "--client", opts.client),
                *("--rcvlowat", str(opts.rcvlowat)),
                *("--max-seconds", str(lifetime(opts))),
            ],
        )
        children.append(gen)
        if opts.pin:
            srv.pin(0)
            gen.pin(1)
        wait_stages(ctl, 1, gen, srv, SETUP_TIMEOUT)
        subscribed = ctl.get(Field.SUBSCRIBED)
        if subscribed == 0:
            raise RuntimeError(f"no connection could subscribe to {server}")
        if subscribed < opts.connections:
            print(f"  warning: only {subscribed} of {opts.connections} connections subscribed")
        ctl.phase = Phase.PUBLISH
        sleep_watching(opts.warmup, srv, gen)

        def snapshot() -> tuple[float, ...]:
            return (
                time.perf_counter(),
                srv.cpu_seconds(),
                srv.system_cpu_seconds(),
                gen.cpu_seconds(),
                machine_busy_seconds(),
                ctl.get(Field.BLOCKED_US) / 1e6,
                ctl.get(Field.RECEIVED),
                ctl.get(Field.PUBLISHED),
            )

        before = snapshot()
        ctl.phase = Phase.MEASURE
        sleep_watching(opts.seconds, srv, gen)
        after = snapshot()
        peak_rss = srv.peak_rss()
        stalls = ctl.get(Field.STALLS)
        ctl.phase = Phase.STOP
        report = json.loads(gen.stop().strip().splitlines()[-1])
        srv.stop()
    finally:
        ctl.phase = Phase.STOP
        for child in children:
            child.stop(timeout=5.0)
            child.close()
        ctl.unlink()
    wall, server_cpu, server_sys, gen_cpu, busy, blocked = (after[i] - before[i] for i in range(6))
    deliveries, published = int(after[6] - before[6]), int(after[7] - before[7])
    if deliveries <= 0 or server_cpu <= 0:
        raise RuntimeError(f"{server}: nothing delivered in the window ({report})")
    latency = report["latency_ns"]
    return {
        "server": server,
        "burst": burst,
        "connections": opts.connections,
        "subscribed": subscribed,
        "seconds": wall,
        "deliveries": deliveries,
        "deliveries_per_second": deliveries / wall,
        "server_cpu_seconds": server_cpu,
        "cpu_us_per_delivery": server_cpu * 1e6 / deliveries,
        "deliveries_per_cpu_second": deliveries / server_cpu,
        "server_cpu_share": server_cpu / wall,
        "server_kernel_fraction": server_sys / server_cpu,
        "loadgen_cpu_us_per_delivery": gen_cpu * 1e6 / deliveries,
        "loadgen_cpu_share": gen_cpu / wall,
        # CPU used by anything else on the machine (shared cores): a number well above 0
        # means the run competed with other work and is worth repeating.
        "other_cpu_share": max(0.0, busy - server_cpu - gen_cpu) / wall,
        "delivered_fraction": deliveries / (published * subscribed) if published else 0.0,
        "stalls": stalls,
        # Share of the window the publisher waited for the readers (flow control): near 0
        # means the server was the bottleneck; high means the load generator (or, with
        # --rate, the pacing) set the pace and the server had idle time.
        "publisher_blocked_share": blocked / wall,
        "latency_ms": {key: value / 1e6 for key, value in latency.items()},
        "latency_samples": report["latency_samples"],
        "bytes_per_delivery": report["bytes_per_delivery"],
        "deliveries_per_read": report.get("deliveries_per_read"),
        "per_connection_min": report["per_connection_min"],
        "per_connection_max": report["per_connection_max"],
        "connect_errors": report["connect_errors"],
        "peak_rss_mb": peak_rss / 2**20,
    }


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (server, burst): the median of every number over the repeats."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["server"], run["burst"]), []).append(run)
    rows = []
    for (server, burst), group in groups.items():
        row: dict[str, Any] = {"server": server, "burst": burst, "repeats": len(group)}
        for key, value in group[0].items():
            if isinstance(value, int | float) and key not in row:
                row[key] = median([run[key] for run in group])
            elif isinstance(value, dict):
                row[key] = {k: median([run[key][k] for run in group]) for k in value}
        # The spread tells whether a difference between servers is more than noise.
        costs = [run["cpu_us_per_delivery"] for run in group]
        row["cpu_us_range"] = (min(costs), max(costs))
        rows.append(row)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--servers", default="tidewire,websockets,starlette")
    parser.add_argument("--bursts", default="1,10", help="messages per loop iteration")
    parser.add_argument("--repeat", type=int, default=1, help="report medians of repeats")
    parser.add_argument(
        "--window", type=int, default=0, help="in-flight messages/connection (0 = auto)"
    )
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 = saturate")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument(
        "--sample-every", type=int, default=16, help="latency: sample every Nth read"
    )
    parser.add_argument("--client", choices=("raw", "picows"), default="raw")
    parser.add_argument("--rcvlowat", type=int, default=0, help="raw client SO_RCVLOWAT")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, loadgen on CPU 1")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    opts = parser.parse_args()
    opts.servers = [name.strip() for name in opts.servers.split(",") if name.strip()]
    unknown = set(opts.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    opts.bursts = [int(burst) for burst in opts.bursts.split(",")]
    return opts


def main() -> None:
    opts = parse_args()
    if "tidewire" in opts.servers and not tidewire_available():
        print("tidewire.server.app is not importable yet: skipping the Tidewire contender")
        opts.servers.remove("tidewire")
    env = environment()
    runs: list[dict[str, Any]] = []
    for repeat in range(opts.repeat):
        for burst in opts.bursts:
            for server in opts.servers:  # interleaved, so drifting machine load hits all
                run = run_once(server, burst, opts)
                run["repeat"] = repeat
                runs.append(run)
                print(
                    f"  {server:<10} burst {burst:>2} repeat {repeat}: "
                    f"{run['cpu_us_per_delivery']:.2f} us/delivery, "
                    f"{run['deliveries_per_second']:,.0f} deliveries/s",
                    flush=True,
                )
    rows = medians(runs)
    print()
    print(fanout_table(rows, opts))
    path = write_results("fanout", opts, env, {"runs": runs, "medians": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
