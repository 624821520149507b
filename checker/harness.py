"""One checker run: gateway (or Redis and its nodes), clients, publishers, faults, verdict.

Everything is bounded: each wait has a timeout, the whole run has one, and every process
started is killed on the way out, whatever happened (children also die with the harness, see
`checker.procs`).
"""

from __future__ import annotations

import asyncio
import json
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
from checker.redisserver import RedisServer
from checker.scenario import Scenario, gateway_settings, history_limits
from checker.verify import Ledger, Verdict, Violation, verify

FAULTS_OVERRUN = 60.0
"""Seconds the faults may run past the scenario's duration before the run gives up."""
CONNECTIONS_GONE_TIMEOUT = 8.0
CONVERGE_TIMEOUT = 15.0
"""Seconds the nodes may take, after the publishing stopped, to deliver everything."""


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    workdir: Path
    verdict: Verdict = field(default_factory=Verdict)
    outcomes: list[Outcome] = field(default_factory=list)
    publishing: dict[str, int] = field(default_factory=dict)
    gateway_stats: list[dict[str, Any]] = field(default_factory=list)
    """The last incarnation's counters of the gateway, or of every node."""
    gateway_incarnations: list[int] = field(default_factory=list)
    """Incarnations of the gateway, or of every node."""
    redis_incarnations: int = 0
    slowest_publish: float = 0.0
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
    """Run `scenario` with `seed` in `workdir` (logs stay there) and return the verdict.

    A multi-node scenario starts a private Redis first (RedisUnavailable when there is no
    redis-server) and `scenario.nodes` gateways on it.
    """
    began = time.monotonic()
    result = RunResult(scenario, seed, workdir)
    names = portfolios(scenario.portfolios)
    specs = [
        draw_client(random.Random(f"client-{seed}-{slot}"), slot, names)
        for slot in range(scenario.clients)
    ]
    redis = RedisServer(workdir) if scenario.multi else None
    if redis is None:
        nodes = [GatewayProcess(workdir, gateway_settings())]
    else:
        nodes = [
            GatewayProcess(workdir, gateway_settings(), node=index)
            for index in range(scenario.nodes)
        ]
    fleet = Fleet(
        specs,
        workdir,
        [node.url for node in nodes],
        max_seconds=scenario.duration + 3 * FAULTS_OVERRUN,
        multi=scenario.multi,
    )
    book = LedgerBook()
    run_id = f"s{seed}-{random.Random().getrandbits(32):08x}"
    internal_urls = [node.internal_url for node in nodes]
    publishers = [
        Publisher(
            f"p{index}",
            run_id,
            internal_urls,
            book,
            random.Random(f"publisher-{seed}-{index}"),
            RELIABLE_STREAMS,
            names,
        )
        for index in range(scenario.publishers)
    ]
    burster = Publisher(
        "burst", run_id, internal_urls, book, random.Random(f"burst-{seed}"), (), names
    )
    heads: dict[str, tuple[str, int]] = {}
    leaks: list[str] = []
    resets: list[float] = []
    try:
        if redis is not None:
            await redis.start()
            for node in nodes:
                node.broker = redis.url
        await asyncio.gather(*(node.start() for node in nodes))
        await fleet.start()
        stop = asyncio.Event()
        started = time.monotonic()
        publishing = [
            asyncio.create_task(publisher.run(stop, scenario.batch, scenario.interval))
            for publisher in publishers
        ]
        injector = Injector(
            scenario,
            nodes,
            fleet,
            burster,
            book,
            started,
            random.Random(f"inject-{seed}"),
            redis=redis,
        )
        result.outcomes = injector.outcomes
        resets = injector.resets
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
        heads, disagreement = await _final_heads(nodes)
        result.problems += disagreement
        result.problems += await fleet.finish(heads)
        for node in nodes:
            leaks += await _connections_gone(node)
        result.gateway_stats = [await node.stats() for node in nodes]
        result.gateway_incarnations = [node.incarnation for node in nodes]
        await asyncio.gather(*(node.stop(signal.SIGTERM) for node in nodes))
    finally:
        fleet.kill_all()
        for node in nodes:
            await node.close()
        if redis is not None:
            result.redis_incarnations = redis.incarnation
            await redis.stop()
        for publisher in (*publishers, burster):
            await publisher.close()
    result.publishing = dict(book.counts) | {
        "messages": len(book.messages),
        "burst_messages": burster.number,
    }
    result.slowest_publish = book.slowest
    ledger = book.ledger()
    await asyncio.to_thread(_save_ledger, workdir / "ledger.json", ledger, resets)
    result.verdict = verify(ledger, fleet.logs(), heads, history_limits(RELIABLE_STREAMS), resets)
    result.verdict.violations += [
        Violation("ack_conflict", "publisher", problem) for problem in book.problems
    ] + [Violation("connection_leak", "gateway", leak) for leak in leaks]
    result.verdict.violations += _behind_acks(ledger, heads)
    counts = result.verdict.counts
    if scenario.nodes > 1 and counts["cross_node"] == 0:
        result.verdict.violations.append(
            Violation(
                "no_cross_node",
                "run",
                "no client received a message published through another node "
                f"({counts['origin_known']} deliveries with a known publishing node)",
            )
        )
    result.seconds = time.monotonic() - began
    return result


def _save_ledger(path: Path, ledger: Ledger, resets: list[float]) -> None:
    """The acks (and history resets) next to the client logs, for looking into a verdict."""
    acks = [
        [stream, epoch, seq, message_id, ledger.via.get(message_id), ledger.acked_at.get(key)]
        for key, message_id in sorted(ledger.placements.items())
        for stream, epoch, seq in (key,)
    ]
    path.write_text(json.dumps({"resets": resets, "acks": acks}, separators=(",", ":")))


async def _final_heads(
    nodes: list[GatewayProcess],
) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """The streams' heads once every node delivered everything (and the nodes agree).

    With one gateway, its heads. With Redis, every node reads the same log: they must all
    reach the same positions, with no broker lag, soon after the publishing stopped; a node
    that does not is stuck (a problem of the run).
    """
    if len(nodes) == 1 and nodes[0].broker is None:
        return await nodes[0].heads(), []
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        views = [await node.heads() for node in nodes]
        lags = [(await node.stats()).get("broker_lag") for node in nodes]
        reliable = [{s: view[s] for s in RELIABLE_STREAMS} for view in views]
        lagging = [
            index
            for index, lag in enumerate(lags)
            if lag is None or any(lag.get(s, 0) for s in RELIABLE_STREAMS)
        ]
        if all(view == reliable[0] for view in reliable) and not lagging:
            return reliable[0], []
        if time.monotonic() >= deadline:
            return reliable[0], [
                f"the nodes did not converge within {CONVERGE_TIMEOUT}s: "
                + "; ".join(
                    f"node {index}: {reliable[index]} lag {lags[index]}"
                    for index in range(len(nodes))
                )
            ]
        await asyncio.sleep(0.1)


def _behind_acks(ledger: Ledger, heads: dict[str, tuple[str, int]]) -> list[Violation]:
    """The final heads must cover every acknowledged publish of their epoch."""
    violations = []
    for stream, (epoch, seq) in heads.items():
        acked = max(
            (s for (st, e, s) in ledger.placements if st == stream and e == epoch), default=0
        )
        if acked > seq:
            violations.append(
                Violation(
                    "head_behind",
                    "gateway",
                    f"{stream}: the gateway's head {epoch}:{seq} is behind the acknowledged "
                    f"seq {acked}",
                )
            )
    return violations


async def _connections_gone(gateway: GatewayProcess) -> list[str]:
    """Once every client left, the gateway must hold no connection (none leaked)."""
    deadline = time.monotonic() + CONNECTIONS_GONE_TIMEOUT
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = await gateway.connections()
        if not rows:
            return []
        await asyncio.sleep(0.1)
    return [f"{gateway.name} still holds {len(rows)} connection(s) after every client left"]
