"""The built-in market simulator: runs a `MarketModel` in real time and publishes its messages.

The rules (prices, orders, fills, positions, P&L, alerts) live in
`tidewire.sources.market_model` and the modules it uses (`instruments`, `accounting`,
`status`), which are pure and tested by stepping. This module is the thin
asyncio edge: it paces the model with the event loop's clock, turns each raw message into a
`DataMessage` with `build_data_message` (so the simulator is validated exactly like any other
producer) and awaits `publish` for it, normally `Broker.publish`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tidewire.brokers.base import BrokerUnavailable
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.streams import STREAMS
from tidewire.sources.market_model import MarketModel

__all__ = ["SOURCE", "MarketModel", "MarketSimulator", "Publish"]

SOURCE = "simulator"
"""`source` of every simulated message (and the key of its `events` messages)."""

Publish = Callable[[DataMessage], Awaitable[object]]
"""Where messages go: `Broker.publish`, or anything with its signature."""

log = logging.getLogger(__name__)


class MarketSimulator:
    """Publishes the simulated market, portfolios and engine in real time until stopped.

    Every `tick` seconds it advances the model by the time that really passed (at most
    `max_step`, so a stalled loop does not cause a burst) and publishes what the model
    produced, in order, one `await publish(message)` at a time.
    """

    def __init__(
        self,
        publish: Publish,
        *,
        rate: float = 20.0,
        seed: int | None = None,
        symbols: int = 20,
        orders_per_second: float = 2.0,
        tick: float = 0.05,
        max_step: float = 1.0,
        clock: Callable[[], float] = time.time,
        source: str = SOURCE,
    ) -> None:
        """Create a simulator; nothing runs before `start` (or `run`).

        `rate`: quotes per second per symbol (`GatewaySettings.simulator_rate`); about a
        quarter as many trade ticks come on top. `seed`: makes the message content
        reproducible. `symbols`: number of instruments. `orders_per_second`: new orders across
        all strategies. `tick`: seconds between steps. `clock`: wall clock for timestamps.
        """
        if rate <= 0 or tick <= 0 or max_step <= 0:
            raise ValueError("rate, tick and max_step must be positive")
        self.model = MarketModel(
            seed,
            symbols=symbols,
            quotes_per_second=rate * symbols,
            orders_per_second=orders_per_second,
            clock=clock,
        )
        """The pure model being run; read-only for callers."""
        self.messages_published: dict[str, int] = dict.fromkeys(STREAMS, 0)
        """Messages published so far, per stream (for metrics)."""
        self.messages_dropped = 0
        """Messages not published because the broker was unavailable."""
        self._publish = publish
        self._tick = tick
        self._max_step = max_step
        self._source = source
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def running(self) -> bool:
        """Whether the task started by `start` is alive."""
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        """Step and publish forever (until cancelled). Errors other than an unavailable
        broker are bugs and end the run."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        dt = 0.0  # the first step announces the start and publishes the initial state
        while True:
            await self._publish_all(self.model.step(dt))
            await asyncio.sleep(self._tick)
            now = loop.time()
            dt, last = min(now - last, self._max_step), now

    def start(self) -> asyncio.Task[None]:
        """Run in a background task of the running loop; returns it (the same one if running)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="simulator")
            self._task.add_done_callback(_log_crash)
        return self._task

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end.

        Raises the exception the task died of, if it died of one before being stopped.
        """
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # asyncio.wait does not raise the task's CancelledError, while a cancellation of
        # stop() itself still propagates.
        await asyncio.wait([task])
        if not task.cancelled():
            task.result()

    async def _publish_all(self, raws: Sequence[dict[str, Any]]) -> None:
        for index, raw in enumerate(raws):
            message = build_data_message(raw, default_source=self._source)
            try:
                await self._publish(message)
            except BrokerUnavailable as exc:
                # The broker published nothing; drop the rest of this step too (it would fail
                # the same way) and keep simulating, so publishing resumes when it is back.
                self.messages_dropped += len(raws) - index
                if not self._failing:
                    log.warning("simulator: broker unavailable, dropping messages: %s", exc)
                self._failing = True
                return
            if self._failing:
                log.info("simulator: broker available again")
                self._failing = False
            self.messages_published[message.stream] += 1


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("simulator stopped by an error", exc_info=task.exception())
