"""A tiny shared-memory control block between the driver, a server and the load generator.

Why shared memory: the publisher inside each server must not outrun delivery, and the only
party that knows what was delivered is the load generator. Reading an mmap'd integer costs
about as much as reading an attribute, so the same flow control works for every server
without touching its sockets, and it costs the measured process nothing measurable.

Each field has exactly one writer (8-byte aligned stores, so readers never see a torn value).
"""

from __future__ import annotations

import asyncio
import enum
import mmap
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

_FIELD = struct.Struct("<q")


class Phase(enum.IntEnum):
    """Run phases, written by the driver only."""

    SETUP = 0
    """Connections are being opened; servers do not publish."""
    PUBLISH = 1
    """Publish (warm-up)."""
    MEASURE = 2
    """Publish; the load generator records latency samples."""
    STOP = 3
    """Everyone stops: the server and the load generator exit."""


class Field(enum.IntEnum):
    """Slot of each counter; the comment names its only writer."""

    PHASE = 0  # driver
    RECEIVED = 1  # loadgen: data frames received, all connections together
    SUBSCRIBED = 2  # loadgen: connections that got subscription_confirmed
    PUBLISHED = 3  # server: messages published (each goes to every subscriber)
    STALLS = 4  # server: times the flow control gave up waiting (conflation or loss)
    PROCEED = 5  # driver: idle_memory's signal to open the remaining connections
    STAGES = 6  # loadgen: connection stages finished (1 after the first batch, 2 after all)
    BLOCKED_US = 7  # server: microseconds the publisher waited for the readers (flow control)


_SIZE = _FIELD.size * len(Field)


class ControlBlock:
    """Fixed-size array of int64 counters in a file mapped by every process of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)

    @classmethod
    def create(cls) -> ControlBlock:
        """A fresh zeroed block in /dev/shm when present (no disk writes), else the temp dir."""
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, name = tempfile.mkstemp(prefix="tidewire-bench-", dir=directory)
        try:
            os.write(fd, b"\0" * _SIZE)
        finally:
            os.close(fd)
        return cls(Path(name))

    def get(self, field: Field) -> int:
        value: int = _FIELD.unpack_from(self._map, field * _FIELD.size)[0]
        return value

    def set(self, field: Field, value: int) -> None:
        _FIELD.pack_into(self._map, field * _FIELD.size, value)

    @property
    def phase(self) -> Phase:
        return Phase(self.get(Field.PHASE))

    @phase.setter
    def phase(self, value: Phase) -> None:
        self.set(Field.PHASE, value)

    def close(self) -> None:
        self._map.close()

    def unlink(self) -> None:
        """Remove the backing file (driver only, once its children have exited)."""
        self.close()
        self.path.unlink(missing_ok=True)


async def poll(condition: Callable[[], bool], interval: float = 0.01) -> None:
    """Wait until `condition()` holds, checking every `interval` seconds.

    Polling, not an asyncio.Event: the condition lives in another process's writes to
    shared memory (or in a library's attribute), which nothing can signal.
    """
    while not condition():  # noqa: ASYNC110 - see docstring
        await asyncio.sleep(interval)
