"""The embedded in-memory broker: the default for one gateway process serving a desk.

Publishing is synchronous under the hood (one event loop, no awaits between sequencing and
delivery), which makes the Broker contract's atomicity hold by construction. History lives
only in this process: a restart starts a new epoch for every stream.

What publishers can make it hold is bounded: history per reliable stream (`HistoryLimit`),
latest values per stream (`max_latest_keys`, the least recently updated key forgotten
first), and the idempotency window, which keeps per message_id only its stream, seq and
epoch (about 270 bytes with its key, `python -m bench.broker_memory`), not the message.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence

import msgspec

from tidewire.brokers.base import (
    DEFAULT_MAX_LATEST_KEYS,
    BrokerEvents,
    Consumer,
    ControlListener,
    HistoryLimit,
    PublishOutcome,
    Snapshot,
    idempotency_key,
    keeps_last_values,
    new_epoch,
)
from tidewire.brokers.latest import LatestValues
from tidewire.protocol.messages import DataMessage, StreamPosition
from tidewire.protocol.streams import STREAMS

DEFAULT_IDEMPOTENCY_WINDOW = 300.0
DEFAULT_IDEMPOTENCY_MAX_IDS = 1_000_000


class _Stream:
    __slots__ = ("epoch", "history", "last_values", "limit", "seq")

    def __init__(self, limit: HistoryLimit | None, last_values: LatestValues | None) -> None:
        self.epoch = new_epoch()
        self.seq = 0
        self.limit = limit
        # (monotonic time, message); only for reliable streams.
        self.history: deque[tuple[float, DataMessage]] | None = (
            deque(maxlen=limit.max_messages) if limit is not None else None
        )
        self.last_values = last_values


class MemoryBroker:
    """Broker kept in this process's memory. See `tidewire.brokers.base.Broker`."""

    def __init__(
        self,
        history_limits: Mapping[str, HistoryLimit] | None = None,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
        idempotency_max_ids: int = DEFAULT_IDEMPOTENCY_MAX_IDS,
        clock: Callable[[], float] = time.monotonic,
        max_latest_keys: int = DEFAULT_MAX_LATEST_KEYS,
    ) -> None:
        limits = dict(history_limits or {})
        self._clock = clock
        self._streams = {
            name: _Stream(
                limits.get(name, HistoryLimit()) if spec.reliable else None,
                LatestValues(name, max_latest_keys) if keeps_last_values(spec) else None,
            )
            for name, spec in STREAMS.items()
        }
        self._consumer: Consumer | None = None
        self._control_listener: ControlListener | None = None
        self._window = idempotency_window
        self.errors = 0
        """Failed broker operations: none in one process (the Redis broker counts them)."""
        self._max_ids = idempotency_max_ids
        # idempotency key -> (expiry, stream, seq, epoch), oldest first.
        self._seen: OrderedDict[str, tuple[float, str, int, str]] = OrderedDict()

    def attach(self, events: BrokerEvents) -> None:
        # Epochs never change while the process runs: `history_lost` is never called.
        self._consumer = events.message
        self._control_listener = events.control

    async def publish_control(self, command: dict[str, str]) -> None:
        if self._control_listener is not None:
            self._control_listener(dict(command))

    async def probe(self) -> None:
        return None

    async def lag(self) -> dict[str, int]:
        return dict.fromkeys(STREAMS, 0)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, message: DataMessage, scope: str = "") -> PublishOutcome:
        return self.publish_now(message, scope)

    async def publish_many(
        self, messages: Sequence[DataMessage], scope: str = ""
    ) -> list[PublishOutcome]:
        return [self.publish_now(message, scope) for message in messages]

    def publish_now(self, message: DataMessage, scope: str = "") -> PublishOutcome:
        """Synchronous publish, for in-process producers on the gateway's loop."""
        now = self._clock()
        self._expire_ids(now)
        key = idempotency_key(message.message_id, scope)
        seen = self._seen.get(key)
        if seen is not None:
            return PublishOutcome(self._original(message, *seen[1:]), duplicate=True)
        stream = self._streams[message.stream]
        stream.seq += 1
        sequenced = message.sequenced(stream.seq, stream.epoch)
        if stream.history is not None:
            stream.history.append((now, sequenced))
        if stream.last_values is not None:
            stream.last_values.put(sequenced)
        self._seen[key] = (now + self._window, message.stream, stream.seq, stream.epoch)
        if len(self._seen) > self._max_ids:
            self._seen.popitem(last=False)
        if self._consumer is not None:
            self._consumer(sequenced)
        return PublishOutcome(sequenced)

    def _original(self, repeat: DataMessage, stream: str, seq: int, epoch: str) -> DataMessage:
        """The answer to a duplicate: the original while its stream's history holds it,
        else the repeat with the original's seq and epoch (as the Redis broker answers)."""
        state = self._streams[stream]
        history = state.history
        if history and state.epoch == epoch:
            index = seq - history[0][1].seq
            if 0 <= index < len(history) and history[index][1].seq == seq:
                return history[index][1]
        answer = repeat.sequenced(seq, epoch)
        return answer if answer.stream == stream else msgspec.structs.replace(answer, stream=stream)

    def position(self, stream: str) -> StreamPosition:
        state = self._streams[stream]
        return StreamPosition(state.epoch, state.seq)

    async def history(
        self, stream: str, since: StreamPosition, limit: int | None = None
    ) -> list[DataMessage] | None:
        state = self._streams[stream]
        if state.history is None or since.epoch != state.epoch or since.seq > state.seq:
            return None
        self._trim_history(state)
        if since.seq == state.seq:
            return []
        if not state.history or state.history[0][1].seq > since.seq + 1:
            return None
        start = since.seq + 1 - state.history[0][1].seq
        stop = None if limit is None else start + limit
        return [message for _, message in itertools.islice(state.history, start, stop)]

    async def recent(self, stream: str, count: int) -> list[DataMessage]:
        state = self._streams[stream]
        if state.history is None or count <= 0:
            return []
        self._trim_history(state)
        return [message for _, message in list(state.history)[-count:]]

    async def snapshot(self, stream: str) -> Snapshot:
        state = self._streams[stream]
        values = state.last_values
        messages = values.messages() if values is not None else []
        return Snapshot(StreamPosition(state.epoch, state.seq), messages)

    def _trim_history(self, state: _Stream) -> None:
        assert state.history is not None and state.limit is not None
        horizon = self._clock() - state.limit.max_age_seconds
        while state.history and state.history[0][0] < horizon:
            state.history.popleft()

    def _expire_ids(self, now: float) -> None:
        seen = self._seen
        while seen:
            expiry = next(iter(seen.values()))[0]
            if expiry > now:
                break
            seen.popitem(last=False)
