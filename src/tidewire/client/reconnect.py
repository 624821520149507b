"""Whether to reconnect after a connection ended (docs/protocol.md section 6). Pure."""

from __future__ import annotations

from tidewire.client.errors import AuthenticationError, ConnectionClosedError
from tidewire.protocol.errors import BACKOFF_CLOSE_CODES, RECONNECT_CLOSE_CODES, CloseCode

ABNORMAL_CLOSURE = 1006
"""The close code of a connection that just went away (or never opened)."""


def reconnect_refusal(
    code: int,
    reason: str,
    *,
    auto_reconnect: bool,
    attempts: int,
    max_attempts: int | None,
    renewable_token: bool = False,
) -> ConnectionClosedError | None:
    """Why not to reconnect after a connection closed with `code`, or None to reconnect.

    Reconnect after the codes of `RECONNECT_CLOSE_CODES` (going away, restart, abnormal
    closure, server error, try again later, an operator closed this connection (4000; an
    application's own close is 1000, final), slow consumer, heartbeat timeout, and the
    throttling codes 4009/4029), while `auto_reconnect` is on and fewer than `max_attempts`
    attempts (None: no limit) were made since the last successful connection. 4001 means
    the credentials are bad or expired: retrying with them cannot succeed, so it is an
    `AuthenticationError`, unless the client has a token provider (`renewable_token`)
    that the next attempt asks for a new token. Every other code (1000 normal, 1008
    policy, 1009 too big, 4003 forbidden, ...) says that reconnecting would be refused or
    repeat the same mistake.
    """
    if code == CloseCode.AUTH_FAILED and not (renewable_token and auto_reconnect):
        return AuthenticationError(
            f"authentication failed (4001) {reason}".strip(), code=code, reason=reason
        )
    if code not in RECONNECT_CLOSE_CODES and code != CloseCode.AUTH_FAILED:
        return ConnectionClosedError(
            f"the gateway closed the connection with {code} {reason}".strip(),
            code=code,
            reason=reason,
        )
    if not auto_reconnect:
        return ConnectionClosedError(
            f"connection lost ({code}) and auto_reconnect is off", code=code, reason=reason
        )
    if max_attempts is not None and attempts >= max_attempts:
        return ConnectionClosedError(
            f"gave up after {attempts} reconnection attempt(s) (last close code {code})",
            code=code,
            reason=reason,
        )
    return None


def throttled(code: int) -> bool:
    """True when `code` asks the client to back off harder (4009, 4029)."""
    return code in BACKOFF_CLOSE_CODES
