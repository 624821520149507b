"""Resume storm: 1000 Python SDK clients lose their connections at once and all resume.

The real gateway runs in its own process (bench.delivery_server) and publishes
`order_updates` (a reliable stream) at a steady rate, over `--portfolios` portfolios in
turn. The clients (bench.sdk_clients: `TidewireClient`, in `--processes` processes) each
subscribe to `order_updates` with a one-portfolio filter and record every message.

* `drop`: every client's TCP connection is aborted at the same instant (a network cut:
  the SDK sees 1006, the gateway a reset), the clients stay away `--away` seconds while
  publishing goes on, then all reconnect at once (jitter `--reconnect-interval`) and
  resubscribe with `since` = their position. Each must get `recovered: true` and exactly
  the messages it missed, then the live ones.
* `restart`: the gateway stops with 1012 and a new process starts on the same port (a new
  epoch, empty history). Each client must get `recovered: false` (and a resync marker), then
  every message of the new epoch from its confirmed position on.

Verification is exact: the server logs the seq of every order it published (message n goes
to portfolio `PF<n % portfolios>`), and each client's received (epoch, seq) list must equal
the matching seqs after its first confirmed position, in order: no loss, no duplicate.
See bench/README.md; `python -m bench.resume_storm --help` for the options.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gateway_child import GatewayChild, PipedChild
from bench.procs import REPO, environment, free_port, machine_busy_seconds
from bench.report import markdown, write_results
from bench.stats import median, percentiles

SETUP_TIMEOUT = 180.0
SAMPLE_SECONDS = 0.05


class CpuSampler(threading.Thread):
    """CPU seconds of the gateway(s), of the client processes and of the machine, every 50 ms.

    Gateway CPU is summed over every gateway process of the run (the restart variant has
    two), each counted with its last value once it has exited."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.servers: Sequence[PipedChild] = []
        self.clients: Sequence[PipedChild] = []
        self._last: dict[int, float] = {}
        self.samples: list[tuple[float, float, float, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self.sample()

    def _cpu(self, children: Sequence[PipedChild]) -> float:
        total = 0.0
        for child in list(children):
            with contextlib.suppress(Exception):  # exited: keep its last value
                self._last[child.pid] = child.child.cpu_seconds()
            total += self._last.get(child.pid, 0.0)
        return total

    def sample(self) -> None:
        now = time.monotonic()
        server_cpu, client_cpu = self._cpu(self.servers), self._cpu(self.clients)
        self.samples.append((now, server_cpu, client_cpu, machine_busy_seconds()))

    def finish(self) -> None:
        self._done.set()
        if self.ident is not None:
            self.join(timeout=2.0)

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU used in [start, end] (nearest samples), in seconds and in cores."""
        inside = [s for s in self.samples if start - SAMPLE_SECONDS <= s[0] <= end + SAMPLE_SECONDS]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        wall = max(1e-6, last[0] - first[0])
        server = last[1] - first[1]
        clients = last[2] - first[2]
        other = max(0.0, last[3] - first[3] - server - clients)
        return {
            "wall_seconds": wall,
            "server_cpu_seconds": server,
            "server_cores": server / wall,
            "clients_cpu_seconds": clients,
            "clients_cores": clients / wall,
            "other_cores": other / wall,
        }


def server_args(port: int, log: Path, opts: argparse.Namespace) -> list[str]:
    return [
        *("--port", str(port), "--order-rate", str(opts.order_rate)),
        *("--portfolios", str(opts.portfolios), "--log", str(log)),
        *("--what-if-backlog", str(opts.what_if_backlog)),
        *("--max-seconds", str(lifetime(opts))),
    ]


def lifetime(opts: argparse.Namespace) -> float:
    return float(SETUP_TIMEOUT + opts.warmup + opts.away + opts.timeout + opts.after + 120.0)


def start_clients(
    port: int, workdir: Path, opts: argparse.Namespace, variant: str
) -> list[PipedChild]:
    clients = []
    per = -(-opts.clients // opts.processes)
    for process in range(opts.processes):
        first = process * per
        count = min(per, opts.clients - first)
        if count <= 0:
            break
        clients.append(
            PipedChild(
                f"clients-{process}",
                "bench.sdk_clients",
                [
                    *("--url", f"ws://127.0.0.1:{port}/ws", "--count", str(count)),
                    *("--first", str(first), "--portfolios", str(opts.portfolios)),
                    *("--reconnect-interval", str(opts.reconnect_interval)),
                    *("--away", str(opts.away if variant == "drop" else 0.0)),
                    *("--heartbeat-interval", str(opts.heartbeat_interval)),
                    *("--out", str(workdir / f"clients-{process}.json")),
                    *("--max-seconds", str(lifetime(opts))),
                ],
            )
        )
    return clients


def run_once(variant: str, opts: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tidewire-storm-"))
    port = free_port()
    servers: list[GatewayChild] = []
    clients: list[PipedChild] = []
    sampler = CpuSampler()
    logs = [workdir / "server-0.json"]
    times: dict[str, float] = {}
    stop_summary: dict[str, Any] = {}
    try:
        servers.append(GatewayChild("gateway", server_args(port, logs[0], opts)))
        servers[0].wait_ready()
        sampler.servers = servers
        started = time.monotonic()
        clients = start_clients(port, workdir, opts, variant)
        for child in clients:
            child.wait_line("READY", SETUP_TIMEOUT)
        times["setup_seconds"] = time.monotonic() - started
        sampler.clients = clients
        sampler.start()
        servers[0].publish()
        time.sleep(opts.warmup)
        listen_before = listen_counters()
        if variant == "drop":
            for child in clients:
                os.kill(child.pid, signal.SIGUSR1)
            marks = [float(child.wait_line("DROPPED", 10.0).split()[1]) for child in clients]
        else:
            for child in clients:
                os.kill(child.pid, signal.SIGUSR2)
            marks = [float(child.wait_line("MARKED", 10.0).split()[1]) for child in clients]
            times["stop_command"] = time.monotonic()
            stop_summary = servers[0].stop(code=1012)
            times["old_stopped"] = time.monotonic()
            logs.append(workdir / "server-1.json")
            servers.append(GatewayChild("gateway-2", server_args(port, logs[1], opts)))
            servers[1].wait_ready()
            times["new_ready"] = time.monotonic()
            servers[1].publish()
        resumed = []
        for child in clients:
            try:
                resumed.append(float(child.wait_line("RESUMED", opts.timeout).split()[2]))
            except RuntimeError as exc:
                print(f"  warning: {exc}")
        listen_after = listen_counters()
        time.sleep(opts.after)
        published = servers[-1].pause()
        time.sleep(1.0)  # messages in flight reach the clients
        for child in clients:
            child.command("finish")
        for child in clients:
            child.wait_line("FINISHED", 60.0)
        stops = [server.stop(code=1001) for server in servers if server.child.alive()]
        sampler.finish()
        records = []
        for process in range(len(clients)):
            data = json.loads((workdir / f"clients-{process}.json").read_text())
            records.extend(data["clients"])
        server_logs = [json.loads(log.read_text()) for log in logs]
    finally:
        sampler.finish()
        for child in clients:
            child.kill()
        for server in servers:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    result = analyse(variant, opts, records, server_logs, min(marks), sampler)
    if variant == "restart":
        # The part that is the new gateway's: from its READY to the last resubscription.
        ready_offset = times["new_ready"] - min(marks)
        result["after_new_server_ready_seconds"] = result["all_recovered_seconds"] - ready_offset
    result.update(
        setup_seconds=times["setup_seconds"],
        resumed_lines=len(resumed),
        published=published,
        server_stops=stops,
        marks_spread_ms=(max(marks) - min(marks)) * 1e3,
        listen_drops={k: listen_after.get(k, 0) - v for k, v in listen_before.items()},
    )
    if variant == "restart":
        result["old_stop_seconds"] = times["old_stopped"] - times["stop_command"]
        result["new_server_ready_seconds"] = times["new_ready"] - times["stop_command"]
        result["restart_stop"] = stop_summary
    return result


def analyse(
    variant: str,
    opts: argparse.Namespace,
    records: list[dict[str, Any]],
    logs: list[dict[str, Any]],
    mark: float,
    sampler: CpuSampler,
) -> dict[str, Any]:
    """Check every client's messages against the publish logs; time the recoveries."""
    # epoch -> portfolio -> seqs published for it, in order.
    published: dict[str, dict[str, list[int]]] = {}
    for log in logs:
        by_portfolio: dict[str, list[int]] = {}
        for n, seq in enumerate(log["seqs"]):
            by_portfolio.setdefault(f"PF{n % log['portfolios']}", []).append(seq)
        published[log["epoch"]] = by_portfolio
    first_epoch, last_epoch = logs[0]["epoch"], logs[-1]["epoch"]
    problems: list[str] = []
    recovery: list[float] = []
    replayed_total = 0
    recovered_flags: dict[str, int] = {}
    lost_at_restart = 0
    exact = 0
    last_done = mark
    reconnected: list[float] = []
    confirm_after_connect: list[float] = []
    for record in records:
        name = f"client {record['index']} ({record['portfolio']})"
        confirmations = record["confirmations"]
        if record["error"] or not confirmations:
            problems.append(f"{name}: error {record['error']}, {len(confirmations)} confirmations")
            continue
        after = [c for c in confirmations if c[0] >= mark]
        if len(after) != 1:
            problems.append(f"{name}: {len(after)} confirmations after the drop")
        if not after:
            continue
        t_conf, recovered, conf_epoch, conf_seq = after[0]
        recovered_flags[str(recovered)] = recovered_flags.get(str(recovered), 0) + 1
        got: dict[str, list[tuple[int, float]]] = {}
        for epoch_index, seq, when in zip(
            record["epoch_of"], record["seqs"], record["times"], strict=True
        ):
            got.setdefault(record["epochs"][epoch_index], []).append((seq, when))
        # Expected: every seq of this portfolio after the first confirmed position.
        start_epoch, start_seq = confirmations[0][2], confirmations[0][3]
        ok = True
        for epoch, by_portfolio in published.items():
            seqs = by_portfolio.get(record["portfolio"], [])
            floor = start_seq if epoch == start_epoch else -1
            if variant == "restart" and epoch == last_epoch and epoch != first_epoch:
                floor = conf_seq
            expected = seqs[bisect.bisect_right(seqs, floor) :]
            received = [seq for seq, _ in got.get(epoch, [])]
            if received == expected:
                continue
            missing = sorted(set(expected) - set(received))
            extra = len(received) - len(set(received))
            if (
                variant == "restart"
                and epoch == first_epoch
                and received == expected[: len(received)]
            ):
                # The end of the old epoch never arrived: what recovered:false covers.
                lost_at_restart += len(missing)
                continue
            ok = False
            problems.append(
                f"{name} epoch {epoch}: {len(received)} received, {len(expected)} expected, "
                f"{len(missing)} missing, {extra} duplicated, "
                f"in order: {received == sorted(received)}"
            )
        if record["duplicates"]:
            problems.append(f"{name}: the SDK dropped {record['duplicates']} duplicates")
            ok = False
        exact += ok
        if variant == "drop":
            want = True
            # The replay: what arrived after the new confirmation up to its position (the
            # exact comparison above already proved that nothing is missing around it).
            replay = [
                when for seq, when in got.get(conf_epoch, []) if when >= t_conf and seq <= conf_seq
            ]
            replayed_total += len(replay)
            done = max([t_conf, *replay])
        else:
            want = False
            done = t_conf
            if not any(reason == "not_recovered" for when, reason in record["resyncs"]):
                problems.append(f"{name}: no not_recovered resync marker")
        if recovered is not want:
            problems.append(f"{name}: recovered {recovered}, expected {want}")
        recovery.append(done - mark)
        last_done = max(last_done, done)
        connected = [
            when for when, state in record["states"] if when >= mark and state == "CONNECTED"
        ]
        if connected:
            reconnected.append(connected[0] - mark)
            confirm_after_connect.append(t_conf - connected[0])
    ms = percentiles([round(r * 1e6) for r in recovery], (50, 99, 100))
    return {
        "variant": variant,
        "clients": len(records),
        "processes": opts.processes,
        "portfolios": opts.portfolios,
        "order_rate": opts.order_rate,
        "away": opts.away if variant == "drop" else 0.0,
        "reconnect_interval": opts.reconnect_interval,
        "recovered_flags": recovered_flags,
        "exact_clients": exact,
        "problems": len(problems),
        "first_problems": problems[:20],
        "replayed_messages": replayed_total,
        "lost_at_restart": lost_at_restart,
        "recovery_seconds": {key: value / 1e6 for key, value in ms.items()},
        "reconnected_seconds": seconds_percentiles(reconnected),
        "confirm_after_connect_seconds": seconds_percentiles(confirm_after_connect),
        "per_client_recovery": [round(r, 4) for r in recovery],
        "per_client_reconnected": [round(r, 4) for r in reconnected],
        "all_recovered_seconds": last_done - mark,
        "storm_seconds": last_done - mark - (opts.away if variant == "drop" else 0.0),
        "cpu": sampler.between(mark, last_done),
        "cpu_reconnect": sampler.between(
            mark + (opts.away if variant == "drop" else 0.0), last_done
        ),
        "messages_per_client": median([len(r["seqs"]) for r in records]),
    }


def seconds_percentiles(values: list[float]) -> dict[str, float]:
    ms = percentiles([round(v * 1e6) for v in values], (50, 99, 100))
    return {key: value / 1e6 for key, value in ms.items()}


def histogram(values: list[float], width: float = 0.25) -> str:
    """Clients per `width`-second bucket, as "from-to s: n" items."""
    counts: dict[int, int] = {}
    for value in values:
        counts[int(value // width)] = counts.get(int(value // width), 0) + 1
    return ", ".join(
        f"{b * width:.2f}-{(b + 1) * width:.2f} s: {n}" for b, n in sorted(counts.items())
    )


def listen_counters() -> dict[str, int]:
    """TcpExt ListenOverflows and ListenDrops of the machine (/proc/net/netstat): SYNs
    dropped because a listening socket's accept queue was full."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return {key: int(table.get(key, 0)) for key in ("ListenOverflows", "ListenDrops")}
    return {}


def fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "variant",
        "clients",
        "away s",
        "recovered",
        "exact (no loss, no dup)",
        "messages replayed",
        "per-client p50 s",
        "p99 s",
        "max s",
        "all done after s",
        "of which the storm s",
        "new gateway READY to all done s",
        "server CPU (cores)",
        "client CPU (cores)",
        "other CPU (cores)",
    ]
    body = []
    for row in rows:
        rec = row["recovery_seconds"]
        cpu = row["cpu_reconnect"]
        flags = ", ".join(f"{k}: {v}" for k, v in sorted(row["recovered_flags"].items()))
        body.append(
            [
                row["variant"],
                f"{row['clients']:.0f}",
                fmt(row["away"], "g"),
                flags,
                f"{row['exact_clients']:.0f}/{row['clients']:.0f}",
                f"{row['replayed_messages']:,.0f}" if row["variant"] == "drop" else "-",
                fmt(rec["p50"]),
                fmt(rec["p99"]),
                fmt(rec["p100"]),
                fmt(row["all_recovered_seconds"]),
                fmt(row["storm_seconds"]),
                fmt(row.get("after_new_server_ready_seconds")),
                fmt(cpu.get("server_cores")),
                fmt(cpu.get("clients_cores")),
                fmt(cpu.get("other_cores")),
            ]
        )
    return markdown(headers, body)


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["variant"], []).append(run)
    rows = []
    for variant, group in groups.items():
        row = dict(group[0])
        row["repeats"] = len(group)
        for key, value in group[0].items():
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                row[key] = median([run[key] for run in group])
            elif isinstance(value, dict) and key in ("recovery_seconds", "cpu", "cpu_reconnect"):
                row[key] = {
                    k: median([run[key][k] for run in group if k in run[key]]) for k in value
                }
        row["problems"] = sum(run["problems"] for run in group)
        row["exact_clients"] = min(run["exact_clients"] for run in group)
        row["variant"] = variant
        rows.append(row)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--portfolios", type=int, default=100)
    parser.add_argument("--order-rate", type=float, default=500.0, help="order_updates msg/s")
    parser.add_argument("--variants", default="drop,restart")
    parser.add_argument("--warmup", type=float, default=3.0, help="publishing before the drop")
    parser.add_argument("--away", type=float, default=2.0, help="drop: outage length, seconds")
    parser.add_argument(
        "--reconnect-interval",
        type=float,
        default=0.05,
        help="SDK backoff base (ceiling of the first delay's jitter), seconds",
    )
    parser.add_argument("--heartbeat-interval", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=3.0, help="publishing after the resume")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on the resume")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--what-if-backlog",
        type=int,
        default=0,
        help="experiment (patches the data plane in the server process): listen backlog of "
        "the data plane; the gateway leaves asyncio's default, 100",
    )
    parser.add_argument("--quick", action="store_true", help="< 60 s: 200 clients, 1 process")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    opts = parser.parse_args()
    if opts.quick:
        opts.clients, opts.processes = min(opts.clients, 200), 1
        opts.warmup, opts.after, opts.away = 2.0, 1.0, 1.0
        opts.order_rate = min(opts.order_rate, 200.0)
    opts.variants = [v.strip() for v in str(opts.variants).split(",") if v.strip()]
    unknown = set(opts.variants) - {"drop", "restart"}
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    return opts


def main() -> None:
    opts = parse_args()
    env = environment()
    runs: list[dict[str, Any]] = []
    for repeat in range(opts.repeat):
        for variant in opts.variants:
            run = run_once(variant, opts)
            run["repeat"] = repeat
            runs.append(run)
            rec = run["recovery_seconds"]
            print(
                f"  {variant:<8} repeat {repeat}: {run['exact_clients']}/{run['clients']} exact, "
                f"recovered {run['recovered_flags']}, all done after "
                f"{run['all_recovered_seconds']:.2f} s (p50 {rec['p50']:.2f}, p99 "
                f"{rec['p99']:.2f}), {run['problems']} problem(s)",
                flush=True,
            )
            for problem in run["first_problems"][:5]:
                print(f"    {problem}")
            away = run["away"]
            print(
                f"    reconnected (CONNECTED) after the drop: p50 "
                f"{run['reconnected_seconds']['p50']:.2f} s, max "
                f"{run['reconnected_seconds']['p100']:.2f} s; confirmation after connect: p50 "
                f"{run['confirm_after_connect_seconds']['p50'] * 1e3:.0f} ms, max "
                f"{run['confirm_after_connect_seconds']['p100'] * 1e3:.0f} ms; listen queue "
                f"{run['listen_drops']}"
            )
            if variant == "restart":
                print(
                    f"    old gateway stopped after {run['old_stop_seconds']:.2f} s, new one READY "
                    f"after {run['new_server_ready_seconds']:.2f} s; all resubscribed "
                    f"{run['after_new_server_ready_seconds']:.2f} s after that"
                )
            print(
                "    clients done, from the reconnect: "
                + histogram([r - away for r in run["per_client_recovery"]])
            )
    rows = medians(runs)
    print(
        f"\n{opts.clients} TidewireClient instances in {opts.processes} process(es), one "
        f"order_updates subscription each (portfolio filter, {opts.portfolios} portfolios), "
        f"{opts.order_rate:g} orders/s published throughout; medians of {opts.repeat}"
        + (
            f"; WHAT-IF: listen backlog {opts.what_if_backlog} (not what the gateway does)"
            if opts.what_if_backlog
            else ""
        )
        + "\n"
    )
    print(table(rows))
    path = write_results("resume-storm", opts, env, {"runs": runs, "medians": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
