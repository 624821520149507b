"""State changes: handlers called with (previous, current), waiters woken, failures logged."""

from __future__ import annotations

import asyncio
import logging

from tidewire.client.state import ConnectionState, StateTracker

TIMEOUT = 2.0


async def test_handlers_get_previous_and_current() -> None:
    tracker = StateTracker()
    seen: list[tuple[ConnectionState, ConnectionState]] = []
    tracker.handlers.append(lambda old, new: seen.append((old, new)))
    tracker.set(ConnectionState.CONNECTING)
    tracker.set(ConnectionState.CONNECTING)  # unchanged: nobody is told
    tracker.set(ConnectionState.CONNECTED)
    assert seen == [
        (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING),
        (ConnectionState.CONNECTING, ConnectionState.CONNECTED),
    ]


async def test_coroutine_handlers_run_as_tasks() -> None:
    tracker = StateTracker()
    done = asyncio.Event()

    async def handler(old: ConnectionState, new: ConnectionState) -> None:
        if new is ConnectionState.CLOSED:
            done.set()

    tracker.handlers.append(handler)
    tracker.set(ConnectionState.CLOSED)
    await asyncio.wait_for(done.wait(), TIMEOUT)


class _Records(logging.Handler):
    """Collects log records and wakes a waiter for each."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    async def wait_for(self, text: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not any(text in str(r.exc_info and r.exc_info[1]) for r in self.records):
                self.arrived.clear()
                await self.arrived.wait()


async def test_failing_handlers_are_logged_not_raised() -> None:
    tracker = StateTracker()

    def broken(old: ConnectionState, new: ConnectionState) -> None:
        raise RuntimeError("sync boom")

    async def broken_async(old: ConnectionState, new: ConnectionState) -> None:
        raise RuntimeError("async boom")

    tracker.handlers.extend([broken, broken_async])
    records = _Records()
    logger = logging.getLogger("tidewire.client")
    logger.addHandler(records)
    try:
        tracker.set(ConnectionState.CONNECTING)
        await records.wait_for("sync boom")
        await records.wait_for("async boom")
    finally:
        logger.removeHandler(records)
    assert tracker.state is ConnectionState.CONNECTING


async def test_changed_wakes_every_waiter() -> None:
    tracker = StateTracker()
    ready = [asyncio.Event() for _ in range(3)]

    async def waiter(started: asyncio.Event) -> None:
        started.set()
        await tracker.changed()  # takes the current event before yielding

    waiters = [asyncio.create_task(waiter(started)) for started in ready]
    await asyncio.wait_for(asyncio.gather(*(started.wait() for started in ready)), TIMEOUT)
    tracker.set(ConnectionState.CONNECTING)
    await asyncio.wait_for(asyncio.gather(*waiters), TIMEOUT)
