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
`feeds` deliver both under flow control.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidewire.brokers.base import Broker
from tidewire.core.subscription import Subscription
from tidewire.protocol.messages import DataMessage, StreamPosition
from tidewire.protocol.streams import keeps_last_values


@dataclass(frozen=True, slots=True)
class Setup:
    position: StreamPosition
    """The stream position the messages bring the subscription to."""
    recovered: bool | None
    """None when the client did not ask to resume (`since` absent)."""
    messages: list[DataMessage]
    """Snapshot or replay, already filtered for the subscription, in seq order."""


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
) -> Setup:
    """Fetch what `subscription` must receive before live messages. Raises BrokerUnavailable."""
    stream = subscription.spec.name
    if since is not None and subscription.spec.reliable:
        replay = await broker.history(stream, since)
        if replay is not None:
            head = StreamPosition(since.epoch, replay[-1].seq if replay else since.seq)
            return Setup(head, True, _matching(subscription, replay))
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
