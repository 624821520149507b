"""Token authentication on a real gateway, attacked through every token source.

Sources: `Authorization: Bearer` (a bad token: HTTP 401), a `tidewire.token.<jwt>` entry of
Sec-WebSocket-Protocol (401; on success the answer names only `tidewire.v3.json`), an `auth`
message (close 4001, reason without the token), `?token=` (400 unless `auth_query_token`,
then 401/accepted like the others) and the control plane's Bearer header (401).

Then token lifetimes on an open connection (auth_timeout, exp, refresh), revocation
(POST /api/users/{id}/disconnect), the control plane's role guards, tokens kept out of logs
and introspection, and the limits tied to identity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from messages import order, quote
from security.keys import (
    claims_of,
    ec_key,
    hmac_signed,
    jwk,
    public_pem,
    rsa_key,
    unsigned,
    with_claims,
    write_jwks,
    write_public_pem,
)
from support import TIMEOUT, WsClient
from tidewire.protocol.messages import iso_of
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings
from tokens import SECRET, SECURE, bearer, token

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]

JSON_PROTOCOL = "tidewire.v3.json"
TOKEN_PREFIX = "tidewire.token."
OTHER_SECRET = "an-attackers-guess-at-the-secret-of-32-bytes"


# ------------------------------------------------------------------ helpers


def ws_url(gateway: Gateway, query: str = "") -> str:
    return f"ws://127.0.0.1:{gateway.port}/ws{query}"


def query_of(jwt: str) -> str:
    return "?token=" + urllib.parse.quote(jwt, safe="")


async def refused(
    gateway: Gateway,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    query: str = "",
) -> Any:
    """The HTTP answer of a WebSocket handshake the gateway must refuse."""
    with pytest.raises(InvalidStatus) as info:
        ws = await ws_connect(
            ws_url(gateway, query),
            additional_headers=headers,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            open_timeout=TIMEOUT,
        )
        await ws.close()
    return info.value.response


async def closed_with(client: WsClient | ClientConnection, timeout: float = TIMEOUT) -> Any:
    """The close frame the server ends `client` with (data before it is skipped)."""
    ws = client.ws if isinstance(client, WsClient) else client
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd


def secret_parts(jwt: str) -> list[str]:
    """Pieces of a token that must never show: the whole, and its payload and signature."""
    parts = [jwt]
    pieces = jwt.split(".")
    if len(pieces) == 3:
        parts += [p for p in pieces[1:] if len(p) >= 16]
    return parts


def assert_not_quoted(jwt: str, *texts: str | bytes | bytearray | None) -> None:
    for text in texts:
        if text is None:
            continue
        shown = bytes(text).decode("latin-1") if isinstance(text, bytes | bytearray) else text
        for part in secret_parts(jwt):
            assert part not in shown, f"token quoted in {shown[:200]!r}"


async def auth_message_close(gateway: Gateway, connect: Connect, jwt: str) -> Any:
    """A connection without a token sends `auth {jwt}`: the close frame it gets."""
    client = await connect(gateway)
    assert client.welcome["auth_required"] is True
    await client.send({"type": "auth", "token": jwt, "message_id": "a-1"})
    return await closed_with(client)


async def assert_refused_everywhere(
    gateway: Gateway, connect: Connect, jwt: str, code: str = "unauthorized"
) -> None:
    """`jwt` is refused by every token source of both ports and quoted by none."""
    # Authorization: Bearer
    answer = await refused(gateway, headers=bearer(jwt))
    assert answer.status_code == 401
    assert answer.headers.get("WWW-Authenticate", "").lower().startswith("bearer")
    assert_not_quoted(jwt, answer.body, str(answer.headers))
    # Sec-WebSocket-Protocol entry
    answer = await refused(gateway, subprotocols=[JSON_PROTOCOL, TOKEN_PREFIX + jwt])
    assert answer.status_code == 401
    assert_not_quoted(jwt, answer.body, str(answer.headers))
    # ?token= (the gateways of these tests turn it on)
    answer = await refused(gateway, query=query_of(jwt))
    assert answer.status_code == 401
    assert_not_quoted(jwt, answer.body, str(answer.headers))
    # auth message
    close = await auth_message_close(gateway, connect, jwt)
    assert close.code == 4001
    assert_not_quoted(jwt, close.reason)
    # control plane
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        response = await http.get("/api/stats", headers=bearer(jwt))
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert response.json()["error_code"] == code
    assert_not_quoted(jwt, response.text, str(response.headers))
    # Nothing half-open stayed behind.
    await wait_for(lambda: not gateway.hub.connections, "refused connections linger")


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll server state that has no event to await (e.g. a closed socket's bookkeeping)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def connection_of(gateway: Gateway, client: WsClient) -> Any:
    return gateway.hub.connections[client.welcome["connection_id"]]


def claims(sub: str = "mallory", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 3600, "roles": ["admin"], **extra}


@dataclass
class Keys:
    """Key files of one test: an RSA and an EC public key, a JWKS, a denylist file."""

    dir: Path
    rsa_pem: Path = field(init=False)
    ec_pem: Path = field(init=False)
    jwks: Path = field(init=False)
    denylist: Path = field(init=False)

    def __post_init__(self) -> None:
        self.rsa_pem = write_public_pem(self.dir / "rsa.pem", rsa_key())
        self.ec_pem = write_public_pem(self.dir / "ec.pem", ec_key())
        self.jwks = write_jwks(
            self.dir / "jwks.json",
            jwk(rsa_key(), "rsa-1"),
            jwk(ec_key(), "ec-1"),
            jwk(rsa_key("second"), "rsa-2", alg="RS256"),
        )
        self.denylist = self.dir / "denylist.txt"
        self.denylist.write_text("revoked-in-file\n")


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


# ------------------------------------------------------------------ bad tokens

BadCase = Callable[[Keys], tuple[dict[str, Any], str, str]]
"""keys -> (gateway settings, the bad token, the REST error_code it gets)."""

U = "unauthorized"


def _hs(jwt: str = "", **settings: Any) -> tuple[dict[str, Any], str, str]:
    return {**SECURE, **settings}, jwt, U


BAD_TOKENS: dict[str, BadCase] = {
    "malformed-word": lambda k: _hs("not-a-jwt"),
    "malformed-three-parts": lambda k: _hs("aaa.bbb.ccc"),
    "malformed-json-header": lambda k: _hs("eyJhbGciOiJIUzI1NiJ9x.e30.sig"),
    "header-not-an-object": lambda k: _hs(unsigned(["HS256"], claims()).rstrip(".") + ".x"),  # type: ignore[arg-type]
    "alg-none": lambda k: _hs(unsigned({"alg": "none", "typ": "JWT"}, claims())),
    "alg-None": lambda k: _hs(unsigned({"alg": "None"}, claims())),
    "alg-NONE-with-signature": lambda k: _hs(unsigned({"alg": "NONE"}, claims(), "c2lnbmF0dXJl")),
    "alg-missing": lambda k: _hs(unsigned({"typ": "JWT"}, claims())),
    "alg-not-a-string": lambda k: _hs(unsigned({"alg": ["HS256"]}, claims())),
    "hs256-keyed-with-rsa-public-pem": lambda k: (
        {"jwt_public_key_file": k.rsa_pem},
        hmac_signed({"alg": "HS256", "typ": "JWT"}, claims(), public_pem(rsa_key())),
        U,
    ),
    "hs256-keyed-with-pem-secret-and-key-configured": lambda k: (
        {**SECURE, "jwt_public_key_file": k.rsa_pem, "jwt_algorithms": ["HS256", "RS256"]},
        hmac_signed({"alg": "HS256", "typ": "JWT"}, claims(), public_pem(rsa_key())),
        U,
    ),
    "hs256-keyed-with-ec-public-pem": lambda k: (
        {"jwt_public_key_file": k.ec_pem},
        hmac_signed({"alg": "HS256"}, claims(), public_pem(ec_key())),
        U,
    ),
    "hs256-keyed-with-jwks-key-pem": lambda k: (
        {"jwt_jwks_file": k.jwks},
        hmac_signed({"alg": "HS256", "kid": "rsa-1"}, claims(), public_pem(rsa_key())),
        U,
    ),
    "hs256-kid-of-jwks-with-secret-too": lambda k: (
        {**SECURE, "jwt_jwks_file": k.jwks, "jwt_algorithms": ["HS256", "RS256"]},
        hmac_signed({"alg": "HS256", "kid": "rsa-1"}, claims(), public_pem(rsa_key())),
        U,
    ),
    "unknown-kid": lambda k: (
        {"jwt_jwks_file": k.jwks},
        token("mallory", key=rsa_key(), algorithm="RS256", kid="rsa-9"),
        U,
    ),
    "kid-of-another-key": lambda k: (
        {"jwt_jwks_file": k.jwks},
        token("mallory", key=rsa_key(), algorithm="RS256", kid="rsa-2"),
        U,
    ),
    "kid-of-an-rsa-key-on-an-es256-token": lambda k: (
        {"jwt_jwks_file": k.jwks, "jwt_algorithms": ["RS256", "ES256"]},
        token("mallory", key=ec_key(), algorithm="ES256", kid="rsa-1"),
        U,
    ),
    "alg-other-than-the-jwk-names": lambda k: (
        {"jwt_jwks_file": k.jwks, "jwt_algorithms": ["RS256", "PS256"]},
        token("mallory", key=rsa_key("second"), algorithm="PS256", kid="rsa-2"),
        U,
    ),
    "no-kid-with-only-a-jwks": lambda k: (
        {"jwt_jwks_file": k.jwks},
        token("mallory", key=rsa_key(), algorithm="RS256"),
        U,
    ),
    "hs512-not-in-algorithms": lambda k: _hs(
        hmac_signed({"alg": "HS512"}, claims(), SECRET.encode())
    ),
    "ps256-not-in-algorithms": lambda k: (
        {"jwt_public_key_file": k.rsa_pem},
        token("mallory", key=rsa_key(), algorithm="PS256"),
        U,
    ),
    "rs256-on-an-hs-only-gateway": lambda k: _hs(
        token("mallory", key=rsa_key(), algorithm="RS256")
    ),
    "rs256-signed-by-another-key": lambda k: (
        {"jwt_public_key_file": k.rsa_pem},
        token("mallory", key=rsa_key("attacker"), algorithm="RS256"),
        U,
    ),
    "es256-signed-by-another-key": lambda k: (
        {"jwt_public_key_file": k.ec_pem},
        token("mallory", key=ec_key("attacker"), algorithm="ES256"),
        U,
    ),
    "es384-on-a-p256-key": lambda k: (
        {"jwt_public_key_file": k.ec_pem, "jwt_algorithms": ["ES256", "ES384"]},
        token("mallory", key=ec_key("p384", "P-384"), algorithm="ES384"),
        U,
    ),
    "wrong-secret": lambda k: _hs(token("mallory", key=OTHER_SECRET)),
    "expired": lambda k: (
        {**SECURE, "jwt_leeway": 0},
        token("mallory", ttl=-5),
        "token_expired",
    ),
    "expired-beyond-the-leeway": lambda k: (
        {**SECURE, "jwt_leeway": 10},
        token("mallory", ttl=-30),
        "token_expired",
    ),
    "not-yet-valid-nbf": lambda k: _hs(token("mallory", extra={"nbf": int(time.time()) + 600})),
    "issued-in-the-future": lambda k: _hs(token("mallory", extra={"iat": int(time.time()) + 600})),
    "wrong-audience": lambda k: _hs(token("mallory", audience="other"), jwt_audience="tidewire"),
    "missing-audience": lambda k: _hs(token("mallory"), jwt_audience="tidewire"),
    "wrong-issuer": lambda k: _hs(
        token("mallory", issuer="https://evil"), jwt_issuer="https://idp"
    ),
    "missing-issuer": lambda k: _hs(token("mallory"), jwt_issuer="https://idp"),
    "missing-sub": lambda k: _hs(
        hmac_signed({"alg": "HS256"}, {"exp": int(time.time()) + 600}, SECRET.encode())
    ),
    "missing-exp": lambda k: _hs(
        hmac_signed({"alg": "HS256"}, {"sub": "mallory"}, SECRET.encode())
    ),
    "tampered-roles": lambda k: _hs(with_claims(token("mallory"), roles=["admin"])),
    "tampered-sub": lambda k: _hs(with_claims(token("mallory"), sub="admin")),
    "tampered-portfolios": lambda k: _hs(with_claims(token("mallory"), portfolio_ids=["*"])),
    "tampered-exp": lambda k: (
        {**SECURE, "jwt_leeway": 0},
        with_claims(token("mallory", ttl=-5), exp=int(time.time()) + 3600),
        U,
    ),
    "tampered-rs256": lambda k: (
        {"jwt_public_key_file": k.rsa_pem},
        with_claims(token("mallory", key=rsa_key(), algorithm="RS256"), roles=["admin"]),
        U,
    ),
    "signature-stripped": lambda k: _hs(token("mallory").rsplit(".", 1)[0] + "."),
    "denylisted-jti": lambda k: _hs(token("mallory", jti="revoked-1"), jwt_denylist=["revoked-1"]),
    "denylisted-jti-in-file": lambda k: _hs(
        token("mallory", jti="revoked-in-file"), jwt_denylist_file=k.denylist
    ),
    "unknown-role": lambda k: _hs(token("mallory", roles=["superuser"])),
    "roles-not-a-list": lambda k: _hs(token("mallory", roles=None, extra={"roles": "admin"})),
    "roles-with-a-number": lambda k: _hs(token("mallory", roles=None, extra={"roles": [1]})),
    "portfolio-ids-not-a-list": lambda k: _hs(
        token("mallory", portfolios=None, extra={"portfolio_ids": "*"})
    ),
    "portfolio-ids-empty-string": lambda k: _hs(token("mallory", portfolios=[""])),
    "streams-unknown": lambda k: _hs(token("mallory", streams=["no_such_stream"])),
    "streams-not-a-list": lambda k: _hs(token("mallory", extra={"streams": "market_data"})),
    "sub-not-a-string": lambda k: _hs(
        hmac_signed({"alg": "HS256"}, claims(sub=12345), SECRET.encode())  # type: ignore[arg-type]
    ),
    "sub-empty": lambda k: _hs(hmac_signed({"alg": "HS256"}, claims(sub=""), SECRET.encode())),
    "sub-too-long": lambda k: _hs(token("m" * 201)),
    "jti-not-a-string": lambda k: _hs(token("mallory", extra={"jti": 7})),
    "exp-not-a-number": lambda k: _hs(token("mallory", extra={"exp": "tomorrow"})),
    "claims-not-an-object": lambda k: _hs(hmac_signed({"alg": "HS256"}, ["sub"], SECRET.encode())),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS), ids=list(BAD_TOKENS))
async def test_bad_token_is_refused_by_every_source(
    case: str, keys: Keys, make_gateway: MakeGateway, connect: Connect
) -> None:
    settings, jwt, code = BAD_TOKENS[case](keys)
    gateway = await make_gateway(auth_query_token=True, **settings)
    await assert_refused_everywhere(gateway, connect, jwt, code)


async def test_token_longer_than_the_limit_is_refused(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    huge = token("mallory", extra={"padding": "x" * 9000})
    answer = await refused(gateway, headers=bearer(huge))
    assert answer.status_code == 401
    assert_not_quoted(huge, answer.body)
    close = await auth_message_close(gateway, connect, huge)
    assert close.code == 4001
    assert_not_quoted(huge, close.reason)


async def test_missing_or_empty_tokens(make_gateway: MakeGateway, connect: Connect) -> None:
    gateway = await make_gateway(**SECURE, auth_query_token=True)
    answer = await refused(gateway, headers={"Authorization": "Bearer " + token(key=OTHER_SECRET)})
    assert answer.status_code == 401
    # No token in the header (an empty Bearer, another scheme such as a proxy's Basic, a
    # bare value): the connection is a stranger that must still send `auth`.
    for header in ("Bearer", "Bearer    ", "Basic YWxpY2U6cHc=", token()):
        client = await connect(gateway, headers={"Authorization": header})
        assert client.welcome["auth_required"] is True, header
    close = await auth_message_close(gateway, connect, "")
    assert close.code == 4001
    # An auth message without a string token is a bad request, not a login.
    client = await connect(gateway)
    for bad in ({"type": "auth"}, {"type": "auth", "token": None}, {"type": "auth", "token": 5}):
        reply = await client.request({**bad, "message_id": "m"}, "error")
        assert reply["error_code"] == "invalid_message"
    # An empty token entry or ?token= is no token: the connection is not authenticated.
    for options in ({"subprotocols": [JSON_PROTOCOL, TOKEN_PREFIX]}, {"path": "/ws?token="}):
        client = await connect(gateway, **options)
        assert client.welcome["auth_required"] is True and client.welcome.get("user_id") is None
        reply = await client.request(
            {"type": "subscribe", "stream": "market_data"}, "error", "subscription_confirmed"
        )
        assert reply["type"] == "error" and reply["error_code"] == "unauthorized"


async def test_a_bad_authorization_header_is_not_rescued_by_another_source(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, auth_query_token=True)
    good = token("alice")
    bad = token("alice", key=OTHER_SECRET)
    answer = await refused(
        gateway, headers=bearer(bad), subprotocols=[JSON_PROTOCOL, TOKEN_PREFIX + good]
    )
    assert answer.status_code == 401
    answer = await refused(gateway, headers=bearer(bad), query=query_of(good))
    assert answer.status_code == 401
    # The header wins over a subprotocol entry naming someone else.
    client = await connect(
        gateway,
        token=good,
        subprotocols=[JSON_PROTOCOL, TOKEN_PREFIX + token("root", roles=["admin"])],
    )
    assert client.welcome["user_id"] == "alice"


def test_configurations_that_cannot_be_safe_are_refused(keys: Keys) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(jwt_secret=SECRET, jwt_algorithms=["HS256", "none"])
    with pytest.raises(ValueError, match="32"):
        Gateway(GatewaySettings(jwt_secret="short-secret"))
    with pytest.raises(ValueError, match="jwt_secret"):
        Gateway(GatewaySettings(jwt_public_key_file=keys.rsa_pem, jwt_algorithms=["HS256"]))
    with pytest.raises(ValueError, match="unsupported"):
        Gateway(GatewaySettings(jwt_secret=SECRET, jwt_algorithms=["HS256", "EdDSA"]))
    symmetric = write_jwks(keys.dir / "oct.json", {"kty": "oct", "kid": "k", "k": "c2VjcmV0"})
    with pytest.raises(ValueError, match="RSA and EC"):
        Gateway(GatewaySettings(jwt_jwks_file=symmetric))
    private = keys.dir / "not-public.pem"
    private.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="PEM"):
        Gateway(GatewaySettings(jwt_public_key_file=private))


# ------------------------------------------------------------------ good tokens

GoodCase = Callable[[Keys], tuple[dict[str, Any], Callable[[str], str]]]
"""keys -> (gateway settings, sub -> a valid token for sub)."""

GOOD_TOKENS: dict[str, GoodCase] = {
    "hs256": lambda k: (dict(SECURE), lambda sub: token(sub)),
    "rs256-pem": lambda k: (
        {"jwt_public_key_file": k.rsa_pem},
        lambda sub: token(sub, key=rsa_key(), algorithm="RS256"),
    ),
    "es256-pem": lambda k: (
        {"jwt_public_key_file": k.ec_pem},
        lambda sub: token(sub, key=ec_key(), algorithm="ES256"),
    ),
    "jwks-rsa-kid": lambda k: (
        {"jwt_jwks_file": k.jwks},
        lambda sub: token(sub, key=rsa_key(), algorithm="RS256", kid="rsa-1"),
    ),
    "jwks-ec-kid": lambda k: (
        {"jwt_jwks_file": k.jwks, "jwt_algorithms": ["RS256", "ES256"]},
        lambda sub: token(sub, key=ec_key(), algorithm="ES256", kid="ec-1"),
    ),
    "jwks-kid-with-alg": lambda k: (
        {"jwt_jwks_file": k.jwks},
        lambda sub: token(sub, key=rsa_key("second"), algorithm="RS256", kid="rsa-2"),
    ),
    "secret-and-key-hs256": lambda k: (
        {**SECURE, "jwt_public_key_file": k.rsa_pem, "jwt_algorithms": ["HS256", "RS256"]},
        lambda sub: token(sub),
    ),
    "secret-and-key-rs256": lambda k: (
        {**SECURE, "jwt_public_key_file": k.rsa_pem, "jwt_algorithms": ["HS256", "RS256"]},
        lambda sub: token(sub, key=rsa_key(), algorithm="RS256"),
    ),
    "audience-and-issuer": lambda k: (
        {**SECURE, "jwt_audience": "tidewire", "jwt_issuer": "https://idp"},
        lambda sub: token(sub, audience="tidewire", issuer="https://idp"),
    ),
}


@pytest.mark.parametrize("case", list(GOOD_TOKENS), ids=list(GOOD_TOKENS))
async def test_valid_token_is_accepted_by_every_source(
    case: str, keys: Keys, make_gateway: MakeGateway, connect: Connect
) -> None:
    settings, mint = GOOD_TOKENS[case](keys)
    gateway = await make_gateway(auth_query_token=True, **settings)
    header = mint("via-header")
    client = await connect(gateway, token=header)
    exp = claims_of(header)["exp"]
    assert client.welcome["user_id"] == "via-header"
    assert client.welcome.get("auth_required", False) is False
    assert client.welcome["expires_at"] == iso_of(exp)
    assert (await client.subscribe("market_data"))["type"] == "subscription_confirmed"

    entry = TOKEN_PREFIX + mint("via-subprotocol")
    client = await connect(gateway, subprotocols=[JSON_PROTOCOL, entry])
    assert client.welcome["user_id"] == "via-subprotocol"
    assert client.ws.subprotocol == JSON_PROTOCOL
    assert client.ws.response is not None
    assert client.ws.response.headers.get_all("Sec-WebSocket-Protocol") == [JSON_PROTOCOL]

    client = await connect(gateway, path="/ws" + query_of(mint("via-query")))
    assert client.welcome["user_id"] == "via-query"

    client = await connect(gateway)
    assert client.welcome["auth_required"] is True
    ok = await client.request(
        {"type": "auth", "token": mint("via-auth"), "message_id": "a"}, "auth_ok"
    )
    assert ok["user_id"] == "via-auth" and ok["correlation_id"] == "a"
    assert (await client.subscribe("market_data"))["type"] == "subscription_confirmed"

    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        assert (await http.get("/api/whoami", headers=bearer(mint("via-rest")))).status_code == 200
    users = {c.user_id for c in gateway.hub.connections.values()}
    assert users == {"via-header", "via-subprotocol", "via-query", "via-auth"}


async def test_query_token_is_refused_unless_turned_on(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    jwt = token("alice")
    off = await make_gateway(**SECURE)
    answer = await refused(off, query=query_of(jwt))
    assert answer.status_code == 400
    assert b"auth_query_token" in answer.body
    assert_not_quoted(jwt, answer.body)
    on = await make_gateway(**SECURE, auth_query_token=True)
    client = await connect(on, path="/ws" + query_of(jwt))
    assert client.welcome["user_id"] == "alice"
    # The query (and so the token) is not kept as the connection's path.
    assert connection_of(on, client).path == "/ws"


FOREVER = 10**20
"""An `exp` past what a date can hold (a careless "never expires" token): the token is
valid, and the gateway must either accept it or refuse it cleanly, never break half-way."""


async def test_far_future_exp_does_not_leave_a_ghost_connection(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, max_connections_per_user=1)
    forever = token("alice", extra={"exp": FOREVER})
    try:
        async with ws_connect(ws_url(gateway), additional_headers=bearer(forever)) as ws:
            outcome = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"]
    except InvalidStatus as exc:
        outcome = f"HTTP {exc.response.status_code}"
    except ConnectionClosed as exc:
        outcome = f"closed with {exc.rcvd.code if exc.rcvd else None}"
    await wait_for(lambda: not gateway.hub.connections, "a ghost connection stayed", timeout=2)
    assert outcome in ("connection_established", "HTTP 401")
    # The user's connection slot was given back.
    client = await connect(gateway, token=token("alice"))
    assert client.welcome["user_id"] == "alice"


async def test_far_future_exp_in_auth_and_refresh_is_not_an_internal_error(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    for kind, client in (
        ("refresh", await connect(gateway, token=token("bob"))),
        ("auth", await connect(gateway)),
    ):
        forever = token("bob", extra={"exp": FOREVER})
        await client.send({"type": kind, "token": forever})
        try:
            reply = await client.recv_type("auth_ok", "error")
        except ConnectionClosed as exc:  # a refused first token closes with 4001
            assert kind == "auth" and exc.rcvd is not None and exc.rcvd.code == 4001
            continue
        assert reply.get("error_code") in (None, "unauthorized"), (kind, reply)


async def test_far_future_exp_on_the_control_plane_is_not_a_5xx(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**SECURE)
    forever = token("root", roles=["admin"], extra={"exp": FOREVER})
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        for path in ("/api/whoami", "/api/stats"):
            answer = await http.get(path, headers=bearer(forever))
            assert answer.status_code in (200, 401), (path, answer.text)


# ------------------------------------------------------------------ denylist


async def test_denylist_file_is_reread_while_running(
    keys: Keys, make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, jwt_denylist_file=keys.denylist)
    jwt = token("alice", jti="to-revoke")
    assert (await connect(gateway, token=jwt)).welcome["user_id"] == "alice"

    keys.denylist.write_text("revoked-in-file\nto-revoke\n")

    async def still_accepted() -> bool:
        try:
            ws = await ws_connect(ws_url(gateway), additional_headers=bearer(jwt))
        except InvalidStatus as exc:
            assert exc.response.status_code == 401
            assert b"revoked" in exc.response.body
            return False
        await ws.close()
        return True

    # The file is checked about once a second: poll, bounded.
    deadline = time.monotonic() + 5
    while await still_accepted():
        assert time.monotonic() < deadline, "the changed denylist file was not re-read"
        await asyncio.sleep(0.1)
    # A file that disappears (being replaced) does not un-revoke anything.
    keys.denylist.unlink()
    await asyncio.sleep(1.2)  # past the re-read interval, so the missing file was seen
    answer = await refused(gateway, headers=bearer(jwt))
    assert answer.status_code == 401
    # Other tokens of the same user are not affected.
    assert (await connect(gateway, token=token("alice"))).welcome["user_id"] == "alice"


# ------------------------------------------------------------------ auth_timeout


async def test_connection_that_never_authenticates_is_closed_after_auth_timeout(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, auth_timeout=0.8)
    await gateway.publish(quote("AAPL"))
    opened = time.monotonic()
    client = await connect(gateway)
    assert client.welcome["auth_required"] is True
    assert client.welcome.get("user_id") is None
    requests: list[dict[str, Any]] = [
        {"type": "subscribe", "stream": "market_data", "message_id": "sub"},
        {"type": "list_subscriptions", "message_id": "list"},
        {"type": "heartbeat", "client_timestamp": 1, "message_id": "hb"},
        {"type": "unsubscribe", "subscription_id": "sub-1", "message_id": "unsub"},
        {"type": "publish", "message": quote("AAPL"), "message_id": "pub"},
        {"type": "refresh", "token": "x", "message_id": "refresh"},
        {"action": "subscribe", "message_type": "market_data", "message_id": "legacy"},
    ]
    for request in requests:
        reply = await client.request(request, "error", "pong", "subscription_confirmed")
        assert reply["type"] == "error", reply
        assert reply["error_code"] == "unauthorized"
        assert reply["correlation_id"] == request["message_id"]
    pong = await client.request({"type": "ping", "message_id": "p"}, "pong", "error")
    assert pong["type"] == "pong" and pong["correlation_id"] == "p"
    pong = await client.request({"action": "ping"}, "pong", "error")
    assert pong["type"] == "pong"
    close = await closed_with(client)
    assert close.code == 4001
    assert close.reason == "authentication timeout"
    assert time.monotonic() - opened >= 0.8
    # It never got a data message, nor a position.
    assert not [m for m in client.received if "seq" in m or "positions" in m]
    assert gateway.hub.subscriber_count("market_data") == 0


async def test_auth_within_the_timeout_keeps_the_connection(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, auth_timeout=0.3)
    client = await connect(gateway)
    ok = await client.request({"type": "auth", "token": token("alice")}, "auth_ok")
    assert ok["user_id"] == "alice"
    await asyncio.sleep(0.8)  # well past auth_timeout: the point is that nothing happens
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


# ------------------------------------------------------------------ exp and refresh


def short_token(sub: str, seconds: float, **options: Any) -> tuple[str, float]:
    exp = time.time() + seconds
    return token(sub, extra={"exp": exp}, **options), exp


async def test_token_expiring_mid_connection_closes_with_4001(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, jwt_leeway=0, auth_timeout=0.4)
    jwt, exp = short_token("alice", 1.0)
    client = await connect(gateway, token=jwt)
    assert client.welcome["expires_at"] == iso_of(exp)
    close = await closed_with(client, timeout=5)
    assert close.code == 4001
    assert "expired" in close.reason
    assert time.time() >= exp - 0.05
    # The same by an auth message.
    jwt, exp = short_token("bob", 1.0)
    client = await connect(gateway)
    await client.request({"type": "auth", "token": jwt}, "auth_ok")
    assert (await closed_with(client, timeout=5)).code == 4001
    assert time.time() >= exp - 0.05


async def test_refresh_before_exp_keeps_the_connection(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, jwt_leeway=0, auth_timeout=0.4)
    jwt, exp = short_token("alice", 1.0)
    client = await connect(gateway, token=jwt)
    await client.subscribe("market_data")
    fresh = token("alice", ttl=3600)
    ok = await client.request({"type": "refresh", "token": fresh, "message_id": "r"}, "auth_ok")
    assert ok["correlation_id"] == "r"
    assert ok["expires_at"] == iso_of(claims_of(fresh)["exp"])
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.8)  # past the old exp and a sweep
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"
    await gateway.publish(quote("AAPL"))
    assert len(await client.data(1)) == 1


async def test_refresh_with_another_users_token_is_refused(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    client = await connect(gateway, token=token("alice", portfolios=["PF-A"]))
    await client.subscribe("order_updates")
    admin = token("root", roles=["admin"], portfolios=["*"])
    for kind in ("refresh", "auth"):
        reply = await client.request(
            {"type": kind, "token": admin, "message_id": kind}, "error", "auth_ok"
        )
        assert reply["type"] == "error" and reply["error_code"] == "forbidden"
        assert reply["correlation_id"] == kind
        assert_not_quoted(admin, reply["error_message"])
    bad = token("alice", key=OTHER_SECRET)
    reply = await client.request({"type": "refresh", "token": bad}, "error", "auth_ok")
    assert reply["error_code"] == "unauthorized"
    assert_not_quoted(bad, reply["error_message"])
    # Still alice, with alice's rights, and still working.
    connection = connection_of(gateway, client)
    assert connection.user_id == "alice" and connection.principal.portfolios == {"PF-A"}
    await gateway.publish(order("PF-B", 1))
    await gateway.publish(order("PF-A", 2))
    assert [m["portfolio_id"] for m in await client.data(1)] == ["PF-A"]
    reply = await client.subscribe("order_updates", filters={"portfolio_ids": ["PF-B"]})
    assert reply["error_code"] == "forbidden"


async def test_refresh_with_fewer_portfolios_ends_exactly_the_uncovered_subscriptions(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    client = await connect(gateway, token=token("alice", portfolios=["PF-A", "PF-B"]))
    await client.subscribe(
        "order_updates", subscription_id="only-a", filters={"portfolio_ids": ["PF-A"]}
    )
    await client.subscribe(
        "order_updates", subscription_id="only-b", filters={"portfolio_ids": ["PF-B"]}
    )
    await client.subscribe("position_updates", subscription_id="all-mine")  # narrowed to A and B
    await client.subscribe("market_data", subscription_id="quotes")
    await client.send(
        {"type": "refresh", "token": token("alice", portfolios=["PF-A"]), "message_id": "r"}
    )
    ok = await client.recv_type("auth_ok")
    assert ok["correlation_id"] == "r"
    ended = [await client.recv_type("subscription_error") for _ in range(2)]
    assert {e["subscription_id"] for e in ended} == {"only-b", "all-mine"}
    for error in ended:
        assert error["error_code"] == "forbidden"
        assert error.get("correlation_id") is None  # not an answer to a request
        assert error["subscription_id"] in error["error_message"]
    listed = await client.request({"type": "list_subscriptions"}, "subscriptions")
    assert sorted(s["subscription_id"] for s in listed["subscriptions"]) == ["only-a", "quotes"]
    await gateway.publish(order("PF-B", 1))
    await gateway.publish(order("PF-A", 2))
    await gateway.publish(quote("AAPL"))
    got = await client.data(2)
    assert [(m["stream"], m.get("portfolio_id")) for m in got] == [
        ("order_updates", "PF-A"),
        ("market_data", None),
    ]
    assert await client.no_data(gateway) == []
    assert gateway.hub.ledger.subscription_count("alice") == 2


# ------------------------------------------------------------------ revocation


async def test_disconnect_user_closes_every_connection_of_that_user_only(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    bob_header = await connect(gateway, token=token("bob"))
    bob_message = await connect(gateway)
    await bob_message.request({"type": "auth", "token": token("bob")}, "auth_ok")
    bob_subprotocol = await connect(
        gateway, subprotocols=[JSON_PROTOCOL, TOKEN_PREFIX + token("bob")]
    )
    alice = await connect(gateway, token=token("alice"))
    await alice.subscribe("market_data")
    stranger = await connect(gateway)  # no token yet
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        path = "/api/users/bob/disconnect"
        nobody = await http.post(path, json={})
        assert nobody.status_code == 401 and "www-authenticate" in nobody.headers
        subscriber = await http.post(path, json={}, headers=bearer(token("carol")))
        assert subscriber.status_code == 403
        publisher = await http.post(
            path, json={}, headers=bearer(token("pat", roles=["publisher"]))
        )
        assert publisher.status_code == 403
        assert len(gateway.hub.ledger.connections_of("bob")) == 3
        answer = await http.post(path, json={}, headers=bearer(token("root", roles=["admin"])))
    assert answer.status_code == 200
    assert answer.json() == {"user_id": "bob", "closed_here": 3}
    for client in (bob_header, bob_message, bob_subprotocol):
        assert (await closed_with(client)).code == 4003
    await gateway.publish(quote("AAPL"))
    assert len(await alice.data(1)) == 1
    assert (await stranger.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_disconnect_user_whose_id_has_a_slash(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    """`sub` values are free text (`spiffe://corp/ns/x`, `team/alice`): the operator must
    still be able to revoke them, with the id percent-encoded in the path."""
    gateway = await make_gateway(**SECURE)
    victim = await connect(gateway, token=token("team/alice"))
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        answer = await http.post(
            "/api/users/team%2Falice/disconnect",
            json={},
            headers=bearer(token("root", roles=["admin"])),
        )
    assert answer.status_code == 200, answer.text
    assert (await closed_with(victim)).code == 4003


# ------------------------------------------------------------------ control plane access

ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/whoami", None, "any"),
    ("GET", "/api/stats", None, "admin"),
    ("GET", "/api/streams", None, "admin"),
    ("POST", "/api/publish", quote("AAPL"), "publisher"),
    ("POST", "/api/broadcast", {"message": "hello"}, "admin"),
    ("GET", "/api/connections", None, "admin"),
    ("GET", "/api/subscriptions", None, "admin"),
    ("DELETE", "/api/connections/nope", None, "admin"),
    ("POST", "/api/users/bob/disconnect", {}, "admin"),
]
ROLES_ENOUGH = {
    "any": ["subscriber", "publisher", "admin"],
    "publisher": ["publisher", "admin"],
    "admin": ["admin"],
}


@pytest.mark.parametrize(
    ("method", "path", "body", "needs"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
async def test_control_plane_endpoint_guards(
    method: str, path: str, body: Any, needs: str, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway(**SECURE, jwt_leeway=0)

    async def call(headers: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
            return await http.request(method, path, json=body, headers=headers)

    for headers in (None, {"Authorization": "Basic cm9vdDpyb290"}, {"Authorization": "Bearer"}):
        answer = await call(headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].lower().startswith("bearer")
        assert answer.json()["error_code"] == "unauthorized"
    for bad, code in (
        (token("root", roles=["admin"], key=OTHER_SECRET), "unauthorized"),
        (with_claims(token("root", roles=["subscriber"]), roles=["admin"]), "unauthorized"),
        (unsigned({"alg": "none"}, claims("root")), "unauthorized"),
        (token("root", roles=["admin"], ttl=-5), "token_expired"),
    ):
        answer = await call(bearer(bad))
        assert answer.status_code == 401, answer.text
        assert "www-authenticate" in answer.headers
        assert answer.json()["error_code"] == code
        assert set(answer.json()) <= {"error_code", "error_message", "details"}
        assert_not_quoted(bad, answer.text)
    for role in ("subscriber", "publisher", "admin"):
        answer = await call(bearer(token(f"user-{role}", roles=[role], portfolios=["*"])))
        if role in ROLES_ENOUGH[needs]:
            assert answer.status_code not in (401, 403), (role, answer.text)
            assert answer.status_code < 500
        else:
            assert answer.status_code == 403, (role, answer.text)
            assert answer.json()["error_code"] == "forbidden"
    # Only the allowed calls published anything.
    published = 1 if path == "/api/publish" else 0
    assert gateway.broker.position("market_data").seq == published * 2  # publisher, admin


async def test_open_endpoints_need_no_token(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**SECURE)
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        config = await http.get("/api/config")
        assert config.status_code == 200 and config.json()["auth_required"] is True
        assert (await http.get("/")).status_code == 200


# ------------------------------------------------------------------ tokens stay secret


CLIENT_LOGGERS = ("websockets", "httpx", "httpcore", "asyncio", "hpack")


async def test_tokens_never_reach_logs_introspection_or_errors(
    make_gateway: MakeGateway, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)
    for name in ("tidewire", "uvicorn", "uvicorn.error", "uvicorn.asgi", "litestar", "picows"):
        caplog.set_level(1, logger=name)
    gateway = await make_gateway(**SECURE, auth_query_token=True, jwt_leeway=0)
    # Every logger that exists now also reports to caplog, even those not propagating.
    for logger in [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
        if not logger.name.startswith(CLIENT_LOGGERS) and caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
    admin = token("root", roles=["admin"])
    good = [token(f"user-{i}") for i in range(5)]
    bad = [
        token("mallory", key=OTHER_SECRET),
        with_claims(token("mallory"), roles=["admin"]),
        unsigned({"alg": "none"}, claims()),
        token("mallory", ttl=-5),
        token("mallory", roles=["superuser"]),
        "not-a-jwt-" + "s3cr3t" * 5,
    ]
    try:
        clients = [
            await connect(gateway, token=good[0]),
            await connect(gateway, subprotocols=[JSON_PROTOCOL, TOKEN_PREFIX + good[1]]),
            await connect(gateway, path="/ws" + query_of(good[2])),
        ]
        by_message = await connect(gateway)
        await by_message.request({"type": "auth", "token": good[3]}, "auth_ok")
        await by_message.request({"type": "refresh", "token": good[3]}, "auth_ok")
        for jwt in bad:
            await refused(gateway, headers=bearer(jwt))
            await refused(gateway, subprotocols=[JSON_PROTOCOL, TOKEN_PREFIX + jwt])
            await refused(gateway, query=query_of(jwt))
            close = await auth_message_close(gateway, connect, jwt)
            assert_not_quoted(jwt, close.reason)
            reply = await clients[0].request({"type": "refresh", "token": jwt}, "error")
            assert_not_quoted(jwt, reply["error_message"])
        async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
            for jwt in [good[4], *bad]:
                await http.get("/api/stats", headers=bearer(jwt))
                await http.post("/api/publish", json=quote("AAPL"), headers=bearer(jwt))
            listed = await http.get("/api/connections", headers=bearer(admin))
            subscriptions = await http.get("/api/subscriptions", headers=bearer(admin))
            stats = await http.get("/api/stats", headers=bearer(admin))
        assert listed.status_code == 200 and len(listed.json()) >= 4
        for jwt in [*good, *bad, admin]:
            assert_not_quoted(jwt, listed.text, subscriptions.text, stats.text)
    finally:
        for logger in [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
            if caplog.handler in logger.handlers and logger is not logging.root:
                logger.removeHandler(caplog.handler)
    server_records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    assert any(r.name.startswith("tidewire") for r in server_records), "nothing was captured"
    for record in server_records:
        text = " ".join([record.getMessage(), repr(record.args), record.exc_text or ""])
        for jwt in [*good, *bad, admin]:
            assert_not_quoted(jwt, text)


# ------------------------------------------------------------------ identity limits


async def test_max_connections_per_user(make_gateway: MakeGateway, connect: Connect) -> None:
    gateway = await make_gateway(**SECURE, max_connections_per_user=2)
    await connect(gateway, token=token("alice"))
    await connect(gateway, subprotocols=[JSON_PROTOCOL, TOKEN_PREFIX + token("alice")])
    async with ws_connect(ws_url(gateway), additional_headers=bearer(token("alice"))) as third:
        close = await closed_with(third)
    assert close.code == 4009
    # By an auth message: the same limit.
    late = await connect(gateway)
    await late.send({"type": "auth", "token": token("alice")})
    assert (await closed_with(late)).code == 4009
    # Other users are not affected, and a closed connection frees its slot.
    assert (await connect(gateway, token=token("bob"))).welcome["user_id"] == "bob"
    assert gateway.hub.ledger.user_count("alice") == 2


async def test_max_connections_per_address(make_gateway: MakeGateway, connect: Connect) -> None:
    gateway = await make_gateway(**SECURE, max_connections_per_address=2)
    first = await connect(gateway, token=token("alice"))
    await connect(gateway)  # no token: still counts for its address
    async with ws_connect(ws_url(gateway), additional_headers=bearer(token("bob"))) as third:
        assert (await closed_with(third)).code == 4009
    await first.close()
    await wait_for(lambda: gateway.hub.ledger.address_count("127.0.0.1") == 1, "slot not freed")
    assert (await connect(gateway, token=token("bob"))).welcome["user_id"] == "bob"


async def test_max_subscriptions_per_user_across_connections(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, max_subscriptions_per_user=3)
    one = await connect(gateway, token=token("alice"))
    two = await connect(gateway, token=token("alice"))
    bob = await connect(gateway, token=token("bob"))
    await one.subscribe("market_data")
    await one.subscribe("events")
    assert (await two.subscribe("order_updates"))["type"] == "subscription_confirmed"
    refused_sub = await two.subscribe("engine_status", message_id="four")
    assert refused_sub["type"] == "subscription_error"
    assert refused_sub["error_code"] == "too_many_subscriptions"
    assert refused_sub["correlation_id"] == "four"
    assert (await bob.subscribe("engine_status"))["type"] == "subscription_confirmed"
    # Unsubscribing, or a connection going away, gives the slots back.
    listed = await one.request({"type": "list_subscriptions"}, "subscriptions")
    first_id = listed["subscriptions"][0]["subscription_id"]
    await one.request(
        {"type": "unsubscribe", "subscription_id": first_id}, "unsubscription_confirmed"
    )
    assert (await two.subscribe("engine_status"))["type"] == "subscription_confirmed"
    await one.close()
    await wait_for(lambda: gateway.hub.ledger.subscription_count("alice") == 2, "slots kept")
    assert (await two.subscribe("system_health"))["type"] == "subscription_confirmed"


async def test_publish_rate_limit_refuses_and_publishes_nothing(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, max_publish_rate=0.01, publish_burst=2)
    reader = await connect(gateway, token=token("reader"))
    await reader.subscribe("market_data")
    pat = token("pat", portfolios=["*"], roles=["publisher"])
    ws_pat = await connect(gateway, token=pat)
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        ok = await http.post(
            "/api/publish", json=[quote("AAPL"), quote("MSFT")], headers=bearer(pat)
        )
        assert ok.status_code == 200
        over = await http.post(
            "/api/publish", json=quote("IBM", message_id="refused-1"), headers=bearer(pat)
        )
        assert over.status_code == 429
        assert over.json()["error_code"] == "rate_limited"
        assert int(over.headers["Retry-After"]) >= 1
        reply = await ws_pat.request(
            {"type": "publish", "message": quote("IBM", message_id="refused-2"), "message_id": "p"},
            "error",
            "ack",
        )
        assert reply["type"] == "error" and reply["error_code"] == "rate_limited"
        assert reply["correlation_id"] == "p" and reply["retryable"] is True
        # A request larger than the burst can never pass: refused whole, no Retry-After.
        sam = token("sam", portfolios=["*"], roles=["publisher"])
        too_many = [quote("IBM", message_id=f"refused-{i}") for i in range(3, 6)]
        whole = await http.post("/api/publish", json=too_many, headers=bearer(sam))
        assert whole.status_code == 429 and whole.json()["error_code"] == "rate_limited"
        # Another publisher has its own budget.
        other = await http.post("/api/publish", json=quote("TSLA"), headers=bearer(sam))
        assert other.status_code == 200
    got = await reader.data(3)
    assert [m["symbol"] for m in got] == ["AAPL", "MSFT", "TSLA"]
    assert await reader.no_data(gateway) == []
    assert gateway.broker.position("market_data").seq == 3
