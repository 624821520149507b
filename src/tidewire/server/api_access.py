"""Who may call which control-plane endpoint: Bearer tokens and role guards.

`/healthz`, `/readyz`, `/api/config`, the API docs and the dashboard's files are open;
`/api/whoami` needs any valid token; publishing needs `publisher` (or `admin`);
`/api/stats`, `/api/streams` (their counts and positions span every tenant),
`/api/broadcast`, `/api/connections`, `/api/subscriptions` and `/api/users/...` need
`admin`. While authentication is off (no key configured) every
caller is the open anonymous principal and every endpoint answers, as on a desk's own
machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from tidewire.core.auth import ROLE_ADMIN, ROLE_PUBLISHER, Authenticator, Principal
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.security.tokens import bearer_token

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]
PRINCIPAL_KEY = "tidewire_principal"


def authenticate_request(
    authenticator: Authenticator, connection: ASGIConnection[Any, Any, Any, Any]
) -> Principal:
    """The caller of a request, from `Authorization: Bearer`; raises 401 when a token is
    required and missing or invalid (never quoting the token)."""
    if not authenticator.required:
        return authenticator.authenticate(None)
    token = bearer_token(connection.headers.get("authorization"))
    try:
        return authenticator.authenticate(token)
    except ProtocolError as exc:
        code = exc.code if token else ErrorCode.UNAUTHORIZED
        raise NotAuthorizedException(
            detail=exc.message if token else "this endpoint needs Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="tidewire"'},
            extra={"error_code": code.value},
        ) from None


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal a guard authenticated for this request."""
    principal = connection.scope.get(PRINCIPAL_KEY)
    assert isinstance(principal, Principal), "route without an access guard"
    return principal


def guard(authenticator: Authenticator, *roles: str) -> Guard:
    """A Litestar guard: a valid token (when required) holding one of `roles` (any role
    when none are named)."""

    def check(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = authenticate_request(authenticator, connection)
        if roles and not principal.open_access and not principal.has_role(*roles):
            raise PermissionDeniedException(
                detail=f"this endpoint needs the {' or '.join(roles)} role",
                extra={"error_code": ErrorCode.FORBIDDEN.value},
            )
        connection.scope[PRINCIPAL_KEY] = principal  # type: ignore[literal-required]

    return check


def access_guards(authenticator: Authenticator) -> tuple[Guard, Guard, Guard]:
    """(any authenticated caller, publisher or admin, admin)."""
    return (
        guard(authenticator),
        guard(authenticator, ROLE_PUBLISHER, ROLE_ADMIN),
        guard(authenticator, ROLE_ADMIN),
    )
