"""JWT authentication with PyJWT: keys, pinned algorithms, required claims, denylist.

The algorithm family picks the key, never the token: HS* tokens are checked only against
`jwt_secret`, RS*/PS*/ES* tokens only against the PEM public key or the JWKS key named by
`kid`. A public key can therefore never serve as an HMAC secret (HS/RS confusion), `none` is
never accepted, and an algorithm outside `jwt_algorithms` is refused before any key is used.

Claims: `sub` and `exp` are required; `nbf` and `iat` are honoured (with `jwt_leeway`);
`iss` is checked when configured; `aud` must name `jwt_audience` when that is set, and a
token with an `aud` is refused when it is not. Tidewire's own: `portfolio_ids` (list, `["*"]`
= all), `streams` (optional allowlist), `roles` (subscriber, publisher, admin; default
subscriber), `jti` (checked against the denylist). Error messages never quote the token.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tidewire.core.auth import (
    ROLE_SUBSCRIBER,
    ROLES,
    AnonymousAuthenticator,
    Authenticator,
    Principal,
)
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.streams import resolve_stream
from tidewire.settings import GatewaySettings

log = logging.getLogger("tidewire.auth")

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | EC_ALGORITHMS
MIN_SECRET_BYTES = 32
MAX_TOKEN_BYTES = 8192
"""Longer tokens are refused before parsing: the work a stranger can cause stays small."""
MAX_SUBJECT_LENGTH = 200
MAX_CLAIM_VALUES = 10_000
DENYLIST_CHECK_SECONDS = 1.0
MAX_EXP = 253_402_300_799
"""9999-12-31T23:59:59Z: a later `exp` has no date (and no sensible meaning)."""

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for no header or another
    scheme (a proxy's Basic credentials are not ours to judge)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def unauthorized(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAUTHORIZED, message)


def build_authenticator(settings: GatewaySettings) -> Authenticator:
    """The JWT authenticator when a key is configured, else the anonymous one.

    Raises ValueError for a configuration that cannot work (unreadable key, short secret,
    an algorithm without a key of its family).
    """
    if not settings.auth_enabled:
        return AnonymousAuthenticator(settings.anonymous_roles)
    return JwtAuthenticator(settings)


class _Denylist:
    """Revoked `jti`s: the setting plus a file re-read when it changes."""

    def __init__(
        self, fixed: frozenset[str], path: Path | None, clock: Callable[[], float]
    ) -> None:
        self._fixed = fixed
        self._path = path
        self._clock = clock
        self._from_file: frozenset[str] = frozenset()
        self._mtime: float | None = None
        self._checked = -DENYLIST_CHECK_SECONDS
        self.refresh()

    def refresh(self) -> None:
        if self._path is None:
            return
        try:
            mtime = self._path.stat().st_mtime
            if mtime != self._mtime:
                lines = self._path.read_text().splitlines()
                self._from_file = frozenset(line.strip() for line in lines if line.strip())
                self._mtime = mtime
        except OSError as exc:
            # Keep the last list read: a file being replaced must not un-revoke tokens.
            log.warning("cannot read jwt_denylist_file: %s", exc)

    def __contains__(self, jti: str) -> bool:
        now = self._clock()
        if now - self._checked >= DENYLIST_CHECK_SECONDS:
            self._checked = now
            self.refresh()
        return jti in self._fixed or jti in self._from_file


class JwtAuthenticator:
    """Verifies JWTs against the configured keys (see the module docstring)."""

    required = True

    def __init__(
        self, settings: GatewaySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway
        self._secret = (
            settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None
        )
        if self._secret is not None and len(self._secret) < MIN_SECRET_BYTES:
            raise ValueError(f"jwt_secret must have at least {MIN_SECRET_BYTES} bytes")
        self._public_key = (
            _load_public_key(settings.jwt_public_key_file) if settings.jwt_public_key_file else None
        )
        self._jwks: dict[str, tuple[PublicKey, str | None]] = (
            _load_jwks(settings.jwt_jwks_file) if settings.jwt_jwks_file else {}
        )
        self.algorithms = frozenset(settings.jwt_algorithms or self._default_algorithms())
        unknown = sorted(self.algorithms - SUPPORTED_ALGORITHMS)
        if unknown:
            raise ValueError(
                f"jwt_algorithms: unsupported {', '.join(unknown)}; "
                f"use {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
            )
        if self.algorithms & HMAC_ALGORITHMS and self._secret is None:
            raise ValueError("jwt_algorithms lists an HS algorithm but jwt_secret is not set")
        if self.algorithms - HMAC_ALGORITHMS and self._public_key is None and not self._jwks:
            raise ValueError(
                "jwt_algorithms lists an RS/PS/ES algorithm but neither jwt_public_key_file "
                "nor jwt_jwks_file is set"
            )
        self._denylist = _Denylist(settings.jwt_denylist, settings.jwt_denylist_file, clock)
        if (self._public_key is not None or self._jwks) and not (self._audience or self._issuer):
            log.warning(
                "a public key / JWKS is configured without jwt_audience or jwt_issuer: every "
                "token its issuer signs without an aud claim is accepted; set jwt_audience"
            )

    def _default_algorithms(self) -> set[str]:
        algorithms: set[str] = set()
        if self._secret is not None:
            algorithms.add("HS256")
        keys = [self._public_key] if self._public_key is not None else []
        for key, alg in self._jwks.values():
            if alg is not None:
                algorithms.add(alg)
            else:
                keys.append(key)
        for key in keys:
            algorithms.add("RS256" if isinstance(key, rsa.RSAPublicKey) else _ec_algorithm(key))
        return algorithms

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise unauthorized("a token is required")
        if len(token) > MAX_TOKEN_BYTES:
            raise unauthorized(f"token longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            shown = alg[:16] if isinstance(alg, str) else type(alg).__name__
            raise unauthorized(f"token algorithm {shown!r} is not accepted")
        key = self._key_for(alg, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                # With no jwt_audience a token that names an audience is refused: it was
                # issued for another service (PyJWT's default, kept on purpose).
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise ProtocolError(ErrorCode.TOKEN_EXPIRED, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("token not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("token audience (aud) not accepted") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("token issuer (iss) not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"token lacks the {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid token ({type(exc).__name__})") from None
        return self._principal(claims)

    def revoked(self, principal: Principal) -> bool:
        return principal.token_id is not None and principal.token_id in self._denylist

    def _key_for(self, alg: str, kid: Any) -> bytes | PublicKey:
        if alg in HMAC_ALGORITHMS:
            assert self._secret is not None  # checked at start-up
            return self._secret
        if kid is not None and self._jwks:
            entry = self._jwks.get(kid) if isinstance(kid, str) else None
            if entry is None:
                raise unauthorized("token key id (kid) is not one of the configured keys")
            key, key_alg = entry
            if key_alg is not None and key_alg != alg:
                raise unauthorized("token algorithm does not match its key")
        elif self._public_key is not None:
            key = self._public_key
        else:
            raise unauthorized("token has no key id (kid)")
        family = RSA_ALGORITHMS if isinstance(key, rsa.RSAPublicKey) else EC_ALGORITHMS
        if alg not in family:
            raise unauthorized("token algorithm does not match its key")
        return key

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT_LENGTH:
            raise unauthorized(f"sub must be a string of 1 to {MAX_SUBJECT_LENGTH} characters")
        jti = claims.get("jti")
        if jti is not None and not isinstance(jti, str):
            raise unauthorized("jti must be a string")
        if jti is not None and jti in self._denylist:
            raise unauthorized("token revoked")
        raw_portfolios = _string_list(claims, "portfolio_ids")
        portfolios = (
            None
            if raw_portfolios is not None and "*" in raw_portfolios
            else frozenset(raw_portfolios or ())
        )
        raw_streams = _string_list(claims, "streams")
        streams: frozenset[str] | None = None
        if raw_streams is not None:
            resolved = []
            for name in raw_streams:
                spec = resolve_stream(name)
                if spec is None:
                    raise unauthorized(f"streams claim names an unknown stream {name[:64]!r}")
                resolved.append(spec.name)
            streams = frozenset(resolved)
        raw_roles = _string_list(claims, "roles")
        roles = frozenset(raw_roles) if raw_roles is not None else frozenset({ROLE_SUBSCRIBER})
        unknown = sorted(roles - ROLES)
        if unknown:
            raise unauthorized(
                f"roles claim: unknown role(s) {', '.join(r[:32] for r in unknown[:5])}"
            )
        exp = claims["exp"]  # PyJWT checked that it is a number in the future
        if not isinstance(exp, int | float) or exp > MAX_EXP:
            raise unauthorized("exp is beyond the year 9999")
        return Principal(
            user_id=sub,
            roles=roles,
            portfolios=portfolios,
            streams=streams,
            expires_at=float(exp),
            token_id=jti,
            authenticated=True,
        )


def _string_list(claims: dict[str, Any], name: str) -> list[str] | None:
    value = claims.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_CLAIM_VALUES
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise unauthorized(f"{name} claim must be a list of non-empty strings")
    return value


def _ec_algorithm(key: ec.EllipticCurvePublicKey) -> str:
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(
        key.curve.name, "ES256"
    )


def _load_public_key(path: Path) -> PublicKey:
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"jwt_public_key_file {path}: not a readable PEM public key ({exc})"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"jwt_public_key_file {path}: only RSA and EC keys are supported")
    return key


def _load_jwks(path: Path) -> dict[str, tuple[PublicKey, str | None]]:
    """kid -> (public key, its `alg` if the JWK names one). Symmetric keys are refused: HS
    tokens use jwt_secret only."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"jwt_jwks_file {path}: not a readable JSON file ({exc})") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'jwt_jwks_file {path}: expected {{"keys": [...]}} with keys')
    keys: dict[str, tuple[PublicKey, str | None]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            raise ValueError(f"jwt_jwks_file {path}: every key needs a string kid")
        if entry.get("kty") not in ("RSA", "EC"):
            raise ValueError(f"jwt_jwks_file {path}: key {entry['kid']!r}: only RSA and EC keys")
        try:
            key = jwt.PyJWK.from_dict(entry).key
        except jwt.PyJWTError as exc:
            raise ValueError(f"jwt_jwks_file {path}: key {entry['kid']!r}: {exc}") from None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError(f"jwt_jwks_file {path}: key {entry['kid']!r} is not a public key")
        alg = entry.get("alg")
        keys[entry["kid"]] = (key, alg if isinstance(alg, str) else None)
    return keys
