"""Scale-out benchmark: Tidewire on the Redis broker with 1 and 2 workers, against the
memory broker, under the same load; and the latency the Redis hop adds.

Configurations (a new set of processes for every run):

* `memory`: one gateway process with the in-memory broker; the publisher runs inside it
  (`bench.peers.tidewire_server`, the fan-out benchmark's Tidewire contender).
* `redis-1`, `redis-2`: `tidewire serve --broker redis://... --workers N` (the shipped
  command: N processes sharing the client port with SO_REUSEPORT), a private
  redis-server, and a producer process (`python -m bench.redis_scaleout producer`) that
  publishes through Redis with the broker's Lua step, a burst per call (`publish_many`).
  The load generator's connections land on either worker, as the kernel spreads them.

Every configuration gets the same load: the same connections subscribed to `market_data`,
the same quotes (bench.quotes, `data.ts` = the producer's time.time_ns() when it built the
message), the same pacing (`rate` messages per second in bursts of `burst`) and the same
closed-loop flow control as bench.fanout (at most `window` messages per connection in
flight). CPU is measured per process over the window: **gateway** = every gateway process
summed (the supervisor and its workers), **+ Redis** adds redis-server's own CPU (INFO cpu).
The producer and the load generator are the load, reported apart.

Latency (publish -> client receipt) comes from the load generator's samples, as in
bench.fanout. The Redis hop is measured on its own at a moderate fixed rate with fewer
connections (`--hop-connections`, `--hop-rate`), memory against redis-1: the difference of
the percentiles is what going through Redis adds (the producer's round trip to Redis, the
gateway's XREAD wake-up and decoding).

    python -m bench.redis_scaleout            # full size (about 5 minutes)
    python -m bench.redis_scaleout --quick    # a minute
    python -m bench.redis_scaleout producer --url redis://... --control FILE ...   (child)

Results: a markdown table on stdout and bench/results/redis-scaleout-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil
import redis

from bench.control import ControlBlock, Field, Phase
from bench.fanout import sleep_watching, wait_stages
from bench.peers import harness
from bench.procs import REPO, Child, environment, free_port, machine_busy_seconds
from bench.quotes import raw_quote
from bench.report import markdown, write_results
from bench.stats import median

sys.path.insert(0, str(REPO / "tests"))
from redisproc import RedisProcess  # tests/redisproc.py: a private redis-server

CONFIGS = {"memory": 0, "redis-1": 1, "redis-2": 2}
"""Configuration name -> gateway workers on Redis (0: the memory broker, one process)."""
SETUP_TIMEOUT = 120.0
# The gateway's own housekeeping is off, as for the fan-out peers: no heartbeats to 1000
# idle clients, no inbound rate limit in the way of the load generator's connections.
GATEWAY_ENV = {
    "TIDEWIRE_HEARTBEAT_INTERVAL": "3600",
    "TIDEWIRE_HEARTBEAT_TIMEOUT": "7200",
    "TIDEWIRE_MAX_INBOUND_PER_SECOND": "1000000",
    "TIDEWIRE_INBOUND_BURST": "1000000",
}


# ------------------------------------------------------------------ producer (child process)


def producer_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.redis_scaleout producer")
    parser.add_argument("--url", required=True, help="Redis URL of the gateways")
    parser.add_argument("--control", required=True)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--window", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)

    async def bounded() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(produce(args), args.max_seconds)

    asyncio.run(bounded())


async def produce(args: argparse.Namespace) -> None:
    """Publish quotes through Redis, paced and flow-controlled like bench.peers.harness."""
    from tidewire.brokers.redis import RedisBroker
    from tidewire.protocol.ingest import build_data_message

    class PublishOnly(RedisBroker):
        """A producer publishes through the Lua step; it is no node and reads nothing."""

        async def _read_forever(self) -> None:
            return None

    broker = PublishOnly(args.url)
    await broker.start()
    ctl = ControlBlock(Path(args.control))
    try:
        harness.announce_ready(0)
        await harness.wait_for_phase(ctl, Phase.PUBLISH)
        connections = max(1, ctl.get(Field.SUBSCRIBED))
        limit = harness.window(args.window, args.burst) * connections
        burst, rate = args.burst, args.rate
        published = lost = stalls = 0
        blocked = 0.0
        last_received = -1
        last_progress = start = time.perf_counter()
        while ctl.get(Field.PHASE) < Phase.STOP:
            if rate > 0 and published >= (time.perf_counter() - start) * rate:
                await asyncio.sleep(harness.BLOCKED_SLEEP)
                continue
            received = ctl.get(Field.RECEIVED)
            in_flight = published * connections - received - lost
            if in_flight > limit:
                now = time.perf_counter()
                if received != last_received:
                    last_received, last_progress = received, now
                elif now - last_progress > harness.STALL_SECONDS:
                    lost += in_flight
                    stalls += 1
                    ctl.set(Field.STALLS, stalls)
                await asyncio.sleep(harness.BLOCKED_SLEEP)
                blocked += time.perf_counter() - now
                ctl.set(Field.BLOCKED_US, int(blocked * 1e6))
                continue
            messages = [
                build_data_message(raw_quote(published + i, args.symbols), default_source="bench")
                for i in range(burst)
            ]
            await broker.publish_many(messages)  # one Lua call: the burst arrives together
            published += burst
            ctl.set(Field.PUBLISHED, published)
    finally:
        ctl.close()
        await broker.close()


# ------------------------------------------------------------------ driver


def free_port_pair() -> tuple[int, int]:
    """A client port and a control-plane base port whose successor is free too."""
    for _ in range(50):
        port, base = free_port(), free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        if port not in (base, base + 1):
            return port, base
    raise RuntimeError("no free neighbouring ports")


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of a process and all its descendants."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def redis_cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def wait_ready(planes: list[str], gateway: Child, timeout: float) -> None:
    """Wait until every worker's control plane answers /readyz with 200."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        pending = list(planes)
        while pending:
            if not gateway.alive():
                raise RuntimeError(f"gateway exited: {gateway.error_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {pending} not ready in {timeout:g} s")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{pending[0]}/readyz").status_code == 200:
                    pending.pop(0)
                    continue
            time.sleep(0.1)


def connections_per_worker(planes: list[str]) -> list[int]:
    with httpx.Client(timeout=5.0) as http:
        return [int(http.get(f"{plane}/api/stats").json()["connections"]) for plane in planes]


def stop_gateway(child: Child) -> None:
    """SIGTERM (the supervisor forwards it to its workers), then wait; Child.stop escalates."""
    if child.alive():
        child.popen.send_signal(signal.SIGTERM)
    child.stop(timeout=20.0)


def run_once(
    config: str,
    burst: int,
    rate: float,
    connections: int,
    opts: argparse.Namespace,
) -> dict[str, Any]:
    workers = CONFIGS[config]
    ctl = ControlBlock.create()
    port, base = free_port_pair()
    lifetime = SETUP_TIMEOUT + float(opts.warmup) + float(opts.seconds) + 60.0
    children: list[Child] = []
    redis_server: RedisProcess | None = None
    redis_client: redis.Redis | None = None
    gateway: Child | None = None
    planes: list[str] = []
    try:
        if workers == 0:
            gateway = Child.start(
                config,
                "bench.peers.tidewire_server",
                [
                    *("--port", str(port), "--control", str(ctl.path), "--burst", str(burst)),
                    *("--window", str(opts.window), "--rate", str(rate)),
                    *("--symbols", str(opts.symbols), "--max-seconds", str(lifetime)),
                ],
            )
            children.append(gateway)
            gateway.wait_line("READY", 60.0)
        else:
            redis_server = RedisProcess().start()
            redis_client = redis.Redis.from_url(redis_server.url)
            gateway = Child.start(
                config,
                "tidewire",
                [
                    *("serve", "--broker", redis_server.url, "--port", str(port)),
                    *("--internal-port", str(base), "--workers", str(workers)),
                    *("--log-level", "warning"),
                ],
            )
            children.append(gateway)
            planes = [f"http://127.0.0.1:{base + i}" for i in range(workers)]
            wait_ready(planes, gateway, 60.0)
            producer = Child.start(
                "producer",
                "bench.redis_scaleout",
                [
                    *("producer", "--url", redis_server.url, "--control", str(ctl.path)),
                    *("--burst", str(burst), "--window", str(opts.window), "--rate", str(rate)),
                    *("--symbols", str(opts.symbols), "--max-seconds", str(lifetime)),
                ],
            )
            children.append(producer)
            producer.wait_line("READY", 60.0)
        gen = Child.start(
            "loadgen",
            "bench.loadgen",
            [
                *("--url", f"ws://127.0.0.1:{port}/ws", "--control", str(ctl.path)),
                *("--connections", str(connections), "--sample-every", str(opts.sample_every)),
                *("--max-seconds", str(lifetime)),
            ],
        )
        children.append(gen)
        wait_stages(ctl, 1, gen, gateway, SETUP_TIMEOUT)
        subscribed = ctl.get(Field.SUBSCRIBED)
        if subscribed < connections:
            print(f"  warning: only {subscribed} of {connections} connections subscribed")
        ctl.phase = Phase.PUBLISH
        sleep_watching(opts.warmup, *children)
        others = [c for c in children if c not in (gateway, gen)]

        def snapshot() -> tuple[float, ...]:
            assert gateway is not None
            return (
                time.perf_counter(),
                tree_cpu(gateway.process),
                redis_cpu(redis_client) if redis_client is not None else 0.0,
                sum(c.cpu_seconds() for c in others),
                gen.cpu_seconds(),
                machine_busy_seconds(),
                ctl.get(Field.BLOCKED_US) / 1e6,
                ctl.get(Field.RECEIVED),
                ctl.get(Field.PUBLISHED),
            )

        before = snapshot()
        ctl.phase = Phase.MEASURE
        sleep_watching(opts.seconds, *children)
        after = snapshot()
        rss = tree_rss(gateway.process)
        split = connections_per_worker(planes) if planes else [subscribed]
        stalls = ctl.get(Field.STALLS)
        ctl.phase = Phase.STOP
        report = json.loads(gen.stop().strip().splitlines()[-1])
    finally:
        ctl.phase = Phase.STOP
        for child in reversed(children):
            if child is gateway and workers:
                stop_gateway(child)
            else:
                child.stop(timeout=5.0)
            child.close()
        if redis_client is not None:
            redis_client.close()
        if redis_server is not None:
            redis_server.stop()
        ctl.unlink()
    wall, gw_cpu, rd_cpu, producer_cpu, gen_cpu, busy, blocked = (
        after[i] - before[i] for i in range(7)
    )
    deliveries, published = int(after[7] - before[7]), int(after[8] - before[8])
    if deliveries <= 0 or gw_cpu <= 0:
        raise RuntimeError(f"{config}: nothing delivered in the window ({report})")
    return {
        "config": config,
        "workers": max(1, workers),
        "broker": "redis" if workers else "memory",
        "burst": burst,
        "rate": rate,
        "connections": connections,
        "subscribed": subscribed,
        "connections_per_worker": split,
        "seconds": wall,
        "deliveries": deliveries,
        "published": published,
        "deliveries_per_second": deliveries / wall,
        "gateway_cpu_seconds": gw_cpu,
        "gateway_cpu_share": gw_cpu / wall,
        "cpu_us_per_delivery": gw_cpu * 1e6 / deliveries,
        "deliveries_per_cpu_second": deliveries / gw_cpu,
        "redis_cpu_share": rd_cpu / wall,
        "deliveries_per_cpu_second_with_redis": deliveries / (gw_cpu + rd_cpu),
        "producer_cpu_share": producer_cpu / wall,
        "loadgen_cpu_share": gen_cpu / wall,
        "other_cpu_share": max(0.0, busy - gw_cpu - rd_cpu - producer_cpu - gen_cpu) / wall,
        "publisher_blocked_share": blocked / wall,
        "delivered_fraction": deliveries / (published * subscribed) if published else 0.0,
        "stalls": stalls,
        "latency_ms": {key: value / 1e6 for key, value in report["latency_ns"].items()},
        "latency_samples": report["latency_samples"],
        "gateway_rss_mb": rss / 2**20,
    }


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (section, config, burst, rate, connections): medians over the repeats."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        name = (run["section"], run["config"], run["burst"], run["rate"], run["connections"])
        groups.setdefault(name, []).append(run)
    rows = []
    for (section, config, burst, rate, connections), group in groups.items():
        row: dict[str, Any] = {
            "section": section,
            "config": config,
            "burst": burst,
            "rate": rate,
            "connections": connections,
            "repeats": len(group),
            "connections_per_worker": group[0]["connections_per_worker"],
            "broker": group[0]["broker"],
            "workers": group[0]["workers"],
        }
        for key, value in group[0].items():
            if key in row:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[key] = median([run[key] for run in group])
            elif isinstance(value, dict):
                row[key] = {k: median([run[key][k] for run in group]) for k in value}
        rows.append(row)
    return rows


def load_label(row: dict[str, Any]) -> str:
    rate = f"{row['rate']:g} msg/s" if row["rate"] else "saturated"
    return f"burst {row['burst']}, {rate}"


def scaleout_table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "load",
        "config",
        "conns per worker",
        "deliveries/s",
        "gateway CPU",
        "CPU us/delivery",
        "deliveries/CPU-s",
        "vs memory",
        "Redis CPU",
        "deliveries/CPU-s incl. Redis",
        "producer CPU",
        "loadgen CPU",
        "other CPU",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "delivered",
    ]
    body = []
    scale = [row for row in rows if row["section"] == "scale-out"]
    for row in sorted(scale, key=lambda r: (r["rate"] == 0, r["burst"], r["rate"], r["config"])):
        memory = next(
            (
                r
                for r in scale
                if r["config"] == "memory"
                and (r["burst"], r["rate"]) == (row["burst"], row["rate"])
            ),
            None,
        )
        ratio = (
            f"{row['deliveries_per_cpu_second'] / memory['deliveries_per_cpu_second']:.2f}x"
            if memory
            else "-"
        )
        latency = row["latency_ms"]
        body.append(
            [
                load_label(row),
                row["config"],
                "/".join(str(n) for n in row["connections_per_worker"]),
                f"{row['deliveries_per_second']:,.0f}",
                f"{row['gateway_cpu_share']:.0%}",
                f"{row['cpu_us_per_delivery']:.2f}",
                f"{row['deliveries_per_cpu_second']:,.0f}",
                ratio,
                f"{row['redis_cpu_share']:.0%}" if row["broker"] == "redis" else "-",
                f"{row['deliveries_per_cpu_second_with_redis']:,.0f}",
                f"{row['producer_cpu_share']:.0%}" if row["broker"] == "redis" else "-",
                f"{row['loadgen_cpu_share']:.0%}",
                f"{row['other_cpu_share']:.0%}",
                f"{latency['p50']:.2f}",
                f"{latency['p99']:.2f}",
                f"{latency['p99.9']:.2f}",
                f"{row['delivered_fraction']:.3f}",
            ]
        )
    return markdown(headers, body)


def hop_table(rows: list[dict[str, Any]]) -> str:
    hop = {row["config"]: row for row in rows if row["section"] == "hop"}
    if "memory" not in hop or "redis-1" not in hop:
        return "(no hop measurement)"
    memory, via_redis = hop["memory"], hop["redis-1"]
    headers = ["config", "deliveries/s", "p50 ms", "p99 ms", "p99.9 ms", "samples"]
    body = []
    for row in (memory, via_redis):
        latency = row["latency_ms"]
        body.append(
            [
                row["config"],
                f"{row['deliveries_per_second']:,.0f}",
                f"{latency['p50']:.3f}",
                f"{latency['p99']:.3f}",
                f"{latency['p99.9']:.3f}",
                f"{row['latency_samples']:,}",
            ]
        )
    added = {k: via_redis["latency_ms"][k] - memory["latency_ms"][k] for k in ("p50", "p99")}
    body.append(
        [
            "**added by the Redis hop**",
            "",
            f"**{added['p50']:+.3f}**",
            f"**{added['p99']:+.3f}**",
            f"{via_redis['latency_ms']['p99.9'] - memory['latency_ms']['p99.9']:+.3f}",
            "",
        ]
    )
    return (
        f"{memory['connections']} connections, burst {memory['burst']}, "
        f"{memory['rate']:g} msg/s\n\n" + markdown(headers, body)
    )


def parse_loads(text: str) -> list[tuple[int, float]]:
    """ "1:100,10:500,1:0" -> [(burst, rate), ...]; rate 0 = saturate."""
    loads = []
    for part in text.split(","):
        burst, _, rate = part.strip().partition(":")
        loads.append((int(burst), float(rate or 0)))
    return loads


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="small and short: about a minute")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument(
        "--loads",
        default="1:100,10:500,1:0",
        help="burst:rate pairs (messages/s; 0 = as fast as the clients take them)",
    )
    parser.add_argument("--hop-connections", type=int, default=100)
    parser.add_argument("--hop-rate", type=float, default=200.0)
    parser.add_argument("--no-hop", action="store_true", help="skip the Redis hop latency runs")
    parser.add_argument("--repeat", type=int, default=1, help="report medians of repeats")
    parser.add_argument("--window", type=int, default=0, help="in-flight messages/connection")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--sample-every", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.connections = min(opts.connections, 200)
        opts.seconds = min(opts.seconds, 3.0)
        opts.warmup = min(opts.warmup, 1.0)
        opts.hop_connections = min(opts.hop_connections, 50)
    opts.configs = [name.strip() for name in opts.configs.split(",") if name.strip()]
    unknown = set(opts.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown config(s): {', '.join(sorted(unknown))}")
    opts.loads = parse_loads(opts.loads)
    return opts


def main(argv: list[str]) -> None:
    if argv[:1] == ["producer"]:
        producer_main(argv[1:])
        return
    opts = parse_args(argv)
    os.environ.update(GATEWAY_ENV)  # inherited by `tidewire serve` and its workers
    env = environment()
    runs: list[dict[str, Any]] = []
    plan: list[tuple[str, str, int, float, int]] = [
        ("scale-out", config, burst, rate, opts.connections)
        for burst, rate in opts.loads
        for config in opts.configs
    ]
    if not opts.no_hop:
        plan += [
            ("hop", config, 1, opts.hop_rate, opts.hop_connections)
            for config in ("memory", "redis-1")
        ]
    for repeat in range(opts.repeat):
        for section, config, burst, rate, connections in plan:  # interleaved across repeats
            run = run_once(config, burst, rate, connections, opts)
            run.update(section=section, repeat=repeat)
            runs.append(run)
            latency = run["latency_ms"]
            print(
                f"  {section:<9} {config:<8} burst {burst:>2} rate {rate:>5g} x{connections}: "
                f"{run['cpu_us_per_delivery']:.2f} us/delivery, "
                f"{run['deliveries_per_second']:,.0f} deliveries/s, "
                f"p50 {latency['p50']:.2f} p99 {latency['p99']:.2f} ms, "
                f"split {run['connections_per_worker']}",
                flush=True,
            )
    rows = medians(runs)
    print()
    print(
        f"{opts.connections} connections subscribed to market_data, {opts.seconds:g} s window "
        f"after {opts.warmup:g} s warm-up, medians of {opts.repeat}\n"
    )
    print(scaleout_table(rows))
    print()
    print(hop_table(rows))
    path = write_results("redis-scaleout", opts, env, {"runs": runs, "medians": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
