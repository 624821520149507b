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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from checker.fleet import Fleet, Slot
from checker.gateway import GatewayProcess
from checker.model import RELIABLE_STREAMS, SEVERITIES
from checker.publisher import Publisher
from checker.rawclient import RawClient
from checker.scenario import FAULT_KINDS, STALL_TIMEOUT, Scenario

FIRST_FAULT_AT = 2.0
"""Seconds of undisturbed publishing before the first fault."""
MAX_FILL_BYTES = 40 << 20
MAX_FILL_SECONDS = 10.0
"""A burst that has not backed a connection up after this many bytes or seconds gives up."""
RECONNECT_TIMEOUT = 15.0
RAW_CLOSE_TIMEOUT = 12.0


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
    kinds = [kind for kind in FAULT_KINDS for _ in range(scenario.faults.get(kind, 0))]
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
    """Injects planned faults into one run."""

    scenario: Scenario
    gateway: GatewayProcess
    fleet: Fleet
    burster: Publisher
    started_at: float
    rng: random.Random
    outcomes: list[Outcome] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    """Faults that finish on their own (a raw client waiting to be dropped)."""

    def now(self) -> float:
        return time.monotonic() - self.started_at

    async def run(self, faults: list[PlannedFault]) -> None:
        for fault in faults:
            delay = fault.at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            handler: dict[str, Callable[[PlannedFault, Outcome], Awaitable[None]]] = {
                "kill": self.kill,
                "stall": self.stall,
                "overflow": self.overflow,
                "raw": self.raw,
                "restart_term": self.restart,
                "restart_kill": self.restart,
            }
            outcome = Outcome(fault.kind, "", round(self.now(), 2))
            self.outcomes.append(outcome)
            began = time.monotonic()
            try:
                await handler[fault.kind](fault, outcome)
            except Exception as exc:
                outcome.note += f" failed: {exc!r}"
            outcome.seconds = round(time.monotonic() - began, 2)

    async def finish(self) -> None:
        """Wait for the faults that finish in the background."""
        background, self.background = self.background, []
        await asyncio.gather(*background)

    # ------------------------------------------------------------------ kill

    async def kill(self, fault: PlannedFault, outcome: Outcome) -> None:
        slot = self.fleet.slots[fault.slot]
        outcome.target = f"client {slot.spec.slot}.{slot.incarnation}"
        code, resumed = await self.fleet.kill_and_resume(slot, pause=self.rng.uniform(0.1, 0.8))
        outcome.effective = code == -signal.SIGKILL
        outcome.note = (
            f"exit {code}; client {slot.spec.slot}.{slot.incarnation} resumes "
            f"{resumed} subscription(s) with since"
        )

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
        connections = await self._connected(slot)
        if not connections:
            outcome.note = "the client is not connected to the gateway"
            return
        connection_id = connections[-1]
        base = (await self.gateway.stats())["slow_consumer_closes"]
        slot.signal(signal.SIGSTOP)
        try:
            paused_after, sent = await self._fill(
                lambda row: row["connection_id"] == connection_id, target, base, until_closed
            )
            cut_after = await self._wait_cut(base, STALL_TIMEOUT + 3.0)
            rows = [
                r for r in await self.gateway.connections() if r["connection_id"] == connection_id
            ]
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
            open_ids = {row["connection_id"] for row in await self.gateway.connections()}
            if connections and connections[-1] in open_ids:
                return connections
            await asyncio.sleep(0.1)
        return []

    async def _fill(
        self,
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
            rows = [row for row in await self.gateway.connections() if is_target(row)]
            closes = (await self.gateway.stats())["slow_consumer_closes"]
            # Held back: the chunk just published waits in the outbox. (A few bytes there
            # may only be the other publishers' messages, not flushed yet.)
            if paused_after is None and (not rows or rows[0]["pending_bytes"] > held_back):
                paused_after = time.monotonic() - began
            if closes > base_closes or (paused_after is not None and not until_closed):
                break
        return paused_after, sent

    async def _wait_cut(self, base_closes: int, timeout: float) -> float | None:  # noqa: ASYNC109
        """Seconds until the gateway's slow-consumer closes pass `base_closes` (None: never)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if (await self.gateway.stats())["slow_consumer_closes"] > base_closes:
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
        raw = RawClient(self.gateway.port)
        await raw.open()
        outcome.target = f"raw client {raw.local_address}"
        base = (await self.gateway.stats())["slow_consumer_closes"]
        stream = RELIABLE_STREAMS[fault.choice % len(RELIABLE_STREAMS)]
        paused_after, sent = await self._fill(
            lambda row: row["remote"] == raw.local_address,
            (stream, (f"PF-{fault.choice % self.scenario.portfolios}",)),
            base,
            until_closed=False,
        )
        outcome.note = f"{sent >> 10} KiB burst; held back after {_s(paused_after)}"
        self.background.append(asyncio.create_task(self._raw_end(raw, base, outcome)))

    async def _raw_end(self, raw: RawClient, base: int, outcome: Outcome) -> None:
        began = time.monotonic()
        try:
            await self._raw_cut_off(raw, base, outcome, began)
        except Exception as exc:
            outcome.note += f"; failed: {exc!r}"
        finally:
            await raw.close()

    async def _raw_cut_off(self, raw: RawClient, base: int, outcome: Outcome, began: float) -> None:
        cut_after = await self._wait_cut(base, STALL_TIMEOUT + 3.0)
        gone_after: float | None = None
        while time.monotonic() - began < RAW_CLOSE_TIMEOUT:
            rows = await self.gateway.connections()
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
        away = await self.gateway.restart(sig)
        after = await self.gateway.heads()
        new_epochs = all(before[stream][0] != after[stream][0] for stream in before)
        outcome.effective = new_epochs
        outcome.note = (
            f"{sig.name}; gateway {self.gateway.incarnation} serving after {away:.2f}s"
            f"{' with new epochs' if new_epochs else ' with the SAME epochs'}"
        )


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f}s"
