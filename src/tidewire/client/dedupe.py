"""Which data messages a subscription delivers: each once, never one older than its place.

Pure: no I/O, no event loop. Data messages carry no subscription id (PROTOCOL.md section 1),
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

A message without a valid `{epoch, seq}` is delivered: there is nothing to judge it by.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

Unit = Callable[[dict[str, Any]], Hashable | None]
"""The conflation unit of a message (None: it has none)."""


def conflation_key(stream: str, message: Mapping[str, Any]) -> Hashable | None:
    """The unit in which a newer message of `stream` replaces an older one (its snapshot key).

    The gateway's `snapshot_key`: positions per portfolio and symbol, market data per symbol
    and data_type (a bar is not replaced by a quote), otherwise the message's `key`. None for
    a message without a key.
    """
    key = message.get("key")
    if not isinstance(key, str | int):
        return None
    if stream == "position_updates":
        symbol = message.get("symbol")
        if symbol is None:
            data = message.get("data")
            symbol = data.get("symbol") if isinstance(data, Mapping) else None
        return (key, symbol if isinstance(symbol, Hashable) else None)
    data_type = message.get("data_type")
    if isinstance(data_type, str):
        return (key, data_type)
    return key


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

    def accept(self, message: dict[str, Any]) -> bool:
        """Whether to deliver `message`; records it as delivered when it is."""
        position = _seq_of(message)
        if position is None:
            return True
        epoch, seq = position
        if epoch != self._epoch:
            self.restart(epoch, None)
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
