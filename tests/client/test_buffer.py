"""A subscription's bounded queue: conflation on latest-value streams, gaps on reliable ones."""

from __future__ import annotations

from typing import Any

import pytest

from tidewire.client.buffer import Gap, MessageBuffer, PushResult


def msg(key: str, seq: int) -> dict[str, Any]:
    return {"stream": "s", "key": key, "seq": seq, "data": {}}


def drain(buffer: MessageBuffer) -> list[Any]:
    out: list[Any] = []
    while buffer:
        item = buffer.pop()
        out.append(item if isinstance(item, Gap) else (item["key"], item["seq"]))
    return out


def test_fifo_below_the_bound() -> None:
    buffer = MessageBuffer(10, conflate=True)
    for seq, key in enumerate("ABAB", start=1):
        assert buffer.push(msg(key, seq)) is PushResult.QUEUED
    assert len(buffer) == 4
    assert drain(buffer) == [("A", 1), ("B", 2), ("A", 3), ("B", 4)]
    assert buffer.conflated == 0


def test_pop_from_empty_raises() -> None:
    with pytest.raises(IndexError):
        MessageBuffer(1, conflate=False).pop()


def test_latest_value_full_queue_keeps_the_newest_per_key_in_seq_order() -> None:
    buffer = MessageBuffer(3, conflate=True)
    for seq, key in enumerate("ABA", start=1):
        buffer.push(msg(key, seq))
    # Full: a new A replaces every queued A; B keeps its place before it.
    assert buffer.push(msg("A", 4)) is PushResult.CONFLATED
    assert buffer.conflated == 2
    assert drain(buffer) == [("B", 2), ("A", 4)]


def test_latest_value_new_key_compacts_duplicates_of_other_keys() -> None:
    buffer = MessageBuffer(4, conflate=True)
    for seq, key in enumerate("AABB", start=1):
        buffer.push(msg(key, seq))
    assert buffer.push(msg("C", 5)) is PushResult.CONFLATED
    assert buffer.conflated == 2
    assert drain(buffer) == [("A", 2), ("B", 4), ("C", 5)]


def test_latest_value_never_loses_a_key() -> None:
    # More distinct keys than room: each key's newest value is still delivered.
    buffer = MessageBuffer(2, conflate=True)
    for seq, key in enumerate("ABCD", start=1):
        assert buffer.push(msg(key, seq)) is PushResult.QUEUED
    assert len(buffer) == 4
    assert buffer.push(msg("B", 5)) is PushResult.CONFLATED
    assert drain(buffer) == [("A", 1), ("C", 3), ("D", 4), ("B", 5)]
    assert buffer.dropped == 0
    assert not buffer.overflowed


def test_latest_value_stays_bounded_by_the_number_of_keys() -> None:
    buffer = MessageBuffer(5, conflate=True)
    keys = "ABC"
    for seq in range(1, 1000):
        buffer.push(msg(keys[seq % 3], seq))
        assert len(buffer) <= 5
    assert buffer.conflated == 999 - len(buffer)
    last = {key: seq for key, seq in drain(buffer)}
    assert last == {"A": 999, "B": 997, "C": 998}


def test_unkeyed_messages_are_never_conflated_together() -> None:
    buffer = MessageBuffer(1, conflate=True)
    buffer.push({"seq": 1})
    assert buffer.push({"seq": 2}) is PushResult.QUEUED
    assert len(buffer) == 2


def test_reliable_full_queue_drops_and_marks_the_gap() -> None:
    buffer = MessageBuffer(2, conflate=False)
    assert buffer.push(msg("P1", 1)) is PushResult.QUEUED
    assert buffer.push(msg("P1", 2)) is PushResult.QUEUED
    assert buffer.push(msg("P1", 3)) is PushResult.DROPPED
    assert buffer.push(msg("P2", 4)) is PushResult.DROPPED
    assert buffer.overflowed
    assert buffer.dropped == 2
    assert len(buffer) == 2  # the marker is not a message
    first = buffer.pop()
    assert not isinstance(first, Gap)
    assert first["seq"] == 1
    # Room again: the next message is queued after the gap.
    assert buffer.push(msg("P1", 5)) is PushResult.QUEUED
    assert drain(buffer) == [("P1", 2), Gap(2), ("P1", 5)]
    assert buffer.overflowed  # sticky, for the record


def test_each_run_of_losses_gets_its_own_gap() -> None:
    buffer = MessageBuffer(1, conflate=False)
    buffer.push(msg("P", 1))
    buffer.push(msg("P", 2))
    buffer.pop()
    buffer.push(msg("P", 3))
    buffer.push(msg("P", 4))
    buffer.push(msg("P", 5))
    assert drain(buffer) == [Gap(1), ("P", 3), Gap(2)]
    assert buffer.dropped == 3


def test_clear_keeps_the_counters() -> None:
    buffer = MessageBuffer(1, conflate=True)
    buffer.push(msg("A", 1))
    buffer.push(msg("A", 2))
    buffer.clear()
    assert len(buffer) == 0 and not buffer
    assert buffer.conflated == 1
    buffer.push(msg("A", 3))
    assert drain(buffer) == [("A", 3)]


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MessageBuffer(0, conflate=True)


def test_mark_queues_a_gap_that_is_not_a_message() -> None:
    buffer = MessageBuffer(1, conflate=False)
    buffer.push(msg("P", 1))
    gap = buffer.mark({"reason": "not_recovered"})
    assert len(buffer) == 1
    # Marked gaps are never extended by overflow drops: those get their own Gap.
    assert buffer.push(msg("P", 2)) is PushResult.DROPPED
    assert buffer.open_gap is not None and buffer.open_gap is not gap
    assert drain(buffer) == [("P", 1), Gap(0, {"reason": "not_recovered"}), Gap(1)]
    assert buffer.open_gap is None
    assert buffer.push(msg("P", 3)) is PushResult.QUEUED


def test_open_gap_closes_once_a_message_is_queued_after_it() -> None:
    buffer = MessageBuffer(1, conflate=False)
    buffer.push(msg("P", 1))
    buffer.push(msg("P", 2))
    first = buffer.open_gap
    assert first is not None and first.dropped == 1
    buffer.push(msg("P", 3))
    assert buffer.open_gap is first and first.dropped == 2
    buffer.pop()
    buffer.push(msg("P", 4))
    assert buffer.open_gap is None


def test_latest_value_conflation_unit_can_be_chosen() -> None:
    # Market data conflates per symbol and data_type: a quote never replaces a bar.
    buffer = MessageBuffer(2, conflate=True, key=lambda m: (m["key"], m["data_type"]))
    buffer.push({**msg("A", 1), "data_type": "bar"})
    buffer.push({**msg("A", 2), "data_type": "quote"})
    assert buffer.push({**msg("A", 3), "data_type": "quote"}) is PushResult.CONFLATED
    assert drain(buffer) == [("A", 1), ("A", 3)]
