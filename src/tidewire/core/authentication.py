"""The `auth` and `refresh` commands: a connection's first token, and newer ones.

Pure apart from the replies and closes it makes through the hub.
"""

from __future__ import annotations

from tidewire.core.auth import Authenticator
from tidewire.core.connection import Connection
from tidewire.core.entitlements import message_check, still_covers
from tidewire.core.hub import Hub
from tidewire.protocol.errors import CloseCode, ErrorCode, ProtocolError
from tidewire.protocol.messages import Auth, AuthOk, Refresh, SubscriptionError, iso_of


def accept_token(
    hub: Hub,
    authenticator: Authenticator,
    max_connections_per_user: int,
    connection: Connection,
    command: Auth | Refresh,
) -> None:
    """Apply `auth` or `refresh` to `connection`; raises ProtocolError for the error reply.

    A failed token on a connection without one closes it with 4001; a failed `refresh` is
    an error reply and the current token stays until it expires. A new token must name the
    same user; subscriptions it no longer grants end, each with a `subscription_error`
    (forbidden), and the others check messages against the new token from now on. While
    authentication is off, every token is answered for `anonymous`.
    """
    if not authenticator.required:
        hub.send(connection, AuthOk(correlation_id=command.message_id, user_id="anonymous"))
        return
    current = connection.principal
    try:
        principal = authenticator.authenticate(command.token)
    except ProtocolError as exc:
        if not current.authenticated:
            hub.close(connection, CloseCode.AUTH_FAILED, exc.message)
            return
        raise
    assert principal.user_id is not None
    if current.authenticated and principal.user_id != current.user_id:
        raise ProtocolError(
            ErrorCode.FORBIDDEN, "a new token must be for the connection's own user"
        )
    if not current.authenticated:
        over = hub.ledger.over_user_limit(principal.user_id, max_connections_per_user)
        if over is not None:
            hub.close(connection, CloseCode.TOO_MANY_CONNECTIONS, over)
            return
    reply = AuthOk(
        correlation_id=command.message_id,
        user_id=principal.user_id,
        expires_at=iso_of(principal.expires_at),
    )
    ended = []
    for subscription in connection.subscriptions.values():
        if still_covers(principal, subscription.spec, subscription.filters):
            subscription.set_reader(message_check(principal, subscription.spec))
        else:
            ended.append(subscription)
    hub.identify(connection, principal)
    hub.send(connection, reply)
    for subscription in ended:
        hub.remove_subscription(subscription)
        hub.send(
            connection,
            SubscriptionError(
                subscription_id=subscription.subscription_id,
                error_code=ErrorCode.FORBIDDEN.value,
                error_message=f"the new token no longer grants subscription "
                f"{subscription.subscription_id} ({subscription.spec.name}): it ended",
                retryable=False,
            ),
        )
