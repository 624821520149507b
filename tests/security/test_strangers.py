"""What a caller without a valid token can make the gateway hold or say."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway
from tokens import SECURE, token

MakeGateway = Callable[..., Awaitable[Gateway]]
Connect = Callable[..., Awaitable[WsClient]]


async def test_strangers_cannot_fill_the_process(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, max_unauthenticated_connections=2)
    waiting = [await connect(gateway), await connect(gateway)]
    assert all(c.welcome["auth_required"] for c in waiting)
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(gateway.url, open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 503
    # A caller with a token still gets in, and one that authenticates frees a place.
    assert (await connect(gateway, token=token("alice"))).welcome["user_id"] == "alice"
    ok = await waiting[0].request({"type": "auth", "token": token("bob")}, "auth_ok")
    assert ok["user_id"] == "bob"
    assert (await connect(gateway)).welcome["auth_required"] is True


async def test_a_long_refusal_keeps_its_close_code(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    # The reason names the unknown roles; past 123 bytes a close frame is invalid and the
    # client would see 1006 instead of 4001.
    gateway = await make_gateway(**SECURE)
    client = await connect(gateway)
    await client.send({"type": "auth", "token": token("alice", roles=["r" * 40] * 5)})
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await client.recv()
    assert client.ws.close_code == 4001
    assert "unknown role" in (client.ws.close_reason or "")


async def test_a_token_for_another_audience_is_refused_without_jwt_audience(
    make_gateway: MakeGateway,
) -> None:
    gateway = await make_gateway(**SECURE)
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(
            gateway.url,
            additional_headers={"Authorization": f"Bearer {token('svc', audience='payroll')}"},
            open_timeout=TIMEOUT,
        )
    assert refused.value.response.status_code == 401
