"""The Nautilus source: reads NautilusTrader's message bus from Redis and publishes it.

`NautilusSource(publish, config)` has the simulator's shape (`start()` / `stop()`, or
`await run()`). One task loops: connect, warm up (first connection only), then read, map,
publish, store positions. `StreamReader` does the Redis I/O and `NautilusFeed` decides what
each entry becomes; this module only sequences them and handles failure:

* Redis unreachable: every known trader's `engine_status` turns `down` (message "Redis
  unreachable: ..."), the source retries with jittered exponential backoff
  (`reconnect_min` .. `reconnect_max`) and carries on from its in-memory positions.
* Broker unavailable: the message is retried until published (with the same backoff);
  nothing is skipped, the positions do not advance meanwhile.
* An entry that does not decode (or that the feed fails on) or a message the protocol
  refuses: counted, logged at most once a minute per stream, skipped.
* Any other failure: logged, counted (`restarts`), and the session starts over after the
  same backoff from the in-memory positions; `failing` says so until a batch goes through.

Resume after a restart: positions are stored in Redis (`offsets_key`) after each batch, so
a restarted gateway reads on after the last entry it processed. With the in-memory broker a
restart starts a new epoch anyway (clients get `recovered: false` and the snapshots); not
re-publishing old entries keeps the new epoch's history to what happened after the restart,
and the warm-up restates the latest values so the snapshots are complete (see `feed`).
Delivery from Redis to the broker is at least once: a crash between publishing and storing
re-reads at most one batch, whose deterministic message ids make it a duplicate to a broker
that still remembers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tidewire.brokers.base import BrokerUnavailable
from tidewire.protocol.errors import ProtocolError
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.sources.nautilus.config import NautilusConfig
from tidewire.sources.nautilus.entries import EntryError, decode_entry, entry_id_key
from tidewire.sources.nautilus.feed import NautilusFeed
from tidewire.sources.nautilus.mapping import Raw
from tidewire.sources.nautilus.reader import StreamReader

__all__ = ["NautilusSource", "Publish"]

Publish = Callable[[DataMessage], Awaitable[object]]
log = logging.getLogger(__name__)
SCAN_BUDGET = 50
WARN_INTERVAL = 60.0
"""Seconds between two warnings about bad entries of the same stream."""
"""The next scan for new streams waits at least this many times the last one's duration."""


class NautilusSource:
    """Publishes a NautilusTrader node's message bus (from Redis Streams) until stopped."""

    def __init__(
        self,
        publish: Publish,
        config: NautilusConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or NautilusConfig()
        self.feed = NautilusFeed(self.config.feed_options())
        """The pure part (mapping, liveness, warm-up); read-only for callers."""
        self.connected = False
        """Whether the last Redis operation succeeded."""
        self.warmed_up = False
        self.counters: dict[str, int] = {
            "entries": 0,
            "published": 0,
            "duplicates": 0,
            "bad_entries": 0,
            "invalid_messages": 0,
            "reconnects": 0,
            "trimmed_gaps": 0,
            "restarts": 0,
        }
        self.failing: str | None = None
        """Why the source is restarting after an unexpected error; None while it works."""
        self._warned: dict[str, float] = {}
        self.last_error: str | None = None
        self._publish = publish
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._reader: StreamReader | None = None
        self._stored: dict[str, str] | None = None
        self._discovered_at = float("-inf")
        self._discover_every = self.config.discover_interval
        self._reported_not_streams: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def positions(self) -> dict[str, str]:
        """Last entry id processed per stream."""
        return dict(self._reader.positions) if self._reader is not None else {}

    def stats(self) -> dict[str, Any]:
        """Counters for /api/stats (no URL: it may hold a password)."""
        mapper = self.feed.mapper
        return {
            "connected": self.connected,
            "warmed_up": self.warmed_up,
            "streams": len(self.positions),
            **self.counters,
            "duplicate_events": mapper.duplicate_events + mapper.duplicate_fills,
            "unknown_order_events": mapper.orders.unknown_events,
            "ignored_types": dict(mapper.ignored),
            "engines": {
                engine: report.status
                for engine, liveness in self.feed.liveness.items()
                if (report := liveness.current(self._clock())) is not None
            },
            "last_error": self.last_error,
            "failing": self.failing,
        }

    def start(self) -> asyncio.Task[None]:
        """Run in a background task of the running loop; returns it (the same one if running)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="nautilus")
            self._task.add_done_callback(_log_crash)
        return self._task

    async def stop(self) -> None:
        """Cancel the task and wait for it; raises what it died of, if it died before."""
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():  # a library may swallow one cancellation: insist
            task.cancel()
            await asyncio.wait([task], timeout=1.0)
        if not task.cancelled():
            task.result()

    async def run(self) -> None:
        """Connect, read and publish forever, reconnecting with backoff (until cancelled)."""
        delay = self.config.reconnect_min
        while True:
            client = aioredis.Redis.from_url(
                self.config.url,
                socket_connect_timeout=5.0,
                socket_timeout=None,  # see reader.CALL_TIMEOUT
            )
            reason: str | None
            try:
                await self._session(client)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                _raise_if_cancelling(exc)
                reason = f"{self.config.url}: {exc}"
            except RedisError as exc:
                _raise_if_cancelling(exc)
                log.error("nautilus: Redis error, reconnecting: %s", exc)
                reason = f"{self.config.url}: {exc}"
            except Exception as exc:
                # A bug or data nobody foresaw must not stop the source for good.
                _raise_if_cancelling(exc)
                reason = None
                if self.failing is None:  # it had recovered since: retry quickly
                    delay = self.config.reconnect_min
                self.failing = f"{type(exc).__name__}: {exc}"
                self.counters["restarts"] += 1
                log.error("nautilus: reader failed, restarting in ~%.1f s", delay, exc_info=exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            if reason is not None:
                if self.connected:  # it worked until now: the first retry comes quickly
                    delay = self.config.reconnect_min
                await self._lost(reason)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.config.reconnect_max)

    # ------------------------------------------------------------------ one connection

    async def _session(self, client: aioredis.Redis) -> NoReturn:
        previous = self._reader
        reader = StreamReader(client, self.config)
        if previous is not None and self.warmed_up:  # else the warm-up starts over
            reader.positions.update(previous.positions)
        self.feed.clock_offset = await reader.clock_offset()
        self._reader = reader
        if not self.connected:
            if previous is not None:
                self.counters["reconnects"] += 1
                log.info("nautilus: Redis %s reachable again", self.config.url)
            self.connected = True
            self.last_error = None
            await self._send(self.feed.reachable(self._clock()))
        if not self.warmed_up:
            await self._warm_up(reader)
            self.warmed_up = True
        while True:
            await self._discover(reader)
            batch = await reader.read()
            for stream, entry_id, fields in batch:
                await self._entry(stream, entry_id, fields)
                reader.processed(stream, entry_id)
            await self._send(self.feed.tick(self._clock()))
            await reader.save()
            if self.failing is not None:
                log.info("nautilus: reader back after: %s", self.failing)
                self.failing = None

    async def _warm_up(self, reader: StreamReader) -> None:
        """Find the streams and where to start in each; replay history up to there."""
        stored = await reader.stored_positions()
        self._stored = stored
        streams = await reader.discover()
        ends: dict[str, str] = {}
        for stream in streams:
            start = stored.get(stream)
            if start is not None and start != "0-0":
                oldest = await reader.first_id(stream)
                if oldest is not None and entry_id_key(oldest) > entry_id_key(start):
                    # Trimmed (autotrim_mins, MAXLEN) while we were away: entries lost.
                    self.counters["trimmed_gaps"] += 1
                    log.warning(
                        "nautilus: %s was trimmed past the stored position %s (oldest "
                        "entry %s): entries in between were never published",
                        stream,
                        start,
                        oldest,
                    )
            if start is None and self.config.start_from == "latest":
                start = await reader.last_id(stream)
            reader.follow(stream, start or "0-0")
            if start is not None:
                ends[stream] = start
        self._discovered_at = time.monotonic()
        if self.config.warmup and ends:
            replayed = 0
            async for stream, entry_id, fields in reader.history(ends):
                await self._entry(stream, entry_id, fields, warming=True)
                replayed += 1
            log.info("nautilus: warmed up on %d entries of %d streams", replayed, len(ends))
        await self._send(self.feed.end_warmup(self._clock()))
        log.info("nautilus: reading %d streams from %s", len(reader.positions), self.config.url)

    async def _discover(self, reader: StreamReader) -> None:
        started = time.monotonic()
        if started - self._discovered_at < self._discover_every:
            return
        found = await reader.discover()
        self._discovered_at = time.monotonic()
        # SCAN walks the whole keyspace: keep it to ~2% of the time on a big one.
        spent = self._discovered_at - started
        self._discover_every = max(self.config.discover_interval, spent * SCAN_BUDGET)
        for key in reader.not_streams - self._reported_not_streams:
            log.error("nautilus: %s is not a stream: not read", key)
            self._reported_not_streams.add(key)
        for stream in found:
            # A stream that appeared while we run is read from its first entry: it is new.
            start = (self._stored or {}).get(stream, "0-0")
            reader.follow(stream, start)
            log.info("nautilus: following new stream %s", stream)

    async def _lost(self, reason: str) -> None:
        if self.connected or self.last_error is None:  # once per outage
            log.warning("nautilus: Redis unreachable (%s); retrying with backoff", reason)
        self.last_error = reason
        self.connected = False
        await self._send(self.feed.unreachable(reason, self._clock()))

    # ------------------------------------------------------------------ entries to messages

    async def _entry(self, stream: str, entry_id: str, fields: Any, warming: bool = False) -> None:
        self.counters["entries"] += 1
        try:
            entry = decode_entry(stream, entry_id, fields)
            raws = self.feed.entry(entry, self._clock(), warming=warming)
        except Exception as exc:  # EntryError, or a payload the mapping did not foresee
            self._bad_entry(stream, entry_id, exc)
            return
        await self._send(raws)

    def _bad_entry(self, stream: str, entry_id: str, error: Exception) -> None:
        self.counters["bad_entries"] += 1
        now = time.monotonic()
        if now - self._warned.get(stream, float("-inf")) < WARN_INTERVAL:
            return
        if len(self._warned) > 10_000:  # stream keys come from Redis: bounded
            self._warned.clear()
        self._warned[stream] = now
        log.warning(
            "nautilus: skipping entry %s of %s: %s (%d bad entries so far)",
            entry_id,
            stream,
            error if isinstance(error, EntryError) else f"{type(error).__name__}: {error}",
            self.counters["bad_entries"],
        )

    async def _send(self, raws: list[Raw]) -> None:
        for raw in raws:
            try:
                message = build_data_message(raw, default_source=self.config.source)
            except ProtocolError as exc:
                self.counters["invalid_messages"] += 1
                log.warning("nautilus: %s message refused: %s", raw.get("type"), exc.message)
                continue
            outcome = await self._publish_reliably(message)
            if getattr(outcome, "duplicate", False):
                self.counters["duplicates"] += 1
            else:
                self.counters["published"] += 1

    async def _publish_reliably(self, message: DataMessage) -> object:
        delay = self.config.reconnect_min
        while True:
            try:
                return await self._publish(message)
            except BrokerUnavailable as exc:
                log.warning("nautilus: broker unavailable, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.reconnect_max)


def _raise_if_cancelling(exc: BaseException) -> None:
    """A client library may turn our cancellation into a connection error: keep stopping."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("nautilus source stopped by an error", exc_info=task.exception())
