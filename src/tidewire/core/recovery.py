"""What a new subscription gets before its live messages: snapshot or replay (section 5).

* No `since`: the snapshot (newest message per key) when the stream keeps one and the client
  did not say `snapshot: false`; latest-value streams and position_updates do by default.
* `since` on a reliable stream: if history still covers everything after `since.seq` in the
  same epoch, `recovered: true` and exactly those messages, in order; otherwise
  `recovered: false` and the snapshot where the stream has one, never a partial replay.
* `since` on a latest-value stream: the snapshot, with `recovered: true` only when nothing
  was published after `since`.

The result says which position it covers; live messages that arrived while it was being
fetched are delivered after it, skipping those it already covered (`after`). The hub's
`feeds` deliver both under flow control. A replay is read `REPLAY_PAGE` messages at a time
(`Pages`), the next page only once the client took the last, so a client away for 100,000
messages costs the node one page, not the whole replay; should history stop covering the
rest meanwhile (trimmed while the client read slowly), the connection is closed with 1012
and the client resubscribes from what it got (then `recovered: false`), never a hole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tidewire.brokers.base import Broker, BrokerUnavailable
from tidewire.core.subscription import Subscription
from tidewire.protocol.messages import DataMessage, StreamPosition
from tidewire.protocol.streams import keeps_last_values

log = logging.getLogger("tidewire.recovery")

REPLAY_PAGE = 1000
"""Messages of a replay read from the broker at a time (about 1 MB decoded)."""

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Pages:
    """The rest of a replay after its first page, read from the broker one page at a time
    up to `head` (the position the replay was confirmed at)."""

    def __init__(
        self,
        broker: Broker,
        subscription: Subscription,
        after: StreamPosition,
        head: StreamPosition,
        spawn: Spawn,
    ) -> None:
        self._broker = broker
        self._subscription = subscription
        self._spawn = spawn
        self.after = after
        """The last seq read so far."""
        self.head = head
        self.done = after.seq >= head.seq

    def fetch(self, deliver: Callable[[list[DataMessage] | None], None]) -> None:
        """Read the next page in the background and hand it to `deliver` (filtered for the
        subscription, possibly empty); None when history no longer covers it."""

        async def run() -> None:
            try:
                page = await self.next()
            except asyncio.CancelledError:
                deliver(None)  # shutting down: the feed must not wait for ever
                raise
            except BrokerUnavailable as exc:
                log.warning("replay of %s stopped: %s", self._subscription.subscription_id, exc)
                page = None
            except Exception:
                log.exception("replay of %s failed", self._subscription.subscription_id)
                page = None
            deliver(page)

        self._spawn(run())

    async def next(self) -> list[DataMessage] | None:
        stream = self._subscription.spec.name
        page = await self._broker.history(stream, self.after, limit=REPLAY_PAGE)
        if page is None:
            return None
        page = [m for m in page if m.seq <= self.head.seq]
        if page:
            self.after = StreamPosition(self.after.epoch, page[-1].seq)
        self.done = not page or self.after.seq >= self.head.seq
        return _matching(self._subscription, page)


@dataclass(frozen=True, slots=True)
class Setup:
    position: StreamPosition
    """The stream position the messages bring the subscription to."""
    recovered: bool | None
    """None when the client did not ask to resume (`since` absent)."""
    messages: list[DataMessage]
    """Snapshot or replay, already filtered for the subscription, in seq order."""
    pages: Pages | None = None
    """The rest of a replay longer than one page, read as the client takes it."""


def needs_setup(
    subscription: Subscription, since: StreamPosition | None, snapshot: bool | None
) -> bool:
    """Whether subscribing needs the broker (a replay or a snapshot) before going live."""
    return since is not None or wants_snapshot(subscription, snapshot)


def wants_snapshot(subscription: Subscription, snapshot: bool | None) -> bool:
    if snapshot is not None:
        return snapshot and keeps_last_values(subscription.spec)
    return keeps_last_values(subscription.spec)


async def prepare(
    broker: Broker,
    subscription: Subscription,
    since: StreamPosition | None,
    snapshot: bool | None,
    spawn: Spawn | None = None,
) -> Setup:
    """Fetch what `subscription` must receive before live messages (of a replay, its first
    page; `spawn` runs the reads of the others). Raises BrokerUnavailable."""
    stream = subscription.spec.name
    if since is not None and subscription.spec.reliable:
        replay = await broker.history(stream, since, limit=None if spawn is None else REPLAY_PAGE)
        if replay is not None and (spawn is None or len(replay) < REPLAY_PAGE):
            head = StreamPosition(since.epoch, replay[-1].seq if replay else since.seq)
            return Setup(head, True, _matching(subscription, replay))
        if replay is not None and spawn is not None:
            head = broker.position(stream)  # the rest of the replay: up to here
            if head.epoch == since.epoch:
                last = StreamPosition(since.epoch, replay[-1].seq)
                pages = Pages(broker, subscription, last, head, spawn)
                return Setup(head, True, _matching(subscription, replay), pages)
        recovered: bool | None = False
    elif since is not None:
        recovered = None  # decided against the snapshot's position below
    else:
        recovered = None
    if since is not None and snapshot is None:
        snapshot = True  # a resuming client of a latest-value stream gets the snapshot
    if wants_snapshot(subscription, snapshot):
        result = await broker.snapshot(stream)
        position, messages = result.position, _matching(subscription, result.messages)
    else:
        position, messages = broker.position(stream), []
    if since is not None and not subscription.spec.reliable:
        recovered = since == position
    return Setup(position, recovered, messages)


def after(position: StreamPosition, buffered: list[DataMessage]) -> list[DataMessage]:
    """The buffered live messages that a setup up to `position` does not already cover."""
    return [m for m in buffered if m.epoch != position.epoch or m.seq > position.seq]


def _matching(subscription: Subscription, messages: list[DataMessage]) -> list[DataMessage]:
    return [m for m in messages if subscription.matches_all(m)]
