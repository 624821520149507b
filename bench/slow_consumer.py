"""Slow-consumer benchmark: clients that never read are cut off, the others do not notice.

The real gateway runs in its own process (bench.delivery_server) and publishes `market_data`
quotes and `order_updates` (reliable) at fixed rates. N healthy clients (the raw load
generator, bench.timeline_loadgen) read `market_data` and measure publish-to-receipt latency
from `data.ts`, per second. After a lead-in, K stalled clients (bench.stalled: small
SO_RCVBUF, subscribed to `market_data` and `order_updates`, never reading) connect. Every
second the driver records the healthy clients' latency and deliveries, the server's CPU and
RSS, and the stalled connections' state: `pending_bytes` from the control plane
(GET /api/connections), the kernel's send queue on the gateway's side and receive queue on
the client's side (/proc/net/tcp). GET /api/stats, polled every 0.1 s, times the cut-offs
(`slow_consumer_closes`). At the end each stalled socket is drained to see how its stream
ended (close frame 4008, or EOF only).

Scenarios: a baseline without stalled clients, then for each settings variant (`default`:
the GatewaySettings defaults; `small`: a small max_outbox_bytes and stall_timeout) and each K,
one run. See bench/README.md; `python -m bench.slow_consumer --help` for the options.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.control import ControlBlock, Field, Phase
from bench.gateway_child import ControlPlane, GatewayChild
from bench.procs import REPO, Child, environment, free_port, machine_busy_seconds
from bench.report import markdown, write_results
from bench.stalled import StalledClient, tcp_queues
from bench.stats import median
from tidewire.settings import GatewaySettings

SETUP_TIMEOUT = 120.0
STATS_POLL = 0.1
"""Seconds between GET /api/stats polls (cut-off times) and RSS samples."""
CLOSE_GRACE = 5.0
"""The data plane aborts a closing connection that does not drain after this long
(tidewire.server.dataplane.CLOSE_GRACE_SECONDS); runs last long enough to see it."""
LATENCY_TARGET_MS = 20.0
"""The "Delivery guarantees" issue: healthy clients' p99 stays under 20 ms."""
MIB = 2**20
PAUSED_OUTBOX = 8192
"""Outbox bytes that show a paused transport: a connection that keeps up has at most the
messages of one loop iteration pending (a poll may land between a dispatch and its flush)."""
QUIET_CPU = 0.5
"""A "quiet" second: the rest of the machine used less than this many cores."""


@dataclass(frozen=True)
class Scenario:
    name: str
    variant: str
    stalled: int
    max_outbox_bytes: int
    stall_timeout: float
    seconds: float
    """Window after the lead-in (the stalled clients connect at its start): fixed for the
    baseline, an upper bound otherwise (a run ends `CLOSE_GRACE + tail` seconds after the
    last stalled client was cut off)."""


def scenarios(opts: argparse.Namespace) -> list[Scenario]:
    defaults = GatewaySettings()
    variants = {
        "default": (defaults.max_outbox_bytes, defaults.stall_timeout),
        "small": (opts.small_outbox, opts.small_stall),
    }
    out: list[Scenario] = []
    if opts.baseline:
        out.append(Scenario("baseline", "default", 0, *variants["default"], opts.baseline_seconds))
    for variant in opts.variants:
        outbox, stall = variants[variant]
        for k in opts.stalled:
            out.append(Scenario(f"{variant} K={k}", variant, k, outbox, stall, opts.max_window))
    return out


class Sampler:
    """Everything recorded during one run, sampled by the driver's loop."""

    def __init__(
        self,
        server: GatewayChild,
        gen: Child,
        ctl: ControlBlock,
        control: ControlPlane,
        port: int,
    ) -> None:
        self.server = server
        self.gen = gen
        self.ctl = ctl
        self.control = control
        self.port = port
        self.stalled: list[StalledClient] = []
        self.rows: list[dict[str, Any]] = []
        self.closes: list[float] = []
        """time.monotonic() of each slow-consumer close (the stats counter going up)."""
        self.rss: list[tuple[float, int]] = []
        self.peaks: dict[int, dict[str, int]] = {}
        """Per stalled client (by local port): peak outbox, kernel send and receive queues."""
        self.last_seen: dict[int, float] = {}
        """Per stalled client: last time it was listed by GET /api/connections."""
        self.first_outbox: dict[int, float] = {}
        """Per stalled client: first time its outbox held bytes, i.e. the transport had
        paused (the kernel's send buffer and the transport's buffer were full)."""
        self._closes_seen = 0
        self.wall_offset = time.time() - time.monotonic()
        self._last = self._snapshot()

    def _snapshot(self) -> dict[str, float]:
        return {
            "mono": time.monotonic(),
            "received": float(self.ctl.get(Field.RECEIVED)),
            "server_cpu": self.server.child.cpu_seconds(),
            "gen_cpu": self.gen.cpu_seconds(),
            "busy": machine_busy_seconds(),
        }

    def poll_stats(self) -> None:
        now = time.monotonic()
        stats = self.control.stats()
        closes = int(stats["slow_consumer_closes"])
        self.closes.extend([now] * (closes - self._closes_seen))
        self._closes_seen = closes
        self.rss.append((now, self.server.child.rss()))

    def second(self, stall_start: float) -> None:
        """One row of the timeline: the wall-clock second that just ended."""
        snap = self._snapshot()
        last, self._last = self._last, snap
        wall = snap["mono"] - last["mono"]
        second = int(time.time()) - 1
        row: dict[str, Any] = {
            # The end of this wall-clock second, in seconds after the stalled clients came.
            "t": round(second + 1 - (stall_start + self.wall_offset)),
            "wall_second": second,
            "deliveries_per_s": round((snap["received"] - last["received"]) / wall),
            "server_cpu": round((snap["server_cpu"] - last["server_cpu"]) / wall, 3),
            "loadgen_cpu": round((snap["gen_cpu"] - last["gen_cpu"]) / wall, 3),
            "other_cpu": round(
                max(
                    0.0,
                    snap["busy"]
                    - last["busy"]
                    - (snap["server_cpu"] - last["server_cpu"])
                    - (snap["gen_cpu"] - last["gen_cpu"]),
                )
                / wall,
                3,
            ),
            "rss_mib": round(self.server.child.rss() / MIB, 2),
        }
        if self.stalled:
            row.update(self._stalled_state(snap["mono"]))
        self.rows.append(row)

    def _stalled_state(self, now: float) -> dict[str, Any]:
        ports = {client.local_port for client in self.stalled}
        listed: dict[int, dict[str, Any]] = {}
        for info in self.control.connections():
            port = int(info["remote"].rsplit(":", 1)[1]) if ":" in info["remote"] else 0
            if port in ports:
                listed[port] = info
                self.last_seen[port] = now
        queues = tcp_queues(self.port)
        outbox = sent = send_q = recv_q = 0
        for port in ports:
            entry = listed.get(port)
            server_q = queues.get((self.port, port), (0, 0))[0]
            client_q = queues.get((port, self.port), (0, 0))[1]
            pending = int(entry["pending_bytes"]) if entry else 0
            outbox += pending
            sent += int(entry["messages_sent"]) if entry else 0
            send_q += server_q
            recv_q += client_q
            peak = self.peaks.setdefault(port, {"outbox": 0, "send_q": 0, "held": 0, "recv_q": 0})
            if pending >= PAUSED_OUTBOX and port not in self.first_outbox:
                self.first_outbox[port] = now
            peak["outbox"] = max(peak["outbox"], pending)
            peak["send_q"] = max(peak["send_q"], server_q)
            peak["held"] = max(peak["held"], pending + server_q)
            peak["recv_q"] = max(peak["recv_q"], client_q)
        return {
            "stalled_listed": len(listed),
            "stalled_closed": self._closes_seen,
            "outbox_bytes": outbox,
            "server_send_q": send_q,
            "client_recv_q": recv_q,
            "messages_queued": sent,
        }


def server_args(sc: Scenario, port: int, opts: argparse.Namespace) -> list[str]:
    return [
        *("--port", str(port), "--market-rate", str(opts.rate), "--symbols", str(opts.symbols)),
        *("--order-rate", str(opts.order_rate), "--portfolios", str(opts.portfolios)),
        *("--order-pad", str(opts.order_pad)),
        *("--max-outbox-bytes", str(sc.max_outbox_bytes)),
        *("--stall-timeout", str(sc.stall_timeout)),
        "--no-heartbeats",
        *("--what-if-sndbuf", str(opts.what_if_sndbuf)),
        *("--max-seconds", str(lifetime(sc, opts))),
    ]


def lifetime(sc: Scenario, opts: argparse.Namespace) -> float:
    return float(SETUP_TIMEOUT + opts.warmup + opts.lead + sc.seconds + opts.drain_seconds + 60.0)


def next_wall_second() -> float:
    """time.monotonic() just after the next whole second of wall-clock time: the timeline's
    rows cover the same seconds as the load generator's latency buckets."""
    now = time.time()
    return time.monotonic() + (math.floor(now) + 1 - now) + 0.005


def check_alive(*children: Child) -> None:
    for child in children:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited: {child.error_text()}")


def run_once(sc: Scenario, opts: argparse.Namespace) -> dict[str, Any]:
    ctl = ControlBlock.create()
    port = free_port()
    server = GatewayChild(sc.name, server_args(sc, port, opts))
    gen: Child | None = None
    stalled: list[StalledClient] = []
    try:
        ready = server.wait_ready()
        gen = Child.start(
            "loadgen",
            "bench.timeline_loadgen",
            [
                *("--url", f"ws://127.0.0.1:{port}/ws", "--control", str(ctl.path)),
                *("--connections", str(opts.connections)),
                *("--sample-every", str(opts.sample_every)),
                *("--max-seconds", str(lifetime(sc, opts))),
            ],
        )
        deadline = time.monotonic() + SETUP_TIMEOUT
        while ctl.get(Field.STAGES) < 1:
            check_alive(server.child, gen)
            if time.monotonic() > deadline:
                raise RuntimeError("the load generator did not finish connecting")
            time.sleep(0.05)
        subscribed = ctl.get(Field.SUBSCRIBED)
        control = ControlPlane(ready.internal_port)
        ctl.phase = Phase.PUBLISH
        server.publish()
        time.sleep(opts.warmup)
        check_alive(server.child, gen)
        sampler = Sampler(server, gen, ctl, control, port)
        ctl.phase = Phase.MEASURE
        measure_start = time.monotonic()
        rss_before = server.child.rss()
        stall_start = measure_start + opts.lead
        end = stall_start + sc.seconds
        next_second = next_wall_second()
        while (now := time.monotonic()) < end:
            if sc.stalled and not stalled and now >= stall_start:
                rss_before = server.child.rss()
                for _ in range(sc.stalled):
                    stalled.append(
                        StalledClient.open(
                            "127.0.0.1", port, ["market_data", "order_updates"], opts.rcvbuf
                        )
                    )
                sampler.stalled = stalled
            sampler.poll_stats()
            if sc.stalled and len(sampler.closes) >= sc.stalled:
                end = min(end, sampler.closes[sc.stalled - 1] + CLOSE_GRACE + opts.tail)
            if now >= next_second:
                sampler.second(stall_start)
                next_second = next_wall_second()
                check_alive(server.child, gen)
            left = min(next_second, end) - time.monotonic()
            time.sleep(max(0.0, min(STATS_POLL, left)))
        sampler.poll_stats()
        published = server.pause()
        ctl.phase = Phase.STOP
        report = json.loads(gen.stop().strip().splitlines()[-1])
        endings = [client.drain(opts.drain_seconds) for client in stalled]
        final_stats = control.stats()
        stop = server.stop()
    finally:
        ctl.phase = Phase.STOP
        for client in stalled:
            client.close()
        if gen is not None:
            gen.stop(timeout=5.0)
            gen.close()
        server.kill()
        ctl.unlink()
    return summarize(
        sc,
        opts,
        sampler,
        report,
        endings,
        published,
        final_stats,
        stop,
        subscribed,
        measure_start,
        stall_start,
        rss_before,
    )


def summarize(
    sc: Scenario,
    opts: argparse.Namespace,
    sampler: Sampler,
    report: dict[str, Any],
    endings: list[dict[str, Any]],
    published: dict[str, Any],
    final_stats: dict[str, Any],
    stop: dict[str, Any],
    subscribed: int,
    measure_start: float,
    stall_start: float,
    rss_before: int,
) -> dict[str, Any]:
    # Latency per second of the timeline (the load generator keys them by wall second).
    per_second = report.get("per_second", {})
    for row in sampler.rows:
        bucket = per_second.get(str(row["wall_second"]))
        if bucket:
            row.update(
                samples=bucket["samples"],
                p50_ms=bucket["p50"],
                p99_ms=bucket["p99"],
                p999_ms=bucket["p99.9"],
            )
    histograms = report.get("histograms", {})
    bin_ms = report.get("bin_ns", 100_000) / 1e6
    quiet = [row for row in sampler.rows if row["other_cpu"] < QUIET_CPU]
    quiet_latency = histogram_percentiles(
        [histograms.get(str(row["wall_second"]), {}) for row in quiet], bin_ms
    )
    confirmed = [client.confirmed_at for client in sampler.stalled]
    cutoffs = (
        [close - start for close, start in zip(sampler.closes, sorted(confirmed), strict=False)]
        if confirmed
        else []
    )
    rss_after = [rss for when, rss in sampler.rss if when >= stall_start]
    # The seconds in which the gateway cut the stalled clients off and later aborted them.
    event_rows = []
    if cutoffs and confirmed:
        first_cut = min(confirmed) + min(cutoffs) - stall_start
        last_abort = max(confirmed) + max(cutoffs) - stall_start + CLOSE_GRACE
        event_rows = [row for row in sampler.rows if first_cut - 1 <= row["t"] <= last_abort + 1]
    event_latency = histogram_percentiles(
        [histograms.get(str(row["wall_second"]), {}) for row in event_rows], bin_ms
    )
    # Seen on 1-s polls of GET /api/connections: a byte-limit cut-off can come first.
    paused = [
        min(sampler.first_outbox[client.local_port] - client.confirmed_at, max(cutoffs))
        if cutoffs
        else sampler.first_outbox[client.local_port] - client.confirmed_at
        for client in sampler.stalled
        if client.local_port in sampler.first_outbox
    ]
    peaks = list(sampler.peaks.values())
    worst = [row["p99_ms"] for row in sampler.rows if "p99_ms" in row]
    wall = sampler.rows[-1]["t"] if sampler.rows else 1.0
    return {
        "scenario": sc.name,
        "variant": sc.variant,
        "stalled": sc.stalled,
        "max_outbox_bytes": sc.max_outbox_bytes,
        "stall_timeout": sc.stall_timeout,
        "seconds": sc.seconds,
        "connections": opts.connections,
        "subscribed": subscribed,
        "market_rate": opts.rate,
        "order_rate": opts.order_rate,
        "latency_ms": report["latency_ms"],
        "latency_samples": report["latency_samples"],
        "worst_second_p99_ms": max(worst) if worst else float("nan"),
        "median_second_p99_ms": median(worst),
        "quiet_seconds": len(quiet),
        "quiet_latency_ms": quiet_latency,
        "cutoff_window_latency_ms": event_latency,
        "cutoff_window_other_cpu": (
            sum(row["other_cpu"] for row in event_rows) / len(event_rows) if event_rows else None
        ),
        "deliveries_per_second": median([row["deliveries_per_s"] for row in sampler.rows]),
        "per_connection_min": report["per_connection_min"],
        "per_connection_max": report["per_connection_max"],
        "server_cpu": sum(row["server_cpu"] for row in sampler.rows) / max(1, len(sampler.rows)),
        "other_cpu": sum(row["other_cpu"] for row in sampler.rows) / max(1, len(sampler.rows)),
        "measured_seconds": wall,
        "cutoff_seconds": cutoffs,
        "outbox_used_after_seconds": paused,
        "cut_off": len(sampler.closes),
        "rss_before_mib": rss_before / MIB,
        "peak_rss_delta_mib": (max(rss_after) - rss_before) / MIB if rss_after else 0.0,
        "peak_outbox_bytes": max((p["outbox"] for p in peaks), default=0),
        "peak_server_send_q": max((p["send_q"] for p in peaks), default=0),
        "peak_held_bytes": max((p["held"] for p in peaks), default=0),
        "peak_client_recv_q": max((p["recv_q"] for p in peaks), default=0),
        "stalled_rcvbuf": sampler.stalled[0].rcvbuf if sampler.stalled else None,
        "stalled_endings": endings,
        "published": published,
        "slow_consumer_closes": final_stats.get("slow_consumer_closes"),
        "conflated": final_stats.get("conflated"),
        "connections_at_end": final_stats.get("connections"),
        "server_stop": stop,
        "timeline": sampler.rows,
        "histograms": {
            str(row["wall_second"]): histograms.get(str(row["wall_second"]), {})
            for row in sampler.rows
        },
    }


# ---------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".1f") -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)


def histogram_percentiles(
    histograms: list[dict[str, int]], bin_ms: float, points: tuple[float, ...] = (50, 99, 99.9)
) -> dict[str, float]:
    """Nearest-rank percentiles of merged latency histograms (upper edge of the bin)."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for text, count in histogram.items():
            merged[int(text)] = merged.get(int(text), 0) + count
    total = sum(merged.values())
    out: dict[str, float] = {}
    for point in points:
        name = f"p{point:g}"
        if not total:
            out[name] = float("nan")
            continue
        rank = max(1, round(point / 100 * total))
        seen = 0
        for bin_index in sorted(merged):
            seen += merged[bin_index]
            if seen >= rank:
                out[name] = round((bin_index + 1) * bin_ms, 3)
                break
    return out


def rss_excess(run: dict[str, Any], baseline: dict[str, Any] | None) -> float | None:
    """Peak RSS growth since the stalled clients connected, minus the baseline's growth at
    the same second (the gateway's RSS also grows with what it keeps of every published
    message: history and the idempotency window)."""
    if baseline is None or not run["stalled"]:
        return None

    def growth(rows: list[dict[str, Any]]) -> dict[int, float]:
        start = [row["rss_mib"] for row in rows if row["t"] <= 0]
        if not start:
            return {}
        return {int(row["t"]): row["rss_mib"] - start[-1] for row in rows if row["t"] > 0}

    ours, theirs = growth(run["timeline"]), growth(baseline["timeline"])
    deltas = [ours[t] - theirs[t] for t in ours if t in theirs]
    return max(deltas) if deltas else None


def timeline_table(run: dict[str, Any]) -> str:
    headers = ["t s", "deliveries/s", "p50 ms", "p99 ms", "p99.9 ms", "server CPU", "other CPU"]
    headers += ["RSS MiB"]
    stalled = run["stalled"] > 0
    if stalled:
        headers += ["stalled open", "outbox bytes", "server send-q", "client recv-q", "closed"]
    rows = []
    for row in run["timeline"]:
        cells = [
            fmt(row["t"], ".0f"),
            f"{row['deliveries_per_s']:,}",
            fmt(row.get("p50_ms")),
            fmt(row.get("p99_ms")),
            fmt(row.get("p999_ms")),
            f"{row['server_cpu']:.0%}",
            f"{row['other_cpu']:.0%}",
            fmt(row["rss_mib"]),
        ]
        if stalled:
            cells += [
                str(row.get("stalled_listed", "-")),
                f"{row.get('outbox_bytes', 0):,}",
                f"{row.get('server_send_q', 0):,}",
                f"{row.get('client_recv_q', 0):,}",
                str(row.get("stalled_closed", 0)),
            ]
        rows.append(cells)
    return markdown(headers, rows)


def ending_text(endings: list[dict[str, Any]]) -> str:
    if not endings:
        return "-"
    kinds: dict[str, int] = {}
    for ending in endings:
        code = ending["close_code"]
        text = f"close {code} + {ending['ending']}" if code else f"{ending['ending']}, no close"
        kinds[text] = kinds.get(text, 0) + 1
    return "; ".join(f"{n}x {text}" for text, n in kinds.items())


def summary_table(rows: list[dict[str, Any]]) -> str:
    baseline = next((row for row in rows if row["stalled"] == 0), None)
    headers = [
        "scenario",
        "max_outbox_bytes",
        "stall_timeout s",
        "healthy p50 ms",
        "healthy p99 ms",
        "healthy p99.9 ms",
        "p99 in quiet seconds ms (n)",
        "p99 around the cut-offs ms (other CPU)",
        "worst 1-s p99 ms",
        "baseline p99 ms (quiet)",
        "deliveries/s",
        "other CPU",
        "outbox used after s",
        "time to cut off s",
        "peak server RSS delta MiB (raw)",
        "bytes held at peak (outbox + kernel send-q)",
        "stream ended with",
    ]
    body = []
    for row in rows:
        cut = row["cutoff_seconds"]
        cut_text = "-" if row["stalled"] == 0 else "not cut off"
        if cut:
            cut_text = span(cut)
            if row["cut_off"] < row["stalled"]:
                cut_text += f" ({row['cut_off']:.0f}/{row['stalled']})"
        excess = row.get("rss_excess_mib")
        body.append(
            [
                row["scenario"],
                f"{row['max_outbox_bytes']:,.0f}",
                fmt(row["stall_timeout"], "g"),
                fmt(row["latency_ms"]["p50"]),
                fmt(row["latency_ms"]["p99"]),
                fmt(row["latency_ms"]["p99.9"]),
                f"{fmt(row['quiet_latency_ms']['p99'])} ({row['quiet_seconds']:g})",
                f"{fmt(row['cutoff_window_latency_ms']['p99'])} "
                f"({fmt(row['cutoff_window_other_cpu'], '.0%')})"
                if row["stalled"]
                else "-",
                fmt(row["worst_second_p99_ms"]),
                f"{fmt(baseline['latency_ms']['p99'])} ({fmt(baseline['quiet_latency_ms']['p99'])})"
                if baseline
                else "-",
                f"{row['deliveries_per_second']:,.0f}",
                f"{row['other_cpu']:.0%}",
                span(row["outbox_used_after_seconds"]) if row["stalled"] else "-",
                cut_text,
                f"{fmt(excess)} ({fmt(row['peak_rss_delta_mib'])})" if row["stalled"] else "-",
                f"{row['peak_held_bytes']:,.0f} ({row['peak_outbox_bytes']:,.0f} + "
                f"{row['peak_server_send_q']:,.0f})"
                if row["stalled"]
                else "-",
                ending_text(row["stalled_endings"]),
            ]
        )
    return markdown(headers, body)


def span(values: list[float]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:.1f}" if high - low < 0.05 else f"{low:.1f}-{high:.1f}"


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        p99 = row["latency_ms"]["p99"]
        under = "stayed under" if p99 < LATENCY_TARGET_MS else "did NOT stay under"
        quiet = row["quiet_latency_ms"]["p99"]
        text = (
            f"{row['scenario']}: healthy p99 {p99:.1f} ms {under} {LATENCY_TARGET_MS:g} ms "
            f"(p99 {fmt(quiet)} ms over the {row['quiet_seconds']:g} seconds in which the rest "
            f"of the machine used < {QUIET_CPU:g} core)"
        )
        if row["stalled"]:
            cut = row["cutoff_seconds"]
            text += (
                f"; {row['cut_off']:.0f}/{row['stalled']} stalled cut off"
                + (f" after {max(cut):.1f} s at most" if cut else "")
                + f", at most {row['peak_held_bytes'] / 1024:,.0f} KiB held per stalled"
                " connection (outbox + kernel send queue)"
            )
        lines.append(text)
    return lines


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["scenario"], []).append(run)
    rows = []
    for name, group in groups.items():
        row: dict[str, Any] = dict(group[0])
        row["repeats"] = len(group)
        for key, value in group[0].items():
            if isinstance(value, bool):
                continue
            if key in ("stalled", "repeat"):
                continue
            if isinstance(value, int | float):
                row[key] = median([run[key] for run in group if run[key] is not None])
            elif isinstance(value, dict) and key.endswith("latency_ms"):
                row[key] = {
                    k: median([run[key][k] for run in group if run[key][k] == run[key][k]])
                    for k in value
                }
        excess = [run["rss_excess_mib"] for run in group if run.get("rss_excess_mib") is not None]
        row["rss_excess_mib"] = median(excess) if excess else None
        # Times per stalled client: the median over the runs of each run's earliest and
        # latest (K=1: of the one).
        for key in ("cutoff_seconds", "outbox_used_after_seconds"):
            latest = [max(run[key]) for run in group if run[key]]
            earliest = [min(run[key]) for run in group if run[key]]
            row[key] = [median(earliest), median(latest)] if latest else []
        row["scenario"] = name
        rows.append(row)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--connections", type=int, default=500, help="healthy clients")
    parser.add_argument("--rate", type=float, default=20.0, help="market_data messages/s")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--order-rate", type=float, default=200.0, help="order_updates msg/s")
    parser.add_argument("--order-pad", type=int, default=0, help="filler bytes per order")
    parser.add_argument("--portfolios", type=int, default=10)
    parser.add_argument("--stalled", default="1,10", help="stalled clients per run, e.g. 1,10")
    parser.add_argument("--variants", default="default,small", help="default,small")
    parser.add_argument(
        "--small-outbox", type=int, default=128 * 1024, help="max_outbox_bytes of `small`"
    )
    parser.add_argument("--small-stall", type=float, default=10.0, help="stall_timeout of `small`")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--baseline-seconds", type=float, default=60.0)
    parser.add_argument(
        "--max-window",
        type=float,
        default=240.0,
        help="bound on a run after the stalled clients connect (it ends 5 s + --tail after "
        "the last cut-off)",
    )
    parser.add_argument("--rcvbuf", type=int, default=4096, help="stalled clients' SO_RCVBUF")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--lead", type=float, default=3.0, help="seconds before K connect")
    parser.add_argument("--tail", type=float, default=3.0)
    parser.add_argument("--sample-every", type=int, default=1, help="latency: every Nth read")
    parser.add_argument("--drain-seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--what-if-sndbuf",
        type=int,
        default=0,
        help="experiment (patches the data plane in the server process): SO_SNDBUF on every "
        "client socket, which turns off the kernel's send-buffer autotuning",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="< 60 s: 200 connections, baseline and `small` with K=2, 1.5 KB orders",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    opts = parser.parse_args()
    if opts.quick:
        opts.connections = min(opts.connections, 200)
        opts.variants, opts.stalled = "small", "2"
        opts.small_stall = min(opts.small_stall, 4.0)
        opts.order_pad = max(opts.order_pad, 1500)
        opts.baseline_seconds = min(opts.baseline_seconds, 10.0)
        opts.max_window = min(opts.max_window, 25.0)
        opts.warmup, opts.lead, opts.tail = 1.0, 1.0, 1.0
    opts.stalled = [int(k) for k in str(opts.stalled).split(",") if k.strip()]
    opts.variants = [v.strip() for v in str(opts.variants).split(",") if v.strip()]
    unknown = set(opts.variants) - {"default", "small"}
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    return opts


def main() -> None:
    opts = parse_args()
    env = environment()
    plan = scenarios(opts)
    runs: list[dict[str, Any]] = []
    for repeat in range(opts.repeat):
        baseline: dict[str, Any] | None = None
        for sc in plan:
            run = run_once(sc, opts)
            run["repeat"] = repeat
            if sc.stalled == 0:
                baseline = run
            run["rss_excess_mib"] = rss_excess(run, baseline)
            runs.append(run)
            cut = run["cutoff_seconds"]
            print(
                f"  {sc.name:<12} repeat {repeat}: healthy p99 "
                f"{run['latency_ms']['p99']:.1f} ms, "
                f"{run['deliveries_per_second']:,.0f} deliveries/s"
                + (f", cut off after {max(cut):.1f} s" if cut else "")
                + (", NOT all cut off" if sc.stalled and run["cut_off"] < sc.stalled else "")
                + (f", peak RSS +{run['peak_rss_delta_mib']:.1f} MiB" if sc.stalled else ""),
                flush=True,
            )
    rows = medians(runs)
    print()
    for run in runs:
        if run["repeat"] == 0:
            print(f"### {run['scenario']} (repeat 0): per second (t = 0: stalled clients)\n")
            print(timeline_table(run))
            print()
    print(
        f"{opts.connections} healthy connections on market_data at {opts.rate:g} msg/s "
        f"({opts.symbols} symbols), order_updates at {opts.order_rate:g} msg/s"
        + (f" (+{opts.order_pad} filler bytes)" if opts.order_pad else "")
        + f"; stalled clients: SO_RCVBUF {opts.rcvbuf}, market_data + order_updates, never "
        f"read; medians of {opts.repeat}"
        + (
            f"; WHAT-IF: SO_SNDBUF {opts.what_if_sndbuf} on every client socket (not what the "
            "gateway does)"
            if opts.what_if_sndbuf
            else ""
        )
        + "\n"
    )
    print(summary_table(rows))
    print()
    for line in verdict(rows):
        print(line)
    path = write_results("slow-consumer", opts, env, {"runs": runs, "medians": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
