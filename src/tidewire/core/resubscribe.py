"""`update_subscription` (and the original `update_filters`): new filters or rate limit for a
live subscription, without a gap or a duplicate (docs/protocol.md, "Commands").

The change takes effect between two dispatches (the hub re-indexes the subscription in one
step), so every message is matched by either the old or the new filters, never both and
never neither. On streams that keep latest values, the keys the old filters did not cover
then get their latest value: the subscription buffers live messages while the snapshot is
fetched, delivers the snapshot's messages for the new keys only (up to the position the
update was confirmed at), then the buffered ones, so everything arrives in seq order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tidewire.brokers.base import Broker, BrokerUnavailable
from tidewire.core.admission import check_filter_budget, check_rate_limit
from tidewire.core.entitlements import authorize_subscribe
from tidewire.core.subscription import Subscription
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.messages import (
    ErrorReply,
    StreamPosition,
    SubscriptionConfirmed,
    UpdateSubscription,
)

if TYPE_CHECKING:
    from tidewire.core.commands import CommandLimits
    from tidewire.core.connection import Connection
    from tidewire.core.hub import Hub

log = logging.getLogger("tidewire.commands")


class SubscriptionUpdates:
    """Applies `update_subscription` commands for every connection of a node."""

    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        limits: CommandLimits,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.hub = hub
        self.broker = broker
        self.limits = limits
        self._spawn = spawn

    def update(self, connection: Connection, command: UpdateSubscription) -> None:
        """Validate and apply; raises ProtocolError (nothing changed) for a bad request."""
        subscription = connection.subscriptions.get(command.subscription_id)
        if subscription is None:
            raise ProtocolError(
                ErrorCode.NOT_FOUND,
                f"no subscription {command.subscription_id!r} on this connection",
                {"subscription_ids": [command.subscription_id]},
            )
        if subscription.buffer is not None:
            # Its snapshot, replay or an earlier update is still being delivered.
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                f"subscription {subscription.subscription_id!r} is still starting; retry",
            )
        spec = subscription.spec
        old_filters = subscription.filters
        filters = old_filters
        if command.filters is not None:
            filters = validate_filters(command.filters, spec, self.limits.max_filter_values)
            check_filter_budget(
                connection,
                filters,
                self.limits.max_filter_values_per_connection,
                replacing=subscription,
            )
            filters = authorize_subscribe(connection.principal, spec, filters)
        rate_limit = _rate_limit(subscription, command.rate_limit)
        old = Subscription(
            connection,
            subscription.subscription_id,
            spec,
            old_filters,
            subscription.created_at,
            reader=subscription.reader,
        )
        self.hub.reconfigure(subscription, filters, rate_limit)
        widen = spec.keeps_last_values and filters != old_filters
        if widen:
            subscription.buffer = []
            subscription.gated = True
        position = self.broker.position(spec.name)
        self.hub.send(
            connection,
            SubscriptionConfirmed(
                correlation_id=command.message_id,
                subscription_id=subscription.subscription_id,
                stream=spec.name,
                topic=spec.name,
                filters=filters,
                rate_limit=rate_limit,
                position=position,
                updated=True,
            ),
        )
        if widen:
            self._spawn(self._new_keys(command, subscription, old, position))

    async def _new_keys(
        self,
        command: UpdateSubscription,
        subscription: Subscription,
        old: Subscription,
        position: StreamPosition,
    ) -> None:
        """Deliver the latest values, up to `position`, of the keys only the new filters
        cover, then the live messages buffered since the update (all after `position`):
        everything in seq order, nothing twice."""
        try:
            snapshot = await self.broker.snapshot(subscription.spec.name)
        except BrokerUnavailable as exc:
            snapshot = None
            error = ProtocolError(
                ErrorCode.UNAVAILABLE, f"latest values of the new keys unavailable: {exc}"
            )
            self.hub.send(subscription.connection, ErrorReply.of(error, command.message_id))
        except Exception:
            snapshot = None
            log.exception("snapshot for an update of %s failed", subscription.subscription_id)
        if subscription.removed:
            return
        # Newer ones (the snapshot may be ahead of this node) arrive live: buffered.
        new_keys = [
            message
            for message in (snapshot.messages if snapshot is not None else ())
            if message.epoch == position.epoch
            and message.seq <= position.seq
            and subscription.matches_all(message)
            and not old.matches_all(message)
        ]
        # Under flow control like a snapshot; the buffered messages through the new limit.
        self.hub.feeds.start(subscription, new_keys, throttled=True)


def _rate_limit(subscription: Subscription, requested: float | None) -> float | None:
    """The rate limit after an update: kept when not given, removed by 0."""
    if requested is None:
        return subscription.rate_limit
    if requested == 0:
        return None
    check_rate_limit(subscription.spec, requested)
    return requested
