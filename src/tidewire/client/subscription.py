"""One subscription of a `TidewireClient`: its queue, its stream position, its iterator.

What a subscription delivers, and how it keeps its place in the stream (docs/protocol.md
section 5):

* **Each message once, in order.** Messages are routed to a subscription only after the
  gateway confirmed it on the current connection, and pass its `DuplicateFilter`
  (`tidewire.client.dedupe`): within one epoch, a message is delivered only when its seq is
  above the last one delivered since the latest confirmation (per key on latest-value
  streams). Duplicates, which arise when several subscriptions of one connection match a
  message, are dropped and counted in `duplicates`; snapshot messages, older than the
  confirmed position, are delivered because the filter restarts at each confirmation.
* **Its position** (`position`, the `since` of every resubscription) advances with the
  messages it accepts, with `heartbeat_response.positions` and with the confirmation. After
  a recovered resubscription (a replay), or a confirmation followed by the snapshot of a
  reliable stream (`position_updates`), the confirmed position is taken only once that
  replay or snapshot is in, so a connection lost half way resumes where it stopped. A
  latest-value stream gets its snapshot after every resubscription, recovered or not: the
  newest value per key again, which is harmless for state and covers whatever the lost
  connection had in flight.
* **Its filters and rate limit change in place** (`update()`): no gap, no duplicate, no
  resync, the position is kept; the latest values of newly covered keys are delivered.
* **Gaps are signalled, never hidden**: resync markers in the iterator and resync handlers,
  one mechanism for every gap (see `tidewire.client.resync`). The iterator yields them as
  dicts of `type` "resync"; it raises nothing at a gap.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from tidewire.client.buffer import Gap, MessageBuffer, PushResult
from tidewire.client.dedupe import DuplicateFilter, conflation_key
from tidewire.client.errors import SubscriptionError
from tidewire.client.resync import NOT_RECOVERED, OVERFLOW, ResyncHandler, resync_marker
from tidewire.client.routing import matches
from tidewire.client.wire import position_of, topic_applies, with_topic_filter
from tidewire.protocol.messages import Filters, StreamPosition, new_message_id
from tidewire.protocol.streams import keeps_last_values, resolve_stream

logger = logging.getLogger("tidewire.client")


class _Owner(Protocol):
    async def unsubscribe(self, subscription_id: str) -> None: ...

    async def update_subscription(
        self,
        subscription_id: str,
        *,
        filters: Mapping[str, Any] | Filters | None = None,
        rate_limit: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]: ...


def new_subscription(
    owner: _Owner,
    stream: str,
    *,
    filters: Mapping[str, Any] | Filters | None,
    subscription_id: str | None,
    rate_limit: float | None,
    snapshot: bool | None,
    queue_size: int,
    since: StreamPosition | None = None,
    on_resync: ResyncHandler | None = None,
) -> Subscription:
    """A Subscription for a subscribe call: canonical stream name, id generated if missing.

    A topic with a key suffix (`market_data.AAPL`) is the stream with its key filter
    (`symbols: ["AAPL"]`), as the gateway reads it; the filter is part of the subscription's
    filters so that client-side routing applies it too.
    """
    spec, wanted, topic = with_topic_filter(stream, filters)
    return Subscription(
        owner,
        subscription_id=subscription_id or f"sub-{uuid.uuid4().hex[:16]}",
        stream=spec.name if spec is not None else stream,
        filters=wanted,
        rate_limit=rate_limit,
        snapshot=snapshot,
        queue_size=queue_size,
        # An unknown stream is refused by the gateway anyway; reliable is the safe side.
        reliable=spec.reliable if spec is not None else True,
        since=since,
        on_resync=on_resync,
        topic=topic,
    )


class Subscription:
    """A live subscription to one stream, created by `TidewireClient.subscribe()`.

    Iterate it with `async for message in subscription:`; each message is the data message as
    a `dict` decoded from the wire (envelope fields such as `type`, `stream`, `key`, `seq`,
    `epoch`, `timestamp`, the type's top-level fields, and the payload in `data`). Treat it as
    read-only: when several subscriptions match a message they receive the same dict.

    The same object survives reconnections: the client resubscribes it (same id, filters and
    rate limit, with `since` = `position`) and the iterator simply continues. Iteration ends
    (`StopAsyncIteration`) after `unsubscribe()` or `client.close()`, once the queued messages
    are consumed; when the client gave up (for example reconnection attempts exhausted or
    authentication failed) or the gateway refused the resubscription, the iterator raises
    that error instead of ending silently.

    Messages wait in a bounded queue (`queue_size`). When the consumer falls behind:

    * on a latest-value stream (market_data, performance_updates, ...) queued messages are
      conflated: the newest message per key wins, `conflated` counts the others;
    * on a reliable stream (trade_updates, order_updates, risk_alerts, ...) messages that do
      not fit are dropped and counted in `dropped`, `overflowed` becomes True, a warning is
      logged, the resync handlers are called, and the iterator yields a resync marker
      (`reason` "overflow") at the place of the gap, then continues with the messages after
      it. Size the queue for your bursts, or consume faster, to avoid this.

    After a reconnection the subscription resumes from `position` by itself. When the
    gateway cannot replay what was missed (`recovered` False), the iterator yields a resync
    marker (`reason` "not_recovered") at that place, followed by the snapshot where the
    stream has one, and the resync handlers are called (see `tidewire.client.resync`).
    `resyncs` counts the markers of both kinds.
    """

    def __init__(
        self,
        owner: _Owner,
        *,
        subscription_id: str,
        stream: str,
        filters: dict[str, Any],
        rate_limit: float | None,
        snapshot: bool | None,
        queue_size: int,
        reliable: bool,
        since: StreamPosition | None = None,
        on_resync: ResyncHandler | None = None,
        topic: str | None = None,
    ) -> None:
        """`topic`: the stream with a key suffix (`market_data.AAPL`) when the application
        named one; `filters` then hold the key filter already."""
        self._owner = owner
        self._subscription_id = subscription_id
        self._stream = stream
        self._topic = topic
        self._filters = filters
        self._rate_limit = rate_limit
        self._snapshot = snapshot
        self._reliable = reliable
        spec = resolve_stream(stream)
        # Whether the stream keeps a snapshot (latest-value streams and position_updates).
        self._keeps_snapshot = spec is not None and keeps_last_values(spec)
        self._buffer = MessageBuffer(queue_size, conflate=not reliable, key=self._unit)
        self._filter = DuplicateFilter(None if reliable else self._unit)
        self._position: StreamPosition | None = since
        self._messages_received = 0
        self._duplicates = 0
        self._resyncs = 0
        self._recovered: bool | None = None
        self._ready = asyncio.Event()
        self._finished = False
        self._error: BaseException | None = None
        self.on_resync: ResyncHandler | None = on_resync
        """Called as `fn(subscription, info)` for each resync signal of this subscription,
        before the client's resync handlers (see `tidewire.client.resync`)."""
        # Set by the client: the connection generation this subscription was last sent on,
        # and whether the gateway confirmed it on that connection (messages are routed to
        # confirmed subscriptions only, so a snapshot always comes first).
        self._generation = -1
        self._confirmed = False
        # The `since` of the last subscribe command, for its confirmation.
        self._since_sent: StreamPosition | None = None
        # A confirmed position to take once the replay or snapshot that follows is in.
        self._settle_at: StreamPosition | None = None

    # ------------------------------------------------------------------ public

    @property
    def subscription_id(self) -> str:
        """Id of the subscription, kept across reconnections."""
        return self._subscription_id

    @property
    def stream(self) -> str:
        """Canonical name of the stream (`market_data`, `trade_updates`, ...)."""
        return self._stream

    @property
    def topic(self) -> str:
        """The subscription's target as the gateway names it (`subscription_confirmed.topic`):
        the stream, or the stream with the key suffix the application named
        (`market_data.AAPL`)."""
        return self._topic or self._stream

    @property
    def filters(self) -> dict[str, Any]:
        """The subscription's filters as sent to the gateway (a deep copy); after `update()`
        the confirmed new ones. Client-side routing applies them too."""
        return copy.deepcopy(self._filters)

    @property
    def rate_limit(self) -> float | None:
        """Maximum messages per second asked of the gateway, None for no limit."""
        return self._rate_limit

    @property
    def reliable(self) -> bool:
        """True for a reliable stream (overflow drops and flags), False for latest-value."""
        return self._reliable

    @property
    def position(self) -> StreamPosition | None:
        """Last `{epoch, seq}` of the stream this subscription has accounted for.

        Advanced by every message accepted into the queue, by `subscription_confirmed` and
        by the `positions` of `heartbeat_response`; never moved back within an epoch. Sent as
        `since` when resubscribing. When a replay (recovered resubscription) or the snapshot
        of a reliable stream follows the confirmation, the confirmed position is taken only
        once it is in (a later reply, or a later message): until then the replayed or
        snapshot messages advance it one by one. None until known (the `since` given to
        `subscribe`, else the first confirmation or message).
        """
        return self._position

    @property
    def messages_received(self) -> int:
        """Data messages accepted (conflated and dropped ones included, duplicates not)."""
        return self._messages_received

    @property
    def duplicates(self) -> int:
        """Messages not delivered because this subscription had them already, or they are
        older than its place in the stream (another subscription's snapshot or replay)."""
        return self._duplicates

    @property
    def resyncs(self) -> int:
        """Resync signals so far: gaps not recovered after a reconnection, and overflows."""
        return self._resyncs

    @property
    def pending(self) -> int:
        """Messages waiting in the queue."""
        return len(self._buffer)

    @property
    def conflated(self) -> int:
        """Messages replaced by a newer message of their key (latest-value streams)."""
        return self._buffer.conflated

    @property
    def dropped(self) -> int:
        """Messages lost because the queue was full (reliable streams)."""
        return self._buffer.dropped

    @property
    def overflowed(self) -> bool:
        """True once this reliable subscription lost a message to a full queue (sticky)."""
        return self._buffer.overflowed

    @property
    def recovered(self) -> bool | None:
        """`recovered` of the last confirmation: False means history could not be replayed."""
        return self._recovered

    @property
    def active(self) -> bool:
        """False once unsubscribed, refused or ended by `close()`."""
        return not self._finished

    async def unsubscribe(self) -> None:
        """Stop this subscription; the iterator ends after the queued messages.

        Does nothing when the subscription already ended.
        """
        if not self._finished:
            await self._owner.unsubscribe(self._subscription_id)

    async def update(
        self,
        *,
        filters: Mapping[str, Any] | Filters | None = None,
        rate_limit: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Change the filters and/or the rate limit (`update_subscription`); see
        `TidewireClient.update_subscription`. Raises SubscriptionError (`not_found`) once the
        subscription has ended."""
        if self._finished:
            error = SubscriptionError("not_found", f"subscription {self._subscription_id} ended")
            error.subscription_id = self._subscription_id
            raise error
        await self._owner.update_subscription(
            self._subscription_id, filters=filters, rate_limit=rate_limit, timeout=timeout
        )

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The next message, or resync marker (`type` "resync") at the place of a gap."""
        while True:
            if self._buffer:
                item = self._buffer.pop()
                if isinstance(item, Gap):
                    if item.dropped:
                        return {**item.marker, "dropped": item.dropped}
                    return item.marker
                return item
            if self._finished:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    def __repr__(self) -> str:
        return (
            f"Subscription({self._subscription_id!r}, stream={self._stream!r}, "
            f"filters={self._filters!r}, position={self._position!r})"
        )

    # ------------------------------------------------------------------ driven by the client

    def _command(self) -> dict[str, Any]:
        """The `subscribe` command for (re)subscribing, with a fresh message_id."""
        command: dict[str, Any] = {
            "type": "subscribe",
            "message_id": new_message_id(),
            # The topic as named, so that the gateway confirms that `topic`.
            "stream": self._topic or self._stream,
            "subscription_id": self._subscription_id,
        }
        if self._filters:
            command["filters"] = self._filters
        if self._rate_limit is not None:
            command["rate_limit"] = self._rate_limit
        if self._snapshot is not None:
            command["snapshot"] = self._snapshot
        self._since_sent = self._position
        if self._position is not None:
            command["since"] = {"epoch": self._position.epoch, "seq": self._position.seq}
        return command

    def _on_confirmed(self, reply: Mapping[str, Any]) -> dict[str, Any] | None:
        """The gateway confirmed the subscription on this connection.

        Restarts the duplicate filter, places the position, and queues a resync marker when
        the subscribe asked to resume (`since`) and the gateway did not recover; returns
        that marker (for the resync handlers) or None.
        """
        self._confirmed = True
        recovered = reply.get("recovered")
        self._recovered = recovered if isinstance(recovered, bool) else None
        stream = reply.get("stream")
        if isinstance(stream, str) and stream:
            self._stream = stream
        topic = reply.get("topic")
        if isinstance(topic, str) and topic and topic != self._stream:
            self._topic = topic
        since, self._since_sent = self._since_sent, None
        position = position_of(reply.get("position"))
        replay = self._reliable and since is not None and recovered is True
        # What follows the confirmation (docs/protocol.md section 5): a replay of what came after
        # `since`, the snapshot (snapshot streams, unless refused), or live messages only.
        snapshot = self._keeps_snapshot and self._snapshot is not False and not replay
        if replay and since is not None and position is not None:
            floor = since.seq if since.epoch == position.epoch else None
        elif snapshot or position is None:
            floor = None
        else:
            floor = position.seq
        self._filter.restart(position.epoch if position is not None else None, floor)
        self._settle_at = None
        if position is not None:
            if self._reliable and (replay or snapshot):
                # `position` is where the replay or snapshot ends: taking it now would skip
                # the rest of it if the connection dropped half way. A latest-value stream
                # needs no such care: resuming it always sends the snapshot again.
                self._settle_at = position
            else:
                self._position = position
        if since is None or recovered is True:
            return None
        marker = resync_marker(
            NOT_RECOVERED,
            subscription_id=self._subscription_id,
            stream=self._stream,
            position=since,
            resume_position=position,
            snapshot=snapshot,
            # A latest-value stream loses nothing its snapshot does not replace.
            loss=self._reliable or not snapshot,
        )
        logger.info(
            "subscription %s (%s): not recovered from %s; %s",
            self._subscription_id,
            self._stream,
            since,
            "the snapshot follows" if snapshot else "resuming with live messages",
        )
        self._resyncs += 1
        self._buffer.mark(marker)
        self._ready.set()
        return marker

    def _on_updated(self, filters: dict[str, Any] | None, rate_limit: float | None) -> None:
        """The gateway confirmed an update (`updated: true`): the subscription goes on, its
        position stays. None keeps the filters or the limit; a limit of 0 removes it."""
        if rate_limit is not None:
            self._rate_limit = rate_limit or None
        if filters is None:
            return
        old, self._filters = self._filters, filters
        if self._topic is not None and not topic_applies(self._topic, filters):
            self._topic = None  # the key suffix no longer describes the subscription
        if self._keeps_snapshot and filters != old:
            # The latest values of the keys the old filters did not cover follow.
            self._filter.admit(self._unit, functools.partial(matches, old))

    def _settle(self) -> None:
        """Every message of the setup after the last confirmation is in: take its position.

        Called for each reply the gateway sends after the confirmation (the gateway sends a
        reliable stream's replay or snapshot right after the confirmation, in order, and
        replies never overtake it).
        """
        if self._settle_at is not None:
            self._advance(self._settle_at)
            self._settle_at = None

    def _on_position(self, position: StreamPosition) -> None:
        """The stream's position reported by the gateway (heartbeat_response.positions)."""
        self._advance(position)

    def _on_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Deliver a routed data message; returns the resync marker of a new overflow gap."""
        if not self._filter.accept(message):
            self._duplicates += 1
            return None
        self._messages_received += 1
        position = position_of(message)
        settle_at = self._settle_at
        if settle_at is not None and position is not None:
            if position.epoch != settle_at.epoch:
                self._settle_at = None  # history was reset since: that position is moot
            elif position.seq > settle_at.seq:
                self._settle()  # a message after the setup: the setup is complete
        marker: dict[str, Any] | None = None
        if self._buffer.push(message) is PushResult.DROPPED:
            gap = self._buffer.open_gap
            if gap is not None and gap.dropped == 1:  # the first loss of a run
                marker = self._overflow_marker()
                gap.marker = marker
        elif position is not None:
            self._advance(position)
        self._ready.set()
        return marker

    def _overflow_marker(self) -> dict[str, Any]:
        logger.warning(
            "subscription %s (%s): queue full (%d messages), dropping messages of a "
            "reliable stream; the consumer is too slow",
            self._subscription_id,
            self._stream,
            self._buffer.maxsize,
        )
        self._resyncs += 1
        return resync_marker(
            OVERFLOW,
            subscription_id=self._subscription_id,
            stream=self._stream,
            position=self._position,
            dropped=1,
        )

    def _unit(self, message: dict[str, Any]) -> Any:
        return conflation_key(self._stream, message)

    def _on_disconnected(self) -> None:
        self._confirmed = False
        self._settle_at = None

    def _finish(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._confirmed = False
        self._error = error
        self._ready.set()

    def _advance(self, position: StreamPosition) -> None:
        current = self._position
        # Within one epoch the position only moves forward (snapshot messages may be older
        # than the confirmed position); a new epoch means the stream's history was reset.
        if current is None or current.epoch != position.epoch or position.seq > current.seq:
            self._position = position
