"""The printed report of a run: what was published, delivered, injected and found."""

from __future__ import annotations

from collections import Counter
from typing import Any

from checker.harness import RunResult
from checker.verify import MAX_DETAILS_PER_KIND


def render(result: RunResult) -> str:
    scenario = result.scenario
    counts = result.verdict.counts
    publishing = result.publishing
    stats = result.gateway_stats
    incarnations = result.gateway_incarnations
    if scenario.multi:
        topology = (
            f"nodes:       {scenario.nodes} gateway nodes on one Redis "
            f"({result.redis_incarnations} Redis incarnation(s)); node incarnations "
            f"{', '.join(str(n) for n in incarnations)}; "
            f"{counts['placements']} stream positions known"
        )
    else:
        topology = (
            f"gateway:     {sum(incarnations)} incarnation(s); "
            f"{counts['placements']} stream positions known"
        )
    lines = [
        f"Tidewire delivery checker: {scenario.name} mode, seed {result.seed}, "
        f"{result.publishing_seconds:.1f}s of publishing, {result.seconds:.1f}s in all",
        f"logs: {result.workdir}",
        "",
        f"published:   {publishing.get('messages', 0)} messages "
        f"({scenario.publishers} publishers, {publishing.get('burst_messages', 0)} in bursts) "
        f"in {publishing.get('requests', 0)} requests; "
        f"{publishing.get('retries', 0)} retried ({publishing.get('unavailable', 0)} x 503, "
        f"{publishing.get('http_error', 0)} unanswered), "
        f"{publishing.get('given_up', 0)} given up; slowest request "
        f"{result.slowest_publish:.2f}s; "
        f"acks {publishing.get('acked', 0)} (+{publishing.get('duplicates', 0)} duplicate)",
        topology,
        f"clients:     {scenario.clients} slots, {counts['incarnations']} incarnations, "
        f"{counts['subscriptions']} subscriptions",
        f"delivered:   {counts['delivered']} messages; verified in place {counts['checked']}; "
        f"excused by a resync signal {counts['excused']}; unverifiable {counts['unverifiable']}",
        f"recovery:    {counts['resumed']} resumed with since after a kill, "
        f"{counts['recoveries']} recovered:true, {counts['resyncs']} recovered:false "
        f"(SDK markers {counts['resync_markers']}), "
        f"{counts['fresh_resubscriptions']} resubscribed without since, "
        f"{counts['sdk_overflows']} SDK queue overflows, "
        f"{counts['sdk_duplicates']} repeats dropped by the SDK",
        f"resyncs:     {counts['history_exceeded']} beyond history within an epoch, "
        f"{counts['dead_epoch_resyncs']} positioned in an epoch already lost",
        f"snapshots:   {counts['snapshots']} checked ({counts['snapshot_messages']} messages, "
        f"{counts['unverifiable_snapshots']} unverifiable)",
        f"connections: {counts['reconnections']} lost by clients ({_close_codes(counts)}); "
        f"gateway counters (last incarnations): slow_consumer_closes "
        f"{_total(stats, 'slow_consumer_closes')}, heartbeat_timeouts "
        f"{_total(stats, 'heartbeat_timeouts')}",
    ]
    if scenario.multi:
        lines.append(
            f"cross-node:  {counts['cross_node']} deliveries of messages published through "
            f"another node than the client's (of {counts['origin_known']} with a known "
            f"publishing node)"
        )
    lines += ["", f"faults ({len(result.outcomes)}):"]
    for outcome in result.outcomes:
        lines.append(
            f"  {outcome.started:7.2f}s {outcome.kind:<12} {outcome.target:<28} "
            f"{'effective' if outcome.effective else 'NO EFFECT'} ({outcome.seconds:.2f}s): "
            f"{outcome.note}"
        )
    injected = Counter(outcome.kind for outcome in result.outcomes)
    effective = Counter(outcome.kind for outcome in result.outcomes if outcome.effective)
    lines.append(
        "faults effective: "
        + " ".join(f"{kind}={effective[kind]}/{injected[kind]}" for kind in scenario.fault_kinds)
    )
    lines.append("")
    violations = result.verdict.violations
    if violations:
        lines.append(f"violations: {len(violations)} ({_kinds(result)})")
        shown: Counter[str] = Counter()
        for violation in violations:
            shown[violation.kind] += 1
            if shown[violation.kind] <= MAX_DETAILS_PER_KIND:
                lines.append(f"  {violation}")
        for kind, count in shown.items():
            if count > MAX_DETAILS_PER_KIND:
                lines.append(f"  ... and {count - MAX_DETAILS_PER_KIND} more [{kind}]")
    else:
        lines.append("violations: 0")
    for problem in result.problems:
        lines.append(f"harness problem: {problem}")
    lines.append(f"RESULT: {'PASS' if result.ok else 'FAIL'}")
    return "\n".join(lines)


def _total(stats: list[dict[str, Any]], name: str) -> str:
    values = [row.get(name) for row in stats]
    if not values or any(not isinstance(value, int) for value in values):
        return "?"
    return str(sum(value for value in values if isinstance(value, int)))


def _close_codes(counts: Counter[str]) -> str:
    codes = sorted(
        (int(name.removeprefix("close_")), count)
        for name, count in counts.items()
        if name.startswith("close_")
    )
    return ", ".join(f"{code} x{count}" for code, count in codes) or "none"


def _kinds(result: RunResult) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in result.verdict.by_kind().most_common())
