"""core/recovery.py: what a new subscription gets before going live (PROTOCOL.md section 5).

`prepare` against a MemoryBroker with an injected clock, for each combination of stream
class, `since` and `snapshot`; `after` for the live messages buffered meanwhile.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tidewire.brokers.base import HistoryLimit
from tidewire.brokers.memory import MemoryBroker
from tidewire.core import recovery
from tidewire.core.auth import ROLE_SUBSCRIBER, Principal
from tidewire.core.connection import Connection
from tidewire.core.ratelimit import TokenBucket
from tidewire.core.subscription import Subscription
from tidewire.protocol.codec import WireFormat
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, StreamPosition, now_iso
from tidewire.protocol.streams import STREAMS


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NullTransport:
    def write(self, data: bytes) -> None:
        raise AssertionError("recovery writes nothing")

    def write_buffer_size(self) -> int:
        return 0

    def ping(self) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        pass


CONNECTION = Connection(
    connection_id="c1",
    transport=NullTransport(),
    wire_format=WireFormat.JSON,
    principal=Principal(user_id=None, roles=frozenset({ROLE_SUBSCRIBER})),
    inbound=TokenBucket(1.0, 1, 0.0),
    now=0.0,
    connected_at=now_iso(),
)


def subscription(stream: str, **filters: Any) -> Subscription:
    spec = STREAMS[stream]
    return Subscription(CONNECTION, "s1", spec, validate_filters(filters, spec), now_iso())


def order(portfolio: str, n: int = 0) -> dict[str, Any]:
    data = {
        "order_id": f"o{n}",
        "symbol": "AAPL",
        "side": "buy",
        "order_type": "limit",
        "quantity": 10,
        "filled_quantity": 0,
        "status": "open",
    }
    return {"type": "order_update", "portfolio_id": portfolio, "data": data}


def quote(symbol: str, bid: float = 1.0) -> dict[str, Any]:
    return {"type": "market_data", "symbol": symbol, "data": {"bid": bid, "ask": bid + 0.1}}


def bar(symbol: str) -> dict[str, Any]:
    data = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}
    return {"type": "market_data", "symbol": symbol, "data": data}


def position(portfolio: str, symbol: str, quantity: float) -> dict[str, Any]:
    data = {"symbol": symbol, "quantity": quantity, "avg_price": 10.0, "unrealized_pnl": 0.0}
    return {"type": "position_update", "portfolio_id": portfolio, "data": data}


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
    sub = subscription("order_updates", portfolio_ids=["PF-1"])
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
    setup = await recovery.prepare(broker, subscription("order_updates"), head, None)
    assert setup == recovery.Setup(head, True, [])


async def test_reliable_since_of_another_epoch_is_not_recovered(broker: MemoryBroker) -> None:
    publish(broker, order("PF-1"), order("PF-1"), order("PF-1"))
    since = StreamPosition("other-epoch", 1)
    setup = await recovery.prepare(broker, subscription("order_updates"), since, None)
    assert setup.recovered is False
    assert setup.messages == [], "order_updates has no snapshot: nothing, not a partial replay"
    assert setup.position == broker.position("order_updates")


async def test_reliable_since_beyond_the_head_is_not_recovered(broker: MemoryBroker) -> None:
    publish(broker, order("PF-1"), order("PF-1"))
    since = at(broker, "order_updates", 5)
    setup = await recovery.prepare(broker, subscription("order_updates"), since, None)
    assert setup.recovered is False
    assert setup.messages == []
    assert setup.position == broker.position("order_updates")


@pytest.mark.parametrize(("since", "recovered"), [(0, False), (2, False), (3, True), (5, True)])
async def test_trimmed_history_is_never_replayed_in_part(since: int, recovered: bool) -> None:
    broker = MemoryBroker({"order_updates": HistoryLimit(max_messages=3)}, clock=FakeClock())
    publish(broker, *(order("PF-1", n) for n in range(6)))  # history keeps seq 4, 5, 6
    sub = subscription("order_updates")
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
    sub = subscription("order_updates")
    setup = await recovery.prepare(broker, sub, at(broker, "order_updates", 0), None)
    assert setup.recovered is False and setup.messages == []
    setup = await recovery.prepare(broker, sub, at(broker, "order_updates", 2), None)
    assert setup.recovered is True and seqs(setup.messages) == [3]


async def test_reliable_subscription_without_since_needs_no_setup(broker: MemoryBroker) -> None:
    publish(broker, order("PF-1"))
    sub = subscription("order_updates")
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
    sub = subscription("position_updates")
    assert recovery.needs_setup(sub, None, None)
    setup = await recovery.prepare(broker, sub, None, None)
    assert setup.recovered is None
    assert seqs(setup.messages) == [2, 3, 4, 6]
    assert [(m.key, m.data["symbol"], m.data["quantity"]) for m in setup.messages] == [
        ("PF-1", "MSFT", 5),
        ("PF-1", "AAPL", 2),
        ("PF-2", "AAPL", 7),
        ("PF-2", "TSLA", 0),
    ]
    assert setup.position == broker.position("position_updates")
    filtered = subscription("position_updates", portfolio_ids=["PF-2"])
    setup = await recovery.prepare(broker, filtered, None, None)
    assert seqs(setup.messages) == [4, 6]


async def test_position_updates_with_unrecoverable_since_get_the_snapshot(
    broker: MemoryBroker,
) -> None:
    publish(broker, position("PF-1", "AAPL", 1), position("PF-1", "AAPL", 2))
    publish(broker, position("PF-1", "MSFT", 3))
    sub = subscription("position_updates")
    setup = await recovery.prepare(broker, sub, StreamPosition("gone", 1), None)
    assert setup.recovered is False
    assert seqs(setup.messages) == [2, 3]
    assert setup.position == broker.position("position_updates")


async def test_position_updates_with_recoverable_since_get_the_replay(
    broker: MemoryBroker,
) -> None:
    publish(broker, position("PF-1", "AAPL", 1), position("PF-1", "AAPL", 2))
    publish(broker, position("PF-1", "MSFT", 3))
    sub = subscription("position_updates")
    setup = await recovery.prepare(broker, sub, at(broker, "position_updates", 1), None)
    assert setup.recovered is True
    assert seqs(setup.messages) == [2, 3]
    assert [m.data["quantity"] for m in setup.messages] == [2, 3]


async def test_position_updates_snapshot_false_gets_nothing(broker: MemoryBroker) -> None:
    publish(broker, position("PF-1", "AAPL", 1))
    sub = subscription("position_updates")
    assert not recovery.needs_setup(sub, None, False)
    setup = await recovery.prepare(broker, sub, None, False)
    assert setup.messages == []
    setup = await recovery.prepare(broker, sub, StreamPosition("gone", 1), False)
    assert setup.recovered is False and setup.messages == []


# ------------------------------------------------------------------ latest-value streams


async def test_latest_value_without_since_gets_the_snapshot(broker: MemoryBroker) -> None:
    publish(broker, quote("AAPL", 1), quote("MSFT", 2), bar("AAPL"), quote("AAPL", 3))
    sub = subscription("market_data")
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
    sub = subscription("market_data")
    assert not recovery.needs_setup(sub, None, False)
    setup = await recovery.prepare(broker, sub, None, False)
    assert setup == recovery.Setup(broker.position("market_data"), None, [])


async def test_latest_value_since_at_the_head_is_recovered_with_the_snapshot(
    broker: MemoryBroker,
) -> None:
    publish(broker, quote("AAPL"), quote("MSFT"))
    head = broker.position("market_data")
    setup = await recovery.prepare(broker, subscription("market_data"), head, None)
    assert setup.recovered is True
    assert seqs(setup.messages) == [1, 2]
    assert setup.position == head


@pytest.mark.parametrize("since_seq", [0, 1])
async def test_latest_value_since_older_is_not_recovered_and_gets_the_snapshot(
    broker: MemoryBroker, since_seq: int
) -> None:
    publish(broker, quote("AAPL", 1), quote("AAPL", 2))
    since = at(broker, "market_data", since_seq)
    setup = await recovery.prepare(broker, subscription("market_data"), since, None)
    assert setup.recovered is False
    assert seqs(setup.messages) == [2]
    assert setup.position == broker.position("market_data")


async def test_latest_value_since_of_another_epoch_is_not_recovered(broker: MemoryBroker) -> None:
    publish(broker, quote("AAPL"))
    head = broker.position("market_data")
    since = StreamPosition("other", head.seq)
    setup = await recovery.prepare(broker, subscription("market_data"), since, None)
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
    sub = subscription("market_data", symbols=["AAPL", "MSFT"], max_price=100)
    setup = await recovery.prepare(broker, sub, None, None)
    assert [m.key for m in setup.messages] == ["MSFT"], "AAPL's newest quote is above 100"
    venue = subscription("market_data", venue="XNAS")
    setup = await recovery.prepare(broker, venue, None, None)
    assert seqs(setup.messages) == [2, 3]


async def test_filters_apply_to_the_replay(broker: MemoryBroker) -> None:
    alert = {"metric": "var", "current_value": 2, "threshold": 1, "timestamp": now_iso()}
    publish(
        broker,
        *(
            {"type": "risk_alert", "portfolio_id": pf, "severity": sev, "data": alert}
            for pf, sev in [("PF-1", "low"), ("PF-1", "high"), ("PF-2", "critical")] * 2
        ),
    )
    sub = subscription("risk_alerts", portfolio_ids=["PF-1"], severity="medium")
    setup = await recovery.prepare(broker, sub, at(broker, "risk_alerts", 1), None)
    assert setup.recovered is True
    assert seqs(setup.messages) == [2, 5]
    assert setup.position.seq == 6


# ------------------------------------------------------------------ after


def _message(seq: int, epoch: str) -> DataMessage:
    return msgspec.structs.replace(build_data_message(quote("AAPL")), seq=seq, epoch=epoch)


def test_after_drops_the_buffered_messages_the_setup_covers() -> None:
    setup = recovery.Setup(StreamPosition("ep", 5), True, [])
    buffered = [_message(seq, "ep") for seq in (4, 5, 6, 7)]
    assert seqs(recovery.after(setup, buffered)) == [6, 7]
    assert recovery.after(setup, []) == []


def test_after_keeps_messages_of_a_newer_epoch() -> None:
    setup = recovery.Setup(StreamPosition("old", 5), False, [])
    buffered = [_message(1, "new"), _message(2, "new")]
    assert recovery.after(setup, buffered) == buffered
