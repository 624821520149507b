"""Tables and result files of the benchmarks (markdown tables: they paste into BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# The Foundation issue's targets for Tidewire.
TARGET_US_ONE_PER_WRITE = 4.0
TARGET_US_BURST = 1.0
TARGET_IDLE_KIB = 16.0


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fanout_table(rows: list[dict[str, Any]], opts: argparse.Namespace) -> str:
    reference = {row["burst"]: row for row in rows if row["server"] == "tidewire"}
    headers = [
        "server",
        "burst",
        "CPU us/delivery",
        "min-max",
        "deliveries/CPU-s",
        "CPU vs Tidewire",
        "deliveries/s",
        "server CPU",
        "kernel part",
        "waited for readers",
        "loadgen us/delivery",
        "loadgen CPU",
        "other CPU",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "peak RSS MiB",
        "delivered",
    ]
    body = []
    for row in sorted(rows, key=lambda r: (r["burst"], r["cpu_us_per_delivery"])):
        ref = reference.get(row["burst"])
        ratio = f"{row['cpu_us_per_delivery'] / ref['cpu_us_per_delivery']:.2f}x" if ref else "-"
        latency = row["latency_ms"]
        body.append(
            [
                row["server"],
                str(row["burst"]),
                f"{row['cpu_us_per_delivery']:.2f}",
                "{:.2f}-{:.2f}".format(*row["cpu_us_range"]),
                f"{row['deliveries_per_cpu_second']:,.0f}",
                ratio,
                f"{row['deliveries_per_second']:,.0f}",
                f"{row['server_cpu_share']:.0%}",
                f"{row['server_kernel_fraction']:.0%}",
                f"{row['publisher_blocked_share']:.0%}",
                f"{row['loadgen_cpu_us_per_delivery']:.2f}",
                f"{row['loadgen_cpu_share']:.0%}",
                f"{row['other_cpu_share']:.0%}",
                f"{latency['p50']:.1f}",
                f"{latency['p99']:.1f}",
                f"{latency['p99.9']:.1f}",
                f"{row['peak_rss_mb']:.0f}",
                f"{row['delivered_fraction']:.3f}",
            ]
        )
    lines = [
        f"{opts.connections} connections, {opts.seconds:g} s window after {opts.warmup:g} s "
        f"warm-up, window {opts.window or 'max(16, 3 x burst)'} messages/connection, "
        + (f"rate {opts.rate:g} msg/s" if opts.rate else "saturating")
        + f", medians of {opts.repeat}",
        "",
        markdown(headers, body),
    ]
    for burst, row in sorted(reference.items()):
        target = TARGET_US_ONE_PER_WRITE if burst == 1 else TARGET_US_BURST
        verdict = "meets" if row["cpu_us_per_delivery"] <= target else "MISSES"
        lines.append(
            f"Tidewire burst {burst}: {row['cpu_us_per_delivery']:.2f} us/delivery "
            f"{verdict} the target of {'at most' if burst == 1 else 'under'} {target:g} us"
        )
    return "\n".join(lines)


def idle_table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "server",
        "connections",
        "KiB/connection (RSS)",
        "vs Tidewire",
        "RSS before MiB",
        "RSS after MiB",
    ]
    reference = next((row for row in rows if row["server"] == "tidewire"), None)
    body = []
    for row in sorted(rows, key=lambda r: r["kib_per_connection"]):
        ratio = (
            f"{row['kib_per_connection'] / reference['kib_per_connection']:.2f}x"
            if reference
            else "-"
        )
        body.append(
            [
                row["server"],
                str(row["connections"]),
                f"{row['kib_per_connection']:.1f}",
                ratio,
                f"{row['rss_before_mb']:.1f}",
                f"{row['rss_after_mb']:.1f}",
            ]
        )
    lines = [markdown(headers, body)]
    if reference is not None:
        verdict = "meets" if reference["kib_per_connection"] <= TARGET_IDLE_KIB else "MISSES"
        lines.append(
            f"Tidewire: {reference['kib_per_connection']:.1f} KiB per idle connection "
            f"{verdict} the target of at most {TARGET_IDLE_KIB:g} KiB"
        )
    return "\n".join(lines)


def write_results(
    kind: str, opts: argparse.Namespace, env: dict[str, Any], data: dict[str, Any]
) -> Path:
    """Write one JSON file per run into bench/results/ (git-ignored)."""
    out: Path = opts.out
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    options = {
        key: (str(value) if isinstance(value, Path) else value) for key, value in vars(opts).items()
    }
    path.write_text(json.dumps({"options": options, "environment": env, **data}, indent=2))
    return path
