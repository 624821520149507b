"""Token lifetimes during a connection: the `auth` deadline and `exp`.

`sweep` runs with the heartbeat sweep (about once a second) while authentication is on.
Pure apart from the transport calls it makes through the hub.
"""

from __future__ import annotations

from collections.abc import Callable

from tidewire.core.auth import Principal
from tidewire.core.hub import Hub
from tidewire.protocol.errors import CloseCode


def sweep(
    hub: Hub,
    now: float,
    wall: float,
    leeway: float,
    revoked: Callable[[Principal], bool] | None = None,
) -> int:
    """Close with 4001 the connections that did not authenticate by their deadline
    (`now`, monotonic), those whose token expired (`wall`, Unix seconds, beyond the
    `leeway` the token was accepted with) without a `refresh`, and those whose token was
    `revoked` since (the denylist). Returns how many."""
    closed = 0
    for connection in list(hub.connections.values()):
        if connection.closed:
            continue
        deadline = connection.auth_deadline
        if deadline and now >= deadline:
            hub.close(connection, CloseCode.AUTH_FAILED, "authentication timeout")
            closed += 1
            continue
        principal = connection.principal
        expires_at = principal.expires_at
        if expires_at is not None and wall >= expires_at + leeway:
            hub.close(connection, CloseCode.AUTH_FAILED, "token expired")
            closed += 1
        elif revoked is not None and principal.token_id is not None and revoked(principal):
            hub.close(connection, CloseCode.AUTH_FAILED, "token revoked")
            closed += 1
    return closed
