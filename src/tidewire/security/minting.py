"""Minting tokens from the gateway's key (`tidewire token`, tests, examples)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key


def mint_token(
    sub: str,
    *,
    key: str | bytes | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    algorithm: str = "HS256",
    ttl: float = 3600.0,
    portfolio_ids: Iterable[str] | None = None,
    streams: Iterable[str] | None = None,
    roles: Iterable[str] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    kid: str | None = None,
    jti: str | None = None,
    now: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A signed JWT for `sub` valid for `ttl` seconds, with Tidewire's claims.

    `jti` defaults to a random id, so that the token can be revoked through the denylist.
    """
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": sub,
        "iat": int(issued),
        "exp": int(issued + ttl),
        "jti": jti or uuid.uuid4().hex,
    }
    if portfolio_ids is not None:
        claims["portfolio_ids"] = list(portfolio_ids)
    if streams is not None:
        claims["streams"] = list(streams)
    if roles is not None:
        claims["roles"] = list(roles)
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    claims.update(extra or {})
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def load_private_key(path: Path) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """An unencrypted PEM private key (RSA or EC) to sign RS*/ES* tokens with."""
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: only RSA and EC private keys are supported")
    return key


def parse_ttl(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `7d` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    factor = units.get(text[-1:])
    number = text[:-1] if factor is not None else text
    try:
        value = float(number) * (factor or 1)
    except ValueError:
        raise ValueError(f"ttl {text!r}: use seconds or a number with s, m, h or d") from None
    if value <= 0:
        raise ValueError("ttl must be positive")
    return value
