"""One checker run: gateway, clients, publishers and faults, then the verdict.

Everything is bounded: each wait has a timeout, the whole run has one, and every process
started is killed on the way out, whatever happened (children also die with the harness, see
`checker.procs`).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checker.faults import Injector, Outcome, plan
from checker.fleet import Fleet
from checker.gateway import GatewayProcess
from checker.model import RELIABLE_STREAMS, draw_client, portfolios
from checker.publisher import LedgerBook, Publisher
from checker.scenario import Scenario, gateway_settings
from checker.verify import Verdict, Violation, verify

FAULTS_OVERRUN = 60.0
"""Seconds the faults may run past the scenario's duration before the run gives up."""
CONNECTIONS_GONE_TIMEOUT = 8.0


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    workdir: Path
    verdict: Verdict = field(default_factory=Verdict)
    outcomes: list[Outcome] = field(default_factory=list)
    publishing: dict[str, int] = field(default_factory=dict)
    gateway_stats: dict[str, Any] = field(default_factory=dict)
    gateway_incarnations: int = 0
    problems: list[str] = field(default_factory=list)
    """Failures of the harness itself (a fault that could not be injected, a client that
    did not finish, ...): the run cannot vouch for anything then."""
    seconds: float = 0.0
    publishing_seconds: float = 0.0

    @property
    def ineffective(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.effective]

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.problems and not self.ineffective


async def run(scenario: Scenario, seed: int, workdir: Path) -> RunResult:
    """Run `scenario` with `seed` in `workdir` (logs stay there) and return the verdict."""
    began = time.monotonic()
    result = RunResult(scenario, seed, workdir)
    names = portfolios(scenario.portfolios)
    specs = [
        draw_client(random.Random(f"client-{seed}-{slot}"), slot, names)
        for slot in range(scenario.clients)
    ]
    gateway = GatewayProcess(workdir, gateway_settings())
    fleet = Fleet(specs, workdir, gateway.url, max_seconds=scenario.duration + 3 * FAULTS_OVERRUN)
    book = LedgerBook()
    run_id = f"s{seed}-{random.Random().getrandbits(32):08x}"
    publishers = [
        Publisher(
            f"p{index}",
            run_id,
            gateway.internal_url,
            book,
            random.Random(f"publisher-{seed}-{index}"),
            RELIABLE_STREAMS,
            names,
        )
        for index in range(scenario.publishers)
    ]
    burster = Publisher(
        "burst", run_id, gateway.internal_url, book, random.Random(f"burst-{seed}"), (), names
    )
    heads: dict[str, tuple[str, int]] = {}
    leaks: list[str] = []
    try:
        await gateway.start()
        await fleet.start()
        stop = asyncio.Event()
        started = time.monotonic()
        publishing = [
            asyncio.create_task(publisher.run(stop, scenario.batch, scenario.interval))
            for publisher in publishers
        ]
        injector = Injector(
            scenario, gateway, fleet, burster, started, random.Random(f"inject-{seed}")
        )
        result.outcomes = injector.outcomes
        faults = asyncio.create_task(injector.run(plan(scenario, seed)))
        await asyncio.sleep(scenario.duration)
        try:
            async with asyncio.timeout(FAULTS_OVERRUN):
                await faults
        except TimeoutError:
            result.problems.append(f"faults still running {FAULTS_OVERRUN}s after the end")
            faults.cancel()
        stop.set()
        await asyncio.gather(*publishing)
        result.publishing_seconds = time.monotonic() - started
        await injector.finish()
        heads = await gateway.heads()
        result.problems += await fleet.finish(heads)
        leaks = await _connections_gone(gateway)
        result.gateway_stats = await gateway.stats()
        result.gateway_incarnations = gateway.incarnation
        await gateway.stop(signal.SIGTERM)
    finally:
        fleet.kill_all()
        await gateway.close()
        for publisher in (*publishers, burster):
            await publisher.close()
    result.publishing = dict(book.counts) | {
        "messages": len(book.messages),
        "burst_messages": burster.number,
    }
    result.verdict = verify(book.ledger(), fleet.logs(), heads)
    result.verdict.violations += [
        Violation("ack_conflict", "publisher", problem) for problem in book.problems
    ] + [Violation("connection_leak", "gateway", leak) for leak in leaks]
    result.seconds = time.monotonic() - began
    return result


async def _connections_gone(gateway: GatewayProcess) -> list[str]:
    """Once every client left, the gateway must hold no connection (none leaked)."""
    deadline = time.monotonic() + CONNECTIONS_GONE_TIMEOUT
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = await gateway.connections()
        if not rows:
            return []
        await asyncio.sleep(0.1)
    return [f"the gateway still holds {len(rows)} connection(s) after every client left"]
