"""The Redis broker: several gateway nodes share sequencing, history and last values.

Publishing runs one Lua script (`redis_scripts.PUBLISH`) that does INCR + XADD (with
trimming) + last value + idempotency record atomically, so every node sees the same seq for
the same message and history never disagrees with what was delivered. Each node reads every
stream's log with XREAD from the last entry id it delivered: a Redis hiccup loses nothing
that is still in Redis, and the node resumes exactly where it stopped. When Redis lost a
stream (restart without persistence, FLUSHALL), its epoch key is gone; the next publish or
position check starts a new epoch, and the node tells its listener so that clients are sent
to recover (they get `recovered: false`), never a silent gap. The same happens when a node
finds that entries were trimmed from a log before it read them (it fell further behind than
the history keeps): its live subscribers of that stream missed them.

A node hands out only what it delivered: `history` stops at the node's position, and
`snapshot` (read from Redis directly) returns once the node delivered up to the snapshot's
position, so the live messages that follow a snapshot or a replay are never older than it.

Every call to Redis is bounded by `operation_timeout` with `asyncio.timeout`, not by
redis-py's `socket_timeout`: with a socket timeout redis-py sends each command inside
`asyncio.wait_for`, which on Python 3.11 can swallow a cancellation (CPython gh-86296), so
`close()` could hang and a timeout could be lost.

Only I/O lives here; the contract is `brokers.base.Broker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tidewire.brokers.base import (
    BrokerUnavailable,
    Consumer,
    ControlListener,
    HistoryLimit,
    PublishOutcome,
    Snapshot,
    idempotency_key,
    keeps_last_values,
    snapshot_key,
)
from tidewire.brokers.redis_scripts import POSITION, PUBLISH
from tidewire.protocol.messages import DataMessage, StreamPosition
from tidewire.protocol.streams import STREAMS

log = logging.getLogger("tidewire.brokers.redis")

DEFAULT_PREFIX = "tw"
READ_BLOCK_MS = 1000
READ_BATCH = 1000
CONTROL_STREAM_LENGTH = 1000
RECONNECT_DELAY_MAX = 2.0
CLOSE_TIMEOUT = 5.0

T = TypeVar("T")

EpochListener = Callable[[str], None]
"""Called with a stream's name when this node finds that the stream's epoch changed."""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DataMessage)


def _new_epoch() -> str:
    return os.urandom(4).hex()


class RedisBroker:
    """Broker over one Redis 7 server. See `tidewire.brokers.base.Broker`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        history_limits: Mapping[str, HistoryLimit] | None = None,
        idempotency_window: float = 300.0,
        operation_timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._limits = {name: (history_limits or {}).get(name, HistoryLimit()) for name in STREAMS}
        self._window = max(1, round(idempotency_window))
        self._timeout = operation_timeout
        self._consumer: Consumer | None = None
        self._epoch_listener: EpochListener | None = None
        self._positions: dict[str, StreamPosition] = {}
        self._log_keys = {name: f"{prefix}:{name}:log" for name in STREAMS}
        self._stream_of_key = {key.encode(): name for name, key in self._log_keys.items()}
        self._probe_key = f"{prefix}:probe"
        self._probes: dict[bytes, asyncio.Future[None]] = {}
        self._probe_cursor = "0-0"
        self._control_key = f"{prefix}:control"
        self._control_cursor = "0-0"
        self._control_listener: ControlListener | None = None
        self._client: aioredis.Redis | None = None
        self._reader_client: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._progress = asyncio.Event()
        """Set (and replaced) whenever this node's positions moved: see `_reach`."""
        self.connected = False
        """Whether the reader's last call to Redis succeeded."""
        self.last_read = 0.0
        """Monotonic time of the reader's last successful XREAD."""
        self.reconnects = 0

    # ------------------------------------------------------------------ lifecycle

    def set_consumer(self, consumer: Consumer) -> None:
        self._consumer = consumer

    def set_epoch_listener(self, listener: EpochListener) -> None:
        self._epoch_listener = listener

    def set_control_listener(self, listener: ControlListener) -> None:
        self._control_listener = listener

    async def publish_control(self, command: dict[str, str]) -> None:
        """XADD to the control stream that every node's reader follows (from where it
        started, so a node that reconnects after a blip still gets what it missed)."""
        await self._call(
            self._require_client().xadd(
                self._control_key,
                {name: value for name, value in command.items()},
                maxlen=CONTROL_STREAM_LENGTH,
                approximate=True,
            )
        )

    async def start(self) -> None:
        """Connect, learn every stream's position, start reading. Raises BrokerUnavailable."""
        # socket_timeout=None: see the module docstring; `_call` bounds every call instead.
        common: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": self._timeout}
        # A pooled connection that Redis closed (restart, CLIENT KILL, idle timeout) fails
        # the first command sent on it: try once more on a new connection. A publish that
        # did reach Redis before the connection broke comes back as a duplicate of itself
        # (the idempotency record), never as a second copy.
        once = Retry(NoBackoff(), 1, (RedisConnectionError,))
        self._client = aioredis.from_url(self.url, retry=once, **common)
        # The reader retries by itself (`_read_forever`), checking the epochs first.
        self._reader_client = aioredis.from_url(self.url, **common)
        self._publish_script = self._client.register_script(PUBLISH)
        self._position_script = self._client.register_script(POSITION)
        self._closing = False
        try:
            for stream in STREAMS:
                self._positions[stream] = await self._head(stream)
            newest: Any = await self._call(self._client.xrevrange(self._probe_key, count=1))
            control: Any = await self._call(self._client.xrevrange(self._control_key, count=1))
        except BrokerUnavailable:
            await self.close()
            raise
        # Probes and control commands are read from here on; "$" on every XREAD would miss
        # one sent in between.
        self._probe_cursor = _text(newest[0][0]) if newest else "0-0"
        self._control_cursor = _text(control[0][0]) if control else "0-0"
        self.connected = True
        self.last_read = time.monotonic()
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def close(self) -> None:
        self._closing = True
        reader, self._reader = self._reader, None
        if reader is not None:
            # Cancel until it is done: a cancellation that lands while redis-py is connecting
            # can still be lost on Python 3.11 (asyncio.wait_for); `_closing` ends the loop.
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while not reader.done() and time.monotonic() < deadline:
                reader.cancel()
                await asyncio.wait({reader}, timeout=0.1)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                log.error("the Redis reader failed", exc_info=reader.exception())
        for client in (self._client, self._reader_client):
            if client is not None:
                await client.aclose()
        self._client = self._reader_client = None

    # ------------------------------------------------------------------ publishing

    async def publish(self, message: DataMessage, scope: str = "") -> PublishOutcome:
        return (await self.publish_many([message], scope))[0]

    async def publish_many(
        self, messages: Sequence[DataMessage], scope: str = ""
    ) -> list[PublishOutcome]:
        if not messages:
            return []
        args: list[Any] = [self.prefix, self._window, _new_epoch(), len(messages)]
        for message in messages:
            spec = STREAMS[message.stream]
            args += [
                message.stream,
                idempotency_key(message.message_id, scope),
                snapshot_key(spec, message) if keeps_last_values(spec) else "",
                self._limits[message.stream].max_messages,
                _encoder.encode(message),
            ]
        # One script call: either every message of the batch was written, or none.
        results = await self._call(self._publish_script(keys=[], args=args))
        outcomes = []
        for message, result in zip(messages, results, strict=True):
            duplicate, seq, epoch = bool(result[0]), int(result[2]), _text(result[3])
            # A duplicate is answered with the original (its body is returned while it is
            # still in the log; after that, the repeat with the original's seq and epoch).
            original = result[4] if duplicate and len(result) > 4 and result[4] else None
            source = _decoder.decode(original) if original is not None else message
            sequenced = source.sequenced(seq, epoch)
            outcomes.append(PublishOutcome(sequenced, duplicate=duplicate))
        return outcomes

    # ------------------------------------------------------------------ reading

    def position(self, stream: str) -> StreamPosition:
        return self._positions[stream]

    async def history(self, stream: str, since: StreamPosition) -> list[DataMessage] | None:
        spec = STREAMS[stream]
        if not spec.reliable:
            return None
        node = self._positions[stream]
        if since.epoch != node.epoch:
            return None
        # Up to what this node delivered: later messages come through its live path.
        if since.seq >= node.seq:
            head = await self._head(stream)
            if head.epoch != since.epoch or since.seq > head.seq:
                return None
            if since.seq > node.seq:
                # The client saw messages (through another node) that this node has not
                # delivered yet: wait for them, or they would follow the replay a second time.
                await self._reach(stream, since)
                node = self._positions[stream]
                if node.epoch != since.epoch:
                    return None
            if since.seq == node.seq:
                return []
        if since.seq < node.seq - self._limits[stream].max_messages:
            # Older than the newest max_messages: trimmed by the limit. Redis trims the log
            # approximately (whole nodes of entries), so it may still hold them; the limit
            # is what counts, as for every broker.
            return None
        client = self._require_client()
        entries: Any = await self._call(
            client.xrange(self._log_keys[stream], f"{since.seq + 1}-0", f"{node.seq}-0")
        )
        if not entries or _seq_of(entries[0][0]) != since.seq + 1:
            return None  # trimmed past since: never a partial replay
        horizon = (time.time() - self._limits[stream].max_age_seconds) * 1000
        if int(entries[0][1][b"t"]) < horizon:
            return None
        messages = [self._decode(stream, entry_id, fields) for entry_id, fields in entries]
        if any(m.epoch != since.epoch for m in messages):
            return None
        return messages

    async def recent(self, stream: str, count: int) -> list[DataMessage]:
        node = self._positions[stream]
        if not STREAMS[stream].reliable or count <= 0 or node.seq == 0:
            return []
        client = self._require_client()
        # Up to what this node delivered, like `history`, and no further back than the
        # limit (Redis trims approximately); newest first from Redis.
        count = min(count, self._limits[stream].max_messages)
        entries: Any = await self._call(
            client.xrevrange(self._log_keys[stream], f"{node.seq}-0", "-", count=count)
        )
        horizon = (time.time() - self._limits[stream].max_age_seconds) * 1000
        messages = [
            self._decode(stream, entry_id, fields)
            for entry_id, fields in reversed(entries or [])
            if int(fields[b"t"]) >= horizon
        ]
        return [m for m in messages if m.epoch == node.epoch]

    async def snapshot(self, stream: str) -> Snapshot:
        base = f"{self.prefix}:{stream}"
        client = self._require_client()

        async def read() -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.get(f"{base}:epoch")
                pipe.get(f"{base}:seq")
                pipe.hgetall(f"{base}:last")
                result: list[Any] = await pipe.execute()
                return result

        epoch, seq, last = await self._call(read())
        if epoch is None:
            head = await self._head(stream)
            await self._reach(stream, head)
            return Snapshot(head, [])
        messages = []
        for value in last.values():
            raw_seq, _, body = value.partition(b"\n")
            messages.append(_decoder.decode(body).sequenced(int(raw_seq), _text(epoch)))
        messages.sort(key=lambda m: m.seq)
        position = StreamPosition(_text(epoch), int(seq or 0))
        # Redis may be ahead of this node: the caller goes live right after the snapshot, so
        # wait until the node delivered everything the snapshot reflects.
        await self._reach(stream, position)
        return Snapshot(position, messages)

    async def probe(self) -> None:
        """A round trip through Redis: publish a token and wait for the reader to see it."""
        token = os.urandom(8).hex().encode()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes[token] = future
        try:
            await self._call(
                self._require_client().xadd(
                    self._probe_key, {"token": token}, maxlen=100, approximate=True
                )
            )
            await future
        finally:
            self._probes.pop(token, None)

    async def lag(self) -> dict[str, int]:
        """Per stream, how many messages Redis holds that this node has not delivered yet."""
        client = self._require_client()
        keys = [f"{self.prefix}:{stream}:seq" for stream in STREAMS]
        heads = await self._call(client.mget(keys))
        return {
            stream: max(0, int(head or 0) - self._positions[stream].seq)
            for stream, head in zip(STREAMS, heads, strict=True)
        }

    async def _read_forever(self) -> None:
        delay = 0.05
        check_epochs = True
        while not self._closing:
            try:
                if check_epochs:
                    await self._check_epochs()
                    check_epochs = False
                response = await self._xread()
                self.connected = True
                self.last_read = time.monotonic()
                delay = 0.05
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
            self._deliver(response)

    async def _xread(self) -> Any:
        assert self._reader_client is not None
        streams: dict[Any, Any] = {
            self._log_keys[stream]: f"{position.seq}-0"
            for stream, position in self._positions.items()
        }
        streams[self._probe_key] = self._probe_cursor
        streams[self._control_key] = self._control_cursor
        return await self._call(
            self._reader_client.xread(streams, count=READ_BATCH, block=READ_BLOCK_MS),
            self._timeout + READ_BLOCK_MS / 1000,
        )

    def _deliver(self, response: Any) -> None:
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
                message = self._decode(stream, entry_id, fields)
                current = self._positions[stream]
                if message.epoch != current.epoch:
                    # A new epoch reached us before the epoch check did (Redis lost the
                    # stream and it was published to again, past our old seq).
                    self._epoch_changed(stream, StreamPosition(message.epoch, 0))
                    if message.seq != 1:
                        break  # the next XREAD reads the new epoch from its first entry
                elif message.seq != current.seq + 1:
                    self._gap(stream, current, message.seq)
                self._positions[stream] = StreamPosition(message.epoch, message.seq)
                if self._consumer is not None:
                    try:
                        self._consumer(message)
                    except Exception:
                        # A failing consumer must not stop the node's only reader.
                        log.exception("consumer failed on %s seq %d", stream, message.seq)
        self._advanced()

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
            command = {_text(k): _text(v) for k, v in fields.items()}
            try:
                self._control_listener(command)
            except Exception:
                log.exception("control command %r failed", command.get("op"))

    async def _check_epochs(self) -> None:
        for stream, position in list(self._positions.items()):
            head = await self._head(stream)
            if head.epoch != position.epoch:
                self._epoch_changed(stream, StreamPosition(head.epoch, 0))
            elif head.seq < position.seq:
                # Same epoch name but fewer messages cannot happen short of tampering;
                # treat it as lost history all the same.
                self._epoch_changed(stream, StreamPosition(head.epoch, 0))

    def _epoch_changed(self, stream: str, position: StreamPosition) -> None:
        log.warning(
            "stream %s: history lost in Redis (epoch %s -> %s); clients will resync",
            stream,
            self._positions[stream].epoch,
            position.epoch,
        )
        self._positions[stream] = position
        self._advanced()
        if self._epoch_listener is not None:
            self._epoch_listener(stream)

    def _gap(self, stream: str, current: StreamPosition, seq: int) -> None:
        """Entries after `current` were trimmed before this node read them (it fell behind
        by more than the history keeps): its live subscribers missed them, so they are sent
        to recover exactly as for a lost epoch (history no longer covers the gap)."""
        log.warning(
            "stream %s: seq %d..%d of epoch %s were trimmed from Redis before this node read "
            "them; clients will resync",
            stream,
            current.seq + 1,
            seq - 1,
            current.epoch,
        )
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
            self._position_script(keys=[], args=[self.prefix, stream, _new_epoch()])
        )
        return StreamPosition(_text(epoch), int(seq))

    async def _call(self, call: Awaitable[T], limit: float | None = None) -> T:
        """Await one Redis call within `limit` seconds (default: operation_timeout).

        Raises BrokerUnavailable for every way Redis can fail or not answer."""
        limit = self._timeout if limit is None else limit
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError as exc:
            raise BrokerUnavailable(f"Redis at {self.url}: no answer within {limit} s") from exc
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"Redis at {self.url}: {exc}") from exc

    def _decode(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> DataMessage:
        return _decoder.decode(fields[b"m"]).sequenced(_seq_of(entry_id), _text(fields[b"e"]))

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise BrokerUnavailable("the Redis broker is not started")
        return self._client


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
