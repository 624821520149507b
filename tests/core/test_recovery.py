"""core/recovery.py: what a new subscription gets before going live (docs/protocol.md section 5).

`prepare` against a MemoryBroker with an injected clock, for each combination of stream
class, `since` and `snapshot`; `after` for the live messages buffered meanwhile.
"""

from __future__ import annotations

from typing import Any

import pytest

from fakes import FakeClock, FakeTransport, connection, subscription
from messages import bar, order, position, quote, risk_alert, sequenced
from tidewire.brokers.base import HistoryLimit
from tidewire.brokers.memory import MemoryBroker
from tidewire.core import recovery
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, StreamPosition

CONNECTION = connection(connection_id="c1", transport=FakeTransport(writable=False))
"""The connection of every subscription here: recovery never writes to it."""


def publish(broker: MemoryBroker, *raws: dict[str, Any]) -> list[DataMessage]:
    return [broker.publish_now(build_data_message(raw)).message for raw in raws]


def seqs(messages: list[DataMessage]) -> list[int]:
    return [m.seq for m in messages]


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker(clock=FakeClock())


def at(broker: MemoryBroker, stream: str, seq: int) -> StreamPosition:
    return StreamPosition(broker.position(stream).epoch, seq)


# ------------------------------------------------------------------ reliable streams


async def test_reliable_since_in_history_replays_exactly_the_matching_messages_after_it(
    broker: MemoryBroker,
) -> None:
    publish(broker, *(order("PF-1" if n % 2 else "PF-2", n) for n in range(1, 9)))
    sub = subscription(CONNECTION, "order_updates", portfolio_ids=["PF-1"])
    setup = await recovery.prepare(broker, sub, at(broker, "order_updates", 3), None)
    assert setup.recovered is True
    assert seqs(setup.messages) == [5, 7]
    assert {m.portfolio_id for m in setup.messages} == {"PF-1"}
    # The position covers the whole replay, matching or not: live messages follow seq 8.
    assert setup.position == broker.position("order_updates")
    assert setup.position.seq == 8


async def test_reliable_since_at_the_head_recovers_with_nothing_to_replay(
    broker: MemoryBroker,
) -> None:
    publish(broker, order("PF-1"), order("PF-1"))
    head = broker.position("order_updates")
    setup = await recovery.prepare(broker, subscription(CONNECTION, "order_updates"), head, None)
    assert setup == recovery.Setup(head, True, [])


async def test_reliable_since_of_another_epoch_is_not_recovered(broker: MemoryBroker) -> None:
    publish(broker, order("PF-1"), order("PF-1"), order("PF-1"))
    since = StreamPosition("other-epoch", 1)
    setup = await recovery.prepare(broker, subscription(CONNECTION, "order_updates"), since, None)
    assert setup.recovered is False
    assert setup.messages == [], "order_updates has no snapshot: nothing, not a partial replay"
    assert setup.position == broker.position("order_updates")


async def test_reliable_since_beyond_the_head_is_not_recovered(broker: MemoryBroker) -> None:
    publish(broker, order("PF-1"), order("PF-1"))
    since = at(broker, "order_updates", 5)
    setup = await recovery.prepare(broker, subscription(CONNECTION, "order_updates"), since, None)
    assert setup.recovered is False
    assert setup.messages == []
    assert setup.position == broker.position("order_updates")


@pytest.mark.parametrize(("since", "recovered"), [(0, False), (2, False), (3, True), (5, True)])
async def test_trimmed_history_is_never_replayed_in_part(since: int, recovered: bool) -> None:
    broker = MemoryBroker({"order_updates": HistoryLimit(max_messages=3)}, clock=FakeClock())
    publish(broker, *(order("PF-1", n) for n in range(6)))  # history keeps seq 4, 5, 6
    sub = subscription(CONNECTION, "order_updates")
    setup = await recovery.prepare(broker, sub, at(broker, "order_updates", since), None)
    assert setup.recovered is recovered
    assert seqs(setup.messages) == (list(range(since + 1, 7)) if recovered else [])
    assert setup.position == broker.position("order_updates")


async def test_history_trimmed_by_age_is_not_recovered() -> None:
    clock = FakeClock(0.0)
    broker = MemoryBroker({"order_updates": HistoryLimit(max_age_seconds=60)}, clock=clock)
    publish(broker, order("PF-1"), order("PF-1"))
    clock.now = 30.0
    publish(broker, order("PF-1"))
    clock.now = 61.0
    sub = subscription(CONNECTION, "order_updates")
    setup = await recovery.prepare(broker, sub, at(broker, "order_updates", 0), None)
    assert setup.recovered is False and setup.messages == []
    setup = await recovery.prepare(broker, sub, at(broker, "order_updates", 2), None)
    assert setup.recovered is True and seqs(setup.messages) == [3]


async def test_reliable_subscription_without_since_needs_no_setup(broker: MemoryBroker) -> None:
    publish(broker, order("PF-1"))
    sub = subscription(CONNECTION, "order_updates")
    assert not recovery.needs_setup(sub, None, None)
    assert not recovery.needs_setup(sub, None, True), "no snapshot on this stream"
    assert recovery.needs_setup(sub, at(broker, "order_updates", 0), None)
    setup = await recovery.prepare(broker, sub, None, None)
    assert setup == recovery.Setup(broker.position("order_updates"), None, [])


# ------------------------------------------------------------------ position_updates


async def test_position_updates_without_since_get_the_snapshot_per_portfolio_and_symbol(
    broker: MemoryBroker,
) -> None:
    publish(
        broker,
        position("PF-1", "AAPL", 1),  # 1, replaced by 3
        position("PF-1", "MSFT", 5),  # 2
        position("PF-1", "AAPL", 2),  # 3
        position("PF-2", "AAPL", 7),  # 4
        position("PF-2", "TSLA", 1),  # 5, replaced by 6
        position("PF-2", "TSLA", 0),  # 6
    )
    sub = subscription(CONNECTION, "position_updates")
    assert recovery.needs_setup(sub, None, None)
    setup = await recovery.prepare(broker, sub, None, None)
    assert setup.recovered is None
    assert seqs(setup.messages) == [2, 3, 4, 6]
    assert [(m.key, m.symbol, m.data["quantity"]) for m in setup.messages] == [
        ("PF-1", "MSFT", 5),
        ("PF-1", "AAPL", 2),
        ("PF-2", "AAPL", 7),
        ("PF-2", "TSLA", 0),
    ]
    assert setup.position == broker.position("position_updates")
    filtered = subscription(CONNECTION, "position_updates", portfolio_ids=["PF-2"])
    setup = await recovery.prepare(broker, filtered, None, None)
    assert seqs(setup.messages) == [4, 6]


async def test_position_updates_with_unrecoverable_since_get_the_snapshot(
    broker: MemoryBroker,
) -> None:
    publish(broker, position("PF-1", "AAPL", 1), position("PF-1", "AAPL", 2))
    publish(broker, position("PF-1", "MSFT", 3))
    sub = subscription(CONNECTION, "position_updates")
    setup = await recovery.prepare(broker, sub, StreamPosition("gone", 1), None)
    assert setup.recovered is False
    assert seqs(setup.messages) == [2, 3]
    assert setup.position == broker.position("position_updates")


async def test_position_updates_with_recoverable_since_get_the_replay(
    broker: MemoryBroker,
) -> None:
    publish(broker, position("PF-1", "AAPL", 1), position("PF-1", "AAPL", 2))
    publish(broker, position("PF-1", "MSFT", 3))
    sub = subscription(CONNECTION, "position_updates")
    setup = await recovery.prepare(broker, sub, at(broker, "position_updates", 1), None)
    assert setup.recovered is True
    assert seqs(setup.messages) == [2, 3]
    assert [m.data["quantity"] for m in setup.messages] == [2, 3]


async def test_position_updates_snapshot_false_gets_nothing(broker: MemoryBroker) -> None:
    publish(broker, position("PF-1", "AAPL", 1))
    sub = subscription(CONNECTION, "position_updates")
    assert not recovery.needs_setup(sub, None, False)
    setup = await recovery.prepare(broker, sub, None, False)
    assert setup.messages == []
    setup = await recovery.prepare(broker, sub, StreamPosition("gone", 1), False)
    assert setup.recovered is False and setup.messages == []


# ------------------------------------------------------------------ latest-value streams


async def test_latest_value_without_since_gets_the_snapshot(broker: MemoryBroker) -> None:
    publish(broker, quote("AAPL", 1), quote("MSFT", 2), bar("AAPL"), quote("AAPL", 3))
    sub = subscription(CONNECTION, "market_data")
    assert recovery.needs_setup(sub, None, None)
    setup = await recovery.prepare(broker, sub, None, None)
    assert setup.recovered is None
    # The newest per symbol and data_type, in seq order.
    assert seqs(setup.messages) == [2, 3, 4]
    assert [(m.key, m.data_type) for m in setup.messages] == [
        ("MSFT", "quote"),
        ("AAPL", "bar"),
        ("AAPL", "quote"),
    ]
    assert setup.position == broker.position("market_data")


async def test_latest_value_snapshot_false_gets_nothing_and_needs_no_setup(
    broker: MemoryBroker,
) -> None:
    publish(broker, quote("AAPL"))
    sub = subscription(CONNECTION, "market_data")
    assert not recovery.needs_setup(sub, None, False)
    setup = await recovery.prepare(broker, sub, None, False)
    assert setup == recovery.Setup(broker.position("market_data"), None, [])


async def test_latest_value_since_at_the_head_is_recovered_with_the_snapshot(
    broker: MemoryBroker,
) -> None:
    publish(broker, quote("AAPL"), quote("MSFT"))
    head = broker.position("market_data")
    setup = await recovery.prepare(broker, subscription(CONNECTION, "market_data"), head, None)
    assert setup.recovered is True
    assert seqs(setup.messages) == [1, 2]
    assert setup.position == head


@pytest.mark.parametrize("since_seq", [0, 1])
async def test_latest_value_since_older_is_not_recovered_and_gets_the_snapshot(
    broker: MemoryBroker, since_seq: int
) -> None:
    publish(broker, quote("AAPL", 1), quote("AAPL", 2))
    since = at(broker, "market_data", since_seq)
    setup = await recovery.prepare(broker, subscription(CONNECTION, "market_data"), since, None)
    assert setup.recovered is False
    assert seqs(setup.messages) == [2]
    assert setup.position == broker.position("market_data")


async def test_latest_value_since_of_another_epoch_is_not_recovered(broker: MemoryBroker) -> None:
    publish(broker, quote("AAPL"))
    head = broker.position("market_data")
    since = StreamPosition("other", head.seq)
    setup = await recovery.prepare(broker, subscription(CONNECTION, "market_data"), since, None)
    assert setup.recovered is False
    assert seqs(setup.messages) == [1]


# ------------------------------------------------------------------ filters


async def test_filters_apply_to_the_snapshot(broker: MemoryBroker) -> None:
    publish(
        broker,
        quote("AAPL", 10),
        {**quote("MSFT", 10), "venue": "XNAS"},
        {**quote("AAPL", 200), "venue": "XNAS"},
        quote("GOOG", 10),
    )
    sub = subscription(CONNECTION, "market_data", symbols=["AAPL", "MSFT"], max_price=100)
    setup = await recovery.prepare(broker, sub, None, None)
    assert [m.key for m in setup.messages] == ["MSFT"], "AAPL's newest quote is above 100"
    venue = subscription(CONNECTION, "market_data", venue="XNAS")
    setup = await recovery.prepare(broker, venue, None, None)
    assert seqs(setup.messages) == [2, 3]


async def test_filters_apply_to_the_replay(broker: MemoryBroker) -> None:
    publish(
        broker,
        *(
            risk_alert(pf, sev)
            for pf, sev in [("PF-1", "low"), ("PF-1", "high"), ("PF-2", "critical")] * 2
        ),
    )
    sub = subscription(CONNECTION, "risk_alerts", portfolio_ids=["PF-1"], severity="medium")
    setup = await recovery.prepare(broker, sub, at(broker, "risk_alerts", 1), None)
    assert setup.recovered is True
    assert seqs(setup.messages) == [2, 5]
    assert setup.position.seq == 6


# ------------------------------------------------------------------ after


def test_after_drops_the_buffered_messages_the_setup_covers() -> None:
    setup = recovery.Setup(StreamPosition("ep", 5), True, [])
    buffered = [sequenced(quote("AAPL"), seq) for seq in (4, 5, 6, 7)]
    assert seqs(recovery.after(setup.position, buffered)) == [6, 7]
    assert recovery.after(setup.position, []) == []


def test_after_keeps_messages_of_a_newer_epoch() -> None:
    setup = recovery.Setup(StreamPosition("old", 5), False, [])
    buffered = [sequenced(quote("AAPL"), 1, epoch="new"), sequenced(quote("AAPL"), 2, epoch="new")]
    assert recovery.after(setup.position, buffered) == buffered
