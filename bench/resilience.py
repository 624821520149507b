"""The resilience suite, long form: each attack of bench/attacks/ in turn against a gateway
in its own process, while dozens of healthy clients measure their latency.

    python -m bench.resilience --seconds 60          # the long run (about 15-20 minutes)
    python -m bench.resilience --quick               # a short look (a few minutes)

The gateway (`python -m bench.resilience child`) runs the real `Gateway` on a private
redis-server (tests/redisproc.py) so that the Redis attack has keys to poison. The driver
opens `--clients` healthy clients (bench.attacks.HealthyProbe) on `risk_alerts`, which a
producer (bench.attacks.Producer) feeds at `--rate` messages per second over
POST /api/publish, each message stamped with its publish time. First a baseline window of
`--seconds` without attacker, then each attack for `--seconds` (attacks that finish sooner
start again until the window is over; the big ones run once). Printed per attack: the
attacker's close codes (documented: in the docstrings of the modules of bench/attacks/),
the time from its first frame to the gateway's cut, the healthy clients' p50/p99 receive
latency and their ratio to the baseline, messages lost and seq gaps (both must be 0),
/healthz failures, and the gateway's RSS before / peak (sampled every 10 ms) / after. The
full data goes to bench/results/resilience-<time>.json.

Caveat: attackers, healthy clients and producer share the driver process (one core of two),
so an attack that costs the driver CPU shows in the latency too: compare with the baseline
and read "healthz slowest" (the gateway's own answer time) beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import attacks
from bench.attacks import AttackResult, HealthMonitor, HealthyProbe, Producer, RssSampler, Target
from bench.gateway_child import PipedChild
from bench.procs import REPO, environment, free_port
from bench.report import markdown, write_results
from bench.stats import percentiles

sys.path.insert(0, str(REPO / "tests"))
import contextlib

from redisproc import RedisProcess  # tests/redisproc.py: a private redis-server

MiB = 1024 * 1024


# ------------------------------------------------------------------ the gateway child


async def serve(settings: dict[str, Any], max_seconds: float) -> None:
    from tidewire.server.app import Gateway
    from tidewire.settings import GatewaySettings

    gateway = Gateway(GatewaySettings(**settings))
    await gateway.start()
    print(f"READY {gateway.port} {gateway.internal_port}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        # Until the driver closes stdin (or the lifetime bound).
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), max_seconds)
    except TimeoutError:
        pass
    finally:
        await gateway.stop()
        print("STOPPED {}", flush=True)


def gateway_settings(opts: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    from tidewire.settings import GatewaySettings

    settings: dict[str, Any] = {
        "port": free_port(),
        "internal_port": free_port(),
        "broker_url": redis_url,
        "redis_prefix": f"rs{os.urandom(3).hex()}",
        "max_frame_bytes": GatewaySettings.model_fields["max_frame_bytes"].default,
        "max_publish_rate": 1e6,
        "publish_burst": 1_000_000,
        "stall_timeout": opts.stall_timeout,
        "max_reassembly_bytes": opts.reassembly_mib * MiB,
        # Room for the big snapshots of attack c; attack f publishes past it.
        "max_latest_keys": opts.latest_keys or max(opts.instruments, opts.snapshot_keys),
        "history_overrides": {
            "order_updates": {"max_messages": opts.absence + 10_000, "max_age_seconds": 3600.0}
        },
    }
    return settings


# ------------------------------------------------------------------ the attacks, for a window


Attack = Callable[[Target, argparse.Namespace, float], Awaitable[list[AttackResult]]]


async def repeat(
    run: Callable[[], Awaitable[AttackResult]], seconds: float, once: bool = False
) -> list[AttackResult]:
    """Run `run` again and again until `seconds` are over (at least once)."""
    results: list[AttackResult] = []
    deadline = time.perf_counter() + seconds
    while not results or (not once and time.perf_counter() < deadline):
        results.append(await run())
    return results


def flood(kind: Callable[..., Awaitable[AttackResult]]) -> Attack:
    """A flood attack for a window: one flood after the other, each of at most
    max(`seconds`, 5) s, until the window is over."""

    async def run(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
        return await repeat(lambda: kind(target, max_seconds=max(seconds, 5.0)), seconds)

    return run


a_ping = flood(attacks.ping_flood)
a_continuation = flood(attacks.continuation_flood)
a_messages = flood(attacks.message_flood)


async def b_redis(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
    return await repeat(lambda: attacks.redis_garbage(target), seconds)


async def c_big(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
    await attacks.publish_instruments(target, opts.instruments)
    return await repeat(
        lambda: attacks.big_snapshot(target, opts.instruments, publish=False), seconds
    )


async def c_stalled(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
    await attacks.publish_instruments(target, opts.snapshot_keys)
    return await repeat(
        lambda: attacks.stalled_snapshot(
            target,
            opts.snapshot_keys,
            stallers=opts.stallers,
            publish=False,
            cut_timeout=opts.stall_timeout * 3 + 30,
        ),
        seconds,
        once=True,
    )


async def c_absence(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
    return await repeat(lambda: attacks.long_absence(target, opts.absence), seconds, once=True)


async def d_filters(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
    async def once() -> AttackResult:
        result, sessions = await attacks.filter_values(target, 4, 100, 1000)
        for session in sessions:
            await session.close()
        return result

    return await repeat(once, seconds)


async def e_reassembly(
    target: Target, opts: argparse.Namespace, seconds: float
) -> list[AttackResult]:
    async def once() -> AttackResult:
        frame_cap = int(json.loads(opts.settings_json)["max_frame_bytes"])
        size = min(opts.fragment_kib * 1024, frame_cap - 1024)  # a fragment, not too big
        result, holders = await attacks.reassembly_hold(target, opts.holders, size)
        for holder in holders:
            holder.abort()
        return result

    return await repeat(once, seconds)


async def f_latest(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
    cap = int(json.loads(opts.settings_json)["max_latest_keys"])
    return await repeat(
        lambda: attacks.latest_keys(target, cap + opts.latest_extra, cap),
        seconds,
        once=True,
    )


async def g_framing(target: Target, opts: argparse.Namespace, seconds: float) -> list[AttackResult]:
    return await repeat(lambda: attacks.framing_rules(target), seconds)


ATTACKS: dict[str, tuple[Attack, str]] = {
    "a.ping_flood": (a_ping, "4029"),
    "a.continuation_flood": (a_continuation, "4029"),
    "a.message_flood": (a_messages, "4029"),
    "b.redis_garbage": (b_redis, "victim 1012, recovered false"),
    "c.big_snapshot": (c_big, "none: whole snapshot"),
    "c.stalled_snapshot": (c_stalled, "4008 each"),
    "c.long_absence": (c_absence, "none: recovered, exact"),
    "d.filter_values": (d_filters, "invalid_filter past 10,000"),
    "e.reassembly": (e_reassembly, "1009 past the budget"),
    "f.latest_keys": (f_latest, "none: LRU of max_latest_keys"),
    "g.framing": (g_framing, "1007 / 1002 / 426"),
}


def outcome(results: list[AttackResult]) -> str:
    """What the attacker saw, in a few words."""
    first = results[0]
    name, counts = first.attack, first.counts
    if name == "redis_garbage":
        return f"victim {first.close_code}, recovered {counts.get('victim_recovered')}"
    if name == "big_snapshot":
        return f"{counts.get('snapshot_messages')} msgs, close {first.close_code}"
    if name == "stalled_snapshot":
        codes = sorted({str(c) for c in counts.get("staller_close_codes", [])})
        return f"stallers {'/'.join(codes)}, readers {counts.get('reader_close_codes')}"
    if name == "long_absence":
        return f"recovered {counts.get('recovered')}, exact {counts.get('exact')}"
    if name == "filter_values":
        return f"ok {counts.get('confirmed')}, {counts.get('error_codes')}"
    if name == "reassembly_hold":
        return f"held {counts.get('held')}, {counts.get('refused_codes')}"
    if name == "latest_keys":
        if "error" in counts:
            return "error"
        return f"kept {counts.get('kept')}, lru {counts.get('lru_ok')}"
    if name == "framing_rules":
        codes = sorted({str(c) for c in counts.get("close_codes", {}).values()})
        return f"{'/'.join(codes)}, v8 {counts.get('version_8_status')}"
    tally: dict[str, int] = {}
    for r in results:
        tally[str(r.close_code)] = tally.get(str(r.close_code), 0) + 1
    return ", ".join(f"{code} x{n}" for code, n in sorted(tally.items()))


# ------------------------------------------------------------------ one window


async def window(
    name: str, attack: Attack | None, target: Target, pid: int, opts: argparse.Namespace
) -> dict[str, Any]:
    """Healthy clients and producer for one window, with `attack` (None: the baseline)."""
    probes = [await HealthyProbe.open(target) for _ in range(opts.clients)]
    producer = Producer(target, opts.rate)
    monitor = HealthMonitor(target)
    producer.start()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(p.arrived.wait() for p in probes)), attacks.TIMEOUT * 3
        )
        for probe in probes:
            probe.reset_latencies()
        memory = RssSampler(pid).start()
        monitor.start()
        started = time.perf_counter()
        results: list[AttackResult] = []
        error = None
        if attack is None:
            await asyncio.sleep(opts.seconds)  # the baseline's window: nothing to wait for
        else:
            try:
                results = await attack(target, opts, opts.seconds)
            except Exception as exc:
                error = repr(exc)[:300]
        elapsed = time.perf_counter() - started
        await producer.stop()
        published = producer.published

        async def all_arrived() -> bool:
            return all(p.has(published - 1) for p in probes)

        with contextlib.suppress(TimeoutError):
            await attacks.until(all_arrived, "every healthy client got everything", 30.0)
        await monitor.stop()
        after = await memory.stop()
    finally:
        await producer.stop()
        for probe in probes:
            await probe.close()
    reports = [p.report() for p in probes]
    latencies = [ns for r in reports for ns in r.latencies_ns]
    points = percentiles(latencies, [50, 99])
    return {
        "attack": name,
        "seconds": elapsed,
        "runs": len(results),
        "error": error,
        "outcome": outcome(results) if results else "-",
        "cut_ms": [r.seconds_to_cut * 1000 for r in results if r.seconds_to_cut is not None],
        "p50_ms": points["p50"] / 1e6,
        "p99_ms": points["p99"] / 1e6,
        "published": published,
        "lost": sum(max(0, published - r.received) for r in reports),
        "gaps": sum(r.gaps + r.out_of_order for r in reports),
        "healthy_closed": [r.closed for r in reports if r.closed is not None],
        "producer_errors": producer.errors[:5],
        "healthz_checks": monitor.checks,
        "healthz_failures": monitor.failures,
        "healthz_slowest_ms": monitor.slowest * 1000,
        "rss_before_mb": memory.before / MiB,
        "rss_peak_mb": memory.peak / MiB,
        "rss_after_mb": after / MiB,
        "results": [
            {
                "close_code": r.close_code,
                "seconds_to_cut": r.seconds_to_cut,
                "frames_sent": r.frames_sent,
                "bytes_sent": r.bytes_sent,
                "counts": r.counts,
            }
            for r in results[:20]
        ],
    }


def table(rows: list[dict[str, Any]]) -> str:
    baseline = next((r for r in rows if r["attack"] == "baseline"), None)
    headers = [
        "attack",
        "documented",
        "attacker saw",
        "runs",
        "cut ms (median)",
        "p50 ms",
        "p99 ms",
        "p50 vs baseline",
        "p99 vs baseline",
        "lost",
        "gaps",
        "healthz fail/slowest ms",
        "RSS MiB before/peak/after",
    ]
    body = []
    for row in rows:
        cut = sorted(row["cut_ms"])
        ratio50 = ratio99 = "-"
        if baseline is not None and row is not baseline:
            ratio50 = f"{row['p50_ms'] / baseline['p50_ms']:.2f}x" if baseline["p50_ms"] else "-"
            ratio99 = f"{row['p99_ms'] / baseline['p99_ms']:.2f}x" if baseline["p99_ms"] else "-"
        documented = ATTACKS[row["attack"]][1] if row["attack"] in ATTACKS else "-"
        saw = row["outcome"] if not row["error"] else f"ERROR {row['error'][:80]}"
        body.append(
            [
                row["attack"],
                documented,
                saw,
                str(row["runs"]),
                f"{cut[len(cut) // 2]:.0f}" if cut else "-",
                f"{row['p50_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                ratio50,
                ratio99,
                str(row["lost"]),
                str(row["gaps"]),
                f"{row['healthz_failures']}/{row['healthz_slowest_ms']:.0f}",
                f"{row['rss_before_mb']:.0f}/{row['rss_peak_mb']:.0f}/{row['rss_after_mb']:.0f}",
            ]
        )
    return markdown(headers, body)


async def drive(opts: argparse.Namespace, ready: tuple[int, int], pid: int, redis: str) -> Any:
    settings = json.loads(opts.settings_json)
    target = Target(
        f"ws://127.0.0.1:{ready[0]}",
        f"http://127.0.0.1:{ready[1]}",
        redis,
        settings["redis_prefix"],
    )
    rows = []
    names = [n for n in ATTACKS if not opts.attacks or any(n.startswith(a) for a in opts.attacks)]
    if opts.baseline:
        rows.append(await window("baseline", None, target, pid, opts))
        print(f"baseline: {rows[-1]['p50_ms']:.1f} / {rows[-1]['p99_ms']:.1f} ms", flush=True)
    for name in names:
        rows.append(await window(name, ATTACKS[name][0], target, pid, opts))
        row = rows[-1]
        print(f"{name}: {row['outcome']} lost {row['lost']} gaps {row['gaps']}", flush=True)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("mode", nargs="?", default="drive", choices=["drive", "child"])
    parser.add_argument("--seconds", type=float, default=60.0, help="window per attack")
    parser.add_argument("--clients", type=int, default=50, help="healthy clients")
    parser.add_argument("--rate", type=float, default=20.0, help="healthy flow, messages/s")
    parser.add_argument("--instruments", type=int, default=30_000, help="c: big snapshot")
    parser.add_argument("--snapshot-keys", type=int, default=100_000, help="c: stalled")
    parser.add_argument("--stallers", type=int, default=10)
    parser.add_argument("--stall-timeout", type=float, default=10.0)
    parser.add_argument("--absence", type=int, default=100_000, help="c: messages missed")
    parser.add_argument("--holders", type=int, default=1000, help="e: connections")
    parser.add_argument("--fragment-kib", type=int, default=100, help="e: held per connection")
    parser.add_argument("--reassembly-mib", type=int, default=64, help="max_reassembly_bytes")
    parser.add_argument(
        "--latest-keys",
        type=int,
        default=0,
        help="max_latest_keys of the gateway (0: the larger of --instruments, --snapshot-keys)",
    )
    parser.add_argument(
        "--latest-extra", type=int, default=5000, help="f: symbols published past the cap"
    )
    parser.add_argument("--attacks", type=lambda s: s.split(","), default=[], help="a,c.big,...")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--quick", action="store_true", help="small sizes, 5 s windows")
    parser.add_argument("--settings-json", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="child lifetime")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    opts = parser.parse_args()
    if opts.quick:
        opts.seconds = min(opts.seconds, 5.0)
        opts.clients = min(opts.clients, 20)
        opts.instruments = 5000
        opts.snapshot_keys = 20_000
        opts.stall_timeout = 2.0
        opts.absence = 5000
        opts.holders = 150
        opts.reassembly_mib = 8
        opts.latest_extra = 2000
    return opts


def main() -> None:
    opts = parse_args()
    if opts.mode == "child":
        asyncio.run(serve(json.loads(opts.settings_json), opts.max_seconds))
        return
    env = environment()
    with RedisProcess() as redis:
        settings = gateway_settings(opts, redis.url)
        opts.settings_json = json.dumps(settings)
        child = PipedChild(
            "gateway",
            "bench.resilience",
            ["child", "--settings-json", opts.settings_json, "--max-seconds", "7200"],
        )
        try:
            _, port, internal = child.wait_line("READY", 60.0).split()
            rows = asyncio.run(drive(opts, (int(port), int(internal)), child.pid, redis.url))
        finally:
            child.end(timeout=15.0)  # closes stdin: the child stops its gateway and exits
            child.kill()
    print()
    print(
        f"{opts.clients} healthy clients on risk_alerts at {opts.rate:g} msg/s, "
        f"{opts.seconds:g} s per attack, gateway on Redis (stall_timeout {opts.stall_timeout:g} s)"
    )
    print()
    print(table(rows))
    failed = [r["attack"] for r in rows if r["lost"] or r["gaps"] or r["healthz_failures"]]
    print()
    print(
        "healthy clients: nothing lost, no gap, /healthz up in every window"
        if not failed
        else f"HEALTHY CLIENTS AFFECTED in: {', '.join(failed)}"
    )
    path = write_results("resilience", opts, env, {"rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
