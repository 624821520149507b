"""The reading half of the Redis broker: one task follows every stream's log.

`LogReader` is a mixin of `RedisBroker` (which owns the state it declares). The task XREADs
every stream's log from the last entry id it read, the probe stream (readiness) and the
control stream, and hands each message to the consumer in seq order. It notices lost
history (epoch checks, when idle and every `EPOCH_CHECK_INTERVAL`), trimmed gaps and
malformed entries (`redis_entries`: skipped, counted, logged rate-limited; a skipped seq
is a gap); each tells the epoch listener, which sends the stream's subscribers to recover.

The task survives any failure: Redis errors are retried (`RECONNECT_DELAY_MAX`), anything
else restarts it with jittered backoff (`RESTART_DELAY_MIN` .. `RESTART_DELAY_MAX`), and
`failure` says why meanwhile (the broker's probe, hence readiness, fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tidewire.brokers.base import BrokerUnavailable, Consumer, ControlListener, new_epoch
from tidewire.brokers.latest import LatestValues
from tidewire.brokers.redis_entries import MAX_SEQ, MalformedEntry, Warnings, decode_entry
from tidewire.protocol.messages import StreamPosition

__all__ = ["EpochListener", "LogReader"]

log = logging.getLogger("tidewire.brokers.redis")

READ_BLOCK_MS = 1000
READ_BATCH = 1000
RECONNECT_DELAY_MAX = 2.0
RESTART_DELAY_MIN = 0.1
RESTART_DELAY_MAX = 10.0
"""Bounds of the backoff between restarts of a reader that failed unexpectedly."""
EPOCH_CHECK_INTERVAL = 5.0
"""Seconds between epoch checks while streams are busy (an idle read checks anyway)."""

T = TypeVar("T")
_READABLE = ("stream", "none")

EpochListener = Callable[[str], None]
"""Called with a stream's name when this node finds that the stream's epoch changed."""


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LogReader:
    """The reader task of `RedisBroker`, and the Redis calls it shares with it."""

    url: str
    prefix: str
    connected: bool
    last_read: float
    reconnects: int
    errors: int
    failure: str | None
    warnings: Warnings
    _timeout: float
    _closing: bool
    _consumer: Consumer | None
    _epoch_listener: EpochListener | None
    _control_listener: ControlListener | None
    _positions: dict[str, StreamPosition]
    _cursors: dict[str, str]
    _log_keys: dict[str, str]
    _stream_of_key: dict[bytes, str]
    _probe_key: str
    _probes: dict[bytes, asyncio.Future[None]]
    _probe_cursor: str
    _control_key: str
    _control_cursor: str
    _reader_client: aioredis.Redis | None
    _position_script: Any
    _progress: asyncio.Event
    _foreign: set[str]
    """Keys left out of XREAD: they hold something else than a stream."""
    _latest: dict[str, LatestValues]
    _latest_complete: set[str]

    async def _supervise(self) -> None:
        """Run the reader; restart it after any unexpected error (logged, counted) with
        jittered exponential backoff. Meanwhile `failure` says why, and `probe` fails."""
        delay = RESTART_DELAY_MIN
        while not self._closing:
            started = time.monotonic()
            try:
                await self._read_forever()
            except Exception as exc:
                if time.monotonic() - started > RESTART_DELAY_MAX:  # it had worked a while
                    delay = RESTART_DELAY_MIN
                self.failure = f"{type(exc).__name__}: {exc}"
                self.connected = False
                self.warnings.counters["reader_restarts"] = (
                    self.warnings.counters.get("reader_restarts", 0) + 1
                )
                log.error("the Redis reader failed; restarting in ~%.1f s", delay, exc_info=exc)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RESTART_DELAY_MAX)

    async def _read_forever(self) -> None:
        delay = 0.05
        check_epochs = True
        checked = 0.0
        while not self._closing:
            try:
                if check_epochs or time.monotonic() - checked > EPOCH_CHECK_INTERVAL:
                    # Also while busy: a foreign id past every seq starts a new epoch that
                    # this node's cursor (past that id) would not read otherwise.
                    await self._check_epochs()
                    check_epochs = False
                    checked = time.monotonic()
                response = await self._xread()
                self.connected = True
                self.last_read = time.monotonic()
                delay = 0.05
                if self.failure is not None:
                    log.info("the Redis reader is back after: %s", self.failure)
                    self.failure = None
            except BrokerUnavailable as exc:
                if self.connected:
                    log.warning("%s; retrying", exc)
                self.connected = False
                self.reconnects += 1
                check_epochs = True  # Redis may have come back empty
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX)
                continue
            if not response:
                check_epochs = True  # idle: a cheap moment to notice a lost stream
                continue
            try:
                await self._deliver(response)
            except BrokerUnavailable as exc:  # looking up the epoch of a suspicious entry
                log.warning("%s; retrying", exc)
                check_epochs = True

    async def _xread(self) -> Any:
        assert self._reader_client is not None
        streams: dict[Any, Any] = {
            self._log_keys[stream]: cursor for stream, cursor in self._cursors.items()
        }
        streams[self._probe_key] = self._probe_cursor
        streams[self._control_key] = self._control_cursor
        for key in self._foreign:
            streams.pop(key, None)
        return await self._call(
            self._reader_client.xread(streams, count=READ_BATCH, block=READ_BLOCK_MS),
            self._timeout + READ_BLOCK_MS / 1000,
        )

    async def _deliver(self, response: Any) -> None:
        probe_key = self._probe_key.encode()
        control_key = self._control_key.encode()
        for key, entries in response:
            if key == probe_key:
                self._probe_seen(entries)
                continue
            if key == control_key:
                self._control_seen(entries)
                continue
            stream = self._stream_of_key[key]
            for entry_id, fields in entries:
                self._cursors[stream] = text(entry_id)
                try:
                    message = decode_entry(stream, entry_id, fields)
                except Exception as exc:  # MalformedEntry, or anything garbage can cause
                    self._skip(stream, entry_id, exc)
                    continue
                current = self._positions[stream]
                if (
                    message.epoch != current.epoch
                    and message.epoch != (await self._head(stream)).epoch
                ):
                    # Not the stream's epoch in Redis: written by someone else.
                    self._skip(stream, entry_id, MalformedEntry(f"epoch {message.epoch!r}"))
                    continue
                if message.epoch != current.epoch:
                    # A new epoch reached us before the epoch check did (Redis lost the
                    # stream and it was published to again, past our old seq).
                    self._epoch_changed(stream, StreamPosition(message.epoch, 0))
                    if message.seq != 1:
                        break  # the next XREAD reads the new epoch from its first entry
                elif message.seq != current.seq + 1:
                    self._gap(stream, current, message.seq)
                self._positions[stream] = StreamPosition(message.epoch, message.seq)
                self._cursors[stream] = f"{message.seq}-0"
                latest = self._latest.get(stream)
                if latest is not None:
                    latest.put(message)
                if self._consumer is not None:
                    try:
                        self._consumer(message)
                    except Exception:
                        # A failing consumer must not stop the node's only reader.
                        log.exception("consumer failed on %s seq %d", stream, message.seq)
        self._advanced()

    def _skip(self, stream: str, entry_id: bytes, error: Exception) -> None:
        """A malformed entry: count, log (rate-limited), skip. When its id takes a seq after
        this node's position, that seq can never be delivered: a gap, subscribers resync
        (and the position moves there, so the next publish, after it, is no second gap)."""
        key = self._log_keys[stream]
        self.warnings.warn(
            "malformed_entries", key, "%s entry %r skipped: %s", key, entry_id[:60], error
        )
        current = self._positions[stream]
        millis = entry_id.partition(b"-")[0]
        taken = int(millis) if millis.isdigit() else 0
        if taken <= current.seq:
            return  # between two seqs (`5-1`): nothing was lost
        if taken <= MAX_SEQ:
            self._positions[stream] = StreamPosition(current.epoch, taken)
            self._advanced()
        # Past every seq, the next publish starts a new epoch (found by the epoch check).
        self._gap(stream, current, taken + 1 if taken <= MAX_SEQ else current.seq + 2)

    def _probe_seen(self, entries: Any) -> None:
        for entry_id, fields in entries:
            self._probe_cursor = entry_id.decode()
            future = self._probes.get(fields.get(b"token", b""))
            if future is not None and not future.done():
                future.set_result(None)

    def _control_seen(self, entries: Any) -> None:
        for entry_id, fields in entries:
            self._control_cursor = entry_id.decode()
            if self._control_listener is None:
                continue
            command = {text(k): text(v) for k, v in fields.items()}
            try:
                self._control_listener(command)
            except Exception:
                log.exception("control command %r failed", command.get("op"))

    async def _check_epochs(self) -> None:
        await self._check_types()
        for stream, position in list(self._positions.items()):
            head = await self._head(stream)
            if head.epoch != position.epoch:
                self._epoch_changed(stream, StreamPosition(head.epoch, 0))
            elif head.seq < position.seq:
                # Same epoch name but fewer messages cannot happen short of tampering;
                # treat it as lost history all the same.
                self._epoch_changed(stream, StreamPosition(head.epoch, 0))

    async def _check_types(self) -> None:
        """Leave out of XREAD the keys that hold something else than a stream (a foreign
        write): one of them would fail the XREAD of every stream. A publish renews a log."""
        client = self._reader_client
        assert client is not None
        keys = [*self._log_keys.values(), self._probe_key, self._control_key]

        async def types() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.type(key)
                result: list[Any] = await pipe.execute()
                return result

        kinds = await self._call(types())
        pairs = zip(keys, kinds, strict=True)
        self._foreign = {key for key, kind in pairs if text(kind) not in _READABLE}
        for key in self._foreign:
            self.warnings.warn("foreign_keys", key, "%s is not a stream: not read", key)

    def _epoch_changed(self, stream: str, position: StreamPosition) -> None:
        log.warning(
            "stream %s: history lost in Redis (epoch %s -> %s); clients will resync",
            stream,
            self._positions[stream].epoch,
            position.epoch,
        )
        self._positions[stream] = position
        self._cursors[stream] = f"{position.seq}-0"
        latest = self._latest.get(stream)
        if latest is not None:  # read again from Redis at the next snapshot
            latest.clear()
            self._latest_complete.discard(stream)
        self._advanced()
        if self._epoch_listener is not None:
            self._epoch_listener(stream)

    def _gap(self, stream: str, current: StreamPosition, seq: int) -> None:
        """Entries after `current` were trimmed before this node read them (it fell behind
        by more than the history keeps): its live subscribers missed them, so they are sent
        to recover exactly as for a lost epoch (history no longer covers the gap)."""
        log.warning(
            "stream %s: seq %d..%d of epoch %s were trimmed from Redis (or malformed) before "
            "this node read them; clients will resync",
            stream,
            current.seq + 1,
            seq - 1,
            current.epoch,
        )
        # Latest values of the missed seqs may be newer than this node's copy: completed
        # from Redis at the next snapshot.
        self._latest_complete.discard(stream)
        if self._epoch_listener is not None:
            self._epoch_listener(stream)

    def _advanced(self) -> None:
        """Wake up everyone waiting in `_reach`: this node's positions moved."""
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    async def _reach(self, stream: str, target: StreamPosition) -> None:
        """Wait until this node delivered `stream` up to `target` (in target's epoch).

        Raises BrokerUnavailable when it has not within `operation_timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            current = self._positions[stream]
            if current.epoch == target.epoch and current.seq >= target.seq:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BrokerUnavailable(
                    f"this node delivered {stream} up to {current.epoch}/{current.seq}, "
                    f"Redis is at {target.epoch}/{target.seq}: not caught up within "
                    f"{self._timeout} s"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._progress.wait()

    async def _head(self, stream: str) -> StreamPosition:
        epoch, seq = await self._call(
            self._position_script(keys=[], args=[self.prefix, stream, new_epoch()])
        )
        return StreamPosition(text(epoch), int(seq))

    async def _call(self, call: Awaitable[T], limit: float | None = None) -> T:
        """Await one Redis call within `limit` seconds (default: operation_timeout).

        Raises BrokerUnavailable for every way Redis can fail or not answer."""
        limit = self._timeout if limit is None else limit
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError as exc:
            self.errors += 1
            raise BrokerUnavailable(f"Redis at {self.url}: no answer within {limit} s") from exc
        except (RedisError, OSError) as exc:
            self.errors += 1
            raise BrokerUnavailable(f"Redis at {self.url}: {exc}") from exc
