"""Entries in, Tidewire messages out: mapping, liveness and warm-up in one object. Pure.

The Redis reader (`reader`) only moves entries; `NautilusFeed` decides what they become.
Like a sans-I/O protocol object it is fed by method calls and answers with raw producer
messages, and every rule is tested without Redis or an event loop:

* `entry(entry, now)`: the messages of one entry. Heartbeats and the Trader component's own
  state changes feed the trader's `Liveness` (and yield an `engine_status` when its status
  changes); everything else goes through `NautilusMapper`.
* `tick(now)`: liveness transitions due to silence (stale, then down).
  A trader's `engine_status` is canonical: `data.state`, `data.uptime` (see `liveness`),
  `data.timestamp` and the envelope's `timestamp` are `now`.
* `unreachable(reason, now)` / `reachable(now)`: Redis lost and back.
* Warm-up (`warming=True`): after a restart, the entries up to the stored position are read
  again so the mapper rebuilds its state (open orders, accounts, venues); their messages are
  not published, except the newest one per latest-value key (quotes per symbol, engine status
  per engine, balances per portfolio) and per position (portfolio and symbol), which
  `end_warmup` returns: the new epoch of an in-memory broker starts with current snapshots.
  Those keep their original message ids, so a broker that kept its history drops them as
  duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tidewire.sources.nautilus.entries import HEARTBEAT_TOPIC, Entry, entry_millis, trader_of_key
from tidewire.sources.nautilus.liveness import Liveness, LivenessReport
from tidewire.sources.nautilus.mapping import MappingOptions, NautilusMapper, Raw
from tidewire.sources.nautilus.values import iso_of_ns

__all__ = ["FeedOptions", "NautilusFeed"]

_RESTATED = frozenset({"market_data", "engine_status", "performance_update", "position_update"})


@dataclass(frozen=True, slots=True)
class FeedOptions:
    mapping: MappingOptions = field(default_factory=MappingOptions)
    engine_id: str | None = None
    """Engine id of every trader's liveness; default: the trader id (from the stream key
    `trader-{id}:...`, else from the events)."""
    heartbeat_interval: float | None = None
    """Seconds between heartbeats; default: learned from the heartbeats."""
    stale_after: float = 2.0
    down_after: float = 5.0
    status_every: float = 5.0
    """Seconds between two reports of an unchanged trader state (with its uptime), so a
    dashboard sees the engine_status stream alive; changes are reported at once."""


class NautilusFeed:
    """Turns decoded entries into raw Tidewire messages (see the module docstring)."""

    def __init__(self, options: FeedOptions | None = None) -> None:
        self.options = options or FeedOptions()
        self.mapper = NautilusMapper(self.options.mapping)
        self.liveness: dict[str, Liveness] = {}
        """One per trader (engine id)."""
        self.clock_offset = 0.0
        """Redis clock minus the gateway's clock, in seconds (set by the reader)."""
        self.unattributed_heartbeats = 0
        """Heartbeats skipped because no trader id was known for them yet."""
        self._restate: dict[tuple[Any, ...], Raw] = {}
        self._reported_at: dict[str, float] = {}

    # ------------------------------------------------------------------ input

    def entry(self, entry: Entry, now: float, *, warming: bool = False) -> list[Raw]:
        """The messages of `entry` (none while warming; see `end_warmup`)."""
        out = self._entry(entry, now)
        if not warming:
            return out
        for raw in out:
            key = _restate_key(raw)
            if key is not None:
                self._restate.pop(key, None)  # keep the order of the newest
                self._restate[key] = raw
        return []

    def end_warmup(self, now: float) -> list[Raw]:
        """The newest latest-value messages seen while warming, then liveness as of `now`."""
        out = list(self._restate.values())
        self._restate.clear()
        return out + self.tick(now)

    def tick(self, now: float) -> list[Raw]:
        """engine_status of traders whose liveness changed, or was last reported
        `status_every` seconds ago."""
        out = []
        for engine, liveness in self.liveness.items():
            report = liveness.evaluate(now)
            if report is None and now - self._reported_at.get(engine, now) >= (
                self.options.status_every
            ):
                report = liveness.current(now)
            if report is not None:
                self._reported_at[engine] = now
                out.append(self._status(report, now))
        return out

    def unreachable(self, reason: str, now: float) -> list[Raw]:
        """Redis is unreachable: every known trader is reported down."""
        for liveness in self.liveness.values():
            liveness.unreachable(reason)
        return self.tick(now)

    def reachable(self, now: float) -> list[Raw]:
        for liveness in self.liveness.values():
            liveness.reachable()
        return self.tick(now)

    # ------------------------------------------------------------------ internals

    def _entry(self, entry: Entry, now: float) -> list[Raw]:
        if entry.topic == HEARTBEAT_TOPIC:
            engine = self._engine_of(entry)
            if engine is None:
                # No trader in the key and no event seen yet: the next heartbeat will do.
                self.unattributed_heartbeats += 1
                return []
            # The entry id is Redis's time of the write; the payload's own timestamp is the
            # producer's clock, which may disagree with ours by more than an interval.
            at = entry_millis(entry.entry_id) / 1000.0 - self.clock_offset
            self._liveness(engine).heartbeat(at)
            return self.tick(now)
        payload = entry.payload
        if entry.kind == "ComponentStateChanged" and payload is not None:
            trader = payload.get("trader_id")
            if trader is not None and payload.get("component_id") == trader:
                self.mapper.traders_seen.setdefault(trader)
                liveness = self._liveness(self.options.engine_id or trader)
                liveness.trader_state(str(payload.get("state")), now)
                return self.tick(now)
        return self.mapper.map(entry)

    def _engine_of(self, entry: Entry) -> str | None:
        """The configured engine id, else the trader in the key, else the last trader seen."""
        if self.options.engine_id:
            return self.options.engine_id
        trader = trader_of_key(entry.stream)
        if trader is not None:
            return trader
        traders = list(self.mapper.traders_seen)
        return traders[-1] if traders else None

    def _liveness(self, engine_id: str) -> Liveness:
        liveness = self.liveness.get(engine_id)
        if liveness is None:
            options = self.options
            liveness = self.liveness[engine_id] = Liveness(
                engine_id,
                interval=options.heartbeat_interval,
                stale_after=options.stale_after,
                down_after=options.down_after,
            )
        return liveness

    def _status(self, report: LivenessReport, now: float) -> Raw:
        timestamp = iso_of_ns(round(now * 1e9))
        data: Raw = {
            "state": report.status,
            "uptime": round(report.uptime, 3),
            "timestamp": timestamp,
            "message": report.message,
            "heartbeat_interval": report.interval,
        }
        if report.last_heartbeat is not None:
            data["last_heartbeat"] = iso_of_ns(int(report.last_heartbeat * 1e9))
        return {
            "type": "engine_status",
            "timestamp": timestamp,
            "source": self.options.mapping.source,
            "engine_id": report.engine_id,
            "severity": report.severity,
            "data": data,
        }


def _restate_key(raw: Raw) -> tuple[Any, ...] | None:
    kind = raw.get("type")
    if kind not in _RESTATED:
        return None
    if kind == "market_data":
        return (kind, raw.get("symbol"), raw.get("data_type"))
    if kind == "engine_status":
        return (kind, raw.get("engine_id"))
    if kind == "position_update":
        return (kind, raw.get("portfolio_id"), raw.get("symbol"), raw.get("strategy_id"))
    return (kind, raw.get("portfolio_id"))
