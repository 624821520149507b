"""One subscription of a `TidewireClient`: its queue, its stream position, its iterator.

`Subscription` is the application's handle: a bounded queue, an iterator and the public
counters, over `state`, a `tidewire.client.tracking.SubscriptionState` (the pure rules of
dedupe, positions and resyncs, which the client's dispatcher drives through `confirmed`,
`deliver`, `finish` and the state's own methods).

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
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from tidewire.client.buffer import Gap, MessageBuffer, PushResult
from tidewire.client.errors import SubscriptionError
from tidewire.client.resync import OVERFLOW, ResyncHandler, resync_marker
from tidewire.client.tracking import SubscriptionState
from tidewire.client.wire import position_of, with_topic_filter
from tidewire.protocol.messages import Filters, StreamPosition

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
        self.state = SubscriptionState(
            subscription_id=subscription_id,
            stream=stream,
            filters=filters,
            rate_limit=rate_limit,
            snapshot=snapshot,
            reliable=reliable,
            since=since,
            topic=topic,
        )
        """Its place in the stream and the rules that move it (pure; the client drives it)."""
        self._buffer = MessageBuffer(queue_size, conflate=not reliable, key=self.state.unit)
        self._ready = asyncio.Event()
        self._finished = False
        self._error: BaseException | None = None
        self.on_resync: ResyncHandler | None = on_resync
        """Called as `fn(subscription, info)` for each resync signal of this subscription,
        before the client's resync handlers (see `tidewire.client.resync`)."""

    # ------------------------------------------------------------------ public

    @property
    def subscription_id(self) -> str:
        """Id of the subscription, kept across reconnections."""
        return self.state.subscription_id

    @property
    def stream(self) -> str:
        """Canonical name of the stream (`market_data`, `trade_updates`, ...)."""
        return self.state.stream

    @property
    def topic(self) -> str:
        """The subscription's target as the gateway names it (`subscription_confirmed.topic`):
        the stream, or the stream with the key suffix the application named
        (`market_data.AAPL`)."""
        return self.state.topic or self.state.stream

    @property
    def filters(self) -> dict[str, Any]:
        """The subscription's filters as sent to the gateway (a deep copy); after `update()`
        the confirmed new ones. Client-side routing applies them too."""
        return copy.deepcopy(self.state.filters)

    @property
    def rate_limit(self) -> float | None:
        """Maximum messages per second asked of the gateway, None for no limit."""
        return self.state.rate_limit

    @property
    def reliable(self) -> bool:
        """True for a reliable stream (overflow drops and flags), False for latest-value."""
        return self.state.reliable

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
        return self.state.position

    @property
    def messages_received(self) -> int:
        """Data messages accepted (conflated and dropped ones included, duplicates not)."""
        return self.state.messages_received

    @property
    def duplicates(self) -> int:
        """Messages not delivered because this subscription had them already, or they are
        older than its place in the stream (another subscription's snapshot or replay)."""
        return self.state.duplicates

    @property
    def resyncs(self) -> int:
        """Resync signals so far: gaps not recovered after a reconnection, and overflows."""
        return self.state.resyncs

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
        return self.state.recovered

    @property
    def active(self) -> bool:
        """False once unsubscribed, refused or ended by `close()`."""
        return not self._finished

    async def unsubscribe(self) -> None:
        """Stop this subscription; the iterator ends after the queued messages.

        Does nothing when the subscription already ended.
        """
        if not self._finished:
            await self._owner.unsubscribe(self.subscription_id)

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
            error = SubscriptionError("not_found", f"subscription {self.subscription_id} ended")
            error.subscription_id = self.subscription_id
            raise error
        await self._owner.update_subscription(
            self.subscription_id, filters=filters, rate_limit=rate_limit, timeout=timeout
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
            f"Subscription({self.subscription_id!r}, stream={self.stream!r}, "
            f"filters={self.state.filters!r}, position={self.position!r})"
        )

    # ------------------------------------------------------------------ driven by the client

    def confirmed(self, reply: Mapping[str, Any]) -> dict[str, Any] | None:
        """The gateway confirmed it on this connection (`SubscriptionState.on_confirmed`);
        a resync marker goes into the queue at this place and is returned (for the resync
        handlers), else None."""
        marker = self.state.on_confirmed(reply)
        if marker is not None:
            self._buffer.mark(marker)
            self._ready.set()
        return marker

    def deliver(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """A routed data message: queued unless it is a duplicate; returns the resync marker
        of a new overflow gap (a reliable stream's full queue), else None."""
        state = self.state
        if not state.accept(message):
            return None
        marker: dict[str, Any] | None = None
        if self._buffer.push(message) is PushResult.DROPPED:
            gap = self._buffer.open_gap
            if gap is not None and gap.dropped == 1:  # the first loss of a run
                marker = self._overflow_marker()
                gap.marker = marker
        else:
            position = position_of(message)
            if position is not None:
                state.advance(position)
        self._ready.set()
        return marker

    def finish(self, error: BaseException | None) -> None:
        """It ended: unsubscribed or closed (None), or refused or given up (`error`, raised
        by the iterator once the queued messages are consumed)."""
        if self._finished:
            return
        self._finished = True
        self.state.confirmed = False
        self._error = error
        self._ready.set()

    def _overflow_marker(self) -> dict[str, Any]:
        logger.warning(
            "subscription %s (%s): queue full (%d messages), dropping messages of a "
            "reliable stream; the consumer is too slow",
            self.subscription_id,
            self.stream,
            self._buffer.maxsize,
        )
        self.state.resyncs += 1
        return resync_marker(
            OVERFLOW,
            subscription_id=self.subscription_id,
            stream=self.stream,
            position=self.state.position,
            dropped=1,
        )
