"""What `GET /metrics` costs the fan-out: gateway CPU per delivery without and with a scraper.

In-process and small (bench/fanout.py compares servers; this compares one gateway with
itself): the gateway runs in this process with the memory broker and publishes quotes at a
fixed rate; a child process holds the subscribed WebSocket clients (and, in the `scraped`
runs, a Prometheus-like scraper that GETs /metrics once a second), so this process's CPU
time (`resource.getrusage`, user + system) is the gateway's: fan-out, writes, the scrapes
it answers, and the publishing, which is the same in both runs. Runs alternate
(plain, scraped, plain, scraped, ...) so drift on a shared machine hits both alike.

    python -m bench.metrics_cost [--connections 50] [--rate 1000] [--seconds 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import threading
import time
from typing import Any

from bench.stats import median

WARMUP_SECONDS = 2.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- child: clients and scraper


async def sink(port: int, internal_port: int, connections: int, scrape: bool) -> None:
    import httpx
    from websockets.asyncio.client import connect

    clients = []
    for _ in range(connections):
        ws = await connect(f"ws://127.0.0.1:{port}/ws", max_size=None)
        await ws.recv()  # connection_established
        await ws.send(json.dumps({"type": "subscribe", "stream": "market_data"}))
        while json.loads(await ws.recv())["type"] != "subscription_confirmed":
            pass
        clients.append(ws)

    async def drain(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    tasks = [asyncio.create_task(drain(ws)) for ws in clients]
    stop = threading.Event()

    def scraper() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{internal_port}") as client:
            while not stop.wait(1.0):
                client.get("/metrics").raise_for_status()

    thread = threading.Thread(target=scraper, daemon=True) if scrape else None
    if thread is not None:
        thread.start()
    print("SUBSCRIBED", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    stop.set()
    for task in tasks:
        task.cancel()


# ---------------------------------------------------------------- parent: the gateway


def start_sink(
    port: int, internal_port: int, connections: int, scraped: bool
) -> subprocess.Popen[str]:
    """The child process of the clients (and the scraper), answering SUBSCRIBED."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.metrics_cost",
            "--sink",
            *("--port", str(port), "--internal-port", str(internal_port)),
            *("--connections", str(connections), "--scrape", str(int(scraped))),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def run_once(opts: argparse.Namespace, scraped: bool) -> dict[str, float]:
    from tidewire.server.app import Gateway
    from tidewire.settings import GatewaySettings

    gateway = Gateway(GatewaySettings(port=0, internal_port=0, heartbeat_interval=30))
    await gateway.start()
    child = start_sink(gateway.port, gateway.internal_port, opts.connections, scraped)
    try:
        assert child.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        if line.strip() != "SUBSCRIBED":
            raise RuntimeError(f"the client process failed: {line!r}")
        symbols = [f"S{i:03d}" for i in range(opts.symbols)]
        tick = 0.01
        per_tick = max(1, round(opts.rate * tick))
        published = 0

        async def publish_for(seconds: float) -> None:
            nonlocal published
            deadline = time.perf_counter() + seconds
            next_tick = time.perf_counter()
            while time.perf_counter() < deadline:
                for _ in range(per_tick):
                    symbol = symbols[published % len(symbols)]
                    published += 1
                    await gateway.publish(
                        {
                            "type": "market_data",
                            "symbol": symbol,
                            "data_type": "quote",
                            "data": {"bid_price": 100.0, "ask_price": 100.1},
                        }
                    )
                next_tick += tick
                await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))

        await publish_for(WARMUP_SECONDS)
        cpu0, deliveries0 = cpu_seconds(), gateway.hub.counters.deliveries
        wall0 = time.perf_counter()
        await publish_for(opts.seconds)
        cpu = cpu_seconds() - cpu0
        deliveries = gateway.hub.counters.deliveries - deliveries0
        wall = time.perf_counter() - wall0
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        await gateway.stop()
    return {
        "cpu_seconds": cpu,
        "deliveries": deliveries,
        "deliveries_per_second": deliveries / wall,
        "cpu_us_per_delivery": cpu / deliveries * 1e6 if deliveries else float("nan"),
        "slow_consumer_closes": gateway.hub.counters.slow_consumer_closes,
    }


async def compare(opts: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "scraped": []}
    for round_ in range(opts.rounds):
        for kind in ("plain", "scraped"):
            result = await run_once(opts, scraped=kind == "scraped")
            runs[kind].append(result)
            print(
                f"round {round_ + 1} {kind:8s} {result['deliveries_per_second']:9.0f} deliveries/s"
                f"  {result['cpu_us_per_delivery']:6.3f} us CPU/delivery"
                f"  slow-consumer closes {result['slow_consumer_closes']:.0f}",
                flush=True,
            )
    plain = median([r["cpu_us_per_delivery"] for r in runs["plain"]])
    scraped = median([r["cpu_us_per_delivery"] for r in runs["scraped"]])
    print(
        f"median CPU per delivery: {plain:.3f} us without a scraper, {scraped:.3f} us with"
        f" one at 1 Hz: ratio {scraped / plain:.3f}"
    )
    return {"plain": runs["plain"], "scraped": runs["scraped"], "ratio": scraped / plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages published per s")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--internal-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--scrape", type=int, default=0, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.sink:
        asyncio.run(sink(opts.port, opts.internal_port, opts.connections, bool(opts.scrape)))
        return
    asyncio.run(compare(opts))


if __name__ == "__main__":
    main()
