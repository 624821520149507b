"""Sizes of a run (small for CI, long for soak) and the gateway settings that make faults quick.

The single-gateway modes (SMALL, LONG) run one gateway with the memory broker; the
multi-node modes (MULTI, MULTI_LONG) run `nodes` gateway processes sharing one private Redis
(`--broker redis://...`), with Redis faults and node kills among their faults.

The gateway settings shrink the production defaults so that every fault has its effect in a
second or two: a stalled client is cut off after 1.5 s, an outbox holds 1 MiB, the gateway
says `heartbeat` after 1 s of silence, and risk_alerts keep only 150 messages of history, so
that a client stalled through a burst on that stream cannot be recovered (recovered: false
within the same epoch, not only after a restart).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

FAULT_KINDS: tuple[str, ...] = (
    "kill",
    "stall",
    "overflow",
    "raw",
    "restart_term",
    "restart_kill",
)
"""kill: SIGKILL a client, start its successor (resuming from its last position);
stall: SIGSTOP a client through a burst until the gateway cuts it off (stall timeout);
overflow: SIGSTOP a client and burst until its outbox passes the limit;
raw: a raw WebSocket client that subscribes to everything and never reads;
restart_term / restart_kill: stop the gateway with SIGTERM (1001) or SIGKILL, start it again."""

MULTI_FAULT_KINDS: tuple[str, ...] = (
    "kill",
    "stall",
    "overflow",
    "raw",
    "redis_restart",
    "redis_pause",
    "node_kill",
)
"""The faults of a multi-node run. kill, stall, overflow, raw: as above, against the node the
client is on (a killed client's successor resumes on ANOTHER node);
redis_restart: stop Redis, start it again EMPTY on the same port: every stream gets a new
epoch, every client is closed (1012) and must get recovered:false, publishes meanwhile fail;
redis_pause: Redis unreachable for a few seconds (CLIENT PAUSE ALL, or SIGSTOP), losing
nothing: a client killed meanwhile resumes afterwards and must get recovered:true;
node_kill: SIGKILL a gateway node; some of its clients fail over to another node (restarted
from their saved positions), the others reconnect when it comes back: same epochs, and
recovered:true."""

ALL_FAULT_KINDS: tuple[str, ...] = (*FAULT_KINDS, *MULTI_FAULT_KINDS[4:])

STALL_TIMEOUT = 1.5
MAX_OUTBOX_BYTES = 1 << 20


HISTORY_MAX_MESSAGES = 5000
HISTORY_OVERRIDES: dict[str, int] = {"risk_alerts": 150}


def history_limits(streams: tuple[str, ...]) -> dict[str, int]:
    """Messages of history each stream keeps (at least: Redis trims with MAXLEN ~)."""
    return {stream: HISTORY_OVERRIDES.get(stream, HISTORY_MAX_MESSAGES) for stream in streams}


def gateway_settings() -> dict[str, str]:
    """TIDEWIRE_* environment of the gateway under test (every node of a multi-node run)."""
    return {
        "TIDEWIRE_STALL_TIMEOUT": str(STALL_TIMEOUT),
        "TIDEWIRE_MAX_OUTBOX_BYTES": str(MAX_OUTBOX_BYTES),
        "TIDEWIRE_HEARTBEAT_INTERVAL": "1.0",
        "TIDEWIRE_HEARTBEAT_TIMEOUT": "10.0",
        "TIDEWIRE_HISTORY_MAX_MESSAGES": str(HISTORY_MAX_MESSAGES),
        "TIDEWIRE_HISTORY_OVERRIDES": json.dumps(
            {
                stream: {"max_messages": count, "max_age_seconds": 3600}
                for stream, count in HISTORY_OVERRIDES.items()
            }
        ),
        "TIDEWIRE_MAX_INBOUND_PER_SECOND": "200",
        "TIDEWIRE_INBOUND_BURST": "1000",
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    duration: float
    """Seconds of publishing; faults happen inside it."""
    clients: int
    publishers: int
    portfolios: int
    batch: int
    """Messages per publish request."""
    interval: float
    """Seconds between two requests of one publisher."""
    faults: dict[str, int] = field(default_factory=dict)
    """How many faults of each kind (FAULT_KINDS)."""
    burst_pad: int = 16_000
    """Payload bytes added to every burst message: a few hundred fill a socket's buffers."""
    burst_chunk: int = 12
    """Burst messages per request (~200 KB: well under the outbox limit)."""
    nodes: int = 0
    """Gateway nodes sharing one private Redis; 0: one gateway with the memory broker."""

    @property
    def multi(self) -> bool:
        return self.nodes > 0

    @property
    def fault_kinds(self) -> tuple[str, ...]:
        """The kinds of fault this scenario injects (the report lists each)."""
        kinds = MULTI_FAULT_KINDS if self.multi else FAULT_KINDS
        return tuple(kind for kind in kinds if self.faults.get(kind))

    def scaled(
        self, duration: float | None, clients: int | None, nodes: int | None = None
    ) -> Scenario:
        """The same scenario for another duration (faults scale with it), client or node
        count."""
        scenario = self
        if clients is not None:
            scenario = replace(scenario, clients=clients)
        if nodes is not None:
            scenario = replace(scenario, nodes=nodes)
        if duration is not None and duration != self.duration:
            ratio = duration / self.duration
            faults = {kind: max(1, round(count * ratio)) for kind, count in self.faults.items()}
            scenario = replace(scenario, duration=duration, faults=faults)
        return scenario


SMALL = Scenario(
    name="small",
    duration=20.0,
    clients=6,
    publishers=2,
    portfolios=5,
    batch=4,
    interval=0.05,
    faults={
        "kill": 2,
        "stall": 1,
        "overflow": 1,
        "raw": 1,
        "restart_term": 1,
        "restart_kill": 1,
    },
)

LONG = Scenario(
    name="long",
    duration=180.0,
    clients=12,
    publishers=3,
    portfolios=8,
    batch=5,
    interval=0.04,
    faults={
        "kill": 14,
        "stall": 8,
        "overflow": 8,
        "raw": 5,
        "restart_term": 4,
        "restart_kill": 4,
    },
)

MULTI = Scenario(
    name="multi",
    duration=24.0,
    clients=6,
    publishers=2,
    portfolios=5,
    batch=4,
    interval=0.05,
    faults={
        "kill": 2,
        "stall": 1,
        "redis_restart": 1,
        "redis_pause": 1,
        "node_kill": 1,
    },
    nodes=3,
)
"""CI-sized: three nodes, one Redis, every multi-node fault but overflow and raw once."""

MULTI_LONG = Scenario(
    name="multi-long",
    duration=180.0,
    clients=12,
    publishers=3,
    portfolios=8,
    batch=5,
    interval=0.04,
    faults={
        "kill": 10,
        "stall": 5,
        "overflow": 3,
        "raw": 2,
        "redis_restart": 4,
        "redis_pause": 5,
        "node_kill": 6,
    },
    nodes=3,
)
