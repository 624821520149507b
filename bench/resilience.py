"""The resilience suite, long form: each attack of bench/attacks/ in turn against a gateway
in its own process, while hundreds of healthy clients in other processes measure their
latency.

    python -m bench.resilience --clients 500 --seconds 30   # the long run (about 8 minutes)
    python -m bench.resilience --quick                      # a short look (about 1 minute)

Processes (so that the healthy clients' latency measures the gateway, not the attacker's
CPU in the same event loop):

- the gateway (`python -m bench.resilience child`): the real `Gateway` on a private
  redis-server (tests/redisproc.py), so that the Redis attack has keys to poison;
- `--healthy-procs` healthy-client processes (`... healthy`; default: 1 up to 250 clients,
  else 2), each holding its share of the `--clients` healthy clients
  (bench.attacks.HealthyProbe) on `risk_alerts` for the whole run. Their latency samples
  are merged by concatenation: the percentiles of a window are nearest-rank percentiles
  over the union of every process's samples (not an average of per-process percentiles);
- one attacker process per attack window (`... attacker --attack a.ping_flood`), which
  runs the attack function of bench/attacks/ (the only implementation, also run by
  tests/resilience/) and reports its `AttackResult`s and its CPU seconds as one JSON line
  on stdout (`RESULT {...}`);
- the driver: the producer (bench.attacks.Producer, `--rate` messages per second over
  POST /api/publish, each stamped with its publish time; one flow whose `data.n` continues
  from window to window, paused between windows), /healthz polling (HealthMonitor) and the
  gateway's RSS (RssSampler, every 10 ms).

Windows: a short warm-up (not reported), a baseline of `--seconds` without attacker, each
attack for `--seconds` (attacks that finish sooner start again until the window is over;
the big ones run once), and a second baseline after the attacks; `--interleave`: a
baseline window before each attack and one after the last. The reference of "vs base" is
the median of the baseline windows' figures (with two windows: their mean); "vs
neighbours" is the mean of the nearest baseline before and after the attack's window,
which follows a load that drifts during the run (other users of a shared machine).
Printed per window: the attacker's outcome and close codes (documented: in the docstrings
of the modules of bench/attacks/), the time from its first frame to the gateway's cut
(median, max), the healthy clients' p50/p99/p99.9 receive latency and the p99 and p99.9
ratios to the baseline, messages lost and seq gaps (both must be 0), /healthz failures and
the slowest answer, the gateway's RSS before / peak / after, and the CPU seconds of the
gateway, the healthy-client processes (the busiest one, as a share of one core: near 100%
means the load generator, not the gateway, set the latency), the attacker, the driver and
the whole machine. The full data goes to bench/results/resilience-<time>.json.

Caveat: all processes share the machine (2 cores here); an attacker that writes as fast
as it can takes a core the gateway and the healthy clients then share. The "machine busy"
column shows it; `--attacker-nice 19` lowers the attacker's priority (closer to an attacker
on another machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil

from bench import attacks
from bench.attacks import AttackResult, HealthMonitor, HealthyProbe, Producer, RssSampler, Target
from bench.gateway_child import PipedChild
from bench.procs import REPO, environment, free_port
from bench.report import markdown, write_results
from bench.stats import percentiles

sys.path.insert(0, str(REPO / "tests"))

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
        try:
            results.append(await run())
        except Exception as exc:
            raise Interrupted(results, exc) from exc
    return results


class Interrupted(Exception):
    """A run of an attack failed: the results of the runs before it, and the error."""

    def __init__(self, results: list[AttackResult], error: Exception) -> None:
        super().__init__(f"after {len(results)} run(s): {error!r}")
        self.results = results


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


# ------------------------------------------------------------------ options across processes


def forwarded(opts: argparse.Namespace) -> str:
    """The options as JSON, for a child process of the driver (`--opts-json`)."""
    return json.dumps(
        {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items() if k != "mode"}
    )


def received_options(opts: argparse.Namespace) -> argparse.Namespace:
    """The driver's options in a child (`--opts-json`), this process's mode and role kept."""
    merged = {**vars(opts), **json.loads(opts.opts_json)}
    for own in ("mode", "attack", "clients", "max_seconds", "opts_json"):
        merged[own] = getattr(opts, own)
    return argparse.Namespace(**merged)


def target_of(opts: argparse.Namespace) -> Target:
    fields: dict[str, Any] = json.loads(opts.target_json)
    return Target(**fields)


def cpu_self() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------ the healthy clients


async def healthy(opts: argparse.Namespace) -> None:
    """`opts.clients` healthy clients for the whole run; commands on stdin.

    `start`: a window begins (latencies cleared, counters marked); answers `STARTED`.
    `end <next_n>`: the producer stopped before message `next_n`; waits (at most 30 s)
    until every open client has it, answers `WINDOW {json}` with the window's latency
    samples (µs) and counts. End of stdin: close the clients and exit."""
    target = target_of(opts)
    probes: list[HealthyProbe] = []
    while len(probes) < opts.clients:
        batch = min(50, opts.clients - len(probes))
        probes += await asyncio.gather(*(HealthyProbe.open(target) for _ in range(batch)))
    print(f"READY {len(probes)}", flush=True)
    loop = asyncio.get_running_loop()
    marks = [(p.received, p.gaps + p.out_of_order) for p in probes]
    cpu_start = cpu_self()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command, *args = line.split()
            if command == "start":
                for probe in probes:
                    probe.reset_latencies()
                marks = [(p.received, p.gaps + p.out_of_order) for p in probes]
                cpu_start = cpu_self()
                print("STARTED", flush=True)
            elif command == "end":
                last = int(args[0]) - 1

                async def all_arrived(last: int = last) -> bool:
                    return all(p.has(last) for p in probes)

                drained = True
                try:
                    await attacks.until(all_arrived, "every healthy client got everything", 30.0)
                except TimeoutError:
                    drained = False
                window = {
                    "clients": len(probes),
                    "drained": drained,
                    "received": [p.received - m[0] for p, m in zip(probes, marks, strict=True)],
                    "gaps": sum(
                        p.gaps + p.out_of_order - m[1] for p, m in zip(probes, marks, strict=True)
                    ),
                    "closed": [p.closed for p in probes if p.closed is not None],
                    "latencies_us": [ns // 1000 for p in probes for ns in p.latencies_ns],
                    "cpu_s": cpu_self() - cpu_start,
                }
                print("WINDOW " + json.dumps(window), flush=True)
    finally:
        for probe in probes:
            with contextlib.suppress(Exception):
                await probe.close()


# ------------------------------------------------------------------ one attacker process


async def attacker(opts: argparse.Namespace) -> None:
    """Run one attack for a window when told `go` on stdin; print `RESULT {json}`."""
    target = target_of(opts)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu_start, started = cpu_self(), time.perf_counter()
    results: list[AttackResult] = []
    error = None
    try:
        results = await ATTACKS[opts.attack][0](target, opts, opts.seconds)
    except Interrupted as exc:
        results, error = exc.results, str(exc)[:300]
    except Exception as exc:
        error = repr(exc)[:300]
    report = {
        "error": error,
        "cpu_s": cpu_self() - cpu_start,
        "wall_s": time.perf_counter() - started,
        "results": [
            {
                "attack": r.attack,
                "close_code": r.close_code,
                "seconds_to_cut": r.seconds_to_cut,
                "frames_sent": r.frames_sent,
                "bytes_sent": r.bytes_sent,
                "counts": r.counts,
            }
            for r in results
        ],
    }
    print("RESULT " + json.dumps(report, default=str), flush=True)


def results_of(report: dict[str, Any]) -> list[AttackResult]:
    return [AttackResult(**r) for r in report["results"]]


# ------------------------------------------------------------------ CPU of every process


class CpuMeter:
    """CPU seconds of named processes (psutil) and of the whole machine over a window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start = {name: self._cpu(p) for name, p in self.processes.items()}
        self.machine_start = psutil.cpu_times()
        self.wall_start = time.perf_counter()

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return float("nan")
        return float(times.user + times.system)

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall_start
        out = {name: self._cpu(p) - self.start[name] for name, p in self.processes.items()}
        now, then = psutil.cpu_times(), self.machine_start
        idle = (now.idle - then.idle) + (getattr(now, "iowait", 0) - getattr(then, "iowait", 0))
        total = sum(now) - sum(then)
        out["machine_busy_cores"] = (1 - idle / total) * (psutil.cpu_count() or 1) if total else 0
        out["wall_s"] = wall
        return out


# ------------------------------------------------------------------ one window


class Run:
    """The processes of one run and the healthy flow's position."""

    def __init__(
        self,
        opts: argparse.Namespace,
        target: Target,
        gateway_pid: int,
        redis_pid: int | None,
        healthy: list[PipedChild],
    ) -> None:
        self.opts = opts
        self.target = target
        self.gateway_pid = gateway_pid
        self.redis_pid = redis_pid
        self.healthy = healthy
        self.next_n = 0

    async def lines(self, children: list[PipedChild], prefix: str, bound: float) -> list[str]:
        return [
            (await asyncio.to_thread(c.wait_line, prefix, bound))[len(prefix) :].strip()
            for c in children
        ]

    async def window(self, name: str, seconds: float) -> dict[str, Any]:
        """Healthy flow for one window beside the attack `name` ("baseline...": none)."""
        opts = self.opts
        child = None
        if name in ATTACKS:
            args = ["attacker", "--attack", name, "--opts-json", forwarded(opts)]
            args += ["--max-seconds", str(seconds * 4 + 600)]
            child = PipedChild(f"attacker {name}", "bench.resilience", args)
            if opts.attacker_nice:
                psutil.Process(child.pid).nice(opts.attacker_nice)
            await self.lines([child], "READY", 60.0)
        try:
            return await self._window(name, seconds, child)
        finally:
            if child is not None:
                child.end(timeout=10.0)
                child.kill()

    async def _window(self, name: str, seconds: float, child: PipedChild | None) -> dict[str, Any]:
        opts = self.opts
        for h in self.healthy:
            h.command("start")
        await self.lines(self.healthy, "STARTED", 30.0)
        pids = {"gateway": self.gateway_pid, "driver": os.getpid()}
        pids.update({f"healthy{i}": h.pid for i, h in enumerate(self.healthy)})
        if self.redis_pid:
            pids["redis"] = self.redis_pid
        cpu = CpuMeter(pids)
        producer = Producer(self.target, opts.rate, first=self.next_n)
        monitor = HealthMonitor(self.target)
        memory = RssSampler(self.gateway_pid).start()
        monitor.start()
        producer.start()
        started = time.perf_counter()
        report: dict[str, Any] = {"error": None, "cpu_s": 0.0, "results": []}
        try:
            if child is None:
                await asyncio.sleep(seconds)  # a baseline: nothing to wait for
            else:
                child.command("go")
                timeout = seconds * 3 + 300
                report = json.loads((await self.lines([child], "RESULT", timeout))[0])
        except Exception as exc:
            report["error"] = repr(exc)[:300]
        elapsed = time.perf_counter() - started
        await producer.stop()
        first, self.next_n = producer.first, producer.published
        for h in self.healthy:
            h.command(f"end {self.next_n}")
        windows = [json.loads(line) for line in await self.lines(self.healthy, "WINDOW", 90.0)]
        await monitor.stop()
        after = await memory.stop()
        used = cpu.stop()
        results = results_of(report)
        published = self.next_n - first
        received = [n for w in windows for n in w["received"]]
        latencies = [us for w in windows for us in w["latencies_us"]]
        points = percentiles(latencies, [50, 99, 99.9])
        healthy_cpu = [float(w["cpu_s"]) for w in windows]
        ours = sum(v for k, v in used.items() if k not in ("machine_busy_cores", "wall_s"))
        ours += float(report["cpu_s"])
        used["others_cores"] = used["machine_busy_cores"] - ours / used["wall_s"]
        return {
            "attack": name,
            "seconds": elapsed,
            "runs": len(results),
            "error": report["error"],
            "outcome": outcome(results) if results else "-",
            "close_codes": close_codes(results),
            "cut_ms": [r.seconds_to_cut * 1000 for r in results if r.seconds_to_cut is not None],
            "samples": len(latencies),
            "p50_ms": points["p50"] / 1e3,
            "p99_ms": points["p99"] / 1e3,
            "p99.9_ms": points["p99.9"] / 1e3,
            "max_ms": max(latencies, default=0) / 1e3,
            "published": published,
            "clients": len(received),
            "lost": sum(max(0, published - n) for n in received),
            "gaps": sum(int(w["gaps"]) for w in windows),
            "drained": all(w["drained"] for w in windows),
            "healthy_closed": [c for w in windows for c in w["closed"]],
            "producer_errors": producer.errors[:5],
            "healthz_checks": monitor.checks,
            "healthz_failures": monitor.failures,
            "healthz_slowest_ms": monitor.slowest * 1000,
            "rss_before_mb": memory.before / MiB,
            "rss_peak_mb": memory.peak / MiB,
            "rss_after_mb": after / MiB,
            "cpu_s": {
                **used,
                "healthy_self": healthy_cpu,
                "attacker": float(report["cpu_s"]),
            },
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


def close_codes(results: list[AttackResult]) -> str:
    tally: dict[str, int] = {}
    for r in results:
        code = "none" if r.close_code is None else str(r.close_code)
        tally[code] = tally.get(code, 0) + 1
    return ", ".join(f"{code} x{n}" for code, n in sorted(tally.items())) or "-"


def reference(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The baseline: per figure, the median over the baseline windows."""
    base = [r for r in rows if r["attack"].startswith("baseline")]
    keys = ("p50_ms", "p99_ms", "p99.9_ms")
    return {k: statistics.median(r[k] for r in base) for k in keys} if base else {}


def neighbours(rows: list[dict[str, Any]], index: int, key: str) -> float | None:
    """The mean of `key` over the nearest baseline window before and the nearest after
    row `index` (one of them at the ends): a reference that follows a drifting load."""
    before = [r for r in rows[:index] if r["attack"].startswith("baseline")][-1:]
    after = [r for r in rows[index + 1 :] if r["attack"].startswith("baseline")][:1]
    near = [float(r[key]) for r in before + after]
    return statistics.mean(near) if near else None


def table(rows: list[dict[str, Any]]) -> str:
    ref = reference(rows)
    headers = [
        "attack",
        "documented",
        "attacker saw",
        "runs",
        "close codes",
        "cut ms median/max",
        "healthy p50/p99/p99.9 ms",
        "p99 vs base",
        "p99 vs neighbours",
        "p99.9 vs base",
        "lost/gaps",
        "healthz fail/slowest ms",
        "gateway RSS MiB before/peak/after",
        "CPU s gateway/healthy (busiest %)/attacker",
        "machine busy / others' cores",
    ]

    def ratio(row: dict[str, Any], key: str) -> str:
        if not ref or row["attack"].startswith("baseline") or not ref[key]:
            return "-"
        return f"{row[key] / ref[key]:.2f}x"

    def near(index: int, key: str) -> str:
        value = neighbours(rows, index, key)
        if rows[index]["attack"].startswith("baseline") or not value:
            return "-"
        return f"{rows[index][key] / value:.2f}x"

    body = []
    for index, row in enumerate(rows):
        cut = sorted(row["cut_ms"])
        documented = ATTACKS[row["attack"]][1] if row["attack"] in ATTACKS else "-"
        saw = row["outcome"]
        if row["error"]:
            saw = f"{saw}; then ERROR {row['error'][:100]}" if row["runs"] else row["error"][:100]
        cpu = row["cpu_s"]
        healthy = [v for k, v in cpu.items() if k.startswith("healthy") and k[7:].isdigit()]
        busiest = max(healthy, default=0.0) / cpu["wall_s"] * 100 if cpu["wall_s"] else 0.0
        attacker = f"{cpu['attacker']:.1f}" if row["attack"] in ATTACKS else "-"
        body.append(
            [
                row["attack"],
                documented,
                saw,
                str(row["runs"]) if row["attack"] in ATTACKS else "-",
                row["close_codes"],
                f"{cut[len(cut) // 2]:.0f}/{cut[-1]:.0f}" if cut else "-",
                f"{row['p50_ms']:.1f}/{row['p99_ms']:.1f}/{row['p99.9_ms']:.1f}",
                ratio(row, "p99_ms"),
                near(index, "p99_ms"),
                ratio(row, "p99.9_ms"),
                f"{row['lost']}/{row['gaps']}",
                f"{row['healthz_failures']}/{row['healthz_slowest_ms']:.0f}",
                f"{row['rss_before_mb']:.0f}/{row['rss_peak_mb']:.0f}/{row['rss_after_mb']:.0f}",
                f"{cpu['gateway']:.1f}/{sum(healthy):.1f} ({busiest:.0f}%)/{attacker}",
                f"{cpu['machine_busy_cores']:.2f} / {cpu['others_cores']:.2f}",
            ]
        )
    return markdown(headers, body)


async def drive(opts: argparse.Namespace, run: Run) -> list[dict[str, Any]]:
    names = [n for n in ATTACKS if not opts.attacks or any(n.startswith(a) for a in opts.attacks)]
    await run.window("warm-up", min(3.0, opts.seconds))
    rows = []

    def show(row: dict[str, Any]) -> None:
        cpu = row["cpu_s"]
        print(
            f"{row['attack']}: {row['outcome']} [{row['close_codes']}] "
            f"p50/p99/p99.9 {row['p50_ms']:.1f}/{row['p99_ms']:.1f}/{row['p99.9_ms']:.1f} ms, "
            f"lost {row['lost']} gaps {row['gaps']}, healthz fail {row['healthz_failures']}, "
            f"CPU gateway {cpu['gateway']:.1f} attacker {cpu['attacker']:.1f} "
            f"machine {cpu['machine_busy_cores']:.2f} cores (others "
            f"{cpu['others_cores']:.2f}) in {cpu['wall_s']:.1f} s",
            flush=True,
        )

    plan = list(names)
    if opts.interleave:
        plan = [w for i, name in enumerate(names) for w in (f"baseline-{i + 1}", name)]
        plan.append(f"baseline-{len(names) + 1}")
    elif opts.baseline:
        plan = ["baseline", *names, "baseline-after"]
    for name in plan:
        rows.append(await run.window(name, opts.seconds))
        show(rows[-1])
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument(
        "mode", nargs="?", default="drive", choices=["drive", "child", "healthy", "attacker"]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="window per attack")
    parser.add_argument("--clients", type=int, default=50, help="healthy clients")
    parser.add_argument(
        "--healthy-procs", type=int, default=0, help="processes for them (0: 1 to 250, else 2)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="healthy flow, messages/s")
    parser.add_argument("--attacker-nice", type=int, default=0, help="nice of the attacker")
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
    parser.add_argument(
        "--interleave", action="store_true", help="a baseline window between every two attacks"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 5 s windows")
    parser.add_argument("--attack", default="", help=argparse.SUPPRESS)  # attacker mode
    parser.add_argument("--settings-json", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--target-json", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--opts-json", default="{}", help=argparse.SUPPRESS)
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
    if opts.mode in ("healthy", "attacker"):
        opts = received_options(opts)
    return opts


async def bounded(work: Awaitable[None], seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(work, seconds)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def main() -> None:
    opts = parse_args()
    if opts.mode == "child":
        asyncio.run(serve(json.loads(opts.settings_json), opts.max_seconds))
        return
    if opts.mode == "healthy":
        asyncio.run(bounded(healthy(opts), opts.max_seconds))
        return
    if opts.mode == "attacker":
        asyncio.run(bounded(attacker(opts), opts.max_seconds))
        return
    env = environment()
    procs = opts.healthy_procs or (1 if opts.clients <= 250 else 2)
    with RedisProcess() as redis:
        settings = gateway_settings(opts, redis.url)
        opts.settings_json = json.dumps(settings)
        gateway = PipedChild(
            "gateway",
            "bench.resilience",
            ["child", "--settings-json", opts.settings_json, "--max-seconds", "7200"],
        )
        clients: list[PipedChild] = []
        try:
            _, port, internal = gateway.wait_line("READY", 60.0).split()
            target = {
                "ws_url": f"ws://127.0.0.1:{port}",
                "http_url": f"http://127.0.0.1:{internal}",
                "redis_url": redis.url,
                "redis_prefix": settings["redis_prefix"],
            }
            opts.target_json = json.dumps(target)
            for i, share in enumerate(split(opts.clients, procs)):
                args = ["healthy", "--clients", str(share), "--opts-json", forwarded(opts)]
                clients.append(
                    PipedChild(f"healthy{i}", "bench.resilience", [*args, "--max-seconds", "7200"])
                )
            for c in clients:
                c.wait_line("READY", 120.0)
            process = getattr(redis, "_process", None)
            run = Run(opts, Target(**target), gateway.pid, getattr(process, "pid", None), clients)
            rows = asyncio.run(drive(opts, run))
        finally:
            for c in clients:
                c.end(timeout=15.0)
                c.kill()
            gateway.end(timeout=15.0)  # closes stdin: the child stops its gateway and exits
            gateway.kill()
    print()
    print(
        f"{opts.clients} healthy clients in {procs} process(es) on risk_alerts at "
        f"{opts.rate:g} msg/s, {opts.seconds:g} s per attack, each attacker in its own process, "
        f"gateway on Redis (stall_timeout {opts.stall_timeout:g} s)"
    )
    print()
    print(table(rows))
    failed = [
        r["attack"]
        for r in rows
        if r["lost"] or r["gaps"] or r["healthz_failures"] or r["healthy_closed"]
    ]
    print()
    print(
        "healthy clients: nothing lost, no gap, /healthz up in every window"
        if not failed
        else f"HEALTHY CLIENTS AFFECTED in: {', '.join(failed)}"
    )
    path = write_results("resilience", opts, env, {"rows": rows, "healthy_procs": procs})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
