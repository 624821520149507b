"""The WebSocket handshake's rules (docs/protocol.md): path, subprotocol, options, token.

Pure: header values in, a `Handshake` (or `HandshakeRefused` with an HTTP status) out.

Where a token may come from, first match wins: `Authorization: Bearer <jwt>` (another
scheme is ignored); a
`Sec-WebSocket-Protocol` entry `tidewire.token.<jwt>` offered beside the protocol entry
(browsers cannot set headers; the answer names only the protocol, never the token); the
`token` query parameter, only when the `auth_query_token` setting is on (URLs end up in
proxy logs). Without any, the client may send `auth {token}` as its first message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tidewire.protocol.codec import SUBPROTOCOL_JSON, SUBPROTOCOLS, WireFormat
from tidewire.security.tokens import bearer_token

TOKEN_SUBPROTOCOL_PREFIX = "tidewire.token."
QUERY_OPTIONS = frozenset({"batch_ms", "decimals", "token"})


WEBSOCKET_VERSION = "13"
"""RFC 6455 4.2.2: the only version spoken; any other is answered 426 naming it."""


class HandshakeRefused(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers
        """Extra response headers (426 names the version spoken)."""


def check_version(version: str | None) -> None:
    """Refuse (426 with `Sec-WebSocket-Version: 13`) an upgrade of another protocol
    version, or of none: picows does not look at the header."""
    if (version or "").strip() != WEBSOCKET_VERSION:
        raise HandshakeRefused(
            426,
            f"WebSocket version {WEBSOCKET_VERSION} only",
            {"Sec-WebSocket-Version": WEBSOCKET_VERSION},
        )


@dataclass(frozen=True, slots=True)
class Handshake:
    path: str
    """The path without its query."""
    subprotocol: str | None
    """The subprotocol to answer with (None: the client offered none)."""
    wire_format: WireFormat
    batch_ms: int
    token: str | None
    """The token presented in the handshake, if any (never logged, never echoed)."""


def negotiate(
    path: str,
    offered_subprotocols: str | None,
    max_batch_ms: int,
    authorization: str | None = None,
    query_token: bool = False,
) -> Handshake:
    """Check an upgrade request's options; raises HandshakeRefused (400) for bad ones.

    No offered subprotocol means JSON (and no Sec-WebSocket-Protocol in the answer); offering
    only unknown ones is refused. `batch_ms` and `decimals=string` come from the query.
    """
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    unknown = sorted(name for name in query if name not in QUERY_OPTIONS)
    if unknown:
        raise HandshakeRefused(
            400, f"unknown query option(s) {', '.join(n[:32] for n in unknown[:5])}"
        )
    offered = [p.strip() for p in (offered_subprotocols or "").split(",") if p.strip()]
    token_entries = [p for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)]
    protocols = [p for p in offered if not p.startswith(TOKEN_SUBPROTOCOL_PREFIX)]
    chosen: str | None = None
    if protocols:
        chosen = next((p for p in protocols if p in SUBPROTOCOLS), None)
        if chosen is None:
            raise HandshakeRefused(
                400, f"none of the offered subprotocols is supported; use {', '.join(SUBPROTOCOLS)}"
            )
    elif token_entries:
        # A browser that offered only the token would fail the answer without a protocol.
        raise HandshakeRefused(400, f"offer {SUBPROTOCOL_JSON} beside the tidewire.token entry")
    decimals = query.get("decimals", [""])[-1]
    if decimals not in ("", "number", "string"):
        raise HandshakeRefused(400, "decimals must be 'number' or 'string'")
    batch_ms = 0
    if "batch_ms" in query:
        try:
            batch_ms = int(query["batch_ms"][-1])
        except ValueError:
            raise HandshakeRefused(400, "batch_ms must be an integer") from None
        if not 0 <= batch_ms <= max_batch_ms:
            raise HandshakeRefused(400, f"batch_ms must be between 0 and {max_batch_ms}")
    token = bearer_token(authorization)
    if token is None and token_entries:
        token = token_entries[0][len(TOKEN_SUBPROTOCOL_PREFIX) :]
    if "token" in query:
        if not query_token:
            raise HandshakeRefused(
                400,
                "?token= is turned off (setting auth_query_token): send the token as "
                "Authorization: Bearer, as a tidewire.token.<jwt> subprotocol entry, or in "
                "an auth message",
            )
        token = token or query["token"][-1]
    fmt = WireFormat.of(chosen or SUBPROTOCOL_JSON, decimals == "string")
    return Handshake(parts.path, chosen, fmt, batch_ms, token or None)
