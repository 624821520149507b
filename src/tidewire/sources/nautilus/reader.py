"""The Redis edge of the Nautilus source: find streams, read entries, keep positions.

Thin by design (the rules live in `feed`): it discovers stream keys (exact keys, and glob
patterns matched with `SCAN ... TYPE stream`), reads new entries of all of them with one
blocking XREAD, re-reads older ones with XRANGE for the warm-up, and stores the last entry
id processed per stream in a Redis hash. Entries of several streams are handed over in
entry-id order (`entries.merge_by_id`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis

from tidewire.sources.nautilus.config import NautilusConfig, is_pattern
from tidewire.sources.nautilus.entries import entry_id_key, merge_by_id

__all__ = ["RawEntry", "StreamReader"]

RawEntry = tuple[str, str, Any]
"""(stream key, entry id, fields) as read from Redis."""
_START = "0-0"
CALL_TIMEOUT = 10.0
"""Seconds any Redis call may take (beyond an XREAD's block time) before the connection is
considered dead. The client has no socket_timeout: redis-py then wraps every write in
`asyncio.wait_for`, which on Python 3.11 can swallow a cancellation (CPython gh-86296), so
stopping the source could hang; `asyncio.timeout` around each call bounds it instead."""
_T = TypeVar("_T")


async def call(awaitable: Awaitable[_T], extra: float = 0.0) -> _T:
    """Await one Redis call, at most CALL_TIMEOUT (+ `extra`) seconds: TimeoutError after."""
    async with asyncio.timeout(CALL_TIMEOUT + extra):
        return await awaitable


class StreamReader:
    """Reads the configured Nautilus streams of one Redis connection."""

    def __init__(self, client: aioredis.Redis, config: NautilusConfig) -> None:
        self.client = client
        self.config = config
        self.positions: dict[str, str] = {}
        """Last entry id processed (or to start after) per stream key being read."""
        self._dirty: dict[str, str] = {}
        self.not_streams: set[str] = set()
        """Configured keys that hold something else than a stream (never read)."""

    async def clock_offset(self) -> float:
        """Redis's clock minus ours, in seconds (entry ids are Redis's clock)."""
        before = time.time()
        seconds, micros = await call(self.client.time())
        after = time.time()
        return float(seconds) + micros / 1e6 - (before + after) / 2

    async def stored_positions(self) -> dict[str, str]:
        """The positions a previous run stored (empty without an offsets key)."""
        if self.config.offsets_key is None:
            return {}
        raw = await call(self.client.hgetall(self.config.offsets_key))
        return {_str(key): _str(value) for key, value in raw.items()}

    async def discover(self) -> list[str]:
        """Stream keys matching the configuration that are not being read yet."""
        found: dict[str, None] = {}
        for configured in self.config.streams:
            if not is_pattern(configured):
                if configured in self.positions or configured in self.not_streams:
                    continue
                # A key that does not exist yet is followed (XREAD waits for it); one of
                # another type would fail every XREAD, so it is left out (and reported).
                kind = _str(await call(self.client.type(configured)))
                if kind in ("stream", "none"):
                    found.setdefault(configured)
                else:
                    self.not_streams.add(configured)
                continue
            cursor: Any = 0
            while True:
                cursor, keys = await call(
                    self.client.scan(cursor, match=configured, count=1000, _type="stream")
                )
                found.update((_str(key), None) for key in keys)
                if not cursor:
                    break
        return [key for key in found if key not in self.positions]

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry of `stream` (`0-0` when empty or missing)."""
        newest = await call(self.client.xrevrange(stream, "+", "-", count=1))
        return _str(newest[0][0]) if newest else _START

    async def first_id(self, stream: str) -> str | None:
        """Id of the oldest entry still in `stream` (None when empty or missing)."""
        oldest = await call(self.client.xrange(stream, "-", "+", count=1))
        return _str(oldest[0][0]) if oldest else None

    def follow(self, stream: str, after: str = _START) -> None:
        """Read `stream` from the entry after `after` on."""
        self.positions[stream] = after

    async def read(self) -> list[RawEntry]:
        """New entries of every followed stream, in entry-id order across streams; waits up
        to block_ms."""
        if not self.positions:  # nothing to read yet: wait like an XREAD would
            await asyncio.sleep(self.config.block_ms / 1000)
            return []
        streams: dict[Any, Any] = dict(self.positions)
        reply = await call(
            self.client.xread(streams, count=self.config.batch_size, block=self.config.block_ms),
            extra=self.config.block_ms / 1000,
        )
        batches = list(_per_stream(reply))
        merged = merge_by_id(batches)
        # A stream that returned a full batch may hold more entries older than what other
        # streams returned: hand out only what is older than its last one; the rest is read
        # again next time (positions advance only for what was handed out).
        full = [entries[-1][0] for _, entries in batches if len(entries) >= self.config.batch_size]
        if full:
            horizon = min(entry_id_key(entry_id) for entry_id in full)
            merged = [entry for entry in merged if entry_id_key(entry[1]) <= horizon]
        return merged

    def processed(self, stream: str, entry_id: str) -> None:
        """`entry_id` of `stream` is handled: never read again, stored at the next `save`."""
        self.positions[stream] = entry_id
        self._dirty[stream] = entry_id

    async def save(self) -> None:
        """Store the positions advanced since the last save (one HSET)."""
        if self.config.offsets_key is None or not self._dirty:
            self._dirty.clear()
            return
        dirty, self._dirty = self._dirty, {}
        try:
            await call(self.client.hset(self.config.offsets_key, mapping=dict[Any, Any](dirty)))
        except BaseException:
            dirty.update(self._dirty)
            self._dirty = dirty
            raise

    async def history(self, ends: dict[str, str]) -> AsyncIterator[RawEntry]:
        """Entries from the start of each stream up to its end id (inclusive), merged in
        entry-id order, fetched batch_size at a time per stream."""
        cursors = {stream: "-" for stream, end in ends.items() if end != _START}
        buffers: dict[str, list[tuple[str, Any]]] = {stream: [] for stream in cursors}
        while cursors or any(buffers.values()):
            for stream in list(cursors):
                if buffers[stream]:
                    continue
                batch = await call(
                    self.client.xrange(
                        stream, cursors[stream], ends[stream], count=self.config.batch_size
                    )
                )
                entries = [(_str(entry_id), fields) for entry_id, fields in batch or []]
                buffers[stream] = entries[::-1]  # pop() from the end is O(1)
                if len(entries) < self.config.batch_size:
                    del cursors[stream]
                else:
                    cursors[stream] = "(" + entries[-1][0]
            heads = [(entry_id_key(b[-1][0]), s) for s, b in buffers.items() if b]
            if not heads:
                break
            # Hand out entries while no stream's buffer has run dry (its next batch might
            # hold smaller ids than the other streams' heads).
            while heads:
                _, stream = min(heads)
                entry_id, fields = buffers[stream].pop()
                yield stream, entry_id, fields
                if not buffers[stream] and stream in cursors:
                    break
                heads = [(entry_id_key(b[-1][0]), s) for s, b in buffers.items() if b]


def _per_stream(reply: Any) -> Iterable[tuple[str, Sequence[tuple[str, Any]]]]:
    """XREAD's reply (RESP2 list or RESP3 dict) as (stream, [(id, fields), ...])."""
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    for stream, entries in items:
        if isinstance(entries, list) and entries and isinstance(entries[0], list):
            entries = entries[0]  # RESP3 wraps each stream's entries once more
        yield _str(stream), [(_str(entry_id), fields) for entry_id, fields in entries]


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
