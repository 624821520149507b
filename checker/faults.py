"""The faults of a run: a schedule drawn from the seed, and how each one is injected.

The schedule (kinds, order, times, target client slots and subscriptions) depends only on
the seed and the scenario. Faults run one after the other, each at its time or right after
the previous one when that ran late, while the publishers keep publishing. Every fault
reports an outcome: what was done and whether it had its effect (a client process died, a
stalled client was cut off by the gateway and came back, the gateway came back with new
epochs, ...).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from checker.fleet import Fleet, Slot
from checker.gateway import GatewayProcess
from checker.model import RELIABLE_STREAMS, SEVERITIES
from checker.publisher import LedgerBook, Publisher
from checker.rawclient import RawClient
from checker.records import Confirmed
from checker.redisserver import RedisServer
from checker.scenario import ALL_FAULT_KINDS, STALL_TIMEOUT, Scenario

FIRST_FAULT_AT = 2.0
"""Seconds of undisturbed publishing before the first fault."""
MAX_FILL_BYTES = 40 << 20
MAX_FILL_SECONDS = 10.0
"""A burst that has not backed a connection up after this many bytes or seconds gives up."""
RECONNECT_TIMEOUT = 15.0
RAW_CLOSE_TIMEOUT = 12.0
NODES_TIMEOUT = 15.0
"""Seconds every node may take to reach a state (new epochs, moving on after a pause)."""
PAUSE_SECONDS = 3.0
"""How long a redis_pause keeps Redis unreachable."""


@dataclass(frozen=True)
class PlannedFault:
    at: float
    """Seconds after publishing started."""
    kind: str
    slot: int
    """Target client slot (kill, stall, overflow); ignored by the others."""
    choice: int
    """Picks the target subscription (stall, overflow) or the burst stream (raw)."""


@dataclass
class Outcome:
    kind: str
    target: str
    started: float
    """Seconds after publishing started."""
    seconds: float = 0.0
    effective: bool = False
    """The fault had the effect it is meant to have."""
    note: str = ""


def plan(scenario: Scenario, seed: int) -> list[PlannedFault]:
    """The fault schedule: every fault of the scenario, shuffled, spread over the duration."""
    rng = random.Random(f"faults-{seed}")
    kinds = [kind for kind in ALL_FAULT_KINDS for _ in range(scenario.faults.get(kind, 0))]
    rng.shuffle(kinds)
    span = max(0.0, scenario.duration - FIRST_FAULT_AT - 3.0)
    step = span / max(1, len(kinds))
    return [
        PlannedFault(
            at=FIRST_FAULT_AT + index * step,
            kind=kind,
            slot=rng.randrange(scenario.clients),
            choice=rng.randrange(1 << 30),
        )
        for index, kind in enumerate(kinds)
    ]


@dataclass
class Injector:
    """Injects planned faults into one run (one gateway, or the nodes of a multi-node run)."""

    scenario: Scenario
    nodes: list[GatewayProcess]
    """The gateway (single-gateway runs) or every node, by index."""
    fleet: Fleet
    burster: Publisher
    book: LedgerBook
    started_at: float
    rng: random.Random
    redis: RedisServer | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    """Faults that finish on their own (a raw client waiting to be dropped)."""
    resets: list[float] = field(default_factory=list)
    """Wall-clock times the whole history was lost (a memory gateway or Redis restarted)."""

    @property
    def gateway(self) -> GatewayProcess:
        """The gateway of a single-gateway run."""
        return self.nodes[0]

    def node_of(self, slot: Slot) -> GatewayProcess:
        return self.nodes[slot.node]

    def now(self) -> float:
        return time.monotonic() - self.started_at

    async def run(self, faults: list[PlannedFault]) -> None:
        handler: dict[str, Callable[[PlannedFault, Outcome], Awaitable[None]]] = {
            "kill": self.kill,
            "stall": self.stall,
            "overflow": self.overflow,
            "raw": self.raw,
            "restart_term": self.restart,
            "restart_kill": self.restart,
            "redis_restart": self.redis_restart,
            "redis_pause": self.redis_pause,
            "node_kill": self.node_kill,
        }
        for fault in faults:
            delay = fault.at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            outcome = Outcome(fault.kind, "", round(self.now(), 2))
            self.outcomes.append(outcome)
            began = time.monotonic()
            try:
                await handler[fault.kind](fault, outcome)
            except asyncio.CancelledError:
                outcome.effective = False
                outcome.note += " still running when the run gave up on its faults"
                outcome.seconds = round(time.monotonic() - began, 2)
                raise
            except Exception as exc:
                outcome.effective = False
                outcome.note += f" failed: {exc!r}"
            outcome.seconds = round(time.monotonic() - began, 2)

    async def finish(self) -> None:
        """Wait for the faults that finish in the background."""
        background, self.background = self.background, []
        await asyncio.gather(*background)

    # ------------------------------------------------------------------ kill

    async def kill(self, fault: PlannedFault, outcome: Outcome) -> None:
        """SIGKILL a client; its successor resumes with since (on another node, if any)."""
        slot = self.fleet.slots[fault.slot]
        outcome.target = f"client {slot.spec.slot}.{slot.incarnation}"
        node = self._other_node(slot.node, fault.choice)
        began = time.time()
        code, resumed = await self.fleet.kill_and_resume(
            slot, pause=self.rng.uniform(0.1, 0.8), node=node
        )
        outcome.effective = code == -signal.SIGKILL
        outcome.note = (
            f"exit {code}; client {slot.spec.slot}.{slot.incarnation} resumes "
            f"{resumed} subscription(s) with since"
        )
        if self.scenario.multi:
            flags = await self._recovered_flags([slot], began)
            outcome.note += f" on node {slot.node}: {_flags(flags)}"

    def _other_node(self, node: int, choice: int) -> int | None:
        """Another node than `node`, picked by `choice` (None: single gateway or node)."""
        count = len(self.nodes)
        if not self.scenario.multi or count < 2:
            return None
        return (node + 1 + choice % (count - 1)) % count

    # ------------------------------------------------------------------ stall and overflow

    async def stall(self, fault: PlannedFault, outcome: Outcome) -> None:
        """SIGSTOP; burst until the gateway holds back output; the stall timeout cuts it."""
        await self._stopped_client(fault, outcome, until_closed=False)

    async def overflow(self, fault: PlannedFault, outcome: Outcome) -> None:
        """SIGSTOP; burst until the gateway closes it for its outbox."""
        await self._stopped_client(fault, outcome, until_closed=True)

    async def _stopped_client(
        self, fault: PlannedFault, outcome: Outcome, *, until_closed: bool
    ) -> None:
        # The gateway's slow-consumer count tells this cut-off apart only if no other
        # client is being cut off meanwhile (a raw client of an earlier fault).
        await self.finish()
        slot = self.fleet.slots[fault.slot]
        spec = slot.spec.subscriptions[fault.choice % len(slot.spec.subscriptions)]
        portfolios = spec.filters.get("portfolio_ids") or ["PF-0"]
        target = (spec.stream, (portfolios[fault.choice % len(portfolios)],))
        outcome.target = f"client {slot.spec.slot}.{slot.incarnation} {spec.subscription_id}"
        gateway = self.node_of(slot)
        if self.scenario.multi:
            outcome.target += f" @{slot.node}"
        connections = await self._connected(slot)
        if not connections:
            outcome.note = f"the client is not connected to {gateway.name}"
            return
        connection_id = connections[-1]
        base = (await gateway.stats())["slow_consumer_closes"]
        slot.signal(signal.SIGSTOP)
        try:
            paused_after, sent = await self._fill(
                gateway,
                lambda row: row["connection_id"] == connection_id,
                target,
                base,
                until_closed,
            )
            cut_after = await self._wait_cut(gateway, base, STALL_TIMEOUT + 3.0)
            rows = [r for r in await gateway.connections() if r["connection_id"] == connection_id]
        finally:
            await asyncio.sleep(0.3)
            slot.signal(signal.SIGCONT)
        reconnected = await self._wait_reconnect(slot, len(connections))
        outcome.effective = cut_after is not None and reconnected
        outcome.note = (
            f"{connection_id}: {sent >> 10} KiB burst; held back after {_s(paused_after)}; "
            f"cut off {_s(cut_after)} later; "
            f"{'reconnected' if reconnected else 'did NOT reconnect'}"
        )
        if cut_after is None:
            outcome.note += f"; the gateway's view then: {rows}"

    async def _connected(self, slot: Slot) -> list[str]:
        """The slot's connection ids once its latest one is open on the gateway (else [])."""
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        while time.monotonic() < deadline:
            connections = await slot.connection_ids()
            open_ids = {row["connection_id"] for row in await self.node_of(slot).connections()}
            if connections and connections[-1] in open_ids:
                return connections
            await asyncio.sleep(0.1)
        return []

    async def _fill(
        self,
        gateway: GatewayProcess,
        is_target: Callable[[dict[str, Any]], bool],
        target: tuple[str, tuple[str, ...]],
        base_closes: int,
        until_closed: bool,
    ) -> tuple[float | None, int]:
        """Burst at `target` until its connection holds output back (or is closed).

        Returns when the gateway started holding output back (seconds, None if never)
        and the bytes sent.
        """
        scenario = self.scenario
        began = time.monotonic()
        paused_after: float | None = None
        sent = 0
        stream, portfolios = target
        held_back = scenario.burst_chunk * scenario.burst_pad // 2
        while sent < MAX_FILL_BYTES and time.monotonic() - began < MAX_FILL_SECONDS:
            await self.burster.burst(
                scenario.burst_chunk,
                (stream,),
                portfolios,
                scenario.burst_pad,
                chunk=scenario.burst_chunk,
                severity=SEVERITIES[-1],
            )
            sent += scenario.burst_chunk * scenario.burst_pad
            rows = [row for row in await gateway.connections() if is_target(row)]
            closes = (await gateway.stats())["slow_consumer_closes"]
            if paused_after is None and (not rows or self._held_back(rows[0], held_back)):
                paused_after = time.monotonic() - began
            if closes > base_closes or (paused_after is not None and not until_closed):
                break
        return paused_after, sent

    def _held_back(self, row: dict[str, Any], held_back: int) -> bool:
        """Whether the gateway holds output back from this connection.

        One gateway: the chunk just published waits in the outbox (a few bytes there may
        only be the other publishers' messages, not flushed yet); the publish delivered it
        before answering. A node of a multi-node run delivers what it reads from Redis a
        moment after the publish answered, so a full outbox may just be on its way out:
        there only the full socket (`write_paused`) counts.
        """
        if self.scenario.multi:
            return bool(row["write_paused"])
        return bool(row["pending_bytes"] > held_back)

    @staticmethod
    async def _wait_cut(
        gateway: GatewayProcess,
        base_closes: int,
        timeout: float,  # noqa: ASYNC109
    ) -> float | None:
        """Seconds until the gateway's slow-consumer closes pass `base_closes` (None: never)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if (await gateway.stats())["slow_consumer_closes"] > base_closes:
                return time.monotonic() - began
            await asyncio.sleep(0.05)
        return None

    @staticmethod
    async def _wait_reconnect(slot: Slot, connections_before: int) -> bool:
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        while time.monotonic() < deadline:
            if len(await slot.connection_ids()) > connections_before:
                return True
            await asyncio.sleep(0.1)
        return False

    # ------------------------------------------------------------------ raw client

    async def raw(self, fault: PlannedFault, outcome: Outcome) -> None:
        """A client that never reads: it must be cut off, the others must not notice."""
        await self.finish()
        gateway = self.nodes[fault.choice % len(self.nodes)]
        raw = RawClient(gateway.port)
        await raw.open()
        outcome.target = f"raw client {raw.local_address}"
        if self.scenario.multi:
            outcome.target += f" @{gateway.node}"
        base = (await gateway.stats())["slow_consumer_closes"]
        stream = RELIABLE_STREAMS[fault.choice % len(RELIABLE_STREAMS)]
        paused_after, sent = await self._fill(
            gateway,
            lambda row: row["remote"] == raw.local_address,
            (stream, (f"PF-{fault.choice % self.scenario.portfolios}",)),
            base,
            until_closed=False,
        )
        outcome.note = f"{sent >> 10} KiB burst; held back after {_s(paused_after)}"
        self.background.append(asyncio.create_task(self._raw_end(gateway, raw, base, outcome)))

    async def _raw_end(
        self, gateway: GatewayProcess, raw: RawClient, base: int, outcome: Outcome
    ) -> None:
        began = time.monotonic()
        try:
            await self._raw_cut_off(gateway, raw, base, outcome, began)
        except Exception as exc:
            outcome.note += f"; failed: {exc!r}"
        finally:
            await raw.close()

    async def _raw_cut_off(
        self, gateway: GatewayProcess, raw: RawClient, base: int, outcome: Outcome, began: float
    ) -> None:
        cut_after = await self._wait_cut(gateway, base, STALL_TIMEOUT + 3.0)
        gone_after: float | None = None
        while time.monotonic() - began < RAW_CLOSE_TIMEOUT:
            rows = await gateway.connections()
            if all(row["remote"] != raw.local_address for row in rows):
                gone_after = time.monotonic() - began
                break
            await asyncio.sleep(0.1)
        size, code, ending = await raw.drain()
        outcome.effective = cut_after is not None and gone_after is not None
        outcome.note += (
            f"; 4008 decided after {_s(cut_after)}, connection dropped after "
            f"{_s(gone_after)}; it had read {size} bytes, close frame "
            f"{code if code is not None else 'not reached'}, then {ending}; "
            f"{raw.sent_heartbeats} heartbeats sent"
        )

    # ------------------------------------------------------------------ gateway

    async def restart(self, fault: PlannedFault, outcome: Outcome) -> None:
        # A raw client still waiting to be dropped would be dropped by the restart instead.
        await self.finish()
        sig = signal.SIGTERM if fault.kind == "restart_term" else signal.SIGKILL
        before = await self.gateway.heads()
        outcome.target = f"gateway {self.gateway.incarnation}"
        self.resets.append(time.time())
        away = await self.gateway.restart(sig)
        after = await self.gateway.heads()
        new_epochs = all(before[stream][0] != after[stream][0] for stream in before)
        outcome.effective = new_epochs
        outcome.note = (
            f"{sig.name}; gateway {self.gateway.incarnation} serving after {away:.2f}s"
            f"{' with new epochs' if new_epochs else ' with the SAME epochs'}"
        )

    # ------------------------------------------------------------------ Redis and nodes

    async def redis_restart(self, fault: PlannedFault, outcome: Outcome) -> None:
        """Redis stops and comes back EMPTY: new epochs, every client resyncs.

        Effective when publishes failed meanwhile, every node moved every stream to a new
        epoch, and every client was closed and resubscribed with recovered:false.
        """
        await self.finish()
        redis = self._redis()
        outcome.target = f"redis :{redis.port}"
        before = await self._all_heads()
        old = {stream: {view[stream][0] for view in before} for stream in RELIABLE_STREAMS}
        slots = self.fleet.slots
        connections = {slot.spec.slot: len(await slot.connection_ids()) for slot in slots}
        failures = self.book.failures()
        outage = self.rng.uniform(0.5, 1.5)
        began = time.time()
        self.resets.append(began)
        await redis.restart(outage)
        new_epochs = await self._wait_nodes(
            lambda node, heads: all(heads[s][0] not in old[s] for s in RELIABLE_STREAMS)
        )
        reconnected = await self._wait_reconnected(slots, connections)
        failed = self.book.failures() - failures
        per_slot = await self._flags_per_slot(
            slots, began, RECONNECT_TIMEOUT if reconnected else 0.0
        )
        resynced = sum(1 for flags in per_slot if flags[False] > 0)
        total = sum(per_slot, Counter[bool | None]())
        outcome.effective = (
            failed > 0 and new_epochs is not None and reconnected and resynced == len(slots)
        )
        epochs = (
            f"new epochs on every node {_s(new_epochs)} after it was back"
            if new_epochs is not None
            else "NOT every node moved to new epochs"
        )
        clients = "every client reconnected" if reconnected else "NOT every client reconnected"
        outcome.note = (
            f"away {outage:.2f}s, {failed} publish request(s) failed meanwhile; {epochs}; "
            f"{clients}, {resynced}/{len(slots)} resynced: {_flags(total)}"
        )

    async def redis_pause(self, fault: PlannedFault, outcome: Outcome) -> None:
        """Redis unreachable for a few seconds, losing nothing.

        CLIENT PAUSE ALL or SIGSTOP (by `choice`). Meanwhile a client is killed; its
        successor resumes on another node once Redis is back. Effective when no node moved
        and no publish was acknowledged during the pause, every node moved on afterwards in
        the same epochs, and the successor got recovered:true for every subscription.
        """
        await self.finish()
        redis = self._redis()
        method = "CLIENT PAUSE" if fault.choice % 2 == 0 else "SIGSTOP"
        slot = self.fleet.slots[fault.slot]
        outcome.target = f"redis :{redis.port}, client {slot.spec.slot}.{slot.incarnation}"
        before = await self._all_heads()
        began = time.monotonic()
        if method == "SIGSTOP":
            redis.signal(signal.SIGSTOP)
        else:
            await redis.client_pause(round(PAUSE_SECONDS * 1000))
        try:
            await asyncio.sleep(0.5)
            frozen = await self._all_heads()
            acked = self.book.counts["acked"] + self.book.counts["duplicates"]
            code = await self.fleet.kill(slot)
            await asyncio.sleep(max(0.0, began + PAUSE_SECONDS - 0.4 - time.monotonic()))
            still = await self._all_heads()
            acked_during = self.book.counts["acked"] + self.book.counts["duplicates"] - acked
        finally:
            await asyncio.sleep(max(0.0, began + PAUSE_SECONDS - time.monotonic()))
            if method == "SIGSTOP":
                redis.signal(signal.SIGCONT)
        await asyncio.sleep(0.1)
        resumed_at = time.time()
        node = self._other_node(slot.node, fault.choice)
        resumed = await self.fleet.resume(slot, node)
        moved_on = await self._wait_nodes(
            lambda index, heads: all(
                heads[s][0] == still[index][s][0] and heads[s][1] > still[index][s][1]
                for s in RELIABLE_STREAMS
            )
        )
        same_epochs = all(
            view[s][0] == earlier[s][0]
            for view, earlier in zip(still, before, strict=True)
            for s in RELIABLE_STREAMS
        )
        flags = await self._recovered_flags([slot], resumed_at)
        held = frozen == still and acked_during == 0
        outcome.effective = (
            code == -signal.SIGKILL
            and held
            and same_epochs
            and moved_on is not None
            and flags[True] == resumed
            and resumed > 0
            and not flags[False]
            and not flags[None]
        )
        outcome.note = (
            f"{method} {PAUSE_SECONDS:.1f}s: "
            f"{'nothing moved' if frozen == still else 'nodes MOVED'} and {acked_during} "
            f"publish(es) acknowledged during it; "
            f"{'same epochs' if same_epochs else 'epochs CHANGED'}, every node moved on "
            f"{_s(moved_on)} after; client killed (exit {code}) during it resumed "
            f"{resumed} subscription(s) on node {slot.node}: {_flags(flags)}"
        )

    async def node_kill(self, fault: PlannedFault, outcome: Outcome) -> None:
        """SIGKILL the node with the most clients; restart it after a second or two.

        Every other of its clients fails over meanwhile (killed, restarted on another node
        from its last positions); the others reconnect when the node is back. Epochs must
        not change, and resubscriptions must be recovered:true (the verdict checks that a
        recovered:false is justified by history, i.e. never for these small gaps).
        """
        await self.finish()
        count = len(self.nodes)
        slots = self.fleet.slots
        load = [sum(1 for slot in slots if slot.node == index) for index in range(count)]
        index = max(range(count), key=lambda i: (load[i], (i + fault.choice) % count))
        node = self.nodes[index]
        affected = [slot for slot in slots if slot.node == index]
        outcome.target = f"{node.name}.{node.incarnation} ({len(affected)} clients)"
        before = await node.heads()
        connections = {slot.spec.slot: len(await slot.connection_ids()) for slot in affected}
        began_wall, began = time.time(), time.monotonic()
        down = self.rng.uniform(1.0, 2.0)
        code = await node.stop(signal.SIGKILL)
        others = [i for i in range(count) if i != index]
        movers = affected[fault.choice % 2 :: 2] if others else []
        for slot in movers:
            await self.fleet.kill(slot)
            await self.fleet.resume(slot, others[(fault.choice + slot.spec.slot) % len(others)])
        await asyncio.sleep(max(0.0, began + down - time.monotonic()))
        await node.start()
        away = time.monotonic() - began
        after = await node.heads()
        same_epochs = all(after[s][0] == before[s][0] for s in RELIABLE_STREAMS)
        stayers = [slot for slot in affected if slot not in movers]
        reconnected = await self._wait_reconnected(stayers, connections)
        flags = await self._recovered_flags(
            affected, began_wall, RECONNECT_TIMEOUT if reconnected else 0.0
        )
        outcome.effective = (
            code == -signal.SIGKILL
            and same_epochs
            and reconnected
            and flags[True] > 0
            and not flags[None]
        )
        outcome.note = (
            f"exit {code}; back after {away:.2f}s "
            f"{'with the same epochs' if same_epochs else 'with NEW epochs'}; "
            f"{len(movers)} client(s) failed over to other nodes, {len(stayers)} "
            f"{'reconnected' if reconnected else 'did NOT all reconnect'}: {_flags(flags)}"
        )

    # ------------------------------------------------------------------ helpers

    def _redis(self) -> RedisServer:
        if self.redis is None:
            raise RuntimeError("this fault needs a multi-node run (Redis)")
        return self.redis

    async def _all_heads(self) -> list[dict[str, tuple[str, int]]]:
        """Every node's heads (from its memory: answers while Redis is away)."""
        return [await node.heads() for node in self.nodes]

    async def _wait_nodes(
        self, done: Callable[[int, dict[str, tuple[str, int]]], bool]
    ) -> float | None:
        """Seconds until `done(index, heads)` holds for every node (None: not in time)."""
        began = time.monotonic()
        while time.monotonic() - began < NODES_TIMEOUT:
            views = await self._all_heads()
            if all(done(index, heads) for index, heads in enumerate(views)):
                return time.monotonic() - began
            await asyncio.sleep(0.1)
        return None

    @staticmethod
    async def _wait_reconnected(slots: list[Slot], connections: dict[int, int]) -> bool:
        """Whether every slot's current incarnation opened a connection after those counted.

        A slot whose incarnation changed meanwhile counts as reconnected.
        """
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        pending = list(slots)
        while pending and time.monotonic() < deadline:
            pending = [
                slot
                for slot in pending
                if len(await slot.connection_ids()) <= connections.get(slot.spec.slot, 0)
            ]
            if pending:
                await asyncio.sleep(0.1)
        return not pending

    async def _recovered_flags(
        self,
        slots: list[Slot],
        since: float,
        timeout: float = RECONNECT_TIMEOUT,  # noqa: ASYNC109
    ) -> Counter[bool | None]:
        """The `recovered` flags of the slots' confirmations logged after `since` (wall)."""
        return sum(await self._flags_per_slot(slots, since, timeout), Counter[bool | None]())

    @staticmethod
    async def _flags_per_slot(
        slots: list[Slot],
        since: float,
        timeout: float = RECONNECT_TIMEOUT,  # noqa: ASYNC109
    ) -> list[Counter[bool | None]]:
        """Per slot, the `recovered` flags of its confirmations logged after `since` (wall).

        Waits, up to `timeout` seconds for all, until every subscription of every slot has
        one.
        """
        deadline = time.monotonic() + timeout
        while True:
            result: list[Counter[bool | None]] = []
            complete = True
            for slot in slots:
                flags: Counter[bool | None] = Counter()
                seen: set[str] = set()
                for incarnation in range(1, slot.incarnation + 1):
                    log = await asyncio.to_thread(slot.read, incarnation)
                    for sid, events in log.events.items():
                        for event in events:
                            if (
                                isinstance(event, Confirmed)
                                and event.t is not None
                                and event.t >= since
                            ):
                                flags[event.recovered] += 1
                                seen.add(sid)
                result.append(flags)
                complete = complete and len(seen) >= len(slot.spec.subscriptions)
            if complete or time.monotonic() >= deadline:
                return result
            await asyncio.sleep(0.1)


def _flags(flags: Counter[bool | None]) -> str:
    return f"{flags[True]} recovered:true, {flags[False]} recovered:false" + (
        f", {flags[None]} without since" if flags[None] else ""
    )


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f}s"
