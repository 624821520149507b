"""Defences against web pages: Origin and Host allowlists, JSON-only POSTs, headers.

A page on another site can make the browser send "simple" cross-site requests (a form POST,
a `fetch` without custom headers) to any port of the machine it runs on without a
preflight, and DNS rebinding makes the gateway's host look same-origin. So:

* WebSocket handshakes must come from an allowed Origin (`allowed_origins`; by default the
  dashboard's own origins) or carry no Origin at all (programs, not browsers);
* the control plane serves only `Host` values it knows (`allowed_hosts`), accepts only
  `application/json` POSTs (a browser cannot send that cross-site without a preflight,
  which CORS then refuses), and sends `X-Content-Type-Options`, `Referrer-Policy`,
  `X-Frame-Options` and a `Content-Security-Policy` with every answer.

The checks are pure functions; `HttpGuard` is the ASGI edge that applies them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import msgspec

from tidewire.protocol.errors import ErrorCode
from tidewire.protocol.messages import ErrorBody

LOCAL_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


def url_host(host: str) -> str:
    """A host as it stands in a URL or an Origin: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def default_hosts(internal_host: str) -> frozenset[str]:
    """127.0.0.1, localhost, ::1 and the control plane's own interface (when it is one)."""
    hosts = set(LOCAL_HOSTS)
    if internal_host not in WILDCARD_HOSTS:
        hosts.add(internal_host.lower())
    return frozenset(hosts)


def host_of(header: str) -> str:
    """The host name of a `Host` header value: `[::1]:8766` -> `::1`, `a.b:80` -> `a.b`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's `Host` names this gateway. A missing Host is refused."""
    if not header:
        return False
    return "*" in allowed or host_of(header) in allowed


def default_origins(hosts: Iterable[str], port: int, tls: bool) -> frozenset[str]:
    """The dashboard's own origins: each allowed host on the control plane's port."""
    scheme = "https" if tls else "http"
    origins = set()
    for host in hosts:
        if host == "*":
            continue
        origins.add(f"{scheme}://{url_host(host)}:{port}")
        if port == (443 if tls else 80):
            origins.add(f"{scheme}://{url_host(host)}")
    return frozenset(origins)


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """Whether a WebSocket handshake's Origin may connect: none (not a browser), or listed.

    `null` (sandboxed frames, file pages) is refused unless listed literally.
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    return origin.strip().rstrip("/").lower() in allowed


def json_content_type(header: str | None) -> bool:
    """`application/json`, with or without parameters (`; charset=utf-8`)."""
    if not header:
        return False
    return header.split(";", 1)[0].strip().lower() == "application/json"


def content_security_policy(ws_origins: Iterable[str]) -> str:
    """The dashboard's CSP: its own scripts and styles only, WebSocket to the data plane."""
    connect = " ".join(["'self'", *sorted(ws_origins)])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def data_plane_origins(host_header: str, port: int, tls: bool, data_host: str) -> list[str]:
    """Where the dashboard served under `host_header` may open its WebSocket."""
    host = host_of(host_header) if data_host in WILDCARD_HOSTS | set(LOCAL_HOSTS) else data_host
    return [f"{'wss' if tls else 'ws'}://{url_host(host)}:{port}"]


def _error(status: int, code: ErrorCode, message: str) -> tuple[int, bytes]:
    return status, msgspec.json.encode(ErrorBody(error_code=code.value, error_message=message))


class HttpGuard:
    """ASGI middleware of the control plane: Host allowlist, JSON-only POSTs, headers."""

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: frozenset[str],
        csp: Callable[[str], str],
        unguarded_csp_prefixes: tuple[str, ...] = ("/docs",),
    ) -> None:
        """`csp(host_header)` gives the Content-Security-Policy of an answer; paths under
        `unguarded_csp_prefixes` (the API docs, which load their own viewer) get none."""
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.csp = csp
        self.unguarded = unguarded_csp_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        path = scope.get("path", "")
        refusal: tuple[int, bytes] | None = None
        # Probes are exempt: they carry no data, and orchestrators call them by pod IP.
        if path not in PROBE_PATHS and not host_allowed(host, self.allowed_hosts):
            shown = (host or "")[:100]
            refusal = _error(
                421,
                ErrorCode.FORBIDDEN,
                f"Host {shown!r} is not served here (setting allowed_hosts)",
            )
        elif scope["method"] in ("POST", "PUT", "PATCH") and not json_content_type(
            headers.get("content-type")
        ):
            refusal = _error(
                415, ErrorCode.INVALID_MESSAGE, "request bodies must be application/json"
            )
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        unguarded = any(path == p or path.startswith(p + "/") for p in self.unguarded)
        if refusal is None and not unguarded:
            extra.append((b"content-security-policy", self.csp(host or "").encode("latin-1")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if refusal is not None:
            status, body = refusal
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)
