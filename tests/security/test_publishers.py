"""Publishers cannot interfere with each other: message ids are scoped by publisher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from messages import order
from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway
from tokens import SECURE, bearer, token

MakeGateway = Callable[..., Awaitable[Gateway]]
Connect = Callable[..., Awaitable[WsClient]]


async def test_a_publisher_cannot_claim_another_publishers_message_id(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    victim_reader = await connect(gateway, token=token("bob", portfolios=["PF-B"]))
    await victim_reader.subscribe("order_updates")
    mallory = bearer(token("mallory", portfolios=["PF-M"], roles=["publisher"]))
    feed = bearer(token("feed", portfolios=["*"], roles=["publisher"]))
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        # Mallory guesses the id the feed will use next and publishes it first.
        claim = await http.post(
            "/api/publish", json=order("PF-M", message_id="nt-42"), headers=mallory
        )
        real = await http.post("/api/publish", json=order("PF-B", message_id="nt-42"), headers=feed)
        repeat = await http.post(
            "/api/publish", json=order("PF-B", message_id="nt-42"), headers=feed
        )
    assert claim.json()["accepted"] == 1
    assert real.json()["accepted"] == 1, "the feed's message is not a duplicate of mallory's"
    assert repeat.json()["results"][0]["duplicate"] is True  # the feed's own retry still is
    [delivered] = await victim_reader.data(1)
    assert delivered["portfolio_id"] == "PF-B" and delivered["message_id"] == "nt-42"
    assert await victim_reader.no_data(gateway) == []
