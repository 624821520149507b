"""The real gateway in its own process, with paced in-process publishers, for the delivery
benchmarks (bench.slow_consumer, bench.resume_storm).

Unlike the fan-out peers (bench.peers.harness), the publishers here run open-loop at a fixed
rate: the slow-consumer benchmark needs clients that do not keep up, and the resume storm
needs messages to keep coming while clients are away. Two publishers, each optional:

* `market_data` quotes (bench.quotes, `data.ts` = publish time), symbols rotating;
* `order_updates` (a reliable stream), portfolios rotating: message n goes to portfolio
  `PF<n % portfolios>`, with `data.n` = n and `message_id` = `bo-<run>-<n>`.

The driver talks to this process over stdin, one command per line, and reads the answers on
stdout:

    READY <port> <internal_port> <order_updates epoch>     (printed once listening)
    publish                 -> start (or restart) both publishers
    pause                   -> stop them; answers `PAUSED <json counts and positions>`
    stop <close code>       -> stop publishing, `Gateway.stop(code)`, write the publish log,
                               answer `STOPPED <json>` and exit

End of stdin counts as `stop 1001` (the driver went away). The process also exits after
`--max-seconds`. Settings: every `TIDEWIRE_*` environment variable applies (GatewaySettings);
the options below override them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import resource
import socket
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import picows

from bench.quotes import raw_quote
from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.ingest import build_data_message
from tidewire.server import dataplane
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings

# A publisher that fell this far behind its schedule (a stalled loop) starts a new schedule
# instead of publishing the backlog in one burst.
MAX_LAG_SECONDS = 0.25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--internal-port", type=int, default=0, help="control plane; 0 = any")
    parser.add_argument("--market-rate", type=float, default=0.0, help="market_data msg/s")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--order-rate", type=float, default=0.0, help="order_updates msg/s")
    parser.add_argument("--portfolios", type=int, default=100)
    parser.add_argument(
        "--order-pad", type=int, default=0, help="bytes of filler in each order's data.note"
    )
    parser.add_argument("--max-outbox-bytes", type=int, default=None)
    parser.add_argument("--stall-timeout", type=float, default=None)
    parser.add_argument(
        "--no-heartbeats",
        action="store_true",
        help="heartbeat interval 1 h, timeout 2 h (clients that never send stay connected)",
    )
    parser.add_argument(
        "--what-if-backlog",
        type=int,
        default=0,
        help="experiment, not the gateway's behaviour: listen backlog of the data plane "
        "(the gateway passes none, so asyncio's default of 100 applies)",
    )
    parser.add_argument(
        "--what-if-sndbuf",
        type=int,
        default=0,
        help="experiment, not the gateway's behaviour: SO_SNDBUF on every client socket "
        "(a fixed size turns off the kernel's send-buffer autotuning)",
    )
    parser.add_argument("--log", type=Path, default=None, help="order publish log (JSON)")
    parser.add_argument("--run-id", default=os.urandom(3).hex())
    parser.add_argument("--max-seconds", type=float, default=300.0, help="lifetime bound")
    return parser.parse_args()


def settings_of(args: argparse.Namespace) -> GatewaySettings:
    overrides: dict[str, Any] = {"port": args.port, "internal_port": args.internal_port}
    if args.max_outbox_bytes is not None:
        overrides["max_outbox_bytes"] = args.max_outbox_bytes
    if args.stall_timeout is not None:
        overrides["stall_timeout"] = args.stall_timeout
    if args.no_heartbeats:
        overrides.update(heartbeat_interval=3600.0, heartbeat_timeout=7200.0)
    return GatewaySettings(**overrides)


def order_update(n: int, portfolios: int, run_id: str, pad: int = 0) -> dict[str, Any]:
    """A producer's `order_update` for portfolio `PF<n % portfolios>` (about 450 bytes on
    the wire, plus `pad` bytes of filler)."""
    message: dict[str, Any] = {
        "type": "order_update",
        "message_id": f"bo-{run_id}-{n}",
        "portfolio_id": f"PF{n % portfolios}",
        "order_id": f"O{n}",
        "symbol": f"SYM{n % 10 + 1}",
        "order_status": "partial",
        "data": {
            "side": "buy" if n % 2 else "sell",
            "order_type": "limit",
            "quantity": 100,
            "filled_quantity": n % 100,
            "remaining_quantity": 100 - n % 100,
            "price": 100.0 + n % 50,
            "n": n,
            "ts": time.time_ns(),
        },
    }
    if pad:
        message["data"]["note"] = "x" * pad
    return message


class GcPauses:
    """Garbage-collector pauses of this process (gc.callbacks), per generation."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = int(info.get("generation", 0))
        pause = time.perf_counter() - self._started
        self.count[generation] += 1
        self.total[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)

    def summary(self) -> dict[str, Any]:
        return {
            "collections": self.count,
            "total_ms": [round(t * 1e3, 1) for t in self.total],
            "longest_ms": [round(t * 1e3, 1) for t in self.longest],
        }


class Publishers:
    """The two paced publishers and the log of what was published on order_updates."""

    def __init__(self, gateway: Gateway, args: argparse.Namespace) -> None:
        self.gateway = gateway
        self.args = args
        self.market = 0
        self.orders = 0
        self.order_seqs = array("q")
        """seq of every order_updates message published, in order (n = index)."""
        self.rebased = 0
        """Times a publisher fell more than MAX_LAG_SECONDS behind and started over."""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def broker(self) -> MemoryBroker:
        # The default broker is the in-memory one; publish_now is its synchronous entry.
        return cast(MemoryBroker, self.gateway.broker)

    def publish_market(self) -> None:
        raw = raw_quote(self.market, self.args.symbols)
        self.broker.publish_now(build_data_message(raw, default_source="bench"))
        self.market += 1

    def publish_order(self) -> None:
        args = self.args
        raw = order_update(self.orders, args.portfolios, args.run_id, args.order_pad)
        outcome = self.broker.publish_now(build_data_message(raw, default_source="bench"))
        self.order_seqs.append(outcome.message.seq)
        self.orders += 1

    async def _paced(self, rate: float, publish: Callable[[], None]) -> None:
        start = time.perf_counter()
        sent = 0
        while True:
            delay = start + sent / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -MAX_LAG_SECONDS:
                self.rebased += 1
                start, sent = time.perf_counter(), 0
            publish()
            sent += 1
            if delay <= 0:
                await asyncio.sleep(0)

    def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        if self.args.market_rate > 0:
            self._tasks.append(
                loop.create_task(self._paced(self.args.market_rate, self.publish_market))
            )
        if self.args.order_rate > 0:
            self._tasks.append(
                loop.create_task(self._paced(self.args.order_rate, self.publish_order))
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []

    def summary(self) -> dict[str, Any]:
        broker = self.broker
        return {
            "market_published": self.market,
            "orders_published": self.orders,
            "rebased": self.rebased,
            "positions": {
                name: {"epoch": pos.epoch, "seq": pos.seq}
                for name in ("market_data", "order_updates")
                for pos in (broker.position(name),)
            },
        }

    def write_log(self, path: Path) -> None:
        position = self.broker.position("order_updates")
        log = {
            "epoch": position.epoch,
            "portfolios": self.args.portfolios,
            "seqs": self.order_seqs.tolist(),
        }
        path.write_text(json.dumps(log))


def apply_experiments(args: argparse.Namespace) -> list[str]:
    """Patch the data plane for a what-if run (bench only; the gateway is unchanged)."""
    applied = []
    if args.what_if_backlog:
        dataplane.ws_create_server = functools.partial(  # type: ignore[attr-defined]
            picows.ws_create_server, backlog=args.what_if_backlog
        )
        applied.append(f"backlog={args.what_if_backlog}")
    if args.what_if_sndbuf:
        size = args.what_if_sndbuf
        connected = dataplane._ClientListener.on_ws_connected

        def on_ws_connected(self: dataplane._ClientListener, transport: Any) -> None:
            sock = transport.underlying_transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            connected(self, transport)

        dataplane._ClientListener.on_ws_connected = on_ws_connected  # type: ignore[method-assign]
        applied.append(f"sndbuf={size}")
    return applied


async def commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def answer(line: str) -> None:
    print(line, flush=True)


async def serve(args: argparse.Namespace) -> None:
    experiments = apply_experiments(args)
    if experiments:
        print(f"delivery_server: what-if {', '.join(experiments)}", file=sys.stderr, flush=True)
    pauses = GcPauses()
    gateway = Gateway(settings_of(args))
    await gateway.start()
    publishers = Publishers(gateway, args)
    epoch = gateway.broker.position("order_updates").epoch
    answer(f"READY {gateway.port} {gateway.internal_port} {epoch}")
    reader = await commands()
    code = int(CloseCode.GOING_AWAY)
    try:
        while True:
            line = (await reader.readline()).decode().split()
            if not line:  # end of stdin: the driver is gone
                break
            if line[0] == "publish":
                publishers.start()
            elif line[0] == "pause":
                await publishers.stop()
                answer("PAUSED " + json.dumps(publishers.summary()))
            elif line[0] == "stop":
                code = int(line[1]) if len(line) > 1 else code
                break
    finally:
        await publishers.stop()
        summary = publishers.summary()
        if args.log is not None:
            publishers.write_log(args.log)
        started = time.perf_counter()
        await gateway.stop(code)
        summary["stop_seconds"] = round(time.perf_counter() - started, 3)
        summary["gc"] = pauses.summary()
        answer("STOPPED " + json.dumps(summary))


def main() -> None:
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def bounded() -> None:
        try:
            await asyncio.wait_for(serve(args), args.max_seconds)
        except TimeoutError:
            print("delivery_server: lifetime bound reached", file=sys.stderr, flush=True)

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
