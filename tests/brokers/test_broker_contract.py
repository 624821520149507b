"""The Broker contract of brokers/base.py, run against every broker implementation.

Each implementation is a param of the `harness` fixture, which builds brokers of that kind
from history limits and an idempotency window:

* "memory": `MemoryBroker` on a fake clock (`harness.clock`);
* "redis": `RedisBroker` on a private redis-server of the session (tests/brokers/conftest.py).
  Every `harness.make()` gets its own key prefix, so it is a separate history, like a new
  memory broker; two nodes of one history are the subject of test_redis.py.

Redis delivers asynchronously (each node reads the streams with XREAD), so a test awaits
`harness.settle()` (every broker delivered everything Redis holds, with a timeout) before it
looks at what a broker delivered or at its positions; for the memory broker that is a no-op.
Redis runs on its own clock: the tests that need time to pass (the idempotency window, the
age of history) use `clock_harness`, the kinds whose clock the test drives; test_redis.py
has their Redis counterparts on real time.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from fakes import FakeClock
from tidewire.brokers.base import Broker, Handlers, HistoryLimit, PublishOutcome
from tidewire.brokers.memory import MemoryBroker
from tidewire.brokers.redis import RedisBroker
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, StreamPosition, now_iso
from tidewire.protocol.streams import STREAMS

BROKER_KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]
CLOCK_KINDS = ["memory"]
"""Kinds whose time the test controls (an injected clock)."""
WINDOW = 300.0

Settle = Callable[..., Awaitable[None]]


class Harness:
    """Builds brokers of one kind, and records what they deliver."""

    def __init__(self, kind: str, settle: Settle, redis_url: str | None = None) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self._settle = settle
        self.clock = FakeClock(10_000.0)
        """The memory brokers' clock; Redis brokers run on Redis's clock."""
        self.delivered: dict[int, list[DataMessage]] = {}
        self.started: list[Broker] = []

    async def make(
        self,
        history_limits: Mapping[str, HistoryLimit] | None = None,
        idempotency_window: float = WINDOW,
        max_latest_keys: int = 100_000,
    ) -> Broker:
        """A new broker with a history of its own."""
        broker: Broker
        if self.kind == "memory":
            broker = MemoryBroker(
                history_limits=history_limits,
                idempotency_window=idempotency_window,
                clock=self.clock,
                max_latest_keys=max_latest_keys,
            )
        elif self.kind == "redis":
            assert self.redis_url is not None
            broker = RedisBroker(
                self.redis_url,
                prefix=f"contract-{uuid.uuid4().hex[:12]}",
                history_limits=history_limits,
                idempotency_window=idempotency_window,
                max_latest_keys=max_latest_keys,
            )
        else:  # pragma: no cover - a new kind must be wired here
            raise AssertionError(f"unknown broker kind {self.kind}")
        received: list[DataMessage] = []
        self.delivered[id(broker)] = received
        broker.attach(Handlers(message=received.append))
        await broker.start()
        self.started.append(broker)
        return broker

    async def settle(self) -> None:
        """Wait until every broker delivered everything it holds (a no-op for memory)."""
        await self._settle(*self.started)

    def seen(self, broker: Broker) -> list[DataMessage]:
        """What `broker` delivered to its consumer so far, in order."""
        return self.delivered[id(broker)]


async def _make_harness(request: pytest.FixtureRequest, settle: Settle) -> Harness:
    url = request.getfixturevalue("shared_redis").url if request.param == "redis" else None
    return Harness(request.param, settle, url)


@pytest.fixture(params=BROKER_KINDS)
async def harness(request: pytest.FixtureRequest, settle: Settle) -> AsyncIterator[Harness]:
    h = await _make_harness(request, settle)
    yield h
    for broker in h.started:
        await broker.close()


@pytest.fixture(params=CLOCK_KINDS)
async def clock_harness(request: pytest.FixtureRequest, settle: Settle) -> AsyncIterator[Harness]:
    """A harness of a kind whose clock the test moves (`clock_harness.clock.advance`)."""
    h = await _make_harness(request, settle)
    yield h
    for broker in h.started:
        await broker.close()


@pytest.fixture
async def broker(harness: Harness) -> Broker:
    return await harness.make()


# ------------------------------------------------------------------ messages

_ids = itertools.count(1)


def _payload(stream: str, key: str, n: int) -> dict[str, Any]:
    symbol = "AAPL"
    if stream in ("market_data", "execution_analytics"):
        symbol = key
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "market_data": lambda: {
            "symbol": key,
            "data": {"bid_price": 100 + n, "ask_price": 101 + n},
        },
        "trade_updates": lambda: {
            "portfolio_id": key,
            "user_id": "u1",
            "data": {
                "trade_id": f"t{n}",
                "order_id": "o1",
                "symbol": symbol,
                "side": "buy",
                "quantity": n,
                "price": 10.0,
                "status": "filled",
            },
        },
        "order_updates": lambda: {
            "portfolio_id": key,
            "order_id": f"o{n}",
            "symbol": symbol,
            "order_status": "open",
            "data": {
                "side": "sell",
                "order_type": "limit",
                "quantity": 5,
                "filled_quantity": 0,
            },
        },
        "position_updates": lambda: {
            "portfolio_id": key,
            "symbol": symbol,
            "data": {"quantity": n, "avg_price": 10.0, "unrealized_pnl": 0.0},
        },
        "risk_alerts": lambda: {
            "portfolio_id": key,
            "severity": "high",
            "risk_type": "var",
            "data": {
                "metric": "var",
                "current_value": n,
                "threshold": 1,
                "message": "var over its limit",
                "timestamp": now_iso(),
            },
        },
        "performance_updates": lambda: {
            "portfolio_id": key,
            "data": {"pnl": n, "returns": 0.01},
        },
        "strategy_performance": lambda: {
            "strategy_id": key,
            "strategy_name": f"strategy {key}",
            "data": {
                "total_return": n,
                "sharpe_ratio": 1.0,
                "max_drawdown": 0.1,
                "trade_count": n,
                "win_rate": 0.5,
                "profit_factor": 1.1,
            },
        },
        "execution_analytics": lambda: {
            "symbol": key,
            "execution_id": f"e{n}",
            "data": {
                "fill_price": 10.01,
                "benchmark_price": 10.0,
                "execution_time_ms": 2.0,
            },
        },
        "risk_metrics": lambda: {
            "portfolio_id": key,
            "metric_type": "var_95",
            "data": {"value": n},
        },
        "engine_status": lambda: {"engine_id": key, "data": {"state": "running", "uptime": n}},
        "system_health": lambda: {"component": key, "data": {"status": "healthy"}},
        "events": lambda: {
            "source": key,
            "event_type": "note",
            "data": {"description": f"event {n}"},
        },
    }
    return builders[stream]()


def make(stream: str, key: str = "K1", message_id: str | None = None, **extra: Any) -> DataMessage:
    """A valid, unsequenced message of `stream` partitioned under `key`."""
    n = next(_ids)
    raw = {"stream": stream, **_payload(stream, key, n), **extra}
    raw["message_id"] = message_id or f"contract-{n}"
    return build_data_message(raw)


def test_there_is_a_message_factory_for_every_stream() -> None:
    for stream in STREAMS:
        message = make(stream, "KEY")
        assert message.stream == stream
        assert message.key == "KEY"


RELIABLE = [name for name, spec in STREAMS.items() if spec.reliable]
LATEST_VALUE = [name for name, spec in STREAMS.items() if not spec.reliable]
RELIABLE_WITHOUT_SNAPSHOT = [name for name in RELIABLE if name != "position_updates"]


async def publish_all(broker: Broker, messages: list[DataMessage]) -> list[PublishOutcome]:
    return [await broker.publish(m) for m in messages]


# ------------------------------------------------------------------ sequencing


async def test_seq_starts_at_1_and_grows_by_1_per_stream_independently(
    harness: Harness, broker: Broker
) -> None:
    plan = [
        "market_data",
        "order_updates",
        "market_data",
        "risk_alerts",
        "market_data",
        "order_updates",
    ]
    outcomes = await publish_all(broker, [make(stream) for stream in plan])
    by_stream: dict[str, list[int]] = {}
    for outcome in outcomes:
        assert not outcome.duplicate
        by_stream.setdefault(outcome.message.stream, []).append(outcome.message.seq)
    assert by_stream == {"market_data": [1, 2, 3], "order_updates": [1, 2], "risk_alerts": [1]}
    await harness.settle()
    assert broker.position("market_data").seq == 3
    assert broker.position("order_updates").seq == 2
    assert broker.position("events").seq == 0, "nothing published yet"


async def test_sequenced_message_keeps_everything_else(broker: Broker) -> None:
    original = make("market_data", "AAPL", venue="XNAS")
    outcome = await broker.publish(original)
    sequenced = outcome.message
    assert sequenced.seq == 1
    assert sequenced.epoch == broker.position("market_data").epoch
    for field in ("type", "message_id", "stream", "key", "source", "data", "venue", "timestamp"):
        assert getattr(sequenced, field) == getattr(original, field)


async def test_consumer_sees_every_message_in_order(harness: Harness, broker: Broker) -> None:
    streams = ["market_data", "order_updates", "events"]
    messages = [make(streams[i % 3], f"K{i % 4}") for i in range(30)]
    outcomes = await publish_all(broker, messages)
    await harness.settle()
    seen = harness.seen(broker)
    assert len(seen) == len(outcomes)
    # The order is per stream: different streams may interleave differently (Redis reads
    # each stream's log on its own).
    for stream in streams:
        sent = [o.message for o in outcomes if o.message.stream == stream]
        assert [m for m in seen if m.stream == stream] == sent
        assert [m.seq for m in sent] == list(range(1, 11))
    assert {m.message_id for m in seen} == {m.message_id for m in messages}


async def test_epoch_is_stable_within_a_broker_and_differs_across_brokers(
    harness: Harness, broker: Broker
) -> None:
    epoch = broker.position("order_updates").epoch
    assert isinstance(epoch, str) and epoch
    outcomes = await publish_all(broker, [make("order_updates") for _ in range(5)])
    assert {o.message.epoch for o in outcomes} == {epoch}
    await harness.settle()
    assert broker.position("order_updates").epoch == epoch
    other = await harness.make()
    assert other.position("order_updates").epoch != epoch
    second = await other.publish(make("order_updates"))
    assert second.message.seq == 1
    assert second.message.epoch != epoch


async def test_publish_many_preserves_order(harness: Harness, broker: Broker) -> None:
    messages = [make("market_data", f"S{i % 3}") for i in range(6)]
    messages += [make("order_updates", "PF-1") for _ in range(3)]
    messages.insert(4, make("market_data", "S9"))
    outcomes = await broker.publish_many(messages)
    assert [o.message.message_id for o in outcomes] == [m.message_id for m in messages]
    assert [o.message.seq for o in outcomes if o.message.stream == "market_data"] == list(
        range(1, 8)
    )
    assert [o.message.seq for o in outcomes if o.message.stream == "order_updates"] == [1, 2, 3]
    await harness.settle()
    delivered = harness.seen(broker)
    assert sorted(delivered, key=lambda m: m.message_id) == sorted(
        (o.message for o in outcomes), key=lambda m: m.message_id
    )
    for stream in ("market_data", "order_updates"):
        assert [m for m in delivered if m.stream == stream] == [
            o.message for o in outcomes if o.message.stream == stream
        ], "in publish order within each stream"


async def test_publish_many_of_nothing_publishes_nothing(harness: Harness, broker: Broker) -> None:
    assert await broker.publish_many([]) == []
    await harness.settle()
    assert harness.seen(broker) == []
    assert all(broker.position(stream).seq == 0 for stream in STREAMS)


# ------------------------------------------------------------------ idempotency


async def test_duplicate_returns_the_original_and_is_not_delivered(
    harness: Harness, broker: Broker
) -> None:
    first = await broker.publish(make("order_updates", "PF-1", message_id="dup-1"))
    await broker.publish(make("order_updates", "PF-1"))
    repeat = await broker.publish(make("order_updates", "PF-2", message_id="dup-1"))
    assert repeat.duplicate is True
    assert repeat.message.seq == first.message.seq == 1
    assert repeat.message == first.message, "the original, not the repeat"
    await harness.settle()
    assert [m.message_id for m in harness.seen(broker)].count("dup-1") == 1
    assert broker.position("order_updates").seq == 2, "a duplicate takes no seq"
    following = await broker.publish(make("order_updates", "PF-1"))
    assert following.message.seq == 3


async def test_idempotency_is_per_scope(harness: Harness, broker: Broker) -> None:
    # A publisher cannot claim another's message_id: the same id in another scope is
    # another message, and each scope still deduplicates its own repeats.
    mine = await broker.publish(make("order_updates", "PF-1", message_id="n-1"), scope="alice")
    theirs = await broker.publish(make("order_updates", "PF-2", message_id="n-1"))
    again = await broker.publish_many(
        [make("order_updates", "PF-1", message_id="n-1")], scope="alice"
    )
    assert (mine.duplicate, theirs.duplicate, again[0].duplicate) == (False, False, True)
    assert theirs.message.portfolio_id == "PF-2" and theirs.message.seq == 2
    assert again[0].message == mine.message
    await harness.settle()
    assert [m.portfolio_id for m in harness.seen(broker)] == ["PF-1", "PF-2"]


async def test_duplicate_in_one_publish_many_is_flagged(harness: Harness, broker: Broker) -> None:
    a = make("events", message_id="same")
    outcomes = await broker.publish_many([a, make("events"), make("events", message_id="same")])
    assert [o.duplicate for o in outcomes] == [False, False, True]
    assert outcomes[2].message == outcomes[0].message
    await harness.settle()
    assert len(harness.seen(broker)) == 2


@pytest.mark.parametrize(
    ("after", "duplicate"),
    [(1.0, True), (WINDOW - 1.0, True), (WINDOW + 1.0, False), (10 * WINDOW, False)],
)
async def test_idempotency_lasts_for_the_window(
    clock_harness: Harness, after: float, duplicate: bool
) -> None:
    broker = await clock_harness.make()
    await broker.publish(make("market_data", "AAPL", message_id="idem"))
    clock_harness.clock.advance(after)
    outcome = await broker.publish(make("market_data", "AAPL", message_id="idem"))
    assert outcome.duplicate is duplicate
    assert outcome.message.seq == (1 if duplicate else 2)
    assert len(clock_harness.seen(broker)) == (1 if duplicate else 2)


async def test_window_is_configurable(clock_harness: Harness) -> None:
    broker = await clock_harness.make(idempotency_window=5.0)
    await broker.publish(make("events", message_id="short"))
    clock_harness.clock.advance(6.0)
    assert (await broker.publish(make("events", message_id="short"))).duplicate is False


# ------------------------------------------------------------------ history


@pytest.mark.parametrize("since", [0, 1, 3, 4])
async def test_history_returns_exactly_what_came_after(
    harness: Harness, broker: Broker, since: int
) -> None:
    outcomes = await publish_all(broker, [make("order_updates", f"PF-{i}") for i in range(5)])
    await publish_all(broker, [make("risk_alerts") for _ in range(2)])  # another stream
    await harness.settle()
    epoch = broker.position("order_updates").epoch
    history = await broker.history("order_updates", StreamPosition(epoch, since))
    assert history == [o.message for o in outcomes][since:]
    assert [m.seq for m in history] == list(range(since + 1, 6))


@pytest.mark.parametrize(("since", "limit"), [(0, 2), (2, 2), (3, 10), (4, 1)])
async def test_history_with_a_limit_is_its_first_page(
    harness: Harness, broker: Broker, since: int, limit: int
) -> None:
    outcomes = await publish_all(broker, [make("order_updates", f"PF-{i}") for i in range(5)])
    await harness.settle()
    epoch = broker.position("order_updates").epoch
    page = await broker.history("order_updates", StreamPosition(epoch, since), limit=limit)
    assert page == [o.message for o in outcomes][since : since + limit]


async def test_history_when_up_to_date_is_empty(harness: Harness, broker: Broker) -> None:
    epoch = broker.position("order_updates").epoch
    assert await broker.history("order_updates", StreamPosition(epoch, 0)) == []
    await publish_all(broker, [make("order_updates") for _ in range(3)])
    await harness.settle()
    assert await broker.history("order_updates", StreamPosition(epoch, 3)) == []


async def test_history_of_another_epoch_is_none(harness: Harness, broker: Broker) -> None:
    await publish_all(broker, [make("order_updates") for _ in range(3)])
    other = await harness.make()
    await publish_all(other, [make("order_updates") for _ in range(3)])
    await harness.settle()
    foreign = other.position("order_updates")
    assert await broker.history("order_updates", StreamPosition(foreign.epoch, 1)) is None
    assert await broker.history("order_updates", StreamPosition("not-an-epoch", 0)) is None


@pytest.mark.parametrize("ahead", [1, 100])
async def test_history_beyond_the_head_is_none(
    harness: Harness, broker: Broker, ahead: int
) -> None:
    await publish_all(broker, [make("trade_updates") for _ in range(3)])
    await harness.settle()
    epoch = broker.position("trade_updates").epoch
    assert await broker.history("trade_updates", StreamPosition(epoch, 3 + ahead)) is None


@pytest.mark.parametrize("stream", LATEST_VALUE)
async def test_latest_value_streams_have_no_history(
    harness: Harness, broker: Broker, stream: str
) -> None:
    await publish_all(broker, [make(stream, key) for key in ["A", "B"]])
    await harness.settle()
    epoch = broker.position(stream).epoch
    assert await broker.history(stream, StreamPosition(epoch, 0)) is None


async def test_history_trimmed_by_count_is_never_partial(harness: Harness) -> None:
    broker = await harness.make({"order_updates": HistoryLimit(max_messages=3)})
    outcomes = await publish_all(broker, [make("order_updates") for _ in range(6)])
    await harness.settle()
    epoch = broker.position("order_updates").epoch
    kept = [o.message for o in outcomes]
    # seq 4..6 are kept: resuming after 3 or later works ...
    assert await broker.history("order_updates", StreamPosition(epoch, 3)) == kept[3:]
    assert await broker.history("order_updates", StreamPosition(epoch, 5)) == kept[5:]
    assert await broker.history("order_updates", StreamPosition(epoch, 6)) == []
    # ... resuming from earlier would need trimmed messages: None, not the tail.
    for since in (0, 1, 2):
        assert await broker.history("order_updates", StreamPosition(epoch, since)) is None


async def test_history_limits_are_per_stream(harness: Harness) -> None:
    broker = await harness.make({"order_updates": HistoryLimit(max_messages=2)})
    await publish_all(broker, [make("order_updates") for _ in range(5)])
    await publish_all(broker, [make("risk_alerts") for _ in range(5)])
    await harness.settle()
    orders, alerts = broker.position("order_updates"), broker.position("risk_alerts")
    assert await broker.history("order_updates", StreamPosition(orders.epoch, 0)) is None
    history = await broker.history("risk_alerts", StreamPosition(alerts.epoch, 0))
    assert history is not None and len(history) == 5


@pytest.mark.parametrize("count", [1, 3, 10])
async def test_recent_is_the_newest_of_history_in_order(
    harness: Harness, broker: Broker, count: int
) -> None:
    outcomes = await publish_all(broker, [make("trade_updates", f"PF-{i}") for i in range(5)])
    await harness.settle()
    recent = await broker.recent("trade_updates", count)
    assert recent == [o.message for o in outcomes][-count:]


async def test_recent_of_a_trimmed_or_latest_value_stream(harness: Harness) -> None:
    broker = await harness.make({"trade_updates": HistoryLimit(max_messages=2)})
    outcomes = await publish_all(broker, [make("trade_updates") for _ in range(5)])
    await publish_all(broker, [make("market_data") for _ in range(2)])
    await harness.settle()
    recent = await broker.recent("trade_updates", 10)
    assert recent == [o.message for o in outcomes][-2:]
    assert await broker.recent("market_data", 10) == []
    assert await broker.recent("trade_updates", 0) == []


async def test_history_older_than_max_age_is_gone(clock_harness: Harness) -> None:
    harness = clock_harness
    broker = await harness.make({"order_updates": HistoryLimit(max_age_seconds=60.0)})
    early = await publish_all(broker, [make("order_updates") for _ in range(2)])  # seq 1-2
    harness.clock.advance(40.0)
    late = await publish_all(broker, [make("order_updates") for _ in range(3)])  # seq 3-5
    epoch = broker.position("order_updates").epoch
    assert await broker.history("order_updates", StreamPosition(epoch, 0)) == [
        o.message for o in early + late
    ]
    harness.clock.advance(30.0)  # seq 1-2 are 70 s old, 3-5 are 30 s old
    assert await broker.history("order_updates", StreamPosition(epoch, 2)) == [
        o.message for o in late
    ]
    assert await broker.history("order_updates", StreamPosition(epoch, 0)) is None
    assert await broker.history("order_updates", StreamPosition(epoch, 1)) is None
    harness.clock.advance(60.0)  # everything expired
    assert await broker.history("order_updates", StreamPosition(epoch, 4)) is None
    assert await broker.history("order_updates", StreamPosition(epoch, 5)) == []


# ------------------------------------------------------------------ snapshots
# No settle() here: a snapshot's position must agree with the broker's own position (what
# it delivered) without waiting, because the gateway goes live right after a snapshot.


@pytest.mark.parametrize("stream", LATEST_VALUE)
async def test_snapshot_is_the_newest_message_per_key(broker: Broker, stream: str) -> None:
    outcomes = await publish_all(
        broker, [make(stream, key) for key in ["A", "B", "A", "C", "B", "A"]]
    )
    result = await broker.snapshot(stream)
    snapshot = result.messages
    messages = [o.message for o in outcomes]
    # newest per key: B (seq 5), A (seq 6), C (seq 4); in seq order
    assert snapshot == [messages[3], messages[4], messages[5]]
    assert result.position == broker.position(stream)
    assert result.position.seq == 6
    assert [m.key for m in snapshot] == ["C", "B", "A"]


async def test_snapshot_of_positions_is_per_portfolio_and_symbol(broker: Broker) -> None:
    def position(portfolio: str, symbol: str) -> DataMessage:
        return build_data_message(
            {
                "type": "position_update",
                "portfolio_id": portfolio,
                "symbol": symbol,
                "data": {
                    "quantity": next(_ids),
                    "avg_price": 1,
                    "unrealized_pnl": 0,
                },
            }
        )

    plan = [
        ("PF-1", "AAPL"),
        ("PF-1", "MSFT"),
        ("PF-2", "AAPL"),
        ("PF-1", "AAPL"),
        ("PF-2", "AAPL"),
    ]
    outcomes = await publish_all(broker, [position(p, s) for p, s in plan])
    messages = [o.message for o in outcomes]
    snapshot = (await broker.snapshot("position_updates")).messages
    assert snapshot == [messages[1], messages[3], messages[4]]
    assert [(m.key, m.symbol) for m in snapshot] == [
        ("PF-1", "MSFT"),
        ("PF-1", "AAPL"),
        ("PF-2", "AAPL"),
    ]


@pytest.mark.parametrize("stream", RELIABLE_WITHOUT_SNAPSHOT)
async def test_reliable_streams_have_no_snapshot(broker: Broker, stream: str) -> None:
    await publish_all(broker, [make(stream, key) for key in ["A", "B", "A"]])
    result = await broker.snapshot(stream)
    assert result.messages == []
    assert result.position.seq == 3
    assert result.position == broker.position(stream)


@pytest.mark.parametrize("stream", [*LATEST_VALUE, "position_updates"])
async def test_snapshot_of_an_empty_stream_is_empty(broker: Broker, stream: str) -> None:
    result = await broker.snapshot(stream)
    assert result.messages == []
    assert result.position.seq == 0
    assert result.position == broker.position(stream)


@pytest.mark.parametrize("stream", [*LATEST_VALUE, "position_updates"])
async def test_latest_values_past_the_limit_forget_the_least_recently_updated_key(
    harness: Harness, stream: str
) -> None:
    broker = await harness.make(max_latest_keys=3)
    outcomes = await publish_all(
        broker, [make(stream, key) for key in ["A", "B", "C", "A", "D", "E", "D"]]
    )
    messages = [o.message for o in outcomes]
    # B and C were updated least recently: forgotten; A (seq 4), E (6), D (7) remain.
    snapshot = (await broker.snapshot(stream)).messages
    assert snapshot == [messages[3], messages[5], messages[6]]
    assert (await broker.snapshot(stream)).position.seq == 7
    again = await broker.publish(make(stream, "B"))  # its next message brings it back
    assert [m.key for m in (await broker.snapshot(stream)).messages] == ["E", "D", "B"]
    assert again.message.seq == 8


async def test_a_duplicate_of_a_replaced_latest_value_answers_the_originals_position(
    broker: Broker,
) -> None:
    """The idempotency window keeps (stream, seq, epoch) per id, not the message: the answer
    to a repeat whose original is no longer held carries the original's position."""
    first = await broker.publish(make("market_data", "AAPL", message_id="q-1"))
    await broker.publish(make("market_data", "AAPL"))
    repeat = await broker.publish(make("market_data", "AAPL", message_id="q-1"))
    assert repeat.duplicate
    assert (repeat.message.stream, repeat.message.seq, repeat.message.epoch) == (
        first.message.stream,
        first.message.seq,
        first.message.epoch,
    )


async def test_duplicate_does_not_replace_the_last_value(broker: Broker) -> None:
    first = await broker.publish(make("market_data", "AAPL", message_id="lv-1"))
    await broker.publish(make("market_data", "AAPL", message_id="lv-1"))
    assert (await broker.snapshot("market_data")).messages == [first.message]


# ------------------------------------------------------------------ lifecycle


async def test_probe_and_lag_of_a_running_broker(harness: Harness, broker: Broker) -> None:
    await broker.probe()
    await publish_all(broker, [make("events") for _ in range(3)])
    await harness.settle()
    lag = await broker.lag()
    assert set(lag) == set(STREAMS)
    assert all(value == 0 for value in lag.values()), lag
