"""The attacks of the resilience suite (issue 11), one implementation each, and the
healthy-client machinery beside them.

Used by the short CI suite (tests/resilience/test_attacks.py, in-process gateway, small
settings) and by the long run (bench/resilience.py, gateway in a child process). Each attack
is an async function taking a `Target` (the gateway's WebSocket and HTTP URLs, and Redis
where it needs one) and a size or duration scale; it returns what the attacker saw (an
`AttackResult`: close codes, counts). It asserts nothing: the callers compare with the
documented outcome (docs/protocol.md, "Decisions where the original protocol is silent" and
"Close codes"), which each module's docstring states:

- `clients`: `Target`, `AttackResult`, `until`, raw frames (`RawClient`), protocol sessions
  (`WsSession`), `Publisher`, `stats`;
- `messages`: the messages published on the victim streams, `publish_instruments`;
- `healthy`: the healthy flow (`Producer`), its client (`HealthyProbe`), `HealthMonitor`
  (/healthz) and `RssSampler`;
- `floods` (a): PING, continuation, message and byte floods: 4029;
- `redis_garbage` (b): garbage in the gateway's Redis keys: skipped, counted, 1012 and a
  resubscription to `recovered: false`;
- `snapshots` (c): big and stalled snapshots, a long absence: whole, 4008 with memory
  bounded, recovered exactly;
- `bounds` (d, e, f): filter values (`invalid_filter`, paged listings), unfinished
  fragments (1009 past `max_reassembly_bytes`), latest keys (LRU of `max_latest_keys`);
- `framing` (g): framing and parsing violations: 1007 / 1002 / 426 / `invalid_json` /
  `invalid_position`.

No pytest here: the callers decide what is a failure.
"""

from bench.attacks.bounds import filter_values, latest_keys, reassembly_hold
from bench.attacks.clients import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    TIMEOUT,
    AttackResult,
    Publisher,
    RawClient,
    Target,
    WsSession,
    close_code_of,
    frame,
    stats,
    until,
)
from bench.attacks.floods import byte_flood, continuation_flood, flood, message_flood, ping_flood
from bench.attacks.framing import DEEP_JSON, FRAMING_CASES, framing_rules
from bench.attacks.healthy import (
    HEALTHY_STREAM,
    HealthMonitor,
    HealthyProbe,
    ProbeReport,
    Producer,
    RssSampler,
    healthy_message,
    peak_rss_bytes,
    rss_bytes,
)
from bench.attacks.messages import order_message, publish_instruments, quote_message
from bench.attacks.redis_garbage import event_message, redis_garbage
from bench.attacks.snapshots import big_snapshot, long_absence, stalled_snapshot

__all__ = [
    "BINARY",
    "CLOSE",
    "CONT",
    "DEEP_JSON",
    "FRAMING_CASES",
    "HEALTHY_STREAM",
    "PING",
    "PONG",
    "TEXT",
    "TIMEOUT",
    "AttackResult",
    "HealthMonitor",
    "HealthyProbe",
    "ProbeReport",
    "Producer",
    "Publisher",
    "RawClient",
    "RssSampler",
    "Target",
    "WsSession",
    "big_snapshot",
    "byte_flood",
    "close_code_of",
    "continuation_flood",
    "event_message",
    "filter_values",
    "flood",
    "frame",
    "framing_rules",
    "healthy_message",
    "latest_keys",
    "long_absence",
    "message_flood",
    "order_message",
    "peak_rss_bytes",
    "ping_flood",
    "publish_instruments",
    "quote_message",
    "reassembly_hold",
    "redis_garbage",
    "rss_bytes",
    "stalled_snapshot",
    "stats",
    "until",
]
