"""The delivery checker (`python -m checker`): its verdict on crafted logs, and real runs.

The verdict tests feed `checker.verify` hand-written client logs (the records a checker client
writes) and a ledger of what was published where, one rule at a time. The slow tests run the
CI-sized scenarios end to end, one against a real gateway (memory broker), one against three
gateway nodes on a private Redis, and check that each passed *and* that it injected every
kind of fault with effect and verified messages (across nodes), so neither can pass vacuously.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# `checker` is a top-level package next to `src/`, like `bench/` (pytest's pythonpath has ".").
from checker.__main__ import parse_args, scenario_of
from checker.faults import plan
from checker.model import (
    RELIABLE_STREAMS,
    Published,
    draw_client,
    draw_message,
    matches,
    portfolios,
    to_wire,
)
from checker.publisher import LedgerBook
from checker.rawclient import close_code_of
from checker.records import log_of, read_log
from checker.redisserver import command
from checker.scenario import (
    FAULT_KINDS,
    LONG,
    MULTI,
    MULTI_FAULT_KINDS,
    MULTI_LONG,
    SMALL,
    Scenario,
)
from checker.verify import Ledger, Verdict, verify

from support import require_tool
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.legacy import upgrade
from tidewire.protocol.shapes import TOP_LEVEL_FIELDS

REPO = Path(__file__).resolve().parent.parent

E1, E2 = "e1", "e2"
STREAM = "order_updates"


# --------------------------------------------------------------------------- helpers


def message_id(epoch: str, seq: int, stream: str = STREAM) -> str:
    return f"{stream}-{epoch}-{seq}"


def ledger(*entries: tuple[Any, ...]) -> Ledger:
    """Entries (epoch, seq, portfolio[, stream[, severity[, symbol]]]) as placed by the gateway."""
    messages: dict[str, Published] = {}
    placements: dict[tuple[str, str, int], str] = {}
    for number, entry in enumerate(entries, 1):
        epoch, seq, portfolio, *rest = entry
        stream = rest[0] if rest else STREAM
        severity = rest[1] if len(rest) > 1 else None
        symbol = rest[2] if len(rest) > 2 else "AAPL"
        mid = message_id(epoch, seq, stream)
        messages[mid] = Published(mid, stream, portfolio, "p0", number, severity, symbol)
        placements[(stream, epoch, seq)] = mid
    return Ledger(messages, placements)


def stream_of(n: int, *portfolio_of_seq: str, epoch: str = E1) -> list[tuple[Any, ...]]:
    """Seqs 1..n of one epoch, portfolio PF-0 unless given per seq."""
    return [
        (epoch, seq, portfolio_of_seq[seq - 1] if seq <= len(portfolio_of_seq) else "PF-0")
        for seq in range(1, n + 1)
    ]


def sub(
    sid: str = "s0",
    stream: str = STREAM,
    filters: dict[str, Any] | None = None,
    since: list[Any] | None = None,
    snapshot: bool | None = None,
) -> dict[str, Any]:
    return {
        "k": "sub",
        "sid": sid,
        "stream": stream,
        "filters": {"portfolio_ids": ["PF-0"]} if filters is None else filters,
        "snapshot": snapshot,
        "since": since,
    }


def conf(
    n: int,
    seq: int,
    epoch: str = E1,
    recovered: bool | None = None,
    sid: str = "s0",
    t: float | None = None,
) -> dict[str, Any]:
    record = {"k": "conf", "sid": sid, "n": n, "recovered": recovered, "pos": [epoch, seq]}
    if t is not None:
        record["t"] = t
    return record


def marker(n: int, sid: str = "s0") -> dict[str, Any]:
    return {"k": "resync", "sid": sid, "n": n, "reason": "not_recovered", "pos": None}


def callback(n: int, sid: str = "s0") -> dict[str, Any]:
    return {"k": "resync_cb", "sid": sid, "n": n, "reason": "not_recovered"}


class Messages:
    """Message records numbered in routing order, as a checker client writes them."""

    def __init__(self, sid: str = "s0", stream: str = STREAM) -> None:
        self.sid = sid
        self.stream = stream
        self.n = 0

    def __call__(
        self, seq: int, epoch: str = E1, portfolio: str = "PF-0", severity: str | None = None
    ) -> dict[str, Any]:
        self.n += 1
        return {
            "k": "msg",
            "sid": self.sid,
            "n": self.n,
            "st": self.stream,
            "e": epoch,
            "s": seq,
            "id": message_id(epoch, seq, self.stream),
            "pf": portfolio,
            "sev": severity,
        }


END = {"k": "end", "drained": True, "behind": []}


def check(
    book: Ledger,
    records: list[dict[str, Any]],
    heads: dict[str, tuple[str, int]] | None = None,
) -> Verdict:
    if heads is None:
        last = max((p for p in book.placements if p[0] == STREAM), key=lambda p: (p[1], p[2]))
        heads = {STREAM: (last[1], last[2])}
    return verify(book, [log_of(records, slot=0, incarnation=1)], heads)


def kinds(verdict: Verdict) -> set[str]:
    return {violation.kind for violation in verdict.violations}


# --------------------------------------------------------------------------- the rules


def test_everything_delivered_in_order_passes() -> None:
    book = ledger(*stream_of(5))
    msg = Messages()
    verdict = check(book, [sub(), conf(0, 0), *(msg(seq) for seq in range(1, 6)), END])
    assert verdict.ok, verdict.violations
    assert verdict.counts["checked"] == 5


def test_a_lost_message_without_a_resync_is_a_violation() -> None:
    book = ledger(*stream_of(5))
    msg = Messages()
    verdict = check(book, [sub(), conf(0, 0), msg(1), msg(2), msg(4), msg(5), END])
    assert kinds(verdict) == {"missing"}
    assert "order_updates@e1:3" in str(verdict.violations[0])


def test_a_lost_tail_is_a_violation_for_a_client_that_ran_to_the_end() -> None:
    book = ledger(*stream_of(5))
    msg = Messages()
    assert kinds(check(book, [sub(), conf(0, 0), msg(1), msg(2), END])) == {"missing"}
    # A client killed after message 2 was promised nothing more.
    assert check(book, [sub(), conf(0, 0), msg(1), msg(2)]).ok


def test_the_same_loss_after_a_recovered_false_is_not_a_violation() -> None:
    # History no longer covered the gap: recovered:false, same epoch, position 4.
    book = ledger(*stream_of(6))
    msg = Messages()
    records = [sub(), conf(0, 0), msg(1), msg(2), conf(2, 4, recovered=False), msg(5), msg(6)]
    verdict = check(book, [*records, END])
    assert verdict.ok, verdict.violations
    assert verdict.counts["excused"] == 2
    assert verdict.counts["resyncs"] == 1


def test_a_restart_loses_the_old_epochs_tail_only_with_a_signal() -> None:
    book = ledger(*stream_of(5), *stream_of(3, epoch=E2))
    msg = Messages()
    head = [sub(), conf(0, 0), msg(1), msg(2), msg(3)]
    signalled = check(book, [*head, conf(3, 1, E2, recovered=False), msg(2, E2), msg(3, E2), END])
    assert signalled.ok, signalled.violations
    msg.n = 3
    silent = check(book, [*head, msg(2, E2), msg(3, E2), END])
    assert "epoch_jump" in kinds(silent)


def test_a_resync_does_not_excuse_a_loss_before_it() -> None:
    book = ledger(*stream_of(8))
    msg = Messages()
    records = [sub(), conf(0, 0), msg(1), msg(3), conf(2, 6, recovered=False), msg(7), msg(8)]
    verdict = check(book, [*records, END])
    assert kinds(verdict) == {"missing"}
    assert "order_updates@e1:2" in str(verdict.violations[0])


def test_a_duplicate_is_a_violation() -> None:
    book = ledger(*stream_of(3))
    msg = Messages()
    verdict = check(book, [sub(), conf(0, 0), msg(1), msg(2), msg(2), msg(3), END])
    assert kinds(verdict) == {"duplicate"}


def test_a_duplicate_after_a_recovery_is_a_violation() -> None:
    book = ledger(*stream_of(4))
    msg = Messages()
    records = [sub(), conf(0, 0), msg(1), msg(2), conf(2, 4, recovered=True), msg(2), msg(3)]
    verdict = check(book, [*records, msg(4), END])
    assert kinds(verdict) == {"duplicate"}


def test_an_out_of_order_message_is_a_violation() -> None:
    book = ledger(*stream_of(4))
    msg = Messages()
    verdict = check(book, [sub(), conf(0, 0), msg(1), msg(3), msg(2), msg(4), END])
    assert "out_of_order" in kinds(verdict)


def test_a_message_of_another_portfolio_is_a_violation() -> None:
    book = ledger(*stream_of(3, "PF-0", "PF-1", "PF-0"))
    msg = Messages()
    verdict = check(book, [sub(), conf(0, 0), msg(1), msg(2, portfolio="PF-1"), msg(3), END])
    assert kinds(verdict) == {"foreign"}
    assert "PF-1" in str(verdict.violations[0])
    # ...and not receiving it is right.
    msg = Messages()
    assert check(book, [sub(), conf(0, 0), msg(1), msg(3), END]).ok


def test_a_foreign_message_seen_only_on_the_wire_is_a_violation() -> None:
    book = ledger(*stream_of(3, "PF-0", "PF-1", "PF-0"))
    msg = Messages()
    wire = {"k": "wire_foreign", "st": STREAM, "e": E1, "s": 2, "id": "x", "pf": "PF-1"}
    verdict = check(book, [sub(), conf(0, 0), msg(1), wire, msg(3), END])
    assert kinds(verdict) == {"foreign"}


def test_a_severity_minimum_is_a_filter_too() -> None:
    stream = "risk_alerts"
    book = ledger((E1, 1, "PF-0", stream, "high"), (E1, 2, "PF-0", stream, "medium"))
    msg = Messages(stream=stream)
    filters = {"portfolio_ids": ["PF-0"], "severity": "high"}
    records = [sub(stream=stream, filters=filters), conf(0, 0)]
    heads = {stream: (E1, 2)}
    assert check(book, [*records, msg(1, severity="high"), END], heads).ok
    msg.n = 0
    delivered_medium = [*records, msg(1), msg(2, severity="medium"), END]
    assert kinds(check(book, delivered_medium, heads)) == {"foreign"}


def test_a_recovered_false_the_sdk_did_not_signal_is_a_violation() -> None:
    book = ledger(*stream_of(5))
    msg = Messages()
    start = {"k": "start", "resync_api": True}
    records = [start, sub(), conf(0, 0), msg(1), conf(1, 3, recovered=False)]
    signalled = check(book, [*records, marker(1), callback(1), msg(4), msg(5), END])
    assert signalled.ok, signalled.violations
    msg.n = 1
    unsignalled = check(book, [*records, msg(4), msg(5), END])
    assert kinds(unsignalled) == {"resync_not_signalled"}


def test_a_client_resumed_with_since_owes_everything_after_it() -> None:
    book = ledger(*stream_of(6))
    msg = Messages()
    records = [sub(since=[E1, 3]), conf(0, 6, recovered=True)]
    assert check(book, [*records, msg(4), msg(5), msg(6), END]).ok
    msg.n = 0
    assert kinds(check(book, [*records, msg(5), msg(6), END])) == {"missing"}


def test_a_snapshot_holds_the_latest_message_of_each_portfolio_and_symbol() -> None:
    stream = "position_updates"
    book = ledger(
        (E1, 1, "PF-0", stream, None, "AAPL"),
        (E1, 2, "PF-0", stream, None, "AAPL"),
        (E1, 3, "PF-0", stream, None, "MSFT"),
        (E1, 4, "PF-1", stream, None, "MSFT"),
        (E1, 5, "PF-0", stream, None, "MSFT"),
    )
    heads = {stream: (E1, 5)}
    msg = Messages(stream=stream)
    good = [sub(stream=stream), conf(0, 4), msg(2), msg(3), msg(5), END]
    assert check(book, good, heads).ok
    msg.n = 0
    stale = [sub(stream=stream), conf(0, 4), msg(1), msg(3), msg(5), END]
    assert kinds(check(book, stale, heads)) == {"snapshot"}


def test_publishers_messages_keep_their_order_in_the_stream() -> None:
    book = ledger(*stream_of(3))
    swapped = dict(book.placements)
    first, second = (STREAM, E1, 1), (STREAM, E1, 2)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    verdict = verify(Ledger(book.messages, swapped), [], {})
    assert kinds(verdict) == {"publish_order"}


# --------------------------------------------------------------------------- history and nodes

EPOCH_BORN = {E1: 1000.0, E2: 2000.0}
"""Wall-clock time each test epoch's first message is acknowledged; seq n 0.01 s later each."""


def timed(book: Ledger, via: dict[str, int] | None = None) -> Ledger:
    """`book` with ack times (and the acknowledging node of each message)."""
    acked_at = {
        (stream, epoch, seq): EPOCH_BORN[epoch] + seq * 0.01
        for (stream, epoch, seq) in book.placements
    }
    return Ledger(book.messages, book.placements, via or {}, acked_at)


def check_timed(
    book: Ledger,
    records: list[dict[str, Any]],
    heads: dict[str, tuple[str, int]],
    limit: int,
    resets: tuple[float, ...] = (),
    node: int | None = None,
) -> Verdict:
    start = [{"k": "start", "node": node}] if node is not None else []
    log = log_of([*start, *records], slot=0, incarnation=1)
    return verify(book, [log], heads, {STREAM: limit}, resets)


def test_a_recovered_false_that_history_covered_is_a_violation() -> None:
    # A node restarted over Redis (or another node) must replay a gap history still holds.
    book = timed(ledger(*stream_of(60)))
    msg = Messages()
    records = [sub(), conf(0, 0), *(msg(seq) for seq in range(1, 11))]
    records += [conf(10, 40, recovered=False, t=1000.45), *(msg(seq) for seq in range(41, 61))]
    needless = check_timed(book, [*records, END], {STREAM: (E1, 60)}, limit=100)
    assert kinds(needless) == {"unjustified_resync"}
    assert "history keeps 100" in str(needless.violations[0])
    # ...but right when more was published after seq 10 than the stream keeps.
    beyond = check_timed(book, [*records, END], {STREAM: (E1, 60)}, limit=30)
    assert beyond.ok, beyond.violations
    assert beyond.counts["history_exceeded"] == 1


def test_a_resumed_client_owes_a_recovery_when_history_covers_its_gap() -> None:
    book = timed(ledger(*stream_of(30)))
    msg = Messages()
    records = [sub(since=[E1, 10]), conf(0, 25, recovered=False, t=1000.3)]
    verdict = check_timed(book, [*records, *(msg(s) for s in range(26, 31)), END], {}, 100)
    assert kinds(verdict) == {"unjustified_resync"}
    msg.n = 0
    recovered = [sub(since=[E1, 10]), conf(0, 30, recovered=True, t=1000.3)]
    verdict = check_timed(book, [*recovered, *(msg(s) for s in range(11, 31)), END], {}, 100)
    assert verdict.ok, verdict.violations
    assert verdict.counts["resumed_recovered"] == 1


def test_a_recovered_false_in_an_epoch_whose_history_was_lost_is_no_violation() -> None:
    # Redis restarted empty at t=1500; a node that had not noticed yet answers in E1.
    book = timed(ledger(*stream_of(20), *stream_of(5, epoch=E2)))
    msg = Messages()
    records = [sub(), conf(0, 0), *(msg(seq) for seq in range(1, 6))]
    records += [conf(5, 20, recovered=False, t=1600.0), conf(5, 3, E2, recovered=False)]
    records += [msg(4, E2), msg(5, E2), END]
    verdict = check_timed(book, records, {STREAM: (E2, 5)}, limit=100, resets=(1500.0,))
    assert verdict.ok, verdict.violations
    assert verdict.counts["dead_epoch_resyncs"] == 1


def test_a_confirmation_back_into_an_older_epoch_is_a_violation() -> None:
    book = timed(ledger(*stream_of(20), *stream_of(3, epoch=E2)))
    msg = Messages()
    records = [sub(), conf(0, 0), msg(1), msg(2), msg(3), conf(3, 1, E2, recovered=False)]
    records += [msg(2, E2), conf(4, 20, E1, recovered=False, t=2000.1)]
    verdict = check_timed(book, [*records, END], {STREAM: (E2, 3)}, limit=100)
    assert "epoch_regression" in kinds(verdict)


def test_deliveries_across_nodes_are_counted() -> None:
    book = ledger(*stream_of(4))
    via = {message_id(E1, seq): seq % 2 for seq in range(1, 5)}  # nodes 1, 0, 1, 0
    msg = Messages()
    records = [sub(), conf(0, 0), *(msg(seq) for seq in range(1, 5)), END]
    verdict = check_timed(timed(book, via), records, {STREAM: (E1, 4)}, 100, node=1)
    assert verdict.ok, verdict.violations
    assert verdict.counts["origin_known"] == 4
    assert verdict.counts["cross_node"] == 2


def test_the_ledger_book_keeps_when_and_through_which_node_a_message_was_acked() -> None:
    book = LedgerBook()
    ack = {"message_id": "m1", "stream": STREAM, "epoch": E1, "seq": 7, "duplicate": False}
    book.record_ack(ack, node=2)
    book.record_ack({**ack, "duplicate": True}, node=0)
    ledger_ = book.ledger()
    assert ledger_.via == {"m1": 2}
    assert list(ledger_.acked_at) == [(STREAM, E1, 7)]
    assert book.counts["acked"] == 1 and book.counts["duplicates"] == 1


# --------------------------------------------------------------------------- pieces


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "client-0-1.jsonl"
    path.write_text('{"k":"sub","sid":"s0","stream":"order_updates","filters":{}}\n{"k":"msg","si')
    log = read_log(path, 0, 1)
    assert list(log.subscribed) == ["s0"] and not log.events


def test_the_fault_schedule_depends_only_on_the_seed() -> None:
    assert plan(SMALL, 7) == plan(SMALL, 7)
    assert plan(SMALL, 7) != plan(SMALL, 8)
    assert plan(MULTI, 7) == plan(MULTI, 7)
    for scenario, kinds_ in (
        (SMALL, FAULT_KINDS),
        (LONG, FAULT_KINDS),
        (MULTI, ("kill", "stall", "redis_restart", "redis_pause", "node_kill")),
        (MULTI_LONG, MULTI_FAULT_KINDS),
    ):
        planned = {fault.kind for fault in plan(scenario, 1)}
        assert planned == set(kinds_) == set(scenario.fault_kinds)
        assert all(fault.at < scenario.duration for fault in plan(scenario, 1))


@pytest.mark.parametrize(
    ("argv", "name", "nodes"),
    [
        ([], "small", 0),
        (["--long"], "long", 0),
        (["--multi"], "multi", 3),
        (["--nodes", "3"], "multi", 3),
        (["--nodes", "2", "--long"], "multi-long", 2),
    ],
)
def test_the_command_line_picks_the_mode(argv: list[str], name: str, nodes: int) -> None:
    scenario: Scenario = scenario_of(parse_args(argv))
    assert (scenario.name, scenario.nodes, scenario.multi) == (name, nodes, nodes > 0)


def test_redis_commands_are_sent_in_resp() -> None:
    assert command("CLIENT", "PAUSE", "3000", "ALL") == (
        b"*4\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n$4\r\n3000\r\n$3\r\nALL\r\n"
    )


def test_clients_ask_for_what_they_get_checked_on() -> None:
    names = portfolios(5)
    spec = draw_client(random.Random(3), 0, names)
    assert 1 <= len(spec.subscriptions) <= 3
    message = Published("m", STREAM, "PF-9", "p0", 1)
    assert not any(
        matches(s.filters, message) for s in spec.subscriptions if "portfolio_ids" in s.filters
    )


def test_the_published_messages_are_canonical() -> None:
    """What the checker publishes needs no 0.1 mapping: the gateway keeps it as it is."""
    rng = random.Random(5)
    for number in range(1, 41):
        draw = draw_message(rng, f"m{number}", "p0", number, RELIABLE_STREAMS, portfolios(3))
        wire = to_wire(draw, pad=8)
        top = {name: wire[name] for name in TOP_LEVEL_FIELDS if name in wire}
        upgraded_top, upgraded_data = dict(top), dict(wire["data"])
        upgrade(wire["type"], upgraded_top, upgraded_data)
        assert (upgraded_top, upgraded_data) == (top, wire["data"])
        message = build_data_message(wire)
        assert message.stream == draw.stream and message.portfolio_id == draw.portfolio
        assert message.symbol == draw.symbol and message.severity == draw.severity
        assert {name: message.data[name] for name in wire["data"]} == wire["data"]


def test_the_raw_clients_close_code_is_read_from_server_frames() -> None:
    text = b"\x81\x05hello"
    close = b"\x88\x02" + (4008).to_bytes(2, "big")
    assert close_code_of(text + close) == 4008
    assert close_code_of(text) is None


# --------------------------------------------------------------------------- a real run

SMALL_RUN_TIMEOUT = 240


@pytest.mark.slow
@pytest.mark.timeout(SMALL_RUN_TIMEOUT + 30)
def test_the_small_run_passes_with_every_fault_injected() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "checker", "--seed", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SMALL_RUN_TIMEOUT,
    )
    report = run.stdout
    assert run.returncode == 0, report + run.stderr
    assert "RESULT: PASS" in report
    effective = re.search(r"faults effective: (.*)", report)
    assert effective is not None, report
    for kind in FAULT_KINDS:
        counts = re.search(rf"\b{kind}=(\d+)/(\d+)", effective.group(1))
        assert counts is not None and int(counts.group(2)) >= 1, report
        assert counts.group(1) == counts.group(2), f"{kind} had no effect:\n{report}"

    def number(pattern: str) -> int:
        found = re.search(pattern, report)
        assert found is not None, f"{pattern!r} not in:\n{report}"
        return int(found.group(1))

    assert number(r"verified in place (\d+)") > 1000
    assert number(r"(\d+) recovered:false") > 0
    assert number(r"(\d+) recovered:true") > 0
    assert number(r"(\d+) resumed with since") > 0
    assert number(r"violations: (\d+)") == 0


MULTI_RUN_TIMEOUT = 240
MULTI_KINDS = ("kill", "stall", "redis_restart", "redis_pause", "node_kill")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(MULTI_RUN_TIMEOUT + 30)
def test_the_multi_node_run_passes_with_every_fault_injected_across_nodes() -> None:
    """Three nodes on one Redis: Redis restart and pause, a node kill, client faults."""
    require_tool("redis-server", "apt-get install redis-server")
    assert set(MULTI.fault_kinds) == set(MULTI_KINDS)
    run = subprocess.run(
        [sys.executable, "-m", "checker", "--multi", "--seed", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=MULTI_RUN_TIMEOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    report = run.stdout
    assert run.returncode == 0, report + run.stderr
    assert "RESULT: PASS" in report
    assert "3 gateway nodes on one Redis" in report
    effective = re.search(r"faults effective: (.*)", report)
    assert effective is not None, report
    for kind in MULTI_KINDS:
        counts = re.search(rf"\b{kind}=(\d+)/(\d+)", effective.group(1))
        assert counts is not None and int(counts.group(2)) >= 1, report
        assert counts.group(1) == counts.group(2), f"{kind} had no effect:\n{report}"

    def number(pattern: str) -> int:
        found = re.search(pattern, report)
        assert found is not None, f"{pattern!r} not in:\n{report}"
        return int(found.group(1))

    assert number(r"cross-node:\s+(\d+) deliveries") > 500
    assert number(r"verified in place (\d+)") > 1000
    assert number(r"(\d+) recovered:false") > 0  # the Redis restart
    assert number(r"(\d+) recovered:true") > 0  # node kill, pause, client kills
    assert number(r"(\d+) resumed with since") > 0
    assert number(r"(\d+) x 503") > 0  # publishes refused while Redis was away
    assert number(r"violations: (\d+)") == 0
