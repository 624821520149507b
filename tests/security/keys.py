"""Key material for the security tests: RSA and EC key pairs, PEM files, JWKS, and
hand-crafted JWTs (for the tokens PyJWT refuses to make: `alg: none`, HS256 keyed with a
public key, a payload changed under its old signature).

Key pairs are generated once per test run (RSA generation takes a moment).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@cache
def rsa_key(name: str = "main") -> rsa.RSAPrivateKey:
    """An RSA-2048 private key; each `name` is another key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key(name: str = "main", curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    """An EC private key on `curve` (P-256 or P-384); each `name` is another key."""
    return ec.generate_private_key(ec.SECP384R1() if curve == "P-384" else ec.SECP256R1())


def public_pem(key: PrivateKey) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of `key`'s public half: what jwt_public_key_file holds."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_public_pem(path: Path, key: PrivateKey) -> Path:
    path.write_bytes(public_pem(key))
    return path


def jwk(key: PrivateKey, kid: str, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of `key` with `kid` (and `alg` when given)."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        entry: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        entry = json.loads(ECAlgorithm.to_jwk(public))
    entry["kid"] = kid
    if alg is not None:
        entry["alg"] = alg
    return entry


def write_jwks(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(entries)}))
    return path


# ------------------------------------------------------------------ hand-made JWTs


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned(header: dict[str, Any], claims: Any, signature: str = "") -> str:
    """header.payload.signature from JSON values, with the signature given (default empty)."""
    return f"{b64url_json(header)}.{b64url_json(claims)}.{signature}"


def hmac_signed(header: dict[str, Any], claims: Any, key: bytes) -> str:
    """An HS256/384/512 JWT signed by hand with any `key` bytes (PyJWT refuses a PEM)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[
        header["alg"]
    ]
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    """The payload of `token`, unverified."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def with_claims(token: str, **changes: Any) -> str:
    """`token` with its payload changed (claims updated) and its old signature kept."""
    header, _, signature = token.split(".")
    claims = {**claims_of(token), **changes}
    return f"{header}.{b64url_json(claims)}.{signature}"
