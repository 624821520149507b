"""The per-subscription duplicate filter and the conflation unit, without an event loop."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from messages import bar, engine_status, position, quote, sequenced
from tidewire.client.dedupe import DuplicateFilter, conflation_key, newly_covered
from tidewire.protocol.streams import STREAMS, snapshot_key


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
    assert conflation_key("market_data", msg(1, key="AAPL", data_type="bar")) == "AAPL\x1fbar"
    assert conflation_key("performance_updates", msg(1, key="P1", data_type="x")) == "P1"
    position = msg(1, key="P1", symbol="MSFT", data={"strategy_id": "S1"})
    assert conflation_key("position_updates", position) == "P1\x1fS1\x1fMSFT"
    assert conflation_key("position_updates", msg(1, key="P1", symbol="MSFT")) == "P1\x1f\x1fMSFT"
    assert conflation_key("risk_metrics", msg(1, key="P1", metric_type="var")) == "P1\x1fvar"
    assert conflation_key("no_such_stream", msg(1, key="K", data_type="x")) == "K"
    assert conflation_key("market_data", {"seq": 1}) is None


@pytest.mark.parametrize(
    "raw",
    [
        quote("AAPL"),
        bar("AAPL"),
        position("P1", "AAPL", 1.0, strategy_id="S1"),
        position("P1", "AAPL", 1.0),
        {
            "type": "risk_metrics",
            "portfolio_id": "P1",
            "metric_type": "var",
            "data": {"value": 1.0},
        },
        engine_status("E1", "running"),
    ],
)
def test_conflation_key_equals_snapshot_key_on_the_wire(raw: dict[str, Any]) -> None:
    message = sequenced(raw, 1)
    wire = msgspec.json.decode(msgspec.json.encode(message))
    assert conflation_key(message.stream, wire) == snapshot_key(STREAMS[message.stream], message)


def test_after_an_update_the_snapshot_of_new_keys_is_delivered_once() -> None:
    def pos(seq: int, portfolio: str, symbol: str = "AAPL") -> dict[str, Any]:
        return msg(seq, key=portfolio, portfolio_id=portfolio, symbol=symbol)

    # A reliable snapshot stream (position_updates): one sequence per subscription.
    dedupe = DuplicateFilter()
    dedupe.restart("e1", None)
    assert accepted(dedupe, pos(5, "P1"), pos(8, "P1")) == [5, 8]
    dedupe.admit(9, newly_covered("position_updates", {"portfolio_ids": ["P1"]}))
    later = [
        pos(3, "P2", "AAPL"),  # the snapshot of the newly covered P2
        pos(6, "P2", "MSFT"),
        pos(5, "P1"),  # P1 was covered: a duplicate
        pos(3, "P2", "AAPL"),  # again (another subscription's snapshot)
        pos(10, "P2", "AAPL"),  # live
        pos(4, "P2", "TSLA"),  # older than the last live one, but a new unit
    ]
    assert accepted(dedupe, *later) == [3, 6, 10, 4]
    dedupe.restart("e1", 10)  # a confirmation closes the window
    assert accepted(dedupe, pos(7, "P2", "NVDA")) == []


def test_after_an_update_a_newer_value_of_a_unit_wins() -> None:
    dedupe = DuplicateFilter(lambda m: conflation_key("market_data", m))
    dedupe.restart("e1", 20)  # subscribed without a snapshot
    dedupe.admit(25, newly_covered("market_data", {"symbols": ["AAPL"]}))

    def tick(seq: int, symbol: str) -> dict[str, Any]:
        return msg(seq, key=symbol, symbol=symbol, data_type="quote")

    messages = [
        tick(22, "AAPL"),  # covered before: the usual rules
        tick(19, "AAPL"),  # under the floor
        tick(18, "MSFT"),  # new key, under the floor: delivered
        tick(26, "GOOG"),  # live first
        tick(17, "GOOG"),  # then its older snapshot value: stale
        tick(18, "MSFT"),
    ]
    assert accepted(dedupe, *messages) == [22, 18, 26]
