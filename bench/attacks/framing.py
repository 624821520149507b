"""Attack g, framing and parsing: frames and bodies that break the rules, one case a
connection.

Documented outcome: invalid UTF-8 in a text frame 1007; JSON nested 1,000 deep `error`
`invalid_json` with the connection kept; on REST both 4xx with `{error_code,
error_message}`; RSV bits, interleaved and lone continuation frames, close codes
1005/1006/1015/5000: 1002; `Sec-WebSocket-Version: 8`: 426 with a `Sec-WebSocket-Version`
header; a negative `since.seq`: `invalid_position`, the connection kept.
"""

from __future__ import annotations

import struct
from typing import Any

import httpx

from bench.attacks.clients import (
    CLOSE,
    CONT,
    TEXT,
    TIMEOUT,
    AttackResult,
    RawClient,
    Target,
    WsSession,
    frame,
)

FRAMING_CASES: dict[str, tuple[list[bytes], int]] = {
    "invalid-utf8": ([frame(TEXT, b'{"type": "\xff"}')], 1007),
    "rsv-bits": ([frame(TEXT, b'{"type": "ping"}', rsv=4)], 1002),
    "interleaved": ([frame(TEXT, b'{"type":', fin=False), frame(TEXT, b'{"type": "ping"}')], 1002),
    "lone-continuation": ([frame(CONT, b'{"type": "ping"}')], 1002),
    "close-1005": ([frame(CLOSE, struct.pack("!H", 1005))], 1002),
    "close-1006": ([frame(CLOSE, struct.pack("!H", 1006))], 1002),
    "close-1015": ([frame(CLOSE, struct.pack("!H", 1015))], 1002),
    "close-5000": ([frame(CLOSE, struct.pack("!H", 5000))], 1002),
}
"""Case name: (frames, the documented close code)."""

DEEP_JSON = b"[" * 1000 + b"]" * 1000


async def framing_rules(target: Target) -> AttackResult:
    """Every case of FRAMING_CASES on its own connection, deep JSON, version 8, negative
    since, and the two bad bodies on POST /api/publish. counts: observed close codes by
    case, the deep-JSON reply and whether the connection stayed, the 426 and its header,
    the negative-since error code, the REST statuses and bodies."""
    result = AttackResult("framing_rules")
    observed: dict[str, int | None] = {}
    for name, (frames, _code) in FRAMING_CASES.items():
        client = await RawClient.open(target)
        client.send(*frames)
        observed[name] = await client.close_code()
        client.abort()
    result.counts["close_codes"] = observed
    raw = await RawClient.open(target)
    raw.send(frame(TEXT, DEEP_JSON))
    reply = await raw.message()
    result.counts["deep_json"] = (reply.get("type"), reply.get("error_code"))
    raw.send(frame(TEXT, b'{"type": "ping"}'))
    result.counts["deep_json_connection_kept"] = (await raw.message()).get("type") == "pong"
    raw.abort()
    refused, status, headers = await RawClient.handshake(target, version="8")
    refused.abort()
    result.counts["version_8_status"] = int(status.split()[1])
    result.counts["version_8_header"] = b"sec-websocket-version: 13" in headers.lower()
    session = await WsSession.open(target)
    negative = await session.subscribe("order_updates", since={"epoch": "e", "seq": -1})
    result.counts["negative_since"] = negative.get("error_code")
    result.counts["negative_since_connection_kept"] = (
        await session.request({"type": "ping"}, "pong")
    )["type"] == "pong"
    await session.close()
    rest: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=target.http_url, timeout=TIMEOUT) as http:
        bodies = {"invalid-utf8": b'{"type": "\xff"}', "deep-json": DEEP_JSON}
        for name, body in bodies.items():
            response = await http.post(
                "/api/publish", content=body, headers={"Content-Type": "application/json"}
            )
            try:
                parsed = response.json()
            except ValueError:
                parsed = response.text[:200]
            rest[name] = {"status": response.status_code, "body": parsed}
    result.counts["rest"] = rest
    return result
