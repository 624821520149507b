"""Attacks d, e and f: state a client makes the gateway hold, past its bound.

d. `filter_values`: connections x subscriptions x symbols. Documented outcome: refused with
   `subscription_error` `invalid_filter` past `max_filter_values_per_connection`;
   `list_subscriptions` is paged (`max_list_page`, `next`); `/api/subscriptions` and
   `/api/connections` are paged (`max_api_page`, `X-Total-Count`, `X-Next-Offset`).
e. `reassembly_hold`: many connections each holding an unfinished fragmented message.
   Documented outcome: the process holds at most `max_reassembly_bytes`; the fragment past
   it closes its connection with 1009.
f. `latest_keys`: many distinct symbols published once each. Documented outcome: the stream
   keeps at most `max_latest_keys` latest values (an LRU per stream), evicting the least
   recently updated key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from bench.attacks.clients import (
    PING,
    TEXT,
    TIMEOUT,
    AttackResult,
    Publisher,
    RawClient,
    Target,
    WsSession,
    frame,
)
from bench.attacks.messages import publish_instruments, quote_message

# ------------------------------------------------------------------ d. filter values


async def filter_values(
    target: Target,
    connections: int = 4,
    subscriptions: int = 100,
    symbols: int = 1000,
    list_limit: int = 1000,
) -> tuple[AttackResult, list[WsSession]]:
    """Each connection asks `subscriptions` subscriptions of `symbols` symbols each.

    Returns the result and the open sessions (the caller measures memory, then closes them).
    counts: confirmed / refused per connection, the refusals' error codes, the pages of
    list_subscriptions on the first connection and of /api/subscriptions, /api/connections."""
    result = AttackResult("filter_values")
    sessions = [await WsSession.open(target) for _ in range(connections)]
    confirmed: list[int] = []
    refused: list[int] = []
    codes: set[str] = set()
    for c, session in enumerate(sessions):
        ok = bad = 0
        for s in range(subscriptions):
            values = [f"C{c}S{s}V{v}" for v in range(symbols)]
            reply = await session.subscribe(
                "market_data", filters={"symbols": values}, snapshot=False
            )
            if reply["type"] == "subscription_confirmed":
                ok += 1
            else:
                bad += 1
                codes.add(reply["error_code"])
        confirmed.append(ok)
        refused.append(bad)
    result.counts.update(confirmed=confirmed, refused=refused, error_codes=sorted(codes))
    # list_subscriptions, paged by the gateway (max_list_page).
    pages: list[int] = []
    after: str | None = None
    while True:
        request: dict[str, Any] = {"type": "list_subscriptions", "limit": list_limit}
        if after is not None:
            request["after"] = after
        reply = await sessions[0].request(request, "subscriptions")
        pages.append(len(reply["subscriptions"]))
        after = reply.get("next")
        if after is None or len(pages) > 1000:
            break
    result.counts["list_pages"] = pages
    async with httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT) as http:
        for path in ("/api/subscriptions", "/api/connections"):
            rows: list[int] = []
            offset: str | None = "0"
            total = None
            while offset is not None and len(rows) < 1000:
                response = await http.get(path, params={"offset": offset})
                rows.append(len(response.json()))
                total = response.headers.get("x-total-count")
                offset = response.headers.get("x-next-offset")
            result.counts[path] = {"pages": rows, "total": total}
    return result, sessions


# ------------------------------------------------------------------ e. reassembly


async def reassembly_hold(
    target: Target, connections: int, fragment_bytes: int
) -> tuple[AttackResult, list[RawClient]]:
    """`connections` connections each start a text message of `fragment_bytes` and never
    finish it. After each fragment a PING: its PONG says the fragment is held, a close
    frame (expected 1009 past max_reassembly_bytes) that it was refused.

    Returns the result and the holders still open (the caller measures, then aborts them)."""
    result = AttackResult("reassembly_hold")
    head = b'{"type": "ping", "pad": "' + b"x" * max(0, fragment_bytes - 25)
    holders: list[RawClient] = []
    refused: list[int | None] = []
    for n in range(connections):
        client = await RawClient.open(target)
        marker = str(n).encode()
        client.send(frame(TEXT, head, fin=False), frame(PING, marker))
        code = await client.pong_or_close(marker)
        if code is None:
            holders.append(client)
        else:
            refused.append(code)
            client.abort()
            if result.close_code is None:
                result.close_code = code
        result.frames_sent += 2
        result.bytes_sent += len(head)
    result.counts.update(
        held=len(holders),
        refused=len(refused),
        refused_codes=sorted({c for c in refused if c is not None}),
    )
    return result, holders


# ------------------------------------------------------------------ f. latest values


async def latest_keys(target: Target, symbols: int, cap: int) -> AttackResult:
    """Publish `symbols` distinct symbols once each (L0...), update the oldest one the cap
    keeps, then publish one more new symbol: with an LRU of `cap` keys the stream keeps the
    updated one and evicts the next oldest. A new unfiltered subscription's snapshot is then
    read up to a sentinel published after its confirmation (live messages follow the
    snapshot). counts: kept (latest values in the snapshot), lru_ok (exactly the expected
    set), missing / unexpected (a few of each)."""
    result = AttackResult("latest_keys")
    publisher = Publisher(target.http_url)
    session = await WsSession.open(target)
    try:
        await publish_instruments(target, symbols, prefix="L")
        oldest_kept = max(0, symbols - cap)
        await publisher.publish([quote_message(f"L{oldest_kept}", symbols)])
        await publisher.publish([quote_message("LNEW", symbols + 1)])
        confirmed = await session.subscribe("market_data")
        if confirmed["type"] != "subscription_confirmed":
            result.counts["error"] = confirmed
            return result
        position = int(confirmed["position"]["seq"])
        await publisher.publish([quote_message("LSENTINEL", symbols + 2)])
        kept: set[str] = set()
        snapshot_messages = 0
        try:
            async with asyncio.timeout(TIMEOUT + cap / 2000):
                while True:
                    message = await session.recv()
                    if message.get("stream") != "market_data":
                        continue
                    if message["symbol"] == "LSENTINEL" and message["seq"] > position:
                        break
                    if message["seq"] <= position:
                        snapshot_messages += 1
                        kept.add(message["symbol"])
        except ConnectionClosed:
            result.close_code = session.ws.close_code
        expected = {f"L{n}" for n in range(oldest_kept + 2, symbols)}
        expected |= {f"L{oldest_kept}", "LNEW"}
        result.counts.update(
            kept=len(kept),
            snapshot_messages=snapshot_messages,
            lru_ok=kept == expected,
            missing=sorted(expected - kept)[:5],
            unexpected=sorted(kept - expected)[:5],
        )
        return result
    finally:
        await session.close()
        await publisher.close()
