"""Where one subscription stands in its stream, as a pure state machine (no I/O, no loop).

`SubscriptionState` is fed by method calls (a confirmation, a data message, a reply after
the setup, a heartbeat position, a disconnection) and answers with what to do: deliver or
drop a message, emit a resync marker, what `since` to resubscribe with. The rules
(docs/protocol.md section 5):

* **Each message once, in order.** After every confirmation the duplicate filter restarts
  (`tidewire.client.dedupe`): within one epoch a message is accepted only when its seq is
  above the last accepted since that confirmation (per conflation unit on latest-value
  streams), or, on a resumed reliable stream, above `since`. Snapshot messages are older
  than the confirmed position and accepted because the filter restarted below them.
* **The position** (the `since` of every resubscription) advances with accepted messages,
  heartbeat positions and the confirmation; never back within an epoch. When a replay or a
  reliable stream's snapshot follows the confirmation, the confirmed position is taken only
  once the setup is in (`settle`: the next reply, or a message past it), so a connection
  lost half way resumes where it stopped.
* **A resume the gateway did not recover** (`recovered: false`) gives a resync marker.

`tidewire.client.subscription.Subscription` wraps it with a queue and an iterator; the
JavaScript client's `Subscription` (client/subscription.js) has the same rules, and the
scenarios of tests/vectors/subscriptions.json drive both.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from tidewire.client.dedupe import DuplicateFilter, conflation_key
from tidewire.client.resync import NOT_RECOVERED, resync_marker
from tidewire.client.routing import matches
from tidewire.client.wire import position_of, topic_applies
from tidewire.protocol.messages import StreamPosition
from tidewire.protocol.streams import keeps_last_values, resolve_stream

__all__ = ["SubscriptionState"]

logger = logging.getLogger("tidewire.client")


class SubscriptionState:
    """One subscription's place in its stream, and the rules that move it."""

    def __init__(
        self,
        *,
        subscription_id: str,
        stream: str,
        filters: dict[str, Any],
        rate_limit: float | None,
        snapshot: bool | None,
        reliable: bool,
        since: StreamPosition | None = None,
        topic: str | None = None,
    ) -> None:
        """`topic`: the stream with a key suffix (`market_data.AAPL`) when the application
        named one; `filters` then hold the key filter already."""
        self.subscription_id = subscription_id
        self.stream = stream
        """Canonical stream name (the gateway's name after a confirmation)."""
        self.topic = topic
        """The stream with a key suffix while the filters still select that key alone."""
        self.filters = filters
        self.rate_limit = rate_limit
        self.snapshot = snapshot
        """`snapshot` of the subscribe command; None leaves the gateway's default."""
        self.reliable = reliable
        spec = resolve_stream(stream)
        self.keeps_snapshot = spec is not None and keeps_last_values(spec)
        self.position: StreamPosition | None = since
        """Last `{epoch, seq}` accounted for: the `since` of resubscriptions."""
        self.messages_received = 0
        self.duplicates = 0
        self.resyncs = 0
        self.recovered: bool | None = None
        """`recovered` of the last confirmation."""
        self.confirmed = False
        """True while the gateway has confirmed it on the current connection (only then
        are messages routed to it, so a snapshot always comes first)."""
        self.generation = -1
        """The connection generation its subscribe was last sent on (set by the client)."""
        self._filter = DuplicateFilter(None if reliable else self.unit)
        self._since_sent: StreamPosition | None = None
        self._settle_at: StreamPosition | None = None

    def unit(self, message: Mapping[str, Any]) -> Any:
        """The conflation unit of `message` in this stream (latest-value streams)."""
        return conflation_key(self.stream, message)

    def command(self, message_id: str) -> dict[str, Any]:
        """The `subscribe` command for (re)subscribing, `since` the current position."""
        command: dict[str, Any] = {
            "type": "subscribe",
            "message_id": message_id,
            # The topic as named, so that the gateway confirms that `topic`.
            "stream": self.topic or self.stream,
            "subscription_id": self.subscription_id,
        }
        if self.filters:
            command["filters"] = self.filters
        if self.rate_limit is not None:
            command["rate_limit"] = self.rate_limit
        if self.snapshot is not None:
            command["snapshot"] = self.snapshot
        self._since_sent = self.position
        if self.position is not None:
            command["since"] = {"epoch": self.position.epoch, "seq": self.position.seq}
        return command

    def on_confirmed(self, reply: Mapping[str, Any]) -> dict[str, Any] | None:
        """The gateway confirmed the subscription on this connection: restart the duplicate
        filter, place the position; returns the resync marker of a resume (`since`) the
        gateway did not recover, else None."""
        self.confirmed = True
        recovered = reply.get("recovered")
        self.recovered = recovered if isinstance(recovered, bool) else None
        stream = reply.get("stream")
        if isinstance(stream, str) and stream:
            self.stream = stream
        topic = reply.get("topic")
        if isinstance(topic, str) and topic and topic != self.stream:
            self.topic = topic
        since, self._since_sent = self._since_sent, None
        position = position_of(reply.get("position"))
        replay = self.reliable and since is not None and recovered is True
        # What follows the confirmation: a replay of what came after `since`, the snapshot
        # (snapshot streams, unless refused), or live messages only.
        snapshot = self.keeps_snapshot and self.snapshot is not False and not replay
        if replay and since is not None and position is not None:
            floor = since.seq if since.epoch == position.epoch else None
        elif snapshot or position is None:
            floor = None
        else:
            floor = position.seq
        self._filter.restart(position.epoch if position is not None else None, floor)
        self._settle_at = None
        if position is not None:
            if self.reliable and (replay or snapshot):
                # `position` is where the replay or snapshot ends: taking it now would skip
                # the rest of it if the connection dropped half way. A latest-value stream
                # needs no such care: resuming it always sends the snapshot again.
                self._settle_at = position
            else:
                self.position = position
        if since is None or recovered is True:
            return None
        logger.info(
            "subscription %s (%s): not recovered from %s; %s",
            self.subscription_id,
            self.stream,
            since,
            "the snapshot follows" if snapshot else "resuming with live messages",
        )
        self.resyncs += 1
        return resync_marker(
            NOT_RECOVERED,
            subscription_id=self.subscription_id,
            stream=self.stream,
            position=since,
            resume_position=position,
            snapshot=snapshot,
            # A latest-value stream loses nothing its snapshot does not replace.
            loss=self.reliable or not snapshot,
        )

    def on_updated(self, filters: dict[str, Any] | None, rate_limit: float | None) -> None:
        """The gateway confirmed an update (`updated: true`): the subscription goes on, its
        position stays. None keeps the filters or the limit; a limit of 0 removes it."""
        if rate_limit is not None:
            self.rate_limit = rate_limit or None
        if filters is None:
            return
        old, self.filters = self.filters, filters
        if self.topic is not None and not topic_applies(self.topic, filters):
            self.topic = None  # the key suffix no longer describes the subscription
        if self.keeps_snapshot and filters != old:
            # The latest values of the keys the old filters did not cover follow.
            self._filter.admit(self.unit, functools.partial(matches, old))

    def settle(self) -> None:
        """A reply after the confirmation: its replay or snapshot is complete (the gateway
        sends them right after the confirmation, and replies never overtake them)."""
        if self._settle_at is not None:
            self.advance(self._settle_at)
            self._settle_at = None

    def accept(self, message: dict[str, Any]) -> bool:
        """Whether a routed data message is delivered (it passes the duplicate filter).
        The caller advances the position once the message is queued (`advance`)."""
        if not self._filter.accept(message):
            self.duplicates += 1
            return False
        self.messages_received += 1
        position = position_of(message)
        settle_at = self._settle_at
        if settle_at is not None and position is not None:
            if position.epoch != settle_at.epoch:
                self._settle_at = None  # history was reset since: that position is moot
            elif position.seq > settle_at.seq:
                self.settle()  # a message after the setup: the setup is complete
        return True

    def on_disconnected(self) -> None:
        self.confirmed = False
        self._settle_at = None

    def advance(self, position: StreamPosition) -> None:
        """Move the position to `position` unless that is back within the same epoch
        (snapshot messages may be older than the confirmed position; a new epoch means the
        stream's history was reset)."""
        current = self.position
        if current is None or current.epoch != position.epoch or position.seq > current.seq:
            self.position = position
