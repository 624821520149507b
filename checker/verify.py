"""The verdict: did every client get what docs/protocol.md section 5 promises? Pure, no I/O.

For every client incarnation and every subscription, walking its log in routing order:

* **order**: within an epoch, seq strictly increases (snapshot messages, which may be older
  than the confirmed position, come first and are checked separately);
* **no duplicate**: no (epoch, seq) twice, after a recovery or otherwise;
* **no loss without a signal**: when the subscription's position moves from seq `c` to a
  later seq `s` of the same epoch (a message, a checkpoint, the end of the run), every
  published message of the stream in between that matches the filters must have been
  delivered; only a `recovered: false` confirmation (or the SDK's own overflow signal)
  excuses the messages it skipped, and only those: the tail of the old epoch after the
  last delivered message, or, in the same epoch, those up to the new confirmed position;
* **nothing foreign**: every delivered message belongs to the subscription's stream and
  matches its filters (portfolios, severity);
* **snapshots** (position_updates): the latest message of every matching portfolio and
  symbol at the confirmed position, once each, and nothing else;
* **caught up**: a client that ran to the end reached the stream heads the harness saw;
* **no needless resync**: a `recovered: false` that keeps the subscription in its epoch is
  only right when history no longer covered the gap: more messages than the stream keeps
  (`history_limits`) were published after the client's position by the time it was
  confirmed (an upper bound from the publish acks' times), or the epoch was already lost
  (a history reset: memory gateway restarted, Redis restarted empty). A gateway node that
  restarts over Redis, or a client moving to another node, must get `recovered: true`;
* **no epoch regression**: no confirmation moves a subscription back to an older epoch.

What the gateway put at (stream, epoch, seq) comes from the publish acks, completed by what
clients received (a publish whose ack was lost when the gateway was killed). A seq whose
message is known neither way cannot be judged: it is counted as unverifiable.

In a multi-node run every client incarnation knows its node and every ack the node that
answered it: deliveries of messages published through another node are counted
(`cross_node`).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from checker.model import SNAPSHOT_STREAMS, Published, matches
from checker.records import (
    Checkpoint,
    Confirmed,
    Delivered,
    Ended,
    IncarnationLog,
    Position,
    Resync,
    ResyncCallback,
    Subscribed,
)

Placement = tuple[str, str, int]
"""(stream, epoch, seq): one slot of a stream's history."""

MAX_DETAILS_PER_KIND = 20
"""Violations of one kind listed in full; the rest are only counted."""
ACK_SLACK = 1.0
"""Seconds after a confirmation whose acks still count as published before it."""
GAP_MARGIN = 25
"""Messages a gap may be short of the history limit and still excuse a recovered:false
(published before the confirmation, acknowledged late: a node killed before answering)."""


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    """missing, duplicate, out_of_order, foreign, epoch_jump, snapshot, misplaced,
    not_caught_up, resync_not_signalled, subscription_ended, unknown_message, ..."""
    where: str
    """client slot, incarnation and subscription id."""
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.detail}"


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    """delivered, checked (expected and delivered), excused (skipped under a resync
    signal), unverifiable, resyncs, recoveries, snapshot_messages, subscriptions, ..."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_kind(self) -> Counter[str]:
        return Counter(v.kind for v in self.violations)


@dataclass(frozen=True)
class Ledger:
    """What was published and where the gateway put it (the publish acks)."""

    messages: Mapping[str, Published]
    """Every message the harness built, by message_id."""
    placements: Mapping[Placement, str]
    """message_id at (stream, epoch, seq), from the acks of POST /api/publish."""
    via: Mapping[str, int] = field(default_factory=dict)
    """The node whose answer acknowledged each message (multi-node runs)."""
    acked_at: Mapping[Placement, float] = field(default_factory=dict)
    """Wall-clock time each placement was first acknowledged."""


class _Timeline:
    """When epochs began and how far streams had got, from the acks' times."""

    def __init__(self, ledger: Ledger, resets: Sequence[float]) -> None:
        self.resets = sorted(resets)
        self.born: dict[tuple[str, str], float] = {}
        """(stream, epoch): time of its first ack."""
        self.heads: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
        """(stream, epoch): ack times in order, and the highest seq acked by each."""
        acks = sorted((at, placement) for placement, at in ledger.acked_at.items())
        for at, (stream, epoch, seq) in acks:
            key = (stream, epoch)
            self.born.setdefault(key, at)
            times, seqs = self.heads.setdefault(key, ([], []))
            times.append(at)
            seqs.append(max(seq, seqs[-1] if seqs else 0))

    def head_by(self, stream: str, epoch: str, when: float) -> int | None:
        """The highest seq of the epoch acknowledged by `when` (None: nothing known)."""
        found = self.heads.get((stream, epoch))
        if found is None:
            return None
        times, seqs = found
        index = bisect.bisect_right(times, when)
        return seqs[index - 1] if index else 0

    def dead_by(self, stream: str, epoch: str, when: float) -> bool:
        """Whether the epoch's history was lost by `when`: a reset, or a newer epoch."""
        born = self.born.get((stream, epoch))
        if born is None:
            return False
        limit = when + ACK_SLACK
        if any(born < reset <= limit for reset in self.resets):
            return True
        return any(
            other[0] == stream and other[1] != epoch and born < at <= limit
            for other, at in self.born.items()
        )

    def older(self, stream: str, epoch: str, than: str) -> bool:
        """Whether `epoch` began before `than` (both known from acks)."""
        first, second = self.born.get((stream, epoch)), self.born.get((stream, than))
        return first is not None and second is not None and first < second


def verify(
    ledger: Ledger,
    logs: Iterable[IncarnationLog],
    heads: Mapping[str, Position],
    history_limits: Mapping[str, int] | None = None,
    history_resets: Sequence[float] = (),
) -> Verdict:
    """Check every client log against the ledger; `heads`: each stream's final position.

    `history_limits`: messages of history each stream keeps at least (enables the
    needless-resync rule); `history_resets`: wall-clock times the whole history was lost
    (Redis restarted empty, a memory gateway restarted).
    """
    logs = list(logs)
    verdict = Verdict()
    placements = _placements(ledger, logs, verdict)
    last_seqs: dict[tuple[str, str], int] = {}
    for stream, epoch, seq in placements:
        last_seqs[(stream, epoch)] = max(seq, last_seqs.get((stream, epoch), 0))
    context = _Context(
        ledger,
        placements,
        last_seqs,
        heads,
        history_limits or {},
        _Timeline(ledger, history_resets),
    )
    for log in logs:
        for subscribed in log.subscribed.values():
            _Walk(context, log, subscribed, verdict).run()
        _count_origins(ledger, log, verdict)
        for sid in log.events.keys() - log.subscribed.keys():
            verdict.violations.append(
                Violation("unknown_subscription", _where(log, sid), "events of no subscription")
            )
        for foreign in log.wire_foreign:
            verdict.violations.append(
                Violation(
                    "foreign",
                    _where(log, None),
                    f"{foreign} on the wire matches none of its subscriptions (the SDK's "
                    "routing hid it from the application)",
                )
            )
        _check_sdk_duplicates(log, verdict)
        for error in log.errors:
            verdict.violations.append(Violation("client_error", _where(log, None), error))
        if log.finished and not log.drained:
            verdict.violations.append(
                Violation(
                    "not_caught_up",
                    _where(log, None),
                    f"never reached the stream heads; behind: {', '.join(log.not_drained)}",
                )
            )
        verdict.counts["incarnations"] += 1
        verdict.counts["reconnections"] += len(log.close_codes)
        for code in log.close_codes:
            verdict.counts[f"close_{code}"] += 1
    _check_publish_order(ledger.messages, placements, verdict)
    verdict.counts["published"] = len(ledger.messages)
    verdict.counts["placements"] = len(placements)
    return verdict


def _count_origins(ledger: Ledger, log: IncarnationLog, verdict: Verdict) -> None:
    """Deliveries of messages acknowledged through another node than the client's."""
    if log.node is None:
        return
    for events in log.events.values():
        for event in events:
            if not isinstance(event, Delivered):
                continue
            origin = ledger.via.get(event.message_id)
            if origin is None:
                continue
            verdict.counts["origin_known"] += 1
            if origin != log.node:
                verdict.counts["cross_node"] += 1


def _check_sdk_duplicates(log: IncarnationLog, verdict: Verdict) -> None:
    """Duplicates the SDK dropped must come from overlapping subscriptions of one stream.

    The SDK drops a message a subscription already had: legitimately when another of the
    client's subscriptions of the stream was set up (its snapshot or replay matches this
    one too). A subscription alone on its stream gets no such message from a correct
    gateway, so there a dropped duplicate is a duplicate the gateway sent.
    """
    streams = [sub.stream for sub in log.subscribed.values()]
    for sid, count in log.sdk_duplicates.items():
        verdict.counts["sdk_duplicates"] += count
        sub = log.subscribed.get(sid)
        if count and sub is not None and streams.count(sub.stream) == 1:
            verdict.violations.append(
                Violation(
                    "duplicate",
                    _where(log, sid),
                    f"the gateway sent {count} message(s) it had already delivered (the SDK "
                    "dropped them; this subscription is alone on its stream)",
                )
            )


def _check_publish_order(
    messages: Mapping[str, Published], placements: Mapping[Placement, str], verdict: Verdict
) -> None:
    """Within a stream's epoch, each publisher's messages got seqs in the order it sent them.

    Every publisher sends one request at a time and waits for its answer, so its message
    numbers must grow with seq (a repeat of a message is acknowledged with its first seq).
    """
    last: dict[tuple[str, str, str], tuple[int, int]] = {}
    for placement in sorted(placements, key=lambda p: (p[0], p[1], p[2])):
        message = messages.get(placements[placement])
        if message is None:
            continue
        stream, epoch, seq = placement
        key = (stream, epoch, message.publisher)
        previous = last.get(key)
        if previous is not None and message.number <= previous[0]:
            verdict.violations.append(
                Violation(
                    "publish_order",
                    f"publisher {message.publisher}",
                    f"{message.message_id} (number {message.number}) got {_fmt(placement)}, "
                    f"after number {previous[0]} got seq {previous[1]}",
                )
            )
        last[key] = (message.number, seq)


def _where(log: IncarnationLog, sid: str | None) -> str:
    base = f"client {log.slot}.{log.incarnation}"
    return f"{base} {sid}" if sid else base


def _placements(
    ledger: Ledger, logs: list[IncarnationLog], verdict: Verdict
) -> dict[Placement, str]:
    """The acks, completed (and cross-checked) with what clients received."""
    placements = dict(ledger.placements)
    for log in logs:
        for sid, events in log.events.items():
            for event in events:
                if not isinstance(event, Delivered):
                    continue
                key = (event.stream, *event.position)
                known = placements.setdefault(key, event.message_id)
                if known != event.message_id:
                    verdict.violations.append(
                        Violation(
                            "misplaced",
                            _where(log, sid),
                            f"got {event.message_id} at {_fmt(key)}, where the gateway put {known}",
                        )
                    )
    return placements


def _fmt(placement: Placement) -> str:
    stream, epoch, seq = placement
    return f"{stream}@{epoch}:{seq}"


@dataclass(frozen=True)
class _Context:
    """What every walk reads: the ledger and what was derived from it once."""

    ledger: Ledger
    placements: Mapping[Placement, str]
    last_seqs: Mapping[tuple[str, str], int]
    """Highest known seq per (stream, epoch)."""
    heads: Mapping[str, Position]
    limits: Mapping[str, int]
    timeline: _Timeline


class _Walk:
    """One subscription of one incarnation, walked in routing order."""

    def __init__(
        self, context: _Context, log: IncarnationLog, subscribed: Subscribed, verdict: Verdict
    ) -> None:
        self.messages = context.ledger.messages
        self.placements = context.placements
        self.last_seqs = context.last_seqs
        """Highest known seq per (stream, epoch)."""
        self.heads = context.heads
        self.limits = context.limits
        self.timeline = context.timeline
        self.log = log
        self.sub = subscribed
        self.stream = subscribed.stream
        self.verdict = verdict
        self.where = _where(log, subscribed.sid)
        self.epoch: str | None = None
        """Epoch of the subscription's position; None before the first confirmation."""
        self.seq = 0
        """Every matching message up to here (in `epoch`) is accounted for."""
        self.received: set[Position] = set()
        self.excuse_next = False
        """An overflow of the SDK's queue (its resync marker) excuses the next position jump."""
        self.snapshot_at: int | None = None
        """During a snapshot: the confirmed seq it reflects."""
        self.snapshot: dict[tuple[str, str | None], int] = {}
        self.not_recovered: list[int] = []
        """`n` of every recovered:false confirmation (the SDK must signal each)."""
        self.markers: list[int] = []
        """`n` of every not_recovered marker the iterator yielded."""
        self.callbacks: list[int] = []
        """`n` of every not_recovered call of the resync handler."""

    def violation(self, kind: str, detail: str) -> None:
        self.verdict.violations.append(Violation(kind, self.where, detail))

    def run(self) -> None:
        counts = self.verdict.counts
        counts["subscriptions"] += 1
        for event in self.log.events.get(self.sub.sid, []):
            if isinstance(event, Delivered):
                self.delivered(event)
            elif isinstance(event, Confirmed):
                self.confirmed(event)
            elif isinstance(event, Resync):
                self.resync(event)
            elif isinstance(event, ResyncCallback):
                if event.reason == "not_recovered":
                    self.callbacks.append(event.n)
            elif isinstance(event, Checkpoint):
                self.checkpoint(event)
            elif isinstance(event, Ended):
                self.violation("subscription_ended", f"after {event.n} messages: {event.error}")
                return
        self.finish()

    # ------------------------------------------------------------------ events

    def confirmed(self, event: Confirmed) -> None:
        counts = self.verdict.counts
        epoch, seq = event.position
        if self.epoch is None:
            self.first_confirmation(event)
            return
        if epoch != self.epoch and self.timeline.older(self.stream, epoch, self.epoch):
            self.violation(
                "epoch_regression",
                f"confirmed at {epoch}:{seq} (recovered: {event.recovered}), an epoch older "
                f"than the subscription's {self.epoch}",
            )
        if event.recovered is True:
            counts["recoveries"] += 1
            if epoch != self.epoch:
                self.violation(
                    "bad_recovery",
                    f"recovered:true at {epoch}:{seq} while the subscription is in epoch "
                    f"{self.epoch}",
                )
            return
        if event.recovered is None:
            # A resubscription without `since`: nothing excuses what it skips.
            counts["fresh_resubscriptions"] += 1
            return
        counts["resyncs"] += 1
        self.not_recovered.append(event.n)
        if epoch == self.epoch:
            self.check_resync(self.seq, event)
            self.excuse(self.seq + 1, seq)
        else:
            self.excuse(self.seq + 1, self.last_seq(self.epoch))
        self.start_at(epoch, seq)

    def check_resync(self, since: int, event: Confirmed) -> None:
        """A recovered:false that stays in the epoch of `since`: did history lack the gap?

        Both broker kinds keep at least `limit` messages of a stream (Redis trims with
        MAXLEN ~, never below), so a gap of fewer messages was covered, unless the epoch's
        history was lost meanwhile.
        """
        limit = self.limits.get(self.stream)
        epoch, seq = event.position
        if limit is None or event.t is None:
            return
        counts = self.verdict.counts
        head = self.timeline.head_by(self.stream, epoch, event.t + ACK_SLACK)
        if head is None:
            return
        gap = max(head, seq) - since
        if gap > limit - GAP_MARGIN:
            counts["history_exceeded"] += 1
            return
        if self.timeline.dead_by(self.stream, epoch, event.t):
            # A node that had not noticed the reset yet: positioned in a lost epoch.
            counts["dead_epoch_resyncs"] += 1
            return
        self.violation(
            "unjustified_resync",
            f"recovered:false at {epoch}:{seq} for a client at seq {since} of the same epoch: "
            f"at most {gap} messages were published after it, history keeps {limit}",
        )

    def first_confirmation(self, event: Confirmed) -> None:
        """The subscribe of this incarnation: fresh, or resumed from a saved `since`."""
        counts = self.verdict.counts
        counts["confirmations"] += 1
        since = self.sub.since
        if since is None:
            self.start_at(*event.position)
            return
        counts["resumed"] += 1
        epoch = event.position[0]
        if epoch != since[0] and self.timeline.older(self.stream, epoch, since[0]):
            self.violation(
                "epoch_regression",
                f"resumed from {since[0]}:{since[1]}, confirmed at {epoch}:{event.position[1]} "
                f"(recovered: {event.recovered}), an older epoch",
            )
        if event.recovered is True:
            counts["recoveries"] += 1
            counts["resumed_recovered"] += 1
            self.epoch, self.seq = since
            return
        if event.recovered is None:
            self.violation("bad_recovery", f"subscribed with since {since}: no recovered flag")
        else:
            counts["resyncs"] += 1
            self.not_recovered.append(event.n)
            if epoch == since[0]:
                self.check_resync(since[1], event)
        self.start_at(*event.position)

    def resync(self, event: Resync) -> None:
        counts = self.verdict.counts
        if event.reason == "overflow":
            # The SDK's own queue dropped messages here: the next jump is excused.
            counts["sdk_overflows"] += 1
            self.excuse_next = True
        elif event.reason == "not_recovered":
            counts["resync_markers"] += 1
            self.markers.append(event.n)
        else:
            self.violation("resync_mismatch", f"resync marker of unknown reason {event.reason}")

    def start_at(self, epoch: str, seq: int) -> None:
        self.end_snapshot()
        self.epoch, self.seq = epoch, seq
        if self.stream in SNAPSHOT_STREAMS and self.sub.snapshot is not False:
            self.snapshot_at = seq
            self.snapshot = {}

    def delivered(self, event: Delivered) -> None:
        self.verdict.counts["delivered"] += 1
        epoch, seq = event.position
        message = self.messages.get(event.message_id)
        if event.stream != self.stream:
            self.violation(
                "foreign", f"{event.message_id} of stream {event.stream} on a {self.stream} sub"
            )
        if message is None:
            self.violation("unknown_message", f"{event.message_id} at {epoch}:{seq}")
        elif not matches(self.sub.filters, message) or event.portfolio != message.portfolio:
            self.violation(
                "foreign",
                f"{event.message_id} of {message.portfolio}"
                f"{f' severity {message.severity}' if message.severity else ''} at "
                f"{epoch}:{seq} does not match filters {self.sub.filters}",
            )
        if self.epoch is None:
            self.violation("unconfirmed", f"message at {epoch}:{seq} before any confirmation")
            return
        if epoch == self.epoch and self.snapshot_at is not None and seq <= self.snapshot_at:
            # A snapshot refreshes state: it may repeat a message delivered before a resync.
            self.snapshot_message(seq, message)
            return
        if event.position in self.received:
            self.violation("duplicate", f"{_fmt((self.stream, epoch, seq))} delivered again")
            return
        self.received.add(event.position)
        if epoch != self.epoch:
            self.violation(
                "epoch_jump",
                f"message at {epoch}:{seq} after {self.epoch}:{self.seq} without a "
                "recovered:false signal",
            )
            self.end_snapshot()
            self.epoch, self.seq = epoch, seq
            return
        if seq <= self.seq:
            self.violation("out_of_order", f"seq {seq} after {self.seq} in epoch {epoch}")
            return
        self.advance(seq - 1)
        self.seq = seq
        self.verdict.counts["checked"] += 1

    def checkpoint(self, event: Checkpoint) -> None:
        epoch, seq = event.position
        if epoch != self.epoch:
            # The SDK keeps its old position until the snapshot or replay after a
            # confirmation is in; a position of another epoch promises nothing here.
            return
        if seq > self.seq:
            self.advance(seq)
            self.seq = seq

    def finish(self) -> None:
        if self.log.resync_api:
            self.compare_signals()
        if not self.log.finished or self.epoch is None:
            return  # killed: nothing was promised after its last record
        head = self.heads.get(self.stream)
        if head is None:
            return
        if head[0] != self.epoch:
            self.violation(
                "not_caught_up",
                f"ended in epoch {self.epoch} at seq {self.seq}; the stream is at "
                f"{head[0]}:{head[1]}",
            )
            return
        if head[1] > self.seq:
            self.advance(head[1])
            self.seq = head[1]
        self.end_snapshot()

    def compare_signals(self) -> None:
        """Every recovered:false has its marker in the iterator and its callback, no more."""
        for name, signals in (("marker", self.markers), ("resync handler call", self.callbacks)):
            missing = sorted(set(self.not_recovered) - set(signals))
            extra = sorted(set(signals) - set(self.not_recovered))
            for n in missing:
                self.violation(
                    "resync_not_signalled",
                    f"recovered:false after message {n} without a not_recovered {name}",
                )
            for n in extra:
                self.violation(
                    "resync_mismatch",
                    f"not_recovered {name} after message {n} without a recovered:false",
                )

    # ------------------------------------------------------------------ ranges

    def advance(self, up_to: int) -> None:
        """The position moves to `up_to`: every matching message after `seq` must be here."""
        self.end_snapshot()
        excused = self.excuse_next
        self.excuse_next = False
        assert self.epoch is not None
        counts = self.verdict.counts
        for seq in range(self.seq + 1, up_to + 1):
            message = self.message_at(self.epoch, seq)
            if message is None:
                counts["unverifiable"] += 1
                continue
            if not matches(self.sub.filters, message):
                continue
            if (self.epoch, seq) in self.received:
                continue
            if excused:
                counts["excused"] += 1
                continue
            self.violation(
                "missing",
                f"{message.message_id} ({message.portfolio}) at "
                f"{_fmt((self.stream, self.epoch, seq))} never delivered (position moved from "
                f"{self.seq} to {up_to} without a recovered:false signal)",
            )

    def excuse(self, first: int, last: int) -> None:
        """A resync signal covers these seqs of the current epoch (counted, not checked)."""
        assert self.epoch is not None
        for seq in range(first, last + 1):
            message = self.message_at(self.epoch, seq)
            if message is not None and matches(self.sub.filters, message):
                self.verdict.counts["excused"] += 1

    def last_seq(self, epoch: str) -> int:
        return self.last_seqs.get((self.stream, epoch), 0)

    def message_at(self, epoch: str, seq: int) -> Published | None:
        message_id = self.placements.get((self.stream, epoch, seq))
        return self.messages.get(message_id) if message_id is not None else None

    # ------------------------------------------------------------------ snapshots

    def snapshot_message(self, seq: int, message: Published | None) -> None:
        self.verdict.counts["snapshot_messages"] += 1
        if message is None:
            return
        key = message.snapshot_key
        if key in self.snapshot:
            self.violation(
                "snapshot", f"two snapshot messages for {key}: seqs {self.snapshot[key]}, {seq}"
            )
        self.snapshot[key] = seq

    def end_snapshot(self) -> None:
        """Compare the snapshot that just ended with the latest message per matching key."""
        at, self.snapshot_at = self.snapshot_at, None
        if at is None or self.epoch is None:
            return
        latest: dict[tuple[str, str | None], int] = {}
        for seq in range(1, at + 1):
            message = self.message_at(self.epoch, seq)
            if message is None:
                self.verdict.counts["unverifiable_snapshots"] += 1
                return
            if matches(self.sub.filters, message):
                latest[message.snapshot_key] = seq
        self.verdict.counts["snapshots"] += 1
        if latest != self.snapshot:
            self.violation(
                "snapshot",
                f"snapshot at {self.epoch}:{at} was {sorted(self.snapshot.items())}, expected "
                f"the latest per portfolio and symbol {sorted(latest.items())}",
            )
