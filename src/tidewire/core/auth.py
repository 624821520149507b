"""The authentication and authorization hook.

Today every connection is anonymous and gets the roles of the `anonymous_roles` setting; the
JWT authenticator of a later issue implements the same `Authenticator` protocol, and the
gateway calls it at the same two points: on connect, and on every subscribe and publish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import Filters
from tidewire.protocol.streams import StreamSpec

ROLE_SUBSCRIBER = "subscriber"
ROLE_PUBLISHER = "publisher"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is on the other end of a connection."""

    user_id: str | None
    """None for an anonymous connection."""
    roles: frozenset[str] = field(default_factory=frozenset)
    expires_at: str | None = None


class Authenticator(Protocol):
    def authenticate(self, token: str | None) -> Principal:
        """The principal a token names; raises ProtocolError(unauthorized/token_expired)."""
        ...

    def authorize_subscribe(self, principal: Principal, spec: StreamSpec, filters: Filters) -> None:
        """Raise ProtocolError(forbidden) when `principal` may not read what `filters` select."""
        ...

    def authorize_publish(self, principal: Principal, spec: StreamSpec) -> None:
        """Raise ProtocolError(forbidden) when `principal` may not publish on `spec`."""
        ...


class AnonymousAuthenticator:
    """Everyone is anonymous with the configured roles."""

    def __init__(self, roles: frozenset[str]) -> None:
        self.principal = Principal(user_id=None, roles=roles)

    def authenticate(self, token: str | None) -> Principal:
        return self.principal

    def authorize_subscribe(self, principal: Principal, spec: StreamSpec, filters: Filters) -> None:
        if ROLE_SUBSCRIBER not in principal.roles:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this connection may not subscribe")

    def authorize_publish(self, principal: Principal, spec: StreamSpec) -> None:
        if ROLE_PUBLISHER not in principal.roles:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                "publishing over WebSocket needs the publisher role "
                "(setting anonymous_roles, or POST /api/publish on the internal port)",
            )
