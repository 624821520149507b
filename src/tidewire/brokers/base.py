"""The Broker interface: sequencing, history, last values and delivery to gateway nodes.

Every implementation (memory today, Redis for scale-out) passes the shared suite in
tests/brokers/test_broker_contract.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tidewire.protocol.messages import DataMessage, StreamPosition
from tidewire.protocol.streams import keeps_last_values, snapshot_key

__all__ = [
    "Broker",
    "BrokerEvents",
    "BrokerHealth",
    "BrokerUnavailable",
    "Consumer",
    "ControlListener",
    "Handlers",
    "HistoryLimit",
    "PublishOutcome",
    "Snapshot",
    "idempotency_key",
    "keeps_last_values",
    "new_epoch",
    "snapshot_key",
]

Consumer = Callable[[DataMessage], None]
"""Called once per sequenced message, in seq order per stream, on the node's event loop."""

ControlListener = Callable[[dict[str, str]], None]
"""Called with each control command (e.g. disconnect a user) published by any node."""


def new_epoch() -> str:
    """A short random name for a fresh stream history (every broker names epochs so)."""
    return os.urandom(4).hex()


class BrokerEvents(Protocol):
    """What a broker tells the node that attached to it, on the node's event loop."""

    def message(self, message: DataMessage) -> None:
        """A sequenced message: once per message, in seq order per stream."""
        ...

    def history_lost(self, stream: str) -> None:
        """This node lost some of `stream`'s history while it ran: the epoch changed, or
        (Redis) entries were trimmed before this node read them. Live subscribers of that
        stream missed what was lost; the gateway sends them to recover (`recovered:
        false`)."""
        ...

    def control(self, command: dict[str, str]) -> None:
        """A control command published by any node (`Broker.publish_control`)."""
        ...


def _ignore(_: object) -> None:
    return None


@dataclass(slots=True)
class Handlers:
    """`BrokerEvents` made of callables; the events not given are ignored."""

    message: Consumer = _ignore
    history_lost: Callable[[str], None] = _ignore
    control: ControlListener = _ignore


@dataclass(frozen=True, slots=True)
class HistoryLimit:
    """How much history a reliable stream keeps: both bounds apply, the tighter wins."""

    max_messages: int = 100_000
    max_age_seconds: float = 3600.0


DEFAULT_MAX_LATEST_KEYS = 100_000
"""Latest values a broker keeps per stream by default: past it, the key updated least
recently is forgotten (its next message brings it back)."""


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    message: DataMessage
    """The message as sequenced (seq and epoch set); for a duplicate, the original one."""
    duplicate: bool = False
    """True when `message_id` was already published inside the idempotency window: the
    original's seq is returned and nothing is delivered again."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The newest message per snapshot key of a stream, and the position it reflects."""

    position: StreamPosition
    """Every message up to `position.seq` is reflected; live delivery continues after it."""
    messages: list[DataMessage]
    """In seq order; empty for streams that keep no last values."""


def idempotency_key(message_id: str, scope: str) -> str:
    """The key a publish is deduplicated under: its message_id within its scope.

    The gateway scopes the messages of authenticated publishers by their user, so a
    publisher can never claim another's message_id (a claimed id would turn the owner's
    message into a "duplicate" and drop it). In-process producers use the empty scope.
    """
    return f"{scope}\x1f{message_id}" if scope else message_id


class BrokerUnavailable(Exception):
    """The broker cannot take or serve messages right now (e.g. Redis is down).

    A publish that raises this published nothing.
    """


class BrokerHealth(Protocol):
    """How a broker is doing, for readiness and operators."""

    async def probe(self) -> None:
        """Send a message through the broker and return when it came back.

        Raises BrokerUnavailable; callers bound the wait with a timeout."""
        ...

    async def lag(self) -> dict[str, int]:
        """Per stream, messages the broker holds that this node has not delivered yet."""
        ...


class Broker(BrokerHealth, Protocol):
    """Sequences messages per stream and delivers them to the gateway nodes.

    Contract:
    * Ordering and atomicity: for each stream, assigning `seq`, appending to history,
      updating the last value and delivering happen as one step, so every node sees a
      stream's messages in seq order with no gaps, and history never disagrees with what
      was delivered. seq starts at 1 in a new epoch and grows by exactly 1 per message.
    * Epoch: names one unbroken history of a stream. When history is lost (an in-memory
      broker restarts, Redis loses the stream) the epoch changes, so a client resuming
      from `(old_epoch, 41)` is told to resync instead of getting messages that are not
      the ones after its seq 41. Example: epoch "a1" reaches seq 41, the process restarts,
      the new epoch "b7" starts at seq 1; `history(since=("a1", 41))` returns None.
    * Idempotency: a message whose `message_id` was published within the window in the
      same `scope` is not sequenced or delivered again; `publish` returns the original with
      `duplicate=True`. Ids of different scopes never collide (`idempotency_key`).
    * Reliable streams keep history within their HistoryLimit; latest-value streams keep
      the newest message per key (position_updates: per portfolio and symbol) instead.
    """

    def attach(self, events: BrokerEvents) -> None:
        """Tell `events` what happens from now on (messages, lost history, control
        commands); once, before `start`."""
        ...

    async def publish_control(self, command: dict[str, str]) -> None:
        """Deliver a control command to every node started on this broker, this one
        included, once each while it runs (a node that is briefly cut off from Redis gets
        it when it reconnects). Raises BrokerUnavailable."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, message: DataMessage, scope: str = "") -> PublishOutcome:
        """Sequence, store and deliver one message. Raises BrokerUnavailable."""
        ...

    async def publish_many(
        self, messages: Sequence[DataMessage], scope: str = ""
    ) -> list[PublishOutcome]:
        """Publish several messages in order; on BrokerUnavailable none was published."""
        ...

    def position(self, stream: str) -> StreamPosition:
        """This node's position in `stream`: epoch and the last seq it delivered."""
        ...

    async def history(
        self, stream: str, since: StreamPosition, limit: int | None = None
    ) -> list[DataMessage] | None:
        """Every message of `stream` after `since.seq` up to this node's position, in order;
        with `limit`, the first `limit` of them (a replay is read a page at a time).

        Returns None when that is impossible (other epoch, or history no longer reaches back
        to since.seq + 1); never a list with a hole. An empty list means nothing came after.
        """
        ...

    async def snapshot(self, stream: str) -> Snapshot:
        """The newest message per snapshot key of `stream`, in seq order, with its position."""
        ...

    async def recent(self, stream: str, count: int) -> list[DataMessage]:
        """The newest `count` messages of a reliable stream's history that this node has
        delivered (fewer when history holds fewer), in seq order; [] for a latest-value
        stream. Raises BrokerUnavailable."""
        ...
