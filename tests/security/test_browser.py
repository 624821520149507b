"""Attacks from web pages on a real gateway: CSRF, DNS rebinding, cross-site WebSockets,
CORS, the response headers, and who an operator broadcast reaches.

A page on any site can make the victim's browser send "simple" requests (a form POST with
`text/plain`, urlencoded or multipart bodies, no preflight) to the gateway on localhost, and
DNS rebinding makes `evil.example` resolve to 127.0.0.1 so the page looks same-origin. Both
run with authentication off (the demo's default: every caller is trusted) and on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from messages import position, quote, system_alert
from support import TIMEOUT, WsClient
from tidewire.protocol.errors import ProtocolError
from tidewire.server.app import Gateway
from tokens import SECURE, bearer, token

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]

ADMIN = token("root", roles=["admin"], portfolios=["*"])
AUTH = {"off": {}, "on": SECURE}


def admin_headers(gateway: Gateway) -> dict[str, str]:
    return bearer(ADMIN) if gateway.authenticator.required else {}


def http_client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT)


async def reader(gateway: Gateway, connect: Connect, sub: str = "reader") -> WsClient:
    """A connection subscribed to the streams a forged request could publish on."""
    client = await connect(gateway, token=token(sub, portfolios=["*"]) if _auth(gateway) else None)
    for stream in ("market_data", "events", "position_updates"):
        assert (await client.subscribe(stream))["type"] == "subscription_confirmed"
    return client


def _auth(gateway: Gateway) -> bool:
    return gateway.authenticator.required


def positions(gateway: Gateway) -> dict[str, int]:
    return {
        s: gateway.broker.position(s).seq for s in ("market_data", "events", "position_updates")
    }


# ------------------------------------------------------------------ CSRF: simple requests

FORGED_BODY = json.dumps(quote("AAPL", bid=1.0))
SIMPLE_BODIES: dict[str, tuple[str | None, bytes]] = {
    "text/plain": ("text/plain", FORGED_BODY.encode()),
    "text/plain;charset=utf-8": ("text/plain;charset=UTF-8", FORGED_BODY.encode()),
    "urlencoded": (
        "application/x-www-form-urlencoded",
        b"payload=" + FORGED_BODY.encode() + b"&x=1",
    ),
    "multipart": (
        "multipart/form-data; boundary=XyZ",
        b'--XyZ\r\nContent-Disposition: form-data; name="x"\r\n\r\n'
        + FORGED_BODY.encode()
        + b"\r\n--XyZ--\r\n",
    ),
    "no-content-type": (None, FORGED_BODY.encode()),
    "json-lookalike": ("application/json-seq", FORGED_BODY.encode()),
    "json-as-parameter": ("text/plain; type=application/json", FORGED_BODY.encode()),
}
FORGED_TARGETS: list[tuple[str, bytes | None]] = [
    ("/api/publish", None),  # None: the body of the content type
    ("/api/publish", json.dumps([position("PF-1", "AAPL", 5.0)]).encode()),
    ("/api/broadcast", json.dumps({"message": "send your keys to evil.example"}).encode()),
    ("/api/users/victim/disconnect", b"{}"),
]


@pytest.mark.parametrize("auth", list(AUTH))
@pytest.mark.parametrize("kind", list(SIMPLE_BODIES))
async def test_cross_site_simple_posts_are_refused_and_change_nothing(
    auth: str, kind: str, make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**AUTH[auth])
    watcher = await reader(gateway, connect)
    victim = await connect(gateway, token=token("victim")) if auth == "on" else None
    before = positions(gateway)
    content_type, body = SIMPLE_BODIES[kind]
    async with http_client(gateway) as http:
        for path, own_body in FORGED_TARGETS:
            headers = {**admin_headers(gateway), "Origin": "http://evil.example"}
            if content_type is not None:
                headers["Content-Type"] = content_type
            request = http.build_request("POST", path, content=own_body or body, headers=headers)
            if content_type is None:
                request.headers.pop("Content-Type", None)
            answer = await http.send(request)
            assert answer.status_code == 415, (path, answer.text)
            assert answer.json()["error_code"] == "invalid_message"
            assert "access-control-allow-origin" not in answer.headers
    assert positions(gateway) == before
    assert await watcher.no_data(gateway) == []
    if victim is not None:
        assert (await victim.request({"type": "ping"}, "pong"))["type"] == "pong"
        assert len(gateway.hub.ledger.connections_of("victim")) == 1


@pytest.mark.parametrize("auth", list(AUTH))
async def test_json_posts_still_work(
    auth: str, make_gateway: MakeGateway, connect: Connect
) -> None:
    """The control: the same requests as application/json (which a page cannot send
    cross-site without a preflight) are served."""
    gateway = await make_gateway(**AUTH[auth])
    watcher = await reader(gateway, connect)
    async with http_client(gateway) as http:
        headers = {**admin_headers(gateway), "Content-Type": "application/json; charset=utf-8"}
        answer = await http.post("/api/publish", content=FORGED_BODY, headers=headers)
        assert answer.status_code == 200, answer.text
    assert len(await watcher.data(1)) == 1


# ------------------------------------------------------------------ DNS rebinding: Host

EVIL_HOSTS = [
    "evil.example",
    "evil.example:8766",
    "127.0.0.1.evil.example",
    "localhost.evil.example:80",
    "EVIL.example",
    "[::2]:8766",
]
GUARDED_REQUESTS: list[tuple[str, str]] = [
    ("GET", "/"),
    ("GET", "/index.html"),
    ("GET", "/app.js"),
    ("GET", "/api/config"),
    ("GET", "/api/stats"),
    ("GET", "/api/connections"),
    ("GET", "/docs/openapi.json"),
    ("GET", "/api/nothing-here"),
    ("POST", "/api/publish"),
    ("POST", "/api/broadcast"),
    ("POST", "/api/users/victim/disconnect"),
    ("DELETE", "/api/connections/x"),
]


async def test_probes_answer_any_host(make_gateway: MakeGateway) -> None:
    # Orchestrators probe by pod IP; the probes carry no data a rebinding page could take.
    gateway = await make_gateway(**SECURE)
    async with http_client(gateway) as http:
        for path in ("/healthz", "/readyz"):
            answer = await http.get(path, headers={"Host": "10.1.2.3:8766"})
            assert answer.status_code == 200, (path, answer.text)


@pytest.mark.parametrize("auth", list(AUTH))
async def test_unknown_host_is_refused_with_421(
    auth: str, make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**AUTH[auth])
    watcher = await reader(gateway, connect)
    before = positions(gateway)
    async with http_client(gateway) as http:
        for host in EVIL_HOSTS:
            for method, path in GUARDED_REQUESTS:
                body = {"message": "x"} if path == "/api/broadcast" else quote("AAPL")
                answer = await http.request(
                    method,
                    path,
                    json=body if method == "POST" else None,
                    headers={**admin_headers(gateway), "Host": host},
                )
                assert answer.status_code == 421, (host, method, path, answer.status_code)
                assert answer.json()["error_code"] == "forbidden"
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert "<html" not in answer.text
        # The names of this machine are served.
        port = gateway.internal_port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            answer = await http.get("/api/config", headers={"Host": host})
            assert answer.status_code == 200, host
    assert positions(gateway) == before
    assert await watcher.no_data(gateway) == []


async def raw_http(gateway: Gateway, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.internal_port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), TIMEOUT)
    finally:
        writer.close()


async def test_request_without_host_is_refused(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway()
    for request in (
        b"GET /api/config HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost:\r\n\r\n",
        b"POST /api/publish HTTP/1.0\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}",
    ):
        answer = await raw_http(gateway, request)
        assert answer.startswith(b"HTTP/1.1 421"), answer[:80]
    # HTTP/1.1 requires Host: the server refuses such a request before the application.
    answer = await raw_http(gateway, b"GET / HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]


@pytest.mark.parametrize(
    "path",
    [
        b"/../../pyproject.toml",
        b"/%2e%2e/%2e%2e/pyproject.toml",
        b"/..%2f..%2f..%2fpyproject.toml",
        b"/vendor/..%2f..%2f__init__.py",
        b"/..%5c__init__.py",
        b"//etc/passwd",
    ],
)
async def test_dashboard_files_stay_in_their_directory(
    path: bytes, make_gateway: MakeGateway
) -> None:
    gateway = await make_gateway()
    answer = await raw_http(
        gateway, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    status = answer.split(b" ", 2)[1]
    assert status in (b"400", b"404"), answer[:200]
    assert b"[project]" not in answer and b"root:" not in answer


async def test_allowed_hosts_setting(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(allowed_hosts=["gw.example", "127.0.0.1"])
    async with http_client(gateway) as http:
        for host in ("gw.example", "GW.EXAMPLE:8766", "127.0.0.1"):
            assert (await http.get("/api/config", headers={"Host": host})).status_code == 200
        for host in ("evil.example", "gw.example.evil.example", "sub.gw.example"):
            assert (await http.get("/api/config", headers={"Host": host})).status_code == 421
    anything = await make_gateway(allowed_hosts=["*"])
    async with http_client(anything) as http:
        assert (await http.get("/", headers={"Host": "evil.example"})).status_code == 200


# ------------------------------------------------------------------ cross-site WebSockets


async def ws_status(gateway: Gateway, origin: str | None, jwt: str | None = None) -> int:
    """101 when the handshake with `origin` is accepted, else its HTTP status."""
    try:
        ws = await ws_connect(
            gateway.url,
            origin=Origin(origin) if origin is not None else None,
            additional_headers=bearer(jwt) if jwt else None,
            open_timeout=TIMEOUT,
        )
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


@pytest.mark.parametrize("auth", list(AUTH))
async def test_websocket_origin_allowlist_by_default(auth: str, make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**AUTH[auth])
    jwt = token("alice") if auth == "on" else None
    port = gateway.internal_port
    origin: str | None
    for origin in (
        "http://evil.example",
        "null",
        "https://evil.example:443",
        f"http://127.0.0.1:{port}.evil.example",
        f"http://evil.example:{port}",
        f"https://127.0.0.1:{port}",
        "http://127.0.0.1",
        f"http://127.0.0.1:{port}@evil.example",
        "file://",
        "",
    ):
        assert await ws_status(gateway, origin, jwt) == 403, origin
    for origin in (
        f"http://127.0.0.1:{port}",
        f"http://localhost:{port}",
        f"http://[::1]:{port}",
        f"http://127.0.0.1:{port}/",
        None,
    ):
        assert await ws_status(gateway, origin, jwt) == 101, origin


async def test_allowed_origins_setting(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(allowed_origins=["http://app.example", "https://desk.example/"])
    assert await ws_status(gateway, "http://app.example") == 101
    assert await ws_status(gateway, "https://desk.example") == 101
    assert await ws_status(gateway, None) == 101
    for origin in ("http://evil.example", "null", "http://app.example.evil.example"):
        assert await ws_status(gateway, origin) == 403, origin
    anything = await make_gateway(allowed_origins=["*"])
    assert await ws_status(anything, "http://evil.example") == 101
    assert await ws_status(anything, "null") == 101


async def test_forbidden_origin_reaches_no_connection(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway()
    assert await ws_status(gateway, "http://evil.example") == 403
    assert gateway.hub.counters.connections_opened == 0


# ------------------------------------------------------------------ CORS


async def test_no_cors_headers_by_default(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway()
    async with http_client(gateway) as http:
        answer = await http.get("/api/stats", headers={"Origin": "http://evil.example"})
        assert answer.status_code == 200
        assert not [h for h in answer.headers if h.startswith("access-control-")]
        preflight = await http.options(
            "/api/publish",
            headers={
                "Origin": "http://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert not [h for h in preflight.headers if h.startswith("access-control-")]


async def test_cors_origins_setting(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(cors_origins=["http://app.example"])
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    async with http_client(gateway) as http:
        allowed = await http.options(
            "/api/publish", headers={"Origin": "http://app.example", **ask}
        )
        assert allowed.status_code in (200, 204), allowed.text
        assert allowed.headers["access-control-allow-origin"] == "http://app.example"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
        other = await http.options("/api/publish", headers={"Origin": "http://evil.example", **ask})
        assert other.headers.get("access-control-allow-origin") not in ("http://evil.example", "*")
        assert "http://evil.example" not in str(other.headers)
        plain = await http.get("/api/stats", headers={"Origin": "http://app.example"})
        assert plain.headers["access-control-allow-origin"] == "http://app.example"
        foreign = await http.get("/api/stats", headers={"Origin": "http://evil.example"})
        assert foreign.headers.get("access-control-allow-origin") not in (
            "http://evil.example",
            "*",
        )


# ------------------------------------------------------------------ response headers


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


@pytest.mark.parametrize("auth", list(AUTH))
async def test_security_headers_on_every_answer(auth: str, make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**AUTH[auth])
    async with http_client(gateway) as http:
        answers = [
            await http.get("/"),
            await http.get("/app.js"),
            await http.get("/api/config"),
            await http.get("/api/stats"),
            await http.get("/healthz"),
            await http.get("/api/nothing-here"),
            await http.post("/api/publish", content=b"x", headers={"Content-Type": "text/plain"}),
            await http.get("/", headers={"Host": "evil.example"}),
        ]
        for answer in answers:
            assert answer.headers["x-content-type-options"] == "nosniff", answer.url
            assert answer.headers["referrer-policy"] in ("no-referrer", "same-origin")
            assert answer.headers["x-frame-options"] in ("DENY", "SAMEORIGIN")
        page = answers[0]
        assert page.status_code == 200 and "<html" in page.text
        csp = csp_directives(page.headers["content-security-policy"])
        assert csp["script-src"] == ["'self'"]
        assert "'unsafe-inline'" not in csp.get("default-src", [])
        assert f"ws://127.0.0.1:{gateway.port}" in csp["connect-src"]
        assert "*" not in csp["connect-src"] and "ws:" not in csp["connect-src"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert csp["object-src"] == ["'none'"]
        # Served under another allowed name, the page may connect to the data plane there.
        other = await http.get("/", headers={"Host": f"localhost:{gateway.internal_port}"})
        connect_src = csp_directives(other.headers["content-security-policy"])["connect-src"]
        assert f"ws://localhost:{gateway.port}" in connect_src


# ------------------------------------------------------------------ who a broadcast reaches


@pytest.mark.parametrize("auth", list(AUTH))
async def test_producer_messages_named_like_broadcasts_reach_only_subscribers(
    auth: str, make_gateway: MakeGateway, connect: Connect
) -> None:
    on = auth == "on"
    gateway = await make_gateway(**AUTH[auth], anonymous_roles=["subscriber", "publisher"])
    subscribed = await connect(gateway, token=token("alice") if on else None)
    await subscribed.subscribe("events")
    idle = await connect(gateway, token=token("bob") if on else None)
    firm_wide = token("pat", portfolios=["*"], roles=["publisher"])
    publisher = await connect(gateway, token=firm_wide if on else None)
    forged = system_alert(message_id="broadcast-1", source="operator", priority=3)
    await gateway.publish(forged)
    async with http_client(gateway) as http:
        headers = bearer(firm_wide) if on else {}
        forged_rest = system_alert(message_id="broadcast-2", source="ops-bot")
        answer = await http.post("/api/publish", json=forged_rest, headers=headers)
        assert answer.status_code == 200
        if on:  # nor may a producer pass itself off as the operator
            claimed = system_alert(source="operator")
            answer = await http.post("/api/publish", json=claimed, headers=headers)
            assert answer.status_code == 403 and answer.json()["details"]["field"] == "source"
    ack = await publisher.request(
        {"type": "publish", "message": system_alert(message_id="broadcast-3", source="ops-bot")},
        "ack",
        "error",
    )
    assert ack["type"] == "ack", ack
    got = await subscribed.data(3)
    assert [m["message_id"] for m in got] == ["broadcast-1", "broadcast-2", "broadcast-3"]
    assert not [m for m in got if m.get("broadcast")]
    assert await idle.no_data(gateway) == []
    assert await publisher.no_data(gateway) == []


@pytest.mark.parametrize("auth", list(AUTH))
async def test_operator_broadcast_reaches_every_authenticated_connection_once(
    auth: str, make_gateway: MakeGateway, connect: Connect
) -> None:
    on = auth == "on"
    gateway = await make_gateway(**AUTH[auth])

    async def user(name: str) -> WsClient:
        return await connect(gateway, token=token(name, streams=None) if on else None)

    subscribed = await user("alice")
    await subscribed.subscribe("events")
    critical_only = await user("carol")  # its filter excludes the notice: still gets it once
    await critical_only.subscribe("events", filters={"severity": "critical"})
    elsewhere = await user("bob")
    await elsewhere.subscribe("market_data")
    idle = await user("dave")
    # Not shown the notice: a token whose `streams` claim leaves out events, and a
    # connection that has not authenticated yet.
    outsiders = (
        [
            await connect(gateway, token=token("erin", streams=["market_data"])),
            await connect(gateway),
        ]
        if on
        else []
    )
    recipients = [subscribed, critical_only, elsewhere, idle]
    async with http_client(gateway) as http:
        answer = await http.post(
            "/api/broadcast",
            json={"message": "halt at 16:00", "severity": "high", "title": "Ops"},
            headers=admin_headers(gateway),
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    for client in recipients:
        (notice,) = await client.data(1)
        assert notice["broadcast"] is True
        assert notice["data"]["description"] == "halt at 16:00"
        assert notice["message_id"] == body["message_id"]
        assert await client.no_data(gateway) == []  # once
    for outsider in outsiders:
        assert await outsider.no_data(gateway) == []
    # The answer counts the connections that were shown the notice, not the outsiders.
    assert body["recipients"] == len(recipients)


async def test_broadcast_needs_admin_when_auth_is_on(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    client = await connect(gateway, token=token("alice"))
    async with http_client(gateway) as http:
        for jwt in (token("alice"), token("pat", roles=["publisher"])):
            answer = await http.post("/api/broadcast", json={"message": "x"}, headers=bearer(jwt))
            assert answer.status_code == 403
        assert (await http.post("/api/broadcast", json={"message": "x"})).status_code == 401
    assert await client.no_data(gateway) == []
    assert gateway.broker.position("events").seq == 0


@pytest.mark.parametrize("flag", [True, False, "yes", 1])
async def test_producer_cannot_set_the_broadcast_flag(
    flag: Any, make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(anonymous_roles=["subscriber", "publisher"])
    watcher = await connect(gateway)
    await watcher.subscribe("events")
    idle = await connect(gateway)
    forged = system_alert(broadcast=flag)
    async with http_client(gateway) as http:
        answer = await http.post("/api/publish", json=forged)
        assert answer.status_code == 422
        assert answer.json()["error_code"] == "invalid_message"
        batch = await http.post("/api/publish", json=[system_alert(), forged])
        assert batch.status_code == 422 and batch.json()["details"]["index"] == 1
    reply = await idle.request({"type": "publish", "message": forged, "message_id": "f"}, "error")
    assert reply["error_code"] == "invalid_message" and reply["correlation_id"] == "f"
    with pytest.raises(ProtocolError):
        await gateway.publish(forged)
    assert gateway.broker.position("events").seq == 0
    assert await watcher.no_data(gateway) == []
    assert await idle.no_data(gateway) == []
