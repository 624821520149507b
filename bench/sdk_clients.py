"""Many Python SDK clients in one process, each with one filtered reliable subscription.

Each client is a `TidewireClient` subscribed to `order_updates` with
`filters={"portfolio_ids": ["PF<i % portfolios>"]}`; a task per client consumes its
subscription and records every message (epoch, seq, receipt time), every resync marker and,
through a message handler, every `subscription_confirmed` (time, `recovered`, position).
Times are `time.monotonic()` (one clock for every process on Linux).

Driven by signals and stdin, printing one line per event on stdout:

    READY <n>            all n clients connected and subscribed
    SIGUSR1              drop: abort every client's TCP connection at once (the SDK sees
                         1006 and reconnects); with `--away S` the first reconnection attempt
                         of each client waits until S seconds after the drop (an outage)
    SIGUSR2              mark: the connections are about to be closed by the gateway
                         (restart); count re-confirmations from now
    RESUMED <n> <t>      every client got a new `subscription_confirmed` after the last drop
                         or mark (t: monotonic time of the last one)
    stdin "finish"       write the record of every client to --out (JSON) and exit

The process exits by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from tidewire.client import (
    Backoff,
    ConnectionState,
    Subscription,
    TidewireClient,
    is_resync,
)

CONNECT_CONCURRENCY = 50
"""Connections opened at once during setup (the gateway's listen backlog is larger)."""


class OutageBackoff(Backoff):
    """The SDK's backoff, except that while an outage is armed the next delay lasts until
    the outage ends (plus the usual jitter): every client comes back at about one instant."""

    def __init__(self, base: float, cap: float) -> None:
        super().__init__(base, cap)
        self.until = 0.0

    def next_delay(self, *, throttled: bool = False) -> float:
        delay = super().next_delay(throttled=throttled)
        hold = self.until - time.monotonic()
        if hold > 0:
            self.until = 0.0
            return hold + delay
        return delay


class Record:
    """What one client saw."""

    def __init__(self, index: int, portfolio: str) -> None:
        self.index = index
        self.portfolio = portfolio
        self.epochs: list[str] = []
        self.epoch_of: array[int] = array("b")
        """Per message: index into `epochs`."""
        self.seqs: array[int] = array("q")
        self.times: array[float] = array("d")
        self.confirmations: list[tuple[float, bool | None, str, int]] = []
        self.resyncs: list[tuple[float, str]] = []
        self.states: list[tuple[float, str]] = []
        """(time, new state) of every connection state change."""
        self.error: str | None = None

    def message(self, message: dict[str, Any], now: float) -> None:
        epoch = str(message.get("epoch"))
        if epoch not in self.epochs:
            self.epochs.append(epoch)
        self.epoch_of.append(self.epochs.index(epoch))
        self.seqs.append(int(message["seq"]))
        self.times.append(now)

    def to_json(self, subscription: Subscription | None, client: TidewireClient) -> dict[str, Any]:
        return {
            "index": self.index,
            "portfolio": self.portfolio,
            "epochs": self.epochs,
            "epoch_of": self.epoch_of.tolist(),
            "seqs": self.seqs.tolist(),
            "times": [round(t, 5) for t in self.times],
            "confirmations": self.confirmations,
            "resyncs": self.resyncs,
            "states": self.states,
            "duplicates": subscription.duplicates if subscription else None,
            "dropped": subscription.dropped if subscription else None,
            "sdk_resyncs": subscription.resyncs if subscription else None,
            "state": client.connection_state.name,
            "error": self.error,
        }


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clients: list[TidewireClient] = []
        self.backoffs: list[OutageBackoff] = []
        self.subscriptions: list[Subscription | None] = []
        self.records: list[Record] = []
        self.consumers: list[asyncio.Task[None]] = []
        self.mark = 0.0
        self.pending_resume: set[int] = set()
        self.last_confirmation = 0.0

    def _on_confirmed(self, index: int) -> Any:
        record = self.records[index]

        def handler(message: dict[str, Any]) -> None:
            now = time.monotonic()
            position = message.get("position") or {}
            recovered = message.get("recovered")
            record.confirmations.append(
                (
                    now,
                    recovered if isinstance(recovered, bool) else None,
                    str(position.get("epoch")),
                    int(position.get("seq", -1)),
                )
            )
            self.last_confirmation = now
            if index in self.pending_resume:
                self.pending_resume.discard(index)
                if not self.pending_resume:
                    print(f"RESUMED {len(self.clients)} {now:.6f}", flush=True)

        return handler

    def _on_state(self, index: int) -> Any:
        states = self.records[index].states

        def handler(previous: ConnectionState, current: ConnectionState) -> None:
            states.append((time.monotonic(), current.name))

        return handler

    async def start(self) -> None:
        args = self.args
        for offset in range(args.count):
            index = args.first + offset
            backoff = OutageBackoff(args.reconnect_interval, args.max_reconnect_interval)
            client = TidewireClient(
                args.url,
                backoff=backoff,
                heartbeat_interval=args.heartbeat_interval or None,
                request_timeout=60.0,
                connect_timeout=30.0,
            )
            self.clients.append(client)
            self.backoffs.append(backoff)
            self.records.append(Record(index, f"PF{index % args.portfolios}"))
            self.subscriptions.append(None)
            client.add_message_handler("subscription_confirmed", self._on_confirmed(offset))
            client.add_state_handler(self._on_state(offset))
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def bring_up(offset: int) -> None:
            async with gate:
                client = self.clients[offset]
                await client.connect(timeout=60.0)
                subscription = await client.subscribe(
                    "order_updates",
                    filters={"portfolio_ids": [self.records[offset].portfolio]},
                    subscription_id="orders",
                )
                self.subscriptions[offset] = subscription
                self.consumers.append(asyncio.create_task(self.consume(offset, subscription)))

        await asyncio.gather(*(bring_up(offset) for offset in range(args.count)))
        print(f"READY {len(self.clients)}", flush=True)

    async def consume(self, offset: int, subscription: Subscription) -> None:
        record = self.records[offset]
        try:
            async for message in subscription:
                now = time.monotonic()
                if is_resync(message):
                    record.resyncs.append((now, str(message.get("reason"))))
                else:
                    record.message(message, now)
        except Exception as exc:
            record.error = repr(exc)

    def arm(self, drop: bool) -> None:
        now = time.monotonic()
        self.mark = now
        self.pending_resume = set(range(len(self.clients)))
        if drop:
            for backoff in self.backoffs:
                backoff.until = now + self.args.away
            for client in self.clients:
                ws = client._link.ws  # the SDK has no public "drop"; this is a network cut
                if ws is not None:
                    ws.transport.abort()
        print(f"{'DROPPED' if drop else 'MARKED'} {now:.6f}", flush=True)

    async def finish(self) -> None:
        out = [
            record.to_json(subscription, client)
            for record, subscription, client in zip(
                self.records, self.subscriptions, self.clients, strict=True
            )
        ]
        Path(self.args.out).write_text(  # noqa: ASYNC240 - once, at the end of the run
            json.dumps({"mark": self.mark, "clients": out})
        )
        print("FINISHED", flush=True)
        await asyncio.wait(
            [asyncio.create_task(client.close()) for client in self.clients], timeout=5.0
        )


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet(args)
    loop.add_signal_handler(signal.SIGUSR1, fleet.arm, True)
    loop.add_signal_handler(signal.SIGUSR2, fleet.arm, False)
    await fleet.start()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "finish":
            break
    await fleet.finish()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--first", type=int, default=0, help="index of the first client")
    parser.add_argument("--portfolios", type=int, default=100)
    parser.add_argument("--reconnect-interval", type=float, default=0.05)
    parser.add_argument("--max-reconnect-interval", type=float, default=2.0)
    parser.add_argument("--away", type=float, default=0.0, help="outage length after a drop")
    parser.add_argument("--heartbeat-interval", type=float, default=15.0, help="0 = none")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def bounded() -> None:
        try:
            await asyncio.wait_for(run(args), args.max_seconds)
        except TimeoutError:
            print("sdk_clients: lifetime bound reached", file=sys.stderr, flush=True)

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
