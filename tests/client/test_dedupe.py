"""The per-subscription duplicate filter and the conflation unit, without an event loop."""

from __future__ import annotations

from typing import Any

from tidewire.client.dedupe import DuplicateFilter, conflation_key


def msg(seq: int, key: str = "K", epoch: str = "e1", **extra: Any) -> dict[str, Any]:
    return {"stream": "s", "key": key, "seq": seq, "epoch": epoch, **extra}


def accepted(dedupe: DuplicateFilter, *messages: dict[str, Any]) -> list[int]:
    return [m["seq"] for m in messages if dedupe.accept(m)]


def test_one_sequence_per_subscription() -> None:
    dedupe = DuplicateFilter()
    dedupe.restart("e1", None)
    assert accepted(dedupe, msg(3), msg(5, key="B"), msg(4), msg(5), msg(6)) == [3, 5, 6]


def test_restart_forgets_what_was_delivered_and_sets_the_floor() -> None:
    dedupe = DuplicateFilter()
    dedupe.restart("e1", None)
    assert accepted(dedupe, msg(8), msg(9)) == [8, 9]
    dedupe.restart("e1", None)  # a confirmation followed by a snapshot
    assert accepted(dedupe, msg(2), msg(9), msg(10)) == [2, 9, 10]
    dedupe.restart("e1", 10)  # followed by live messages (or a replay after 10)
    assert accepted(dedupe, msg(10), msg(7), msg(11)) == [11]


def test_another_epoch_starts_afresh() -> None:
    dedupe = DuplicateFilter()
    dedupe.restart("e1", 50)
    assert accepted(dedupe, msg(1, epoch="e2"), msg(2, epoch="e2"), msg(2, epoch="e2")) == [1, 2]
    assert dedupe.epoch == "e2"
    fresh = DuplicateFilter()
    fresh.restart(None, None)  # a confirmation without a position
    assert accepted(fresh, msg(4), msg(4)) == [4]


def test_per_unit_for_latest_value_streams() -> None:
    dedupe = DuplicateFilter(lambda m: conflation_key("market_data", m))
    dedupe.restart("e1", 3)
    messages = [
        msg(11, key="AAPL", data_type="quote"),
        msg(2, key="MSFT", data_type="quote"),  # under the floor
        msg(4, key="MSFT", data_type="quote"),  # another key, older seq: delivered
        msg(7, key="AAPL", data_type="quote"),  # stale for AAPL
        msg(6, key="AAPL", data_type="bar"),  # a bar is its own unit
        msg(11, key="AAPL", data_type="quote"),
    ]
    assert accepted(dedupe, *messages) == [11, 4, 6]


def test_messages_without_a_position_or_unit_are_delivered() -> None:
    dedupe = DuplicateFilter(lambda m: None)
    dedupe.restart("e1", None)
    assert dedupe.accept({"stream": "s", "key": "K"})
    assert dedupe.accept({"stream": "s", "seq": True, "epoch": "e1"})
    assert accepted(dedupe, msg(5), msg(5)) == [5, 5]  # no unit: only the floor applies


def test_conflation_key_is_the_gateways_snapshot_key() -> None:
    assert conflation_key("market_data", msg(1, key="AAPL", data_type="bar")) == ("AAPL", "bar")
    assert conflation_key("performance_updates", msg(1, key="P1")) == "P1"
    assert conflation_key("position_updates", msg(1, key="P1", data={"symbol": "AAPL"})) == (
        "P1",
        "AAPL",
    )
    assert conflation_key("position_updates", msg(1, key="P1", symbol="MSFT")) == ("P1", "MSFT")
    assert conflation_key("market_data", {"seq": 1}) is None
