"""What every benchmarked server shares: command line, publisher loop with flow control,
readiness line, lifetime bound.

Each server module only supplies "start listening", "publish message n" and "stop"; the
publisher, its pacing and its flow control are this one piece of code, so the servers differ
only in how they fan a message out.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.control import ControlBlock, Field, Phase, poll

Publish = Callable[[int], None] | Callable[[int], Awaitable[None]]

# Give up waiting for deliveries after this long without progress: a server that conflates
# or drops messages would otherwise stall the publisher forever. Counted and reported.
STALL_SECONDS = 0.1
# While blocked by flow control, sleep rather than spin: a spinning publisher would bill
# its polling to the server's CPU per delivery. asyncio rounds the timeout to 1 ms, and
# socket events wake the loop earlier anyway.
BLOCKED_SLEEP = 0.0005


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", required=True, help="control block file (bench.control)")
    parser.add_argument("--burst", type=int, default=1, help="messages per loop iteration")
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="messages per connection that may be published but not yet received "
        "(0 = auto: max(16, 3 x burst))",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="messages per second; 0 = as fast as taken"
    )
    parser.add_argument("--symbols", type=int, default=10, help="distinct symbols (keys)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="lifetime bound")
    return parser.parse_args()


def window(requested: int, burst: int) -> int:
    """Messages per connection allowed in flight: enough for a burst being read while the
    next is written (a bigger window only adds queueing latency)."""
    return requested if requested > 0 else max(16, 3 * burst)


def raise_fd_limit() -> None:
    """Allow as many sockets as the hard limit permits (5000 idle connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def announce_ready(port: int) -> None:
    """The driver waits for this line before it starts the load generator."""
    print(f"READY {port}", flush=True)


async def wait_for_phase(ctl: ControlBlock, phase: Phase, interval: float = 0.01) -> None:
    await poll(lambda: ctl.phase >= phase, interval)


async def publish_loop(ctl: ControlBlock, publish: Publish, args: argparse.Namespace) -> None:
    """Publish `args.burst` messages per loop iteration until the driver says STOP.

    Flow control: at most `window` messages per connection may be in flight (published but
    not counted by the load generator), so no server's buffers grow without bound and every
    server is offered load as fast as it delivers it. With `--rate`, messages are also paced.
    """
    is_async = inspect.iscoroutinefunction(publish)
    await wait_for_phase(ctl, Phase.PUBLISH)
    connections = max(1, ctl.get(Field.SUBSCRIBED))
    limit = window(args.window, args.burst) * connections
    burst: int = args.burst
    rate: float = args.rate
    published = lost = stalls = 0
    blocked = 0.0
    last_received = -1
    last_progress = time.perf_counter()
    start = last_progress
    while ctl.get(Field.PHASE) < Phase.STOP:
        if rate > 0 and published >= (time.perf_counter() - start) * rate:
            await asyncio.sleep(BLOCKED_SLEEP)
            continue
        received = ctl.get(Field.RECEIVED)
        in_flight = published * connections - received - lost
        if in_flight > limit:
            now = time.perf_counter()
            if received != last_received:
                last_received, last_progress = received, now
            elif now - last_progress > STALL_SECONDS:
                lost += in_flight
                stalls += 1
                ctl.set(Field.STALLS, stalls)
            await asyncio.sleep(BLOCKED_SLEEP)
            # Time spent waiting for the readers: near 0 means the server was the bottleneck.
            blocked += time.perf_counter() - now
            ctl.set(Field.BLOCKED_US, int(blocked * 1e6))
            continue
        for _ in range(burst):
            if is_async:
                await publish(published)  # type: ignore[misc]
            else:
                publish(published)
            published += 1
        ctl.set(Field.PUBLISHED, published)
        # Yield once per burst: this is where servers that batch per iteration flush.
        await asyncio.sleep(0)


async def _serve(
    start: Callable[[], Awaitable[None]],
    publish: Publish,
    stop: Callable[[], Awaitable[None]],
    args: argparse.Namespace,
) -> None:
    ctl = ControlBlock(Path(args.control))
    try:
        await start()
        announce_ready(args.port)
        publisher = asyncio.create_task(publish_loop(ctl, publish, args))
        await wait_for_phase(ctl, Phase.STOP, interval=0.05)
        await publisher
        await stop()
    finally:
        ctl.close()


def run(
    start: Callable[[], Awaitable[None]],
    publish: Publish,
    stop: Callable[[], Awaitable[None]],
    args: argparse.Namespace,
) -> None:
    """Serve until the driver says STOP, or `--max-seconds` pass, whichever is first."""
    raise_fd_limit()

    async def bounded() -> None:
        try:
            await asyncio.wait_for(_serve(start, publish, stop, args), args.max_seconds)
        except TimeoutError:
            print("server: lifetime bound reached, exiting", file=sys.stderr, flush=True)

    asyncio.run(bounded())
