"""Alternative load generator client: picows connections on one asyncio loop.

picows parses frames in C and calls one Python method per frame. Kept as a cross-check of
the raw client's counting (`--client picows`); it costs more per delivery when servers send
one frame per TCP segment, because asyncio handles every readiness event in Python.
"""

from __future__ import annotations

import asyncio
import time

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.clients.common import CONFIRMED, SUBSCRIBE, TS, Outcome, Totals
from bench.control import ControlBlock, Field, Phase, poll

CONNECT_CONCURRENCY = 100  # below every server's listen backlog, so no SYN is dropped
CONNECT_ATTEMPTS = 3


class Client(WSListener):
    def __init__(self, totals: Totals, confirmed: asyncio.Future[None], mask: int) -> None:
        self.totals = totals
        self.confirmed = confirmed
        self.mask = mask
        self.live = False
        self.count = 0
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, SUBSCRIBE)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.live:  # the hot path: a few attribute operations per frame
            self.count += 1
            totals = self.totals
            totals.received += 1
            if not self.count & self.mask and totals.measuring:
                at = time.time_ns()  # first: latency ends at receipt, not after parsing
                payload = frame.get_payload_as_bytes()
                totals.bytes += len(payload)
                totals.bytes_frames += 1
                match = TS.search(payload)
                if match is not None:
                    totals.add_sample(at - int(match.group(1)))
            return
        if frame.msg_type is WSMsgType.CLOSE:
            transport.disconnect()
        elif CONFIRMED in frame.get_payload_as_bytes():
            self.live = True
            if not self.confirmed.done():
                self.confirmed.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.confirmed.done():
            self.confirmed.set_exception(ConnectionError("disconnected before confirmation"))


class PicowsClients:
    def __init__(self, url: str, ctl: ControlBlock, totals: Totals, sample_every: int) -> None:
        self.url = url
        self.ctl = ctl
        self.totals = totals
        self.mask = sample_every - 1
        self.clients: list[Client] = []
        self.errors: list[str] = []

    async def _connect_one(self, gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        async with gate:
            for attempt in range(CONNECT_ATTEMPTS):
                confirmed: asyncio.Future[None] = loop.create_future()
                try:
                    _, client = await ws_connect(
                        lambda f=confirmed: Client(self.totals, f, self.mask), self.url
                    )
                    await asyncio.wait_for(confirmed, 10.0)
                    assert isinstance(client, Client)
                    self.clients.append(client)
                    return
                except Exception as exc:  # any failure to connect is retried, then reported
                    if attempt == CONNECT_ATTEMPTS - 1:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.1 * (attempt + 1))

    async def open(self, count: int) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        await asyncio.gather(*(self._connect_one(gate) for _ in range(count)))

    async def report_until_stop(self) -> None:
        """Every millisecond: publish the received count, follow the phase."""
        ctl, totals = self.ctl, self.totals
        while True:
            ctl.set(Field.RECEIVED, totals.received)
            phase = ctl.get(Field.PHASE)
            totals.measuring = phase == Phase.MEASURE
            if phase >= Phase.STOP:
                return
            await asyncio.sleep(0.001)

    def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.disconnect(graceful=False)


async def _run(
    url: str, ctl: ControlBlock, totals: Totals, connections: int, first: int, sample_every: int
) -> Outcome:
    clients = PicowsClients(url, ctl, totals, sample_every)
    started = time.perf_counter()
    try:
        stages = [first, connections - first] if 0 < first < connections else [connections]
        for index, count in enumerate(stages):
            if index:
                await poll(lambda: ctl.phase >= Phase.STOP or ctl.get(Field.PROCEED) != 0)
            await clients.open(count)
            ctl.set(Field.SUBSCRIBED, len(clients.clients))
            ctl.set(Field.STAGES, index + 1)
        connect_seconds = time.perf_counter() - started
        await clients.report_until_stop()
        return Outcome(
            len(clients.clients),
            [client.count for client in clients.clients],
            connect_seconds,
            clients.errors,
        )
    finally:
        clients.close()
        await asyncio.sleep(0)


def run(
    url: str, ctl: ControlBlock, totals: Totals, connections: int, first: int, sample_every: int
) -> Outcome:
    return asyncio.run(_run(url, ctl, totals, connections, first, sample_every))
