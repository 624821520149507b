"""Exceptions raised by the Tidewire client SDK."""

from __future__ import annotations

from typing import Any


class TidewireError(Exception):
    """Base class of every exception the client raises on purpose."""


class QueueFull(TidewireError):
    """A command could not be queued: the client is not connected and its queue is full.

    Commands sent while disconnected wait in a queue of `message_queue_size` entries. The
    client refuses new commands rather than dropping old ones, because a silently lost
    `unsubscribe` or `publish` is worse than an error the caller can see and handle.
    """


class ServerError(TidewireError):
    """The gateway answered a request with an `error` reply (docs/protocol.md section 6)."""

    def __init__(
        self,
        error_code: str,
        error_message: str,
        *,
        retryable: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error_code}: {error_message}")
        self.error_code = error_code
        """One of the codes of docs/protocol.md section 6, for example `not_found`."""
        self.error_message = error_message
        """Human-readable explanation from the gateway."""
        self.retryable = retryable
        """True when sending the same request again later may succeed."""
        self.details = details
        """Extra fields the gateway attached (the offending field, a limit, ...)."""

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> ServerError:
        """Build the exception from an `error` or `subscription_error` reply."""
        details = reply.get("details")
        return cls(
            str(reply.get("error_code", "unknown_error")),
            str(reply.get("error_message", "")),
            retryable=bool(reply.get("retryable", False)),
            details=details if isinstance(details, dict) else None,
        )


class SubscriptionError(ServerError):
    """A subscribe was refused (`subscription_error`, or an `error` caused by the subscribe).

    Also raised by a subscription's iterator when a resubscription after a reconnect is
    refused, since the subscription then no longer receives anything.
    """

    subscription_id: str | None = None
    """The refused subscription, when known."""

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> SubscriptionError:
        error = cls(
            str(reply.get("error_code", "unknown_error")),
            str(reply.get("error_message", "")),
            retryable=bool(reply.get("retryable", False)),
        )
        subscription_id = reply.get("subscription_id")
        error.subscription_id = subscription_id if isinstance(subscription_id, str) else None
        return error


class ConnectionClosedError(TidewireError):
    """The client stopped and will not reconnect by itself.

    Raised by `wait_connected()`, by requests that cannot complete, and by subscription
    iterators when the client closed for a reason other than `close()`.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        """The WebSocket close code that ended the last connection, when there was one."""
        self.reason = reason
        """The close reason sent by the gateway, when there was one."""


class AuthenticationError(ConnectionClosedError):
    """The gateway closed the connection with 4001: get a new token, then connect again."""
