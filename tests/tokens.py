"""Tokens for tests: one HMAC secret, and `token(...)` minting a JWT with Tidewire's claims.

gateway = await make_gateway(**SECURE)           # authentication on (jwt_secret)
client = await connect(gateway, token=token("alice", portfolios=["PF-A"]))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tidewire.security.minting import mint_token

SECRET = "tidewire-tests-secret-of-at-least-32-bytes"
SECURE: dict[str, Any] = {"jwt_secret": SECRET}
"""Settings that turn authentication on with `SECRET`."""


def token(
    sub: str = "alice",
    *,
    portfolios: Iterable[str] | None = ("PF-ALPHA",),
    roles: Iterable[str] | None = ("subscriber",),
    streams: Iterable[str] | None = None,
    ttl: float = 3600.0,
    key: Any = SECRET,
    algorithm: str = "HS256",
    **options: Any,
) -> str:
    """A JWT for `sub` signed with the tests' secret (or `key`/`algorithm`)."""
    return mint_token(
        sub,
        key=key,
        algorithm=algorithm,
        ttl=ttl,
        portfolio_ids=portfolios,
        roles=roles,
        streams=streams,
        **options,
    )


def bearer(jwt: str) -> dict[str, str]:
    """The Authorization header of an HTTP request carrying `jwt`."""
    return {"Authorization": f"Bearer {jwt}"}
