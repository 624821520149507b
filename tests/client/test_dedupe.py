"""The per-subscription duplicate filter and the conflation unit, without an event loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest

from messages import bar, engine_status, position, quote, sequenced
from tidewire.client.dedupe import DuplicateFilter, conflation_key
from tidewire.client.routing import matches
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


def covered_by(filters: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda message: matches(filters, message)


def pos(seq: int, portfolio: str, symbol: str = "AAPL") -> dict[str, Any]:
    return msg(seq, key=portfolio, portfolio_id=portfolio, symbol=symbol)


def test_after_an_update_the_new_keys_run_is_judged_per_unit() -> None:
    # A reliable snapshot stream (position_updates): one sequence per subscription, except
    # for the units the update covered newly.
    dedupe = DuplicateFilter()
    dedupe.restart("e1", None)
    assert accepted(dedupe, pos(5, "P1"), pos(8, "P1")) == [5, 8]
    unit = partial(conflation_key, "position_updates")
    dedupe.admit(unit, covered_by({"portfolio_ids": ["P1"]}))
    # The gateway's order: the latest values of P2, then the live messages it held back.
    later = [
        pos(3, "P2", "AAPL"),  # older than what was delivered
        pos(12, "P2", "MSFT"),  # newer than a held-back message of P1
        pos(10, "P1"),  # held back while the snapshot was fetched
        pos(5, "P1"),  # covered before: a duplicate
        pos(3, "P2", "AAPL"),  # again (another subscription's snapshot)
        pos(13, "P2", "AAPL"),  # live
        pos(13, "P2", "AAPL"),
    ]
    assert accepted(dedupe, *later) == [3, 12, 10, 13]
    # A second update: P2 was new at the first, it keeps its per-unit judgement.
    dedupe.admit(unit, covered_by({"portfolio_ids": ["P1", "P2"]}))
    assert accepted(dedupe, pos(12, "P2", "MSFT"), pos(14, "P2", "MSFT"), pos(10, "P1")) == [14]
    dedupe.restart("e1", 14)  # a confirmation ends it
    assert accepted(dedupe, pos(7, "P2", "NVDA")) == []


def test_after_an_update_new_keys_ignore_the_floor_but_not_newer_values() -> None:
    dedupe = DuplicateFilter(partial(conflation_key, "market_data"))
    dedupe.restart("e1", 20)  # subscribed without a snapshot
    dedupe.admit(partial(conflation_key, "market_data"), covered_by({"symbols": ["AAPL"]}))

    def tick(seq: int, symbol: str) -> dict[str, Any]:
        return msg(seq, key=symbol, symbol=symbol, data_type="quote")

    messages = [
        tick(22, "AAPL"),  # covered before: the usual rules
        tick(19, "AAPL"),  # under the floor
        tick(18, "MSFT"),  # new key, under the floor: its latest value
        tick(26, "GOOG"),  # live first
        tick(17, "GOOG"),  # then an older value: stale
        tick(18, "MSFT"),
    ]
    assert accepted(dedupe, *messages) == [22, 18, 26]
