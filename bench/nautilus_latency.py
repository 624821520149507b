"""End-to-end latency from a NautilusTrader event to a Tidewire client: p50 / p99.

    .venv/bin/python -m bench.nautilus_latency --seconds 60

Starts a private `redis-server`, the gateway (`tidewire serve --nautilus redis://...`), a
WebSocket client subscribed to market_data, order_updates, trade_updates and
position_updates, and the live example node (`examples/nautilus_node.py`: synthetic quotes
every `--interval-ms`, sandbox fills, EMACross, DeskExerciser) publishing into that Redis.
Every message's latency is the client's receipt time minus the Nautilus `ts_event` it
carries in `data.ts_event` (the node stamps quotes with the wall clock when it makes them;
order events, fills and positions carry the time of the event). One machine, one clock.

The path is also split at Redis, whose entry ids are the milliseconds at which it appended
each entry (1 ms resolution): Nautilus -> Redis (from ts_event: the node's own processing,
serialising and XADD) and Redis -> client (the gateway's XREAD, mapping, sequencing and
fan-out, and the WebSocket). A market_data `message_id` holds its entry id; for events the
benchmark reads the streams itself and joins on the Nautilus event id. For events ts_event
is the time Nautilus gives the event (a sandbox fill, for example, carries the time of the
quote it filled on), so their end-to-end figure includes time spent inside the node before
the event is published at all. Bars are left out (their ts_event is the bar's close).
Needs the `nautilus` and `bench` extras. Results: bench/results/nautilus-latency-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from bench.procs import REPO, free_port
from bench.stats import percentiles

STREAMS = ("market_data", "order_updates", "trade_updates", "position_updates")
POINTS = (50, 90, 99, 99.9)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def entry_times(redis_url: str, into: dict[str, int], stop: asyncio.Event) -> None:
    """Redis entry milliseconds of every Nautilus event, by event id (read like the gateway)."""
    client = aioredis.Redis.from_url(redis_url)
    decode_msgpack = msgspec.msgpack.Decoder()
    positions: dict[Any, Any] = {}
    try:
        while not stop.is_set():
            async for key in client.scan_iter(match="trader-*", _type="stream"):
                positions.setdefault(key, "0-0")
            if not positions:
                await asyncio.sleep(0.1)
                continue
            reply = await client.xread(dict(positions), count=1000, block=200)
            for key, entries in reply or []:
                for entry_id, fields in entries:
                    positions[key] = entry_id
                    payload = fields.get(b"payload", b"")
                    try:
                        if payload[:1] == b"{":
                            decoded = msgspec.json.decode(payload)
                        else:
                            decoded = decode_msgpack.decode(payload)
                    except msgspec.DecodeError:
                        continue
                    if isinstance(decoded, dict) and isinstance(decoded.get("event_id"), str):
                        into.setdefault(decoded["event_id"], int(entry_id.split(b"-")[0]))
    finally:
        await client.aclose()


async def collect(
    url: str, redis_url: str, seconds: float, warmup: float
) -> list[tuple[str, int, int, int]]:
    """(stream or "quote", ts_event, receipt ns, Redis entry ms or 0) per data message."""
    samples: list[tuple[str, int, int, int]] = []
    events: list[tuple[str, int, int, str]] = []
    entry_ms: dict[str, int] = {}
    stop = asyncio.Event()
    reader = asyncio.create_task(entry_times(redis_url, entry_ms, stop))
    async with connect(url, max_size=None) as ws:
        for stream in STREAMS:
            await ws.send(json.dumps({"type": "subscribe", "stream": stream, "snapshot": False}))
        started = time.monotonic()
        async with asyncio.timeout(warmup + seconds + 30):
            while time.monotonic() - started < warmup + seconds:
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                received = time.time_ns()
                message = json.loads(raw)
                if time.monotonic() - started < warmup or "stream" not in message:
                    continue
                ts_event = message.get("data", {}).get("ts_event")
                if not isinstance(ts_event, int):
                    continue
                kind = message["stream"]
                if kind == "market_data":
                    if message.get("data_type") != "quote":
                        continue
                    # nt-<digest>-<millis>-<n>: the Redis entry id of the quote
                    millis = int(message["message_id"].split("-")[2])
                    samples.append(("quote", ts_event, received, millis))
                else:  # nt-<event id>[-suffix]: a Nautilus UUID4 is 36 characters
                    events.append((kind, ts_event, received, message["message_id"][3:39]))
    stop.set()
    await reader
    samples += [(k, t, r, entry_ms.get(event_id, 0)) for k, t, r, event_id in events]
    return samples


def summarise(samples: list[tuple[str, int, int, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups: dict[str, list[int]] = {}
    for kind, ts_event, received, _ in samples:
        latency = received - ts_event
        groups.setdefault(kind, []).append(latency)  # quote, order_updates, trade_updates...
        if kind != "quote":
            groups.setdefault("all_events", []).append(latency)
    for name, values in groups.items():
        stats = percentiles(values, POINTS)
        out[name] = {
            "count": len(values),
            **{key: round(value / 1e6, 3) for key, value in stats.items()},
            "max": round(max(values) / 1e6, 3),
        }
    for group, wanted in (("quote", {"quote"}), ("event", set(STREAMS) - {"market_data"})):
        split = [(t, r, e) for kind, t, r, e in samples if kind in wanted and e]
        if not split:
            continue
        to_redis = [e * 1_000_000 - t for t, _, e in split]
        from_redis = [r - e * 1_000_000 for _, r, e in split]
        for name, values in ((f"{group}_to_redis", to_redis), (f"{group}_from_redis", from_redis)):
            stats = percentiles(values, POINTS)
            out[name] = {
                "count": len(values),
                **{key: round(value / 1e6, 3) for key, value in stats.items()},
            }
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds ignored at start")
    parser.add_argument("--interval-ms", type=int, default=50, help="node: ms per quote")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    parser.add_argument("--one-stream", action="store_true", help="node: stream_per_topic off")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)

    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    redis_port, port, internal_port = free_port(), free_port(), free_port()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too
    redis_url = f"redis://127.0.0.1:{redis_port}"
    env = {**os.environ, "TIDEWIRE_NAUTILUS_OFFSETS_KEY": ""}
    with tempfile.TemporaryDirectory(prefix="tidewire-bench-redis-") as data_dir:
        redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        redis_args += ["--appendonly", "no", "--dir", data_dir, "--loglevel", "warning"]
        redis = subprocess.Popen([redis_server, *redis_args])
        gateway_cmd = [sys.executable, "-m", "tidewire", "serve", "--nautilus", redis_url]
        gateway_cmd += ["--port", str(port), "--internal-port", str(internal_port)]
        gateway_cmd += ["--log-level", "warning"]
        node_cmd = [sys.executable, str(REPO / "examples" / "nautilus_node.py")]
        node_cmd += ["--redis", redis_url, "--interval-ms", str(args.interval_ms)]
        node_cmd += ["--encoding", args.encoding, "--log-level", "ERROR"]
        if args.one_stream:
            node_cmd.append("--one-stream")
        processes: list[subprocess.Popen[bytes]] = [redis]
        try:
            wait_for_port(redis_port)
            gateway = subprocess.Popen(gateway_cmd, env=env)
            processes.append(gateway)
            wait_for_port(port)
            node = subprocess.Popen(node_cmd, stderr=subprocess.DEVNULL)
            processes.append(node)
            gateway_ps = psutil.Process(gateway.pid)
            cpu_before = gateway_ps.cpu_times()
            machine_before = psutil.cpu_times()
            started = time.monotonic()
            samples = asyncio.run(
                collect(f"ws://127.0.0.1:{port}/ws", redis_url, args.seconds, args.warmup)
            )
            elapsed = time.monotonic() - started
            cpu_after = gateway_ps.cpu_times()
            machine_after = psutil.cpu_times()
        finally:
            # Cleaning up must not be cut short by a second Ctrl-C or SIGTERM.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for process in reversed(processes):
                stop(process, signal.SIGINT if process is not redis else signal.SIGTERM)

    gateway_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    busy = sum(machine_after) - machine_after.idle - (sum(machine_before) - machine_before.idle)
    result = {
        "benchmark": "nautilus_latency",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": vars(args) | {"out": str(args.out)},
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "latency_ms": summarise(samples),
        "gateway_cpu_percent_of_one_core": round(100 * gateway_cpu / elapsed, 1),
        "machine_busy_cores": round(busy / elapsed, 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"nautilus-latency-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["latency_ms"], indent=1))
    print(
        f"gateway CPU {result['gateway_cpu_percent_of_one_core']}% of a core; "
        f"machine busy {result['machine_busy_cores']} cores; written to {path}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
