"""Which data messages a subscription delivers: each once, never one older than its place.

Pure: no I/O, no event loop. Data messages carry no subscription id (docs/protocol.md section 1),
so the client hands every message to each of its subscriptions whose filters match, and the
same message can reach a subscription more than once, or reach it although it belongs to
another subscription's setup:

* a message delivered live through subscription A is delivered again after subscription B's
  snapshot or replay, because the gateway buffered it for B while B was being set up;
* the snapshot or replay of B (messages with seq <= B's confirmed position) also matches A,
  which has seen those messages already, or asked for none of them (`snapshot: false`).

`DuplicateFilter` decides, per subscription and within one epoch, from the positions alone:

* At each confirmation it restarts with a *floor*: the `since.seq` of a recovered replay
  (the replay is everything after it), the confirmed position when no snapshot or replay
  follows (live messages come after it), or none when a snapshot follows (snapshot messages
  carry seq <= the confirmed position, in ascending seq, right after the confirmation).
* A message is delivered only when its seq is above the floor and above the last seq
  delivered since the confirmation. On reliable streams "last" is per subscription: the
  gateway sends a subscription's messages in seq order. On latest-value streams it is per
  conflation unit (the stream's snapshot key: symbol and data_type for market data), because
  there the gateway lets replies and critical messages overtake the market lane within a
  flush, so messages of *different* keys may arrive out of seq order; for one key an older
  message after a newer one is stale and is dropped.
* A message of an epoch other than the subscription's current one starts afresh: the
  stream's history was reset, seqs start again.
* After an update of the subscription's filters (`update_subscription`) nothing restarts:
  the subscription goes on. On streams with a snapshot the gateway then sends the latest
  value of each unit the old filters did not cover (older than what was delivered, perhaps
  older than the floor), then the live messages it held back meanwhile: a second ascending
  run. `admit` has such newly covered units judged per unit, without the floor, until the
  next confirmation; the units covered before keep their rules.

A message without a valid `{epoch, seq}` is delivered: there is nothing to judge it by.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from tidewire.protocol.streams import STREAMS

Unit = Callable[[dict[str, Any]], Hashable | None]
"""The conflation unit of a message (None: it has none)."""


def conflation_key(stream: str, message: Mapping[str, Any]) -> Hashable | None:
    """The unit in which a newer message of `stream` replaces an older one (its snapshot key).

    The gateway's `protocol.streams.snapshot_key`, to the character: the key, then the
    stream's `snapshot_fields` (top level first, then `data`), joined by "\x1f". Market data
    per symbol and data_type (a bar is not replaced by a quote), positions per portfolio,
    strategy and symbol, risk metrics per portfolio and metric_type, otherwise the `key`.
    None for a message without a key.
    """
    key = message.get("key")
    if not isinstance(key, str | int):
        return None
    spec = STREAMS.get(stream)
    if spec is None or not spec.snapshot_fields:
        return key
    data = message.get("data")
    parts = [str(key)]
    for name in spec.snapshot_fields:
        value = message.get(name)
        if value is None and isinstance(data, Mapping):
            value = data.get(name)
        parts.append("" if value is None else str(value))
    return "\x1f".join(parts)


def _seq_of(message: Mapping[str, Any]) -> tuple[str, int] | None:
    epoch, seq = message.get("epoch"), message.get("seq")
    if not isinstance(epoch, str) or not epoch or isinstance(seq, bool) or not isinstance(seq, int):
        return None
    return epoch, seq


class DuplicateFilter:
    """Per-subscription filter of duplicate and out-of-place messages (see module docstring).

    `unit` None: one sequence per subscription (reliable streams). Otherwise messages are
    judged per `unit(message)` (latest-value streams); a message without a unit is judged
    against the floor only.
    """

    def __init__(self, unit: Unit | None = None) -> None:
        self._unit = unit
        self._epoch: str | None = None
        self._floor: int | None = None
        self._last: int | None = None
        self._last_of_unit: dict[Hashable, int] = {}
        # After filter updates: whether the filters before the latest one covered a
        # message, the unit of a message, and the last seq of each newly covered unit on a
        # reliable stream (latest-value streams keep theirs in _last_of_unit).
        self._covered_before: Callable[[dict[str, Any]], bool] | None = None
        self._window_unit: Unit | None = None
        self._new_last: dict[Hashable, int] = {}

    @property
    def epoch(self) -> str | None:
        """The epoch messages are judged in; None before the first restart or message."""
        return self._epoch

    def restart(self, epoch: str | None, floor: int | None) -> None:
        """A confirmation: forget what was delivered; deliver only seq > `floor` from now.

        `epoch` None (a confirmation without a position) lets the next message set it.
        """
        self._epoch = epoch
        self._floor = floor
        self._last = None
        self._last_of_unit.clear()
        self._covered_before = self._window_unit = None
        self._new_last.clear()

    def admit(self, unit: Unit, covered_before: Callable[[dict[str, Any]], bool]) -> None:
        """The subscription's filters changed (and the latest values of newly covered keys
        follow): from now on a message `covered_before` says the old filters did not cover
        is judged in its `unit`, ignoring the floor; so are, on a reliable stream, the units
        that were new at an earlier update. Until the next `restart`."""
        self._window_unit, self._covered_before = unit, covered_before

    def accept(self, message: dict[str, Any]) -> bool:
        """Whether to deliver `message`; records it as delivered when it is."""
        position = _seq_of(message)
        if position is None:
            return True
        epoch, seq = position
        if epoch != self._epoch:
            self.restart(epoch, None)
        if self._covered_before is not None:
            verdict = self._newly_covered(message, seq)
            if verdict is not None:
                return verdict
        if self._floor is not None and seq <= self._floor:
            return False
        if self._unit is None:
            if self._last is not None and seq <= self._last:
                return False
            self._last = seq
            return True
        unit = self._unit(message)
        if unit is None:
            return True
        last = self._last_of_unit.get(unit)
        if last is not None and seq <= last:
            return False
        self._last_of_unit[unit] = seq
        return True

    def _newly_covered(self, message: dict[str, Any], seq: int) -> bool | None:
        """The verdict on a message of a newly covered unit; None: the usual rules decide."""
        assert self._window_unit is not None and self._covered_before is not None
        unit = self._window_unit(message)
        if unit is None:
            return None
        store = self._new_last if self._unit is None else self._last_of_unit
        if (self._unit is not None or unit not in store) and self._covered_before(message):
            return None
        last = store.get(unit)
        if last is not None and seq <= last:
            return False
        store[unit] = seq
        return True
