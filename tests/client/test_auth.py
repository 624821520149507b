"""The Python SDK on a gateway with authentication and TLS: tokens, providers, refresh, wss.

Every wait is bounded; where a test is about a token's lifetime it waits for that moment to
pass (there is no event for "the gateway did not close the connection").
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from messages import order
from tidewire.client import AuthenticationError, ConnectionState, TidewireClient
from tidewire.server.app import Gateway
from tlscerts import self_signed
from tokens import SECURE, bearer, token

TIMEOUT = 5.0
MakeGateway = Callable[..., Awaitable[Gateway]]
FAST: dict[str, Any] = {"reconnect_interval": 0.01, "max_reconnect_interval": 0.05}
PUBLISHER = token("feed", portfolios=["*"], roles=["publisher"])


async def publish(gateway: Gateway, *messages: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        response = await http.post("/api/publish", json=list(messages), headers=bearer(PUBLISHER))
        assert response.status_code == 200, response.text


class Watch:
    """Events of a client: each `auth_ok` and each state change, with bounded waits."""

    def __init__(self, client: TidewireClient) -> None:
        self.client = client
        self._changed = asyncio.Event()
        client.add_message_handler("auth_ok", lambda _: self._changed.set())
        client.add_state_handler(lambda _old, _new: self._changed.set())

    async def until(self, condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


async def test_a_token_reads_only_its_own_portfolios(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**SECURE)
    async with TidewireClient(gateway.url, token=token("alice", portfolios=["PF-A"])) as client:
        assert client.user_id == "alice" and client.token_expires_at is not None
        orders = await client.subscribe("order_updates")
        await publish(gateway, order("PF-B", 1), order("PF-A", 2), order("PF-C", 3))
        async with asyncio.timeout(TIMEOUT):
            first = await anext(aiter(orders))
        assert first["portfolio_id"] == "PF-A"
        # Orders are checked message by message (a trade or order may name a user only);
        # positions are narrowed to the token's portfolios.
        await client.subscribe("position_updates")
        gateway_view = {s["stream"]: s["filters"] for s in await client.list_subscriptions()}
        assert gateway_view == {
            "order_updates": {},
            "position_updates": {"portfolio_ids": ["PF-A"]},
        }


async def test_a_refused_token_is_an_authentication_error(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**SECURE)
    client = TidewireClient(gateway.url, token="not-a-jwt", **FAST)
    with pytest.raises(AuthenticationError, match="401"):
        await client.connect(timeout=TIMEOUT)
    assert client.connection_state is ConnectionState.CLOSED


async def test_a_provider_refreshes_the_token_before_it_expires(
    make_gateway: MakeGateway,
) -> None:
    gateway = await make_gateway(**SECURE, jwt_leeway=0)
    issued: list[float] = []

    def provider() -> str:
        issued.append(time.time())
        return token("alice", ttl=3)

    async with TidewireClient(gateway.url, token=provider, **FAST) as client:
        connection_id = client.connection_id
        first_expiry = client.token_expires_at
        await Watch(client).until(lambda: client.token_expires_at != first_expiry)
        assert len(issued) >= 2
        # Past the first token's exp the same connection still answers.
        await asyncio.sleep(max(0.0, issued[0] + 3.2 - time.time()))
        await client.ping(timeout=TIMEOUT)
        assert client.connection_id == connection_id and client.reconnect_attempts == 0


async def test_after_4001_a_provider_gets_a_new_token_and_the_client_reconnects(
    make_gateway: MakeGateway,
) -> None:
    gateway = await make_gateway(**SECURE, jwt_leeway=0)
    calls = 0

    def provider() -> str:
        # The first connection's refreshes name another user: the gateway refuses them,
        # the token expires (4001), and the next connection is bob's.
        nonlocal calls
        calls += 1
        return token("alice", ttl=2) if calls == 1 else token("bob", ttl=60)

    async with TidewireClient(gateway.url, token=provider, **FAST) as client:
        assert client.user_id == "alice"
        first = client.connection_id
        await Watch(client).until(
            lambda: client.connected and client.connection_id != first, timeout=8
        )
        assert client.user_id == "bob"


async def test_a_fixed_token_that_expires_closes_the_client(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**SECURE, jwt_leeway=0)
    client = TidewireClient(gateway.url, token=token("alice", ttl=2), **FAST)
    watch = Watch(client)
    await client.connect(timeout=TIMEOUT)
    try:
        await watch.until(lambda: client.connection_state is ConnectionState.CLOSED, timeout=8)
        assert isinstance(client.last_error, AuthenticationError)
        assert client.close_code == 4001
    finally:
        await client.close()


async def test_tls_on_both_ports_with_a_self_signed_certificate(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    gateway = await make_gateway(tls_cert_file=cert, tls_key_file=key)
    assert gateway.url.startswith("wss://") and gateway.internal_url.startswith("https://")
    async with httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(cert)), timeout=TIMEOUT
    ) as http:
        config = (await http.get(f"{gateway.internal_url}/api/config")).json()
        assert config["ws_url"].startswith("wss://127.0.0.1:")
        assert (await http.get(f"https://127.0.0.1:{gateway.port}/healthz")).status_code == 200
    async with TidewireClient(gateway.url, ca_file=str(cert)) as client:
        quotes = await client.subscribe("market_data")
        await gateway.publish(
            {"type": "market_data", "symbol": "AAPL", "data": {"bid_price": 1.0, "ask_price": 1.1}}
        )
        async with asyncio.timeout(TIMEOUT):
            assert (await anext(aiter(quotes)))["symbol"] == "AAPL"
    # Without the CA the certificate is not trusted; plain ws:// on a TLS port fails too.
    options: dict[str, Any]
    for url, options in ((gateway.url, {}), (gateway.url.replace("wss:", "ws:"), {})):
        stranger = TidewireClient(url, max_reconnect_attempts=0, **FAST, **options)
        with pytest.raises(Exception):  # noqa: B017 (the handshake error differs per case)
            await stranger.connect(timeout=TIMEOUT)


async def test_whoami_says_what_the_token_grants(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(**SECURE)
    alice = token("alice", portfolios=["PF-B", "PF-A"], streams=["orders"])
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        body = (await http.get("/api/whoami", headers=bearer(alice))).json()
        assert (await http.get("/api/whoami")).status_code == 401
    assert body["user_id"] == "alice" and body["roles"] == ["subscriber"]
    assert body["portfolio_ids"] == ["PF-A", "PF-B"] and body["streams"] == ["order_updates"]
    assert body["auth_required"] is True and body["expires_at"].endswith("Z")
