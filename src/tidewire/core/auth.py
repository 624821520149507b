"""Who is on the other end of a connection or an API call, and how a token becomes one.

A `Principal` is what the gateway knows of a caller: the user, the roles and the
entitlements (portfolios, streams) its token grants, and until when. An `Authenticator`
turns a token into a principal; the JWT one lives in `tidewire.security.tokens`. While no
key is configured, `AnonymousAuthenticator` gives everyone the same open principal (the
demo). What a principal may read, subscribe to and publish is decided in
`tidewire.core.entitlements`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ROLE_SUBSCRIBER = "subscriber"
ROLE_PUBLISHER = "publisher"
ROLE_ADMIN = "admin"
ROLES: frozenset[str] = frozenset({ROLE_SUBSCRIBER, ROLE_PUBLISHER, ROLE_ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller and what its token entitles it to. Frozen: shared, replaced on refresh."""

    user_id: str | None
    """The token's `sub`; None for a caller without a token."""
    roles: frozenset[str] = frozenset()
    portfolios: frozenset[str] | None = frozenset()
    """Portfolios whose data it may read and publish; None = every portfolio (`["*"]`)."""
    streams: frozenset[str] | None = None
    """Streams it may subscribe to; None = every stream (no `streams` claim)."""
    expires_at: float | None = None
    """The token's `exp` (Unix seconds); the connection is closed with 4001 then."""
    token_id: str | None = None
    """The token's `jti`, when it has one."""
    authenticated: bool = False
    """True once a valid token was presented."""
    open_access: bool = False
    """Authentication is off (no key configured): entitlements are not enforced."""

    def has_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)

    @property
    def admin(self) -> bool:
        return ROLE_ADMIN in self.roles

    def reads_portfolio(self, portfolio_id: str) -> bool:
        return self.open_access or self.portfolios is None or portfolio_id in self.portfolios


UNAUTHENTICATED = Principal(user_id=None)
"""A connection that has not presented a token yet (authentication on): it may only send
`auth` and `ping`."""


class Authenticator(Protocol):
    """Turns a token into a principal."""

    @property
    def required(self) -> bool:
        """Whether callers must present a token (False only while no key is configured)."""
        ...

    def authenticate(self, token: str | None) -> Principal:
        """The principal `token` names.

        Raises ProtocolError(unauthorized) for a missing, malformed, forged, revoked or
        otherwise invalid token and ProtocolError(token_expired) for an expired one; the
        message never contains the token.
        """
        ...

    def revoked(self, principal: Principal) -> bool:
        """Whether `principal`'s token was revoked since it was accepted (denylist)."""
        ...


class AnonymousAuthenticator:
    """Authentication off: every caller is anonymous with the configured roles."""

    required = False

    def __init__(self, roles: frozenset[str]) -> None:
        self.principal = Principal(
            user_id=None, roles=frozenset(roles), portfolios=None, open_access=True
        )

    def authenticate(self, token: str | None) -> Principal:
        return self.principal

    def revoked(self, principal: Principal) -> bool:
        return False
