"""Attack c, big snapshots and replays: more than fits in a connection's outbox at once.

The gateway delivers snapshots and replays in 64 KiB chunks under flow control (the next
chunk only once the transport took the last, src/tidewire/core/feeds.py), so neither is
bounded by `max_outbox_bytes`. Documented outcomes: `big_snapshot`, an unfiltered subscriber
to a stream with tens of thousands of instruments, gets its whole snapshot without 4008;
`stalled_snapshot`, subscribers to a huge snapshot that never read, are cut with 4008 after
`stall_timeout` while memory stays bounded and readers are served; `long_absence`, a client
away for a long stretch of reliable messages, recovers exactly (`recovered: true`, every
seq once).
"""

from __future__ import annotations

import asyncio
import os
import time

from websockets.exceptions import ConnectionClosed

from bench.attacks.clients import (
    TIMEOUT,
    AttackResult,
    Publisher,
    RawClient,
    Target,
    WsSession,
    stats,
    until,
)
from bench.attacks.messages import order_message, publish_instruments


async def big_snapshot(target: Target, instruments: int, publish: bool = True) -> AttackResult:
    """An unfiltered subscriber to market_data holding `instruments` symbols: how much of
    its snapshot arrived before it was closed (expected: all of it, never closed)."""
    if publish:
        await publish_instruments(target, instruments)
    result = AttackResult("big_snapshot")
    session = await WsSession.open(target)
    started = time.perf_counter()
    symbols: set[str] = set()
    try:
        confirmed = await session.subscribe("market_data")
        if confirmed["type"] != "subscription_confirmed":
            result.counts.update(refused=confirmed, snapshot_messages=0)
            return result
        position = int(confirmed["position"]["seq"])
        async with asyncio.timeout(TIMEOUT + instruments / 2000):
            while len(symbols) < instruments:
                message = await session.recv(timeout=TIMEOUT)
                if message.get("stream") == "market_data" and message["seq"] <= position:
                    symbols.add(message["symbol"])
    except ConnectionClosed:
        result.close_code = session.ws.close_code
    except TimeoutError:
        result.counts["timed_out"] = True
    finally:
        await session.close()
    result.seconds_to_cut = time.perf_counter() - started
    result.counts["snapshot_messages"] = len(symbols)
    return result


async def stalled_snapshot(
    target: Target,
    keys: int,
    stallers: int = 10,
    readers: int = 1,
    publish: bool = True,
    rcvbuf: int = 4096,
    cut_timeout: float = 60.0,
) -> AttackResult:
    """`stallers` sockets subscribe unfiltered to market_data (a `keys`-key snapshot) and
    never read; `readers` subscribe too and read the whole snapshot. The stallers' close
    codes (expected 4008 each) once /api/stats counts them cut, readers' snapshot sizes."""
    if publish:
        await publish_instruments(target, keys)
    result = AttackResult("stalled_snapshot")
    before = int((await stats(target))["slow_consumer_closes"])
    held: list[RawClient] = []
    started = time.perf_counter()
    for _ in range(stallers):
        client = await RawClient.open(target, rcvbuf=rcvbuf, limit=1024)
        client.send_json({"type": "subscribe", "stream": "market_data"})
        held.append(client)
    reader_runs = [big_snapshot(target, keys, publish=False) for _ in range(readers)]
    read = await asyncio.gather(*reader_runs)
    result.counts["reader_snapshot_messages"] = [r.counts["snapshot_messages"] for r in read]
    result.counts["reader_close_codes"] = [r.close_code for r in read]

    async def all_cut() -> bool:
        return int((await stats(target))["slow_consumer_closes"]) - before >= stallers

    try:
        await until(all_cut, f"{stallers} stalled clients were cut", cut_timeout)
    except TimeoutError:
        result.counts["not_cut"] = True
    result.seconds_to_cut = time.perf_counter() - started
    # What the kernel still holds for each non-reader, up to its close frame.
    codes = await asyncio.gather(*(c.close_code(timeout=TIMEOUT) for c in held))
    for client in held:
        client.abort()
    result.counts["staller_close_codes"] = list(codes)
    result.close_code = codes[0] if codes else None
    result.counts["slow_consumer_closes"] = (
        int((await stats(target))["slow_consumer_closes"]) - before
    )
    return result


async def long_absence(target: Target, messages: int) -> AttackResult:
    """A client subscribed to order_updates goes away while `messages` are published, then
    resubscribes with `since`: recovered?, and whether it got every seq exactly once."""
    run = os.urandom(4).hex()
    result = AttackResult("long_absence")
    publisher = Publisher(target.http_url)
    try:
        first = await WsSession.open(target)
        confirmed = await first.subscribe("order_updates", snapshot=False)
        position = confirmed["position"]
        await first.close()
        await publisher.publish_many([order_message(n, run) for n in range(messages)])
        back = await WsSession.open(target)
        resumed = await back.subscribe(
            "order_updates", since={"epoch": position["epoch"], "seq": position["seq"]}
        )
        result.counts["confirmed"] = resumed.get("type")
        result.counts["recovered"] = resumed.get("recovered")
        expected = list(range(int(position["seq"]) + 1, int(position["seq"]) + messages + 1))
        seqs: list[int] = []
        try:
            async with asyncio.timeout(TIMEOUT + messages / 2000):
                while len(seqs) < messages:
                    message = await back.recv()
                    if message.get("stream") == "order_updates":
                        seqs.append(int(message["seq"]))
        except ConnectionClosed:
            result.close_code = back.ws.close_code
        except TimeoutError:
            result.counts["timed_out"] = True
        result.counts["received"] = len(seqs)
        result.counts["exact"] = seqs == expected
        await back.close()
        return result
    finally:
        await publisher.close()
