"""The commands of a `TidewireClient` that ask and get one answer, beyond `subscribe`.

`ClientQueries` is the base class of `TidewireClient` with `update_subscription`,
`get_snapshot`, `trade_history` and `sync`; each sends one command through
`TidewireClient.request` (correlated by `message_id`) and reads its reply. Errors are the
SDK's: `SubscriptionError` for `subscription_error`, `ServerError` for `error`,
`ConnectionClosedError`, TimeoutError.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from typing import Any

from tidewire.client.clock import ClockSync, clock_sync
from tidewire.client.errors import ConnectionClosedError, ServerError
from tidewire.client.status import ClientStatus
from tidewire.client.subscription import Subscription
from tidewire.client.wire import normalize_filters
from tidewire.protocol.messages import Filters, new_message_id

FiltersArg = Mapping[str, Any] | Filters | None
UPDATE_RETRY_DELAY = 0.01
MAX_UPDATE_RETRY_DELAY = 0.25
"""Seconds between attempts of an update the gateway cannot apply yet (doubling)."""


class ClientQueries(ClientStatus):
    """Request/reply commands of a `TidewireClient` (its base class)."""

    _request_timeout: float

    async def request(
        self,
        message: Mapping[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        raise NotImplementedError  # TidewireClient.request

    async def update_subscription(
        self,
        subscription_id: str,
        *,
        filters: FiltersArg = None,
        rate_limit: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Change a subscription's filters and/or rate limit (`update_subscription`).

        `filters` replace every filter (`{}` removes them all; a topic's key filter too);
        None keeps them. `rate_limit` 0 removes the limit; None keeps it. The subscription
        goes on: same id, same iterator, same position, no resync. Its `filters` and
        `rate_limit` change, and client-side routing switches, when the gateway confirms
        (`subscription_confirmed` with `updated: true`, returned), before any later message
        is routed; on streams with a snapshot the latest values of the keys the old filters
        did not cover follow. Refused (invalid_filter, forbidden, not_found, ...): raises
        `SubscriptionError` or `ServerError` and nothing changes; `unavailable` while the
        subscription's snapshot is still being delivered is retried until `timeout`. While
        disconnected the command is queued. Raises KeyError for an id this client does not
        have.
        """
        subscription = self._inbound.subscriptions.get(subscription_id)
        if subscription is None:
            raise KeyError(subscription_id)
        if filters is None and rate_limit is None:
            raise ValueError("nothing to update: give filters, rate_limit or both")
        if rate_limit is not None and not rate_limit >= 0:
            raise ValueError("rate_limit must be positive (or 0 to remove the limit)")
        wanted = normalize_filters(filters) if filters is not None else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._request_timeout if timeout is None else timeout)
        delay = UPDATE_RETRY_DELAY
        while True:
            try:
                return await self._update_once(
                    subscription, wanted, rate_limit, max(0.0, deadline - loop.time())
                )
            except ServerError as exc:
                # The gateway refuses an update while the subscription's snapshot (or an
                # earlier update's) is still being delivered: a moment later it is done.
                if exc.error_code != "unavailable" or not exc.retryable:
                    raise
                if loop.time() + delay >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, MAX_UPDATE_RETRY_DELAY)

    async def _update_once(
        self,
        subscription: Subscription,
        filters: dict[str, Any] | None,
        rate_limit: float | None,
        timeout: float,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        message_id = new_message_id()
        command: dict[str, Any] = {
            "type": "update_subscription",
            "message_id": message_id,
            "subscription_id": subscription.subscription_id,
        }
        if filters is not None:
            command["filters"] = filters
        if rate_limit is not None:
            command["rate_limit"] = rate_limit
        # Registered before sending: the confirmation may arrive before `request` resumes.
        self._inbound.expect_update(message_id, subscription, copy.deepcopy(filters), rate_limit)
        try:
            return await self.request(command, timeout=timeout)
        finally:
            self._inbound.release_update(message_id)

    async def get_snapshot(
        self,
        stream: str,
        filters: FiltersArg = None,
        limit: int | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """The latest value per key of `stream` (or a topic, `market_data.AAPL`) for
        `filters`, in seq order (`get_snapshot`), as data messages. At most `limit`
        messages (the newest are kept; the gateway caps it too). Nothing is subscribed."""
        command: dict[str, Any] = {"type": "get_snapshot", "stream": stream}
        _add_query(command, filters, limit)
        reply = await self._query(command, timeout)
        return _messages(reply, "messages")

    async def trade_history(
        self,
        filters: FiltersArg = None,
        limit: int | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """Recent `trade_updates` messages readable by this connection, oldest first
        (`get_trade_history`); `filters` as for a trade_updates subscription, at most
        `limit` trades (the gateway's default 100, at most 1000)."""
        command: dict[str, Any] = {"type": "get_trade_history"}
        _add_query(command, filters, limit)
        reply = await self._query(command, timeout)
        return _messages(reply, "trades")

    async def _query(
        self,
        command: dict[str, Any],
        timeout: float | None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """One query at a time: the gateway answers a connection's second query in flight
        with `rate_limited`. Waiting for the previous one counts against `timeout`
        (TimeoutError, like `request`)."""
        lock: asyncio.Lock | None = self.__dict__.get("_query_lock")
        if lock is None:
            lock = self.__dict__["_query_lock"] = asyncio.Lock()
        deadline = self._request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(deadline):
            await lock.acquire()
        try:
            left = max(0.0, deadline - (loop.time() - started))
            return await self.request(command, timeout=left)
        finally:
            lock.release()

    async def sync(self, *, timeout: float | None = None) -> ClockSync:  # noqa: ASYNC109
        """Measure the gateway's clock against this machine's (`sync`): the offset and the
        round trip, in milliseconds. Raises ConnectionClosedError when not connected (a
        queued `sync` would measure the queue, not the clock)."""
        if not self.connected:
            raise ConnectionClosedError("not connected")
        sent_at = time.time() * 1000.0
        started = time.monotonic()
        # A number, in epoch milliseconds, as the original client sent it.
        command = {"type": "sync", "client_timestamp": int(sent_at)}
        reply = await self.request(command, timeout=timeout)
        round_trip = (time.monotonic() - started) * 1000.0
        server_time = reply.get("server_time")
        if isinstance(server_time, bool) or not isinstance(server_time, int | float | str):
            raise ServerError("invalid_message", f"sync_response without server_time: {reply}")
        try:
            return clock_sync(sent_at, round_trip, float(server_time))
        except ValueError:  # a decimal string that is not a number
            raise ServerError("invalid_message", f"bad server_time {server_time!r}") from None


def _add_query(command: dict[str, Any], filters: FiltersArg, limit: int | None) -> None:
    wanted = normalize_filters(filters)
    if wanted:
        command["filters"] = wanted
    if limit is not None:
        command["limit"] = limit


def _messages(reply: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    messages = reply.get(field)
    if not isinstance(messages, list):
        raise ServerError("invalid_message", f"{reply.get('type')} without `{field}`")
    return [message for message in messages if isinstance(message, dict)]
