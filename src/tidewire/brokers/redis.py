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
`snapshot` returns once the node delivered up to the stream's position in Redis, so the live
messages that follow a snapshot or a replay are never older than it. The snapshot's messages
come from the node's own copy of the latest values (`latest.LatestValues`, fed by the
reader): the `:last` hash is read and decoded only to seed that copy (at the first snapshot,
and after a gap or a lost epoch), never once per subscriber, so a thousand subscribers to a
100,000-key stream share one set of messages.

Data in Redis that this gateway did not write, or not correctly (see `redis_entries`), is
counted, logged (rate-limited) and skipped: a skipped seq is a gap its subscribers are sent
to recover from. The reader itself survives any failure: it is restarted with jittered
backoff, and `probe` (readiness) fails while it is down. The reader lives in
`redis_reader.LogReader`, a mixin of `RedisBroker`.

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
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tidewire.brokers.base import (
    DEFAULT_MAX_LATEST_KEYS,
    BrokerEvents,
    BrokerUnavailable,
    Consumer,
    ControlListener,
    HistoryLimit,
    PublishOutcome,
    Snapshot,
    idempotency_key,
    keeps_last_values,
    new_epoch,
    snapshot_key,
)
from tidewire.brokers.latest import LatestValues
from tidewire.brokers.redis_entries import (
    MalformedEntry,
    Warnings,
    decode_entry,
    decode_last,
)
from tidewire.brokers.redis_reader import EpochListener, LogReader, text
from tidewire.brokers.redis_scripts import POSITION, PUBLISH
from tidewire.protocol.messages import DataMessage, StreamPosition
from tidewire.protocol.streams import STREAMS

log = logging.getLogger("tidewire.brokers.redis")

DEFAULT_PREFIX = "tw"
CONTROL_STREAM_LENGTH = 1000
CLOSE_TIMEOUT = 5.0

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DataMessage)


class RedisBroker(LogReader):
    """Broker over one Redis 7 server. See `tidewire.brokers.base.Broker`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        history_limits: Mapping[str, HistoryLimit] | None = None,
        idempotency_window: float = 300.0,
        operation_timeout: float = 2.0,
        max_latest_keys: int = DEFAULT_MAX_LATEST_KEYS,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._limits = {name: (history_limits or {}).get(name, HistoryLimit()) for name in STREAMS}
        self._window = max(1, round(idempotency_window))
        self.max_latest_keys = max_latest_keys
        """Latest values kept per stream; past it the least recently updated key goes."""
        self._timeout = operation_timeout
        self._consumer: Consumer | None = None
        self._epoch_listener: EpochListener | None = None
        self._positions: dict[str, StreamPosition] = {}
        self._cursors: dict[str, str] = {}
        """Per stream, the last log entry id read (past skipped foreign entries too)."""
        self._foreign: set[str] = set()
        """Keys left out of XREAD: they hold something else than a stream."""
        self.warnings = Warnings(log)
        """Counters (and rate-limited warnings) of malformed data and reader restarts."""
        self.failure: str | None = None
        """Why the reader is down (restarting after an unexpected error), else None."""
        self._log_keys = {name: f"{prefix}:{name}:log" for name in STREAMS}
        self._latest = {
            name: LatestValues(name, max_latest_keys)
            for name, spec in STREAMS.items()
            if keeps_last_values(spec)
        }
        """This node's copy of each stream's latest values, up to what it delivered."""
        self._latest_complete: set[str] = set()
        self._seeding = {name: asyncio.Lock() for name in self._latest}
        """Streams whose copy holds every latest value (seeded from Redis since the last
        gap or lost epoch); the others are read from Redis once at their next snapshot."""
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
        self.errors = 0
        """Redis calls that failed or timed out (each a BrokerUnavailable)."""

    # ------------------------------------------------------------------ lifecycle

    def attach(self, events: BrokerEvents) -> None:
        self._consumer = events.message
        self._epoch_listener = events.history_lost
        self._control_listener = events.control

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
                self._cursors[stream] = f"{self._positions[stream].seq}-0"
            newest: Any = await self._call(self._client.xrevrange(self._probe_key, count=1))
            control: Any = await self._call(self._client.xrevrange(self._control_key, count=1))
        except BrokerUnavailable:
            await self.close()
            raise
        # Probes and control commands are read from here on; "$" on every XREAD would miss
        # one sent in between.
        self._probe_cursor = text(newest[0][0]) if newest else "0-0"
        self._control_cursor = text(control[0][0]) if control else "0-0"
        self.connected = True
        self.failure = None
        self.last_read = time.monotonic()
        self._reader = asyncio.get_running_loop().create_task(self._supervise())

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
        args: list[Any] = [
            self.prefix,
            self._window,
            new_epoch(),
            len(messages),
            self.max_latest_keys,
        ]
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
            duplicate, seq, epoch = bool(result[0]), int(result[2]), text(result[3])
            # A duplicate is answered with the original (its body is returned while it is
            # still in the log; after that, the repeat with the original's seq and epoch).
            original = result[4] if duplicate and len(result) > 4 and result[4] else None
            source = message
            if original is not None:
                with contextlib.suppress(msgspec.DecodeError):  # garbage: answer the repeat
                    source = _decoder.decode(original)
            sequenced = source.sequenced(seq, epoch)
            outcomes.append(PublishOutcome(sequenced, duplicate=duplicate))
        return outcomes

    # ------------------------------------------------------------------ reading

    def position(self, stream: str) -> StreamPosition:
        return self._positions[stream]

    async def history(
        self, stream: str, since: StreamPosition, limit: int | None = None
    ) -> list[DataMessage] | None:
        spec = STREAMS[stream]
        if not spec.reliable:
            return None
        node = self._positions[stream]
        if since.epoch != node.epoch:
            return None
        if since.seq < 0:
            return None  # not a position (the command layer answers invalid_position)
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
            client.xrange(
                self._log_keys[stream], f"{since.seq + 1}-0", f"{node.seq}-0", count=limit
            )
        )
        try:
            # A malformed entry in the range is a seq nobody can replay: not covered.
            messages = [decode_entry(stream, entry_id, fields) for entry_id, fields in entries]
        except MalformedEntry:
            return None
        if not messages or messages[0].seq != since.seq + 1:
            return None  # trimmed past since: never a partial replay
        horizon = (time.time() - self._limits[stream].max_age_seconds) * 1000
        if int(entries[0][1][b"t"]) < horizon:
            return None
        if any(
            m.epoch != since.epoch or m.seq != since.seq + i + 1 for i, m in enumerate(messages)
        ):
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
        messages = []
        for entry_id, fields in reversed(entries or []):
            with contextlib.suppress(MalformedEntry):  # the reader counted and logged it
                message = decode_entry(stream, entry_id, fields)
                if int(fields[b"t"]) >= horizon and message.epoch == node.epoch:
                    messages.append(message)
        return messages

    async def snapshot(self, stream: str) -> Snapshot:
        latest = self._latest.get(stream)
        if latest is None:
            return await self._seed(stream, None)
        if stream not in self._latest_complete:
            # One read of the hash at a time per stream: subscribers arriving together wait
            # for it and share its result instead of each decoding a copy.
            async with self._seeding[stream]:
                if stream not in self._latest_complete:
                    return await self._seed(stream, latest)
        head = await self._head(stream)
        # Up to where Redis is now (a publish that returned is in it), from this node's copy
        # of the latest values.
        await self._reach(stream, head)
        if stream not in self._latest_complete:  # a gap while waiting
            return await self.snapshot(stream)
        return Snapshot(self._positions[stream], latest.messages())

    async def _seed(self, stream: str, latest: LatestValues | None) -> Snapshot:
        """The snapshot read from Redis (`:last`), which also completes this node's copy."""
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
        if epoch is None or seq is None or not seq.isdigit():  # lost, or not ours: renewed
            head = await self._head(stream)
            await self._reach(stream, head)
            return Snapshot(head, [])
        messages = []
        for key, value in last.items():
            try:
                messages.append(decode_last(stream, value, text(epoch)))
            except MalformedEntry as exc:
                # Treated as absent: the next publish of that key replaces it.
                self.warnings.warn(
                    "malformed_last_values",
                    f"{base}:last",
                    "%s:last field %r: %s; treated as absent",
                    base,
                    key[:80],
                    exc,
                )
        messages.sort(key=lambda m: m.seq)
        position = StreamPosition(text(epoch), int(seq))
        # Redis may be ahead of this node: the caller goes live right after the snapshot, so
        # wait until the node delivered everything the snapshot reflects.
        await self._reach(stream, position)
        if latest is None:
            return Snapshot(position, messages)
        node = self._positions[stream]
        if node.epoch == position.epoch:
            # What the reader delivered since the read is newer, key by key.
            latest.merge(messages)
            self._latest_complete.add(stream)
            return Snapshot(node, latest.messages())
        return Snapshot(position, messages)

    async def probe(self) -> None:
        """A round trip through Redis: publish a token and wait for the reader to see it."""
        if self.failure is not None:
            raise BrokerUnavailable(f"the Redis reader is down: {self.failure}")
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
        heads = [head or b"0" for head in await self._call(client.mget(keys))]
        return {
            stream: max(0, int(head) - self._positions[stream].seq if head.isdigit() else 0)
            for stream, head in zip(STREAMS, heads, strict=True)
        }

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise BrokerUnavailable("the Redis broker is not started")
        return self._client
