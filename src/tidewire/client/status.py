"""What a `TidewireClient` shows of itself, and whom it tells: read-only state, handlers.

`ClientStatus` is the base class of `TidewireClient` holding its properties and the
registration of its state, message and resync handlers; the connection logic itself lives
in `tidewire.client.connection`.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from tidewire.client.dispatch import Dispatcher, MessageHandler
from tidewire.client.errors import ConnectionClosedError
from tidewire.client.outbound import OutboundQueue
from tidewire.client.resync import ResyncHandler
from tidewire.client.state import ConnectionState, StateHandler, StateTracker
from tidewire.client.subscription import Subscription


class ClientStatus:
    """Read-only state and handler registration of a `TidewireClient` (its base class)."""

    _states: StateTracker
    _inbound: Dispatcher
    _outbound: OutboundQueue
    _reconnect_attempts: int
    _last_error: ConnectionClosedError | None
    _close_code: int | None

    @property
    def connection_state(self) -> ConnectionState:
        """Current state of the connection (see `ConnectionState`)."""
        return self._states.state

    @property
    def connected(self) -> bool:
        """True while `connection_state` is CONNECTED."""
        return self._states.state is ConnectionState.CONNECTED

    @property
    def message_latency(self) -> float | None:
        """Round trip of the last heartbeat, in milliseconds; None until measured."""
        return self._inbound.message_latency

    @property
    def messages_received(self) -> int:
        """Messages received since the client was created (a batch counts its messages)."""
        return self._inbound.messages_received

    @property
    def reconnect_attempts(self) -> int:
        """Reconnection attempts since the last successful connection."""
        return self._reconnect_attempts

    @property
    def connection_id(self) -> str | None:
        """`connection_id` of the last `connection_established`; None before."""
        return self._inbound.connection_id

    @property
    def user_id(self) -> str | None:
        """The user the gateway says this connection is (`anonymous` when the gateway runs
        without authentication); None before the first connection."""
        return self._inbound.user_id

    @property
    def token_expires_at(self) -> str | None:
        """When the connection's token expires (ISO-8601), as the gateway last said."""
        return self._inbound.expires_at

    @property
    def server_limits(self) -> dict[str, Any] | None:
        """`limits` of the last `connection_established`: max_subscriptions, ..."""
        return self._inbound.server_limits

    @property
    def server_heartbeat_interval(self) -> float | None:
        """Seconds of silence after which the gateway sends `heartbeat`, as it announced."""
        return self._inbound.server_heartbeat_interval

    @property
    def last_error(self) -> ConnectionClosedError | None:
        """Why the client closed by itself (AuthenticationError, attempts exhausted, ...)."""
        return self._last_error

    @property
    def close_code(self) -> int | None:
        """Close code of the last connection that ended (1006 when it just went away).

        Failed connection attempts do not change it: it says why the last real connection
        ended. None until a connection has ended.
        """
        return self._close_code

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """Active subscriptions by id (a copy)."""
        return dict(self._inbound.subscriptions)

    @property
    def queued_messages(self) -> int:
        """Commands waiting for a connection."""
        return len(self._outbound)

    def add_state_handler(self, handler: StateHandler) -> StateHandler:
        """Call `handler(previous, current)` on every state change; returns `handler`.

        A plain function runs synchronously inside the state change; a coroutine function
        runs as a task. Exceptions are logged, never propagated.
        """
        self._states.handlers.append(handler)
        return handler

    def remove_state_handler(self, handler: StateHandler) -> None:
        """Stop calling `handler`; unknown handlers are ignored."""
        with suppress(ValueError):
            self._states.handlers.remove(handler)

    def add_message_handler(self, message_type: str, handler: MessageHandler) -> MessageHandler:
        """Call `handler(message)` for every received message of `message_type` ("*": all).

        Handlers run in the reader, in arrival order, after the message was routed to the
        subscriptions; a coroutine handler is awaited there, so a slow handler delays every
        following message. Exceptions are logged, never propagated. Returns `handler`.
        """
        self._inbound.handlers.setdefault(message_type, []).append(handler)
        return handler

    def remove_message_handler(self, message_type: str, handler: MessageHandler) -> None:
        """Stop calling `handler` for `message_type`; unknown handlers are ignored."""
        with suppress(ValueError):
            self._inbound.handlers.get(message_type, []).remove(handler)

    def add_resync_handler(self, handler: ResyncHandler) -> ResyncHandler:
        """Call `handler(subscription, info)` for every gap of every subscription; returns it.

        A gap is a reconnection the gateway could not recover (`recovered: false`; `info`
        reason "not_recovered", followed by the snapshot where the stream has one) or an
        overflow of a reliable subscription's queue (reason "overflow"). `info` is a copy
        of the resync marker the subscription's iterator yields at the place of the gap
        (see `tidewire.client.resync`). Handlers run in the reader as soon as the gap is
        detected, after the subscription's own `on_resync`; a coroutine handler is awaited
        there before any later message is processed, so it must not wait for a reply of the
        gateway itself (start a task for that). Exceptions are logged, never propagated.
        """
        self._inbound.resync_handlers.append(handler)
        return handler

    def remove_resync_handler(self, handler: ResyncHandler) -> None:
        """Stop calling `handler` for gaps; unknown handlers are ignored."""
        with suppress(ValueError):
            self._inbound.resync_handlers.remove(handler)
