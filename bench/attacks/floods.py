"""Attack a, floods: one connection writes frames as fast as the socket takes them.

`ping_flood` (PING frames), `continuation_flood` (1-byte continuation frames of a message
never finished), `message_flood` (small whole data messages) and `byte_flood` (big data
messages). Documented outcome: closed with 4029 once past `inbound_frame_burst` frames
beyond `max_inbound_frames_per_second`, or past the byte budget (`inbound_bytes_burst`
beyond `max_inbound_bytes_per_second`), or past the message budget (`inbound_burst` beyond
`max_inbound_per_second`).
"""

from __future__ import annotations

from bench.attacks.clients import CONT, PING, TEXT, AttackResult, RawClient, Target, frame


async def flood(
    attack: str, target: Target, max_seconds: float, frames: bytes, opening: bytes = b""
) -> AttackResult:
    """A fresh connection writes `opening` once, then `frames` over and over until closed."""
    client = await RawClient.open(target)
    if opening:
        client.send(opening)
    return await client.flood_until_closed(frames, max_seconds, attack)


async def ping_flood(target: Target, max_seconds: float = 10.0) -> AttackResult:
    """PING frames (1-byte payload) as fast as the socket takes them."""
    return await flood("ping_flood", target, max_seconds, frame(PING, b"x"))


async def continuation_flood(target: Target, max_seconds: float = 10.0) -> AttackResult:
    """A text message started once, then 1-byte continuation frames that never finish it."""
    opening = frame(TEXT, b'{"type": "pi', fin=False)
    frames = frame(CONT, b"n", fin=False)
    return await flood("continuation_flood", target, max_seconds, frames, opening)


async def message_flood(target: Target, max_seconds: float = 10.0) -> AttackResult:
    """Small whole data messages (`{"type":"ping"}`, each answered) as fast as possible."""
    return await flood("message_flood", target, max_seconds, frame(TEXT, b'{"type":"ping"}'))


async def byte_flood(target: Target, size: int, max_seconds: float = 10.0) -> AttackResult:
    """Whole ping messages padded to about `size` bytes each, past the byte budget."""
    body = b'{"type": "ping", "pad": "' + b"x" * size + b'"}'
    return await flood("byte_flood", target, max_seconds, frame(TEXT, body))
