"""Error codes and close codes of docs/protocol.md section 6."""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_STREAM = "unknown_stream"
    INVALID_FILTER = "invalid_filter"
    INVALID_RATE_LIMIT = "invalid_rate_limit"
    INVALID_POSITION = "invalid_position"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    DUPLICATE_SUBSCRIPTION = "duplicate_subscription"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    TOKEN_EXPIRED = "token_expired"
    MESSAGE_TOO_LARGE = "message_too_large"
    INTERNAL_ERROR = "internal_error"
    UNAVAILABLE = "unavailable"


# Errors a client may usefully retry unchanged (after a while).
RETRYABLE: frozenset[ErrorCode] = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL_ERROR, ErrorCode.UNAVAILABLE}
)


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    OPERATOR_CLOSE = 4000
    """An operator closed this one connection (DELETE /api/connections/{id}): reconnect.
    1000 stays the application's own, final close; 4003 ends a user's connections."""
    AUTH_FAILED = 4001
    FORBIDDEN = 4003
    SLOW_CONSUMER = 4008
    TOO_MANY_CONNECTIONS = 4009
    HEARTBEAT_TIMEOUT = 4010
    INBOUND_RATE_EXCEEDED = 4029


# Close codes after which a client reconnects by itself and recovers.
RECONNECT_CLOSE_CODES: frozenset[int] = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.SERVICE_RESTART,
        CloseCode.OPERATOR_CLOSE,
        CloseCode.SLOW_CONSUMER,
        CloseCode.HEARTBEAT_TIMEOUT,
        CloseCode.TOO_MANY_CONNECTIONS,
        CloseCode.INBOUND_RATE_EXCEEDED,
        1006,  # abnormal closure: the TCP connection just went away
        CloseCode.INTERNAL_ERROR,
        1013,  # try again later
    }
)
# Close codes after which reconnecting with backoff makes sense only after a longer pause.
BACKOFF_CLOSE_CODES: frozenset[int] = frozenset(
    {CloseCode.TOO_MANY_CONNECTIONS, CloseCode.INBOUND_RATE_EXCEEDED}
)


class ProtocolError(Exception):
    """A request the gateway refuses; becomes an `error` (or `subscription_error`) reply."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE
