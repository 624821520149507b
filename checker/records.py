"""The JSON-lines log of one client incarnation: what its subscriptions saw, in their order.

A client process writes one record per line (`kind` in `k`). Records of one subscription are
ordered by `n`, the number of data messages the SDK had routed to that subscription when
the record was made: a message record carries its own routing number (1, 2, ...), a
confirmation or resync record the count routed before it. Messages are logged by the
consumer (the subscription's iterator) and confirmations by the connection's reader, so the
file order can interleave them differently; `n` cannot.

A process killed with SIGKILL may leave a truncated last line: `read_log` ignores it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Position = tuple[str, int]
"""(epoch, seq) of a stream."""


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The client asked for a subscription (before the gateway answered)."""

    sid: str
    stream: str
    filters: dict[str, Any]
    snapshot: bool | None
    since: Position | None
    """Resume point passed to `subscribe` (a restarted client), None for a fresh start."""


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A `subscription_confirmed` for the subscription (first one or after a reconnection)."""

    sid: str
    n: int
    recovered: bool | None
    position: Position
    t: float | None = None
    """Wall-clock time the client logged it (compared with the publish acks' times)."""


@dataclass(frozen=True, slots=True)
class Resync:
    """A resync marker the subscription's iterator yielded: the SDK signals a gap here."""

    sid: str
    n: int
    reason: str
    """`not_recovered` (a `recovered: false` reconnection) or `overflow` (the SDK's queue)."""
    position: Position | None
    """The subscription's position before the gap."""
    resume: Position | None
    """Where the stream resumes, when known."""
    dropped: int
    """overflow: messages the SDK's queue dropped here."""


@dataclass(frozen=True, slots=True)
class ResyncCallback:
    """A call of the client's resync handler (cross-checked against the iterator's markers)."""

    sid: str
    n: int
    reason: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """A data message the subscription's iterator returned."""

    sid: str
    n: int
    stream: str
    position: Position
    message_id: str
    portfolio: str | None
    severity: str | None
    symbol: str | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The subscription's position while every routed message had been consumed."""

    sid: str
    n: int
    position: Position


@dataclass(frozen=True, slots=True)
class Ended:
    """The subscription ended before the client did (refused resubscription, SDK error)."""

    sid: str
    n: int
    error: str


Event = Confirmed | Resync | ResyncCallback | Delivered | Checkpoint | Ended


@dataclass
class IncarnationLog:
    """Everything one client process wrote."""

    slot: int
    incarnation: int
    path: Path
    subscribed: dict[str, Subscribed] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    """Per subscription id, ordered by `n` (see the module docstring)."""
    close_codes: list[int] = field(default_factory=list)
    """Close code of every connection that ended while the client ran."""
    connections: list[str] = field(default_factory=list)
    """connection_id of every connection, in order."""
    resync_api: bool = False
    """The SDK had resync signals: every `recovered: false` must come with a marker."""
    node: int | None = None
    """The gateway node the incarnation was connected to (multi-node runs)."""
    finished: bool = False
    """The client wrote its final record: it ran until the harness stopped it."""
    drained: bool = False
    """...and every subscription had caught up with the stream heads the harness gave."""
    not_drained: list[str] = field(default_factory=list)
    wire_foreign: list[str] = field(default_factory=list)
    """Data messages on the wire that matched none of the client's subscriptions."""
    sdk_duplicates: dict[str, int] = field(default_factory=dict)
    """Per subscription, messages the SDK dropped as already delivered (its `duplicates`)."""
    errors: list[str] = field(default_factory=list)
    """Problems the client itself reported (exceptions in its tasks)."""


def _position(raw: Any) -> Position | None:
    if isinstance(raw, list | tuple) and len(raw) == 2:
        return (str(raw[0]), int(raw[1]))
    return None


def _sort_key(event: Event) -> tuple[int, int]:
    # Message number n comes after every record made when n-1 messages were routed, and
    # before those made when n were.
    return (event.n, 1) if isinstance(event, Delivered) else (event.n, 2)


def parse_record(record: dict[str, Any], log: IncarnationLog) -> None:
    """Add one decoded record to `log`."""
    kind = record.get("k")
    sid = str(record.get("sid", ""))
    event: Event | None = None
    if kind == "sub":
        log.subscribed[sid] = Subscribed(
            sid,
            record["stream"],
            dict(record["filters"]),
            record.get("snapshot"),
            _position(record.get("since")),
        )
    elif kind == "conf":
        position = _position(record.get("pos"))
        if position is not None:
            t = record.get("t")
            event = Confirmed(
                sid,
                int(record["n"]),
                record.get("recovered"),
                position,
                float(t) if isinstance(t, int | float) else None,
            )
    elif kind == "resync":
        event = Resync(
            sid,
            int(record["n"]),
            str(record.get("reason")),
            _position(record.get("pos")),
            _position(record.get("resume")),
            int(record.get("dropped") or 0),
        )
    elif kind == "resync_cb":
        event = ResyncCallback(sid, int(record["n"]), str(record.get("reason")))
    elif kind == "msg":
        event = Delivered(
            sid,
            int(record["n"]),
            record["st"],
            (record["e"], int(record["s"])),
            record["id"],
            record.get("pf"),
            record.get("sev"),
            record.get("sym"),
        )
    elif kind == "pos":
        position = _position(record.get("pos"))
        if position is not None:
            event = Checkpoint(sid, int(record["n"]), position)
        _count_duplicates(log, {sid: record.get("dups", 0)})
    elif kind == "wire_foreign":
        log.wire_foreign.append(
            f"{record.get('id')} of {record.get('pf')} (severity {record.get('sev')}) at "
            f"{record.get('st')}@{record.get('e')}:{record.get('s')}"
        )
    elif kind == "subend":
        event = Ended(sid, int(record["n"]), str(record.get("error")))
    elif kind == "start":
        log.resync_api = bool(record.get("resync_api"))
        node = record.get("node")
        log.node = node if isinstance(node, int) else None
    elif kind == "closed":
        log.close_codes.append(int(record["code"]))
    elif kind == "conn":
        log.connections.append(str(record["cid"]))
    elif kind == "end":
        log.finished = True
        log.drained = bool(record.get("drained"))
        log.not_drained = list(record.get("behind", []))
        _count_duplicates(log, record.get("dups") or {})
    elif kind == "error":
        log.errors.append(str(record.get("error")))
    if event is not None:
        log.events.setdefault(sid, []).append(event)


def _count_duplicates(log: IncarnationLog, counts: dict[str, Any]) -> None:
    for sid, count in counts.items():
        if isinstance(count, int):
            log.sdk_duplicates[sid] = max(count, log.sdk_duplicates.get(sid, 0))


def read_log(path: Path, slot: int, incarnation: int) -> IncarnationLog:
    """Parse one client log; a truncated last line (SIGKILL mid-write) is ignored."""
    records: list[dict[str, Any]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return log_of(records, slot, incarnation, path)


def log_of(
    records: list[dict[str, Any]], slot: int, incarnation: int, path: Path | None = None
) -> IncarnationLog:
    """An incarnation's log from its records, in the order they were written."""
    log = IncarnationLog(slot, incarnation, path or Path(f"client-{slot}-{incarnation}.jsonl"))
    for record in records:
        parse_record(record, log)
    for events in log.events.values():
        events.sort(key=_sort_key)
    return log
