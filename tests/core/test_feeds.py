"""Snapshots and replays under flow control (core/feeds.py), on a fake scheduler and transport.

A feed writes a chunk, then the next one an event-loop iteration later (`world.flush()` runs
one iteration) or when a paused transport resumes; the subscription stays gated until its
feed has also sent the live messages it buffered meanwhile.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from fakes import World, received, run_to_completion, transport
from messages import order, quote, risk_alert, sequenced, trade
from tidewire.brokers.memory import MemoryBroker
from tidewire.core import recovery
from tidewire.core.subscription import Subscription
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, StreamPosition

T = TypeVar("T")
CHUNK = 4096


def run_to_value(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (the memory broker's)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the coroutine suspended")


MAX_OUTBOX = 64 * 1024


@pytest.fixture
def world() -> World:
    world = World(MAX_OUTBOX)
    world.hub.feeds.chunk_bytes = CHUNK
    return world


def setting_up(world: World, stream: str = "order_updates", **filters: Any) -> Subscription:
    """A subscription whose setup is under way: registered, gated, buffering."""
    subscription = world.subscribe(world.connect(), stream, **filters)
    subscription.buffer = []
    subscription.gated = True
    return subscription


def padded(raw: dict[str, Any], seq: int) -> DataMessage:
    raw["data"]["note"] = "x" * 200
    return sequenced(raw, seq)


def orders(first: int, last: int) -> list[DataMessage]:
    return [padded(order("PF-1", n), n) for n in range(first, last + 1)]


def data_seqs(subscription: Subscription) -> list[int]:
    return [m["seq"] for m in received(subscription.connection) if "seq" in m]


def run_feeds(world: World, limit: int = 10_000) -> int:
    """Run loop iterations until no feed is scheduled; returns how many it took."""
    for iterations in range(limit):
        if not world.scheduler.soon:
            return iterations
        world.flush()
    raise AssertionError("the feed never finished")


def test_a_setup_bigger_than_the_outbox_limit_goes_out_a_chunk_per_iteration(
    world: World,
) -> None:
    subscription = setting_up(world)
    replay = orders(1, 2000)  # ~600 KB encoded: ten times the outbox limit
    world.hub.feeds.start(subscription, replay, StreamPosition("ep", 2000))
    writes = transport(subscription.connection).writes
    assert len(writes) == 1, "the first chunk goes out at once"
    assert CHUNK <= len(writes[0]) < 2 * CHUNK
    iterations = run_feeds(world)
    assert iterations > 100, "one chunk per iteration, not everything at once"
    assert max(len(w) for w in writes) < 2 * CHUNK
    assert data_seqs(subscription) == list(range(1, 2001))
    assert transport(subscription.connection).closes == []
    assert subscription.buffer is None and not subscription.gated, "live from now on"
    assert len(world.hub.feeds) == 0


def test_a_paused_transport_gets_no_chunk_until_it_resumes(world: World) -> None:
    subscription = setting_up(world)
    connection = subscription.connection
    world.hub.feeds.start(subscription, orders(1, 500), StreamPosition("ep", 500))
    world.backlog(connection, world.high_water + 1)  # the client stopped reading
    world.flush()
    assert len(transport(connection).writes) == 1
    assert world.scheduler.soon == [], "nothing is scheduled while it is paused"
    assert connection.outbox.pending_bytes == 0, "the rest is not queued: no backlog"
    world.backlog(connection, 0)  # it read everything: resume_writing
    assert len(transport(connection).writes) == 2, "resuming writes the next chunk"
    run_feeds(world)
    assert data_seqs(subscription) == list(range(1, 501))


def test_live_messages_wait_behind_the_setup_in_seq_order_none_twice(world: World) -> None:
    subscription = setting_up(world)
    # Seq 9 and 10 arrived live while the replay (up to 10) was fetched: covered by it.
    for message in orders(9, 12):
        world.hub.dispatch(message)
    world.hub.feeds.start(subscription, orders(1, 10), StreamPosition("ep", 10))
    for message in orders(13, 300):  # more live messages while the feed runs
        world.hub.dispatch(message)
        world.flush()
    run_feeds(world)
    assert data_seqs(subscription) == list(range(1, 301))
    assert subscription.buffer is None
    world.hub.dispatch(orders(301, 301)[0])
    world.flush()
    assert data_seqs(subscription)[-1] == 301, "the gate is open: delivered live"


def test_live_messages_outrunning_a_slow_setup_past_the_bound_close_with_4008(
    world: World,
) -> None:
    world.hub.max_setup_buffer = 50
    subscription = setting_up(world)
    connection = subscription.connection
    world.hub.feeds.start(subscription, orders(1, 500), StreamPosition("ep", 500))
    world.backlog(connection, world.high_water + 1)
    for message in orders(501, 560):
        world.hub.dispatch(message)
    assert transport(connection).closes == [
        (CloseCode.SLOW_CONSUMER, "subscription setup buffer overflow")
    ]
    world.backlog(connection, 0)
    assert len(transport(connection).writes) == 1, "nothing more after the close"
    assert len(world.hub.feeds) == 0


def test_an_unsubscribed_feed_stops_and_the_others_go_on(world: World) -> None:
    first = setting_up(world)
    connection = first.connection
    second = world.subscribe(connection, "risk_alerts")
    second.buffer, second.gated = [], True
    world.hub.feeds.start(first, orders(1, 1000), StreamPosition("ep", 1000))
    alerts = [padded(risk_alert("PF-1"), n) for n in range(1, 301)]
    world.hub.feeds.start(second, alerts, StreamPosition("ep", 300))
    world.flush()
    world.hub.remove_subscription(first)
    run_feeds(world)
    streams = [m["stream"] for m in received(connection)]
    assert streams.count("risk_alerts") == 300
    assert streams.count("order_updates") < 1000


def test_feeds_of_one_connection_take_turns(world: World) -> None:
    first = setting_up(world)
    connection = first.connection
    second = world.subscribe(connection, "trade_updates")
    second.buffer, second.gated = [], True
    world.hub.feeds.start(first, orders(1, 400), StreamPosition("ep", 400))
    trades = [padded(trade("PF-1", n=n), n) for n in range(1, 401)]
    world.hub.feeds.start(second, trades, StreamPosition("ep", 400))
    run_feeds(world)
    streams = [m["stream"] for m in received(connection)]
    assert streams.count("order_updates") == streams.count("trade_updates") == 400
    halfway = streams[:400]
    assert "order_updates" in halfway and "trade_updates" in halfway


def test_a_closed_connection_forgets_its_feed(world: World) -> None:
    subscription = setting_up(world)
    connection = subscription.connection
    world.hub.feeds.start(subscription, orders(1, 1000), StreamPosition("ep", 1000))
    world.hub.close(connection, 1000, "bye")
    world.hub.remove_connection(connection)
    writes = len(transport(connection).writes)
    run_feeds(world)
    assert len(transport(connection).writes) == writes
    assert len(world.hub.feeds) == 0


def test_a_failure_in_a_later_chunk_closes_with_1011(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscription = setting_up(world)
    world.hub.feeds.start(subscription, orders(1, 1000), StreamPosition("ep", 1000))

    def broken(subscription: Subscription, message: DataMessage) -> None:
        raise RuntimeError("a bug while delivering")

    monkeypatch.setattr(world.hub, "deliver", broken)
    world.flush()
    assert [code for code, _ in transport(subscription.connection).closes] == [1011]
    assert len(world.hub.feeds) == 0


def test_a_rate_limited_feed_sends_its_buffer_through_the_limit(world: World) -> None:
    connection = world.connect()
    subscription = world.subscribe(connection, "market_data", rate_limit=1.0)
    subscription.buffer, subscription.gated = [], True
    for n in range(1, 6):
        world.hub.dispatch(sequenced(quote("AAPL", bid=float(n)), n))
    world.hub.feeds.start(subscription, [], throttled=True)
    run_feeds(world)
    assert subscription.buffer is None and subscription.gated, "gated by its rate limit only"
    assert [m["data"]["bid_price"] for m in received(connection)] == [1.0]
    world.release(1.0)
    world.flush()
    assert [m["data"]["bid_price"] for m in received(connection)] == [1.0, 5.0]


def test_an_unsubscribed_feed_waiting_for_a_page_is_forgotten(world: World) -> None:
    """Unsubscribed while its next page was being read: the page's arrival drops the feed
    and what the subscription buffered meanwhile."""
    broker = MemoryBroker()
    for n in range(1, 2501):
        broker.publish_now(build_data_message(order("PF-1", n)))
    subscription = setting_up(world)
    pending: list[Coroutine[Any, Any, None]] = []
    since = StreamPosition(broker.position("order_updates").epoch, 0)
    setup = run_to_value(recovery.prepare(broker, subscription, since, None, pending.append))
    assert setup.pages is not None and len(setup.messages) == recovery.REPLAY_PAGE
    world.hub.feeds.start(subscription, setup.messages, setup.position, pages=setup.pages)
    run_feeds(world)
    assert len(pending) == 1, "the feed asked for its next page"
    for n in range(2501, 2601):  # live meanwhile: buffered
        world.hub.dispatch(sequenced(order("PF-1", n), n))
    world.hub.remove_subscription(subscription)  # the client unsubscribes
    assert subscription.buffer is None, "the buffered messages are freed"
    run_to_completion(pending.pop())  # the page arrives
    run_feeds(world)
    assert len(world.hub.feeds) == 0
    assert max(data_seqs(subscription)) <= recovery.REPLAY_PAGE, "nothing after it left"
