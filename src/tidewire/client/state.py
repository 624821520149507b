"""The connection states of a `TidewireClient`, and who is told when they change."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("tidewire.client")


class ConnectionState(enum.Enum):
    """Where a client's connection stands.

    `DISCONNECTED` -> `CONNECTING` -> `CONNECTED` on the first connect; a lost connection goes
    to `RECONNECTING` (while waiting out the backoff and while every reconnection attempt
    runs) and back to `CONNECTED`. `CLOSED` is final for one run: the client was closed, the
    server closed it with a code that forbids reconnecting, or reconnection gave up. A closed
    client can be started again with `connect()`.
    """

    DISCONNECTED = "disconnected"
    """Not started yet: commands sent now are queued until the first connection."""
    CONNECTING = "connecting"
    """The first connection attempt of a run is in progress."""
    CONNECTED = "connected"
    """Open, `connection_established` received, subscriptions re-sent, queue flushed."""
    RECONNECTING = "reconnecting"
    """The connection was lost (or the first attempt failed); retrying with backoff."""
    CLOSED = "closed"
    """Stopped: see `TidewireClient.last_error` for why, when it was not `close()`."""


StateHandler = Callable[[ConnectionState, ConnectionState], Awaitable[None] | None]
"""`fn(previous, current)`, called on every state change; may be a coroutine function."""


class StateTracker:
    """The current state, its change handlers, and waiting for a change."""

    def __init__(self) -> None:
        self.state = ConnectionState.DISCONNECTED
        self.handlers: list[StateHandler] = []
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    def set(self, state: ConnectionState) -> None:
        """Change the state, wake waiters and call the handlers (no-op when unchanged)."""
        previous = self.state
        if state is previous:
            return
        self.state = state
        # Wake every waiter, then give later waiters a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()
        logger.debug("state %s -> %s", previous.value, state.value)
        for handler in list(self.handlers):
            try:
                result = handler(previous, state)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._background.add(task)
                    task.add_done_callback(self._handler_done)
            except Exception:
                logger.exception("state handler %r failed", handler)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("state handler failed", exc_info=task.exception())

    async def changed(self) -> None:
        """Return at the next state change."""
        await self._changed.wait()
