"""Attack b, Redis garbage: entries written with a plain Redis client straight into the
gateway's keys.

In the reliable order_updates log: an entry with its fields missing and one whose body does
not decode, at the ids of the next seqs; in the events log an entry with an `XADD *` id; in
`<prefix>:market_data:last` a garbage latest value. Documented outcome: each is skipped and
counted (`/api/stats` `broker_skipped`); subscribers of the poisoned reliable stream are
closed with 1012 and resubscribe to `recovered: false`; publishing (past the foreign id
too) and new snapshot subscriptions keep working, the garbage value left out.
"""

from __future__ import annotations

import os
from typing import Any

from bench.attacks.clients import TIMEOUT, AttackResult, Publisher, Target, WsSession, stats, until
from bench.attacks.messages import order_message, quote_message


def event_message(n: int, run: str) -> dict[str, Any]:
    return {
        "type": "event",
        "message_id": f"event-{run}-{n}",
        "event_type": "probe",
        "data": {"description": f"event {n}"},
    }


async def redis_garbage(target: Target) -> AttackResult:
    """Garbage written with a plain Redis client into the gateway's keys (see module doc).

    counts: victim_close (1012 expected), victim_recovered (False expected),
    publish_after (the seq a publish to the poisoned stream got), auto_id_publish_seq,
    snapshot_symbols (of a new snapshot subscription after the `:last` garbage),
    broker_skipped (from /api/stats)."""
    import redis.asyncio as aioredis

    assert target.redis_url is not None, "redis_garbage needs the gateway's Redis"
    run = os.urandom(4).hex()
    prefix = target.redis_prefix
    result = AttackResult("redis_garbage")
    admin = aioredis.from_url(target.redis_url)
    publisher = Publisher(target.http_url)
    victim = await WsSession.open(target)
    try:
        confirmed = await victim.subscribe("order_updates", snapshot=False)
        assert confirmed["type"] == "subscription_confirmed", confirmed
        await publisher.publish([order_message(0, run)])
        [first] = await victim.data(1)
        seq = int(first["seq"])
        log = f"{prefix}:order_updates:log"
        # Fields missing, then a body that does not decode, at the ids of the next seqs.
        await admin.xadd(log, {"foreign": "writer"}, id=f"{seq + 1}-0")
        await admin.xadd(log, {"m": b"\xc1garbage", "e": b"x", "t": b"1"}, id=f"{seq + 2}-0")
        result.close_code = await victim.closed_with()
        again = await WsSession.open(target)
        resumed = await again.subscribe(
            "order_updates", since={"epoch": first["epoch"], "seq": seq}, snapshot=False
        )
        result.counts["victim_resubscribe"] = resumed.get("type")
        result.counts["victim_recovered"] = resumed.get("recovered")
        await publisher.publish([order_message(1, run)])
        [later] = await again.data(1)
        result.counts["publish_after"] = later["seq"]
        result.counts["publish_after_id"] = later["message_id"]
        await again.close()
        # An entry with an auto id (XADD *) in another stream's log: publishing goes on.
        await admin.xadd(f"{prefix}:events:log", {"foreign": "writer"})
        acks = await publisher.publish([event_message(0, run)])
        result.counts["auto_id_publish_seq"] = acks[0].get("seq")
        # A garbage latest value: a new snapshot subscription still answers, without it.
        await publisher.publish([quote_message("GOOD", 1), quote_message("BAD", 2)])
        last = f"{prefix}:market_data:last"

        async def both_stored() -> bool:
            keys = await admin.hkeys(last)
            return any(b"BAD" in k for k in keys) and any(b"GOOD" in k for k in keys)

        await until(both_stored, "both last values are in Redis", TIMEOUT)
        bad = next(k for k in await admin.hkeys(last) if b"BAD" in k)
        await admin.hset(last, bad, b"1\n\xc1garbage")
        reader = await WsSession.open(target)
        snap = await reader.subscribe("market_data", filters={"symbols": ["GOOD", "BAD"]})
        result.counts["snapshot_confirmed"] = snap.get("type")
        got = await reader.data(1)
        result.counts["snapshot_symbols"] = sorted(m["symbol"] for m in got)
        await reader.close()
        result.counts["broker_skipped"] = (await stats(target)).get("broker_skipped", {})
        return result
    finally:
        await victim.close()
        await publisher.close()
        await admin.aclose()
