"""Commands waiting for a connection: a bounded FIFO that refuses rather than drops."""

from __future__ import annotations

from collections import deque
from typing import Any

from tidewire.client.errors import QueueFull


class OutboundQueue:
    """Commands sent while disconnected, flushed in order once connected again.

    `put` raises `QueueFull` when `maxsize` commands are waiting: dropping the oldest would
    lose a command the caller believes was sent, and the caller is the only one who knows
    which commands can be given up.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must not be negative")
        self.maxsize = maxsize
        """Most commands that may wait; 0 refuses every command sent while disconnected."""
        self._items: deque[dict[str, Any]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: dict[str, Any]) -> None:
        """Queue `message` last. Raises QueueFull when `maxsize` commands are waiting."""
        if len(self._items) >= self.maxsize:
            raise QueueFull(
                f"{len(self._items)} commands are already waiting for a connection "
                f"(message_queue_size={self.maxsize}); command refused"
            )
        self._items.append(message)

    def popleft(self) -> dict[str, Any] | None:
        """The oldest waiting command, or None when nothing waits."""
        return self._items.popleft() if self._items else None

    def requeue(self, message: dict[str, Any]) -> None:
        """Put back a command taken by `popleft` whose sending failed; it goes first again.

        Not bounded: the command held a place in the queue a moment ago.
        """
        self._items.appendleft(message)

    def remove(self, message: dict[str, Any]) -> bool:
        """Withdraw a waiting command (by identity); False when it is no longer queued."""
        for index, item in enumerate(self._items):
            if item is message:
                del self._items[index]
                return True
        return False

    def clear(self) -> None:
        """Forget every waiting command."""
        self._items.clear()
