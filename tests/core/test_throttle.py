"""Per-subscription rate limits: `Throttle` of core/throttle.py, alone and inside the hub.

A subscription with `rate_limit: r` on a latest-value stream gets each key at most r times
a second; in between, the newest message per key is held and released in seq order
(docs/protocol.md sections 3 and 5). No sockets, no event loop: the hub's timers go to a fake
scheduler that the tests run when they choose, with a fake clock.
"""

from __future__ import annotations

import pytest

from fakes import World, received, seqs
from messages import bar, quote, sequenced
from tidewire.core.auth import Principal
from tidewire.core.entitlements import message_check
from tidewire.core.throttle import Throttle
from tidewire.protocol.streams import STREAMS

# ------------------------------------------------------------------ Throttle alone


def test_first_offer_passes_then_items_are_held_until_next_release() -> None:
    throttle: Throttle[str] = Throttle(rate=2.0)
    assert throttle.interval == 0.5
    assert throttle.offer("AAPL", "a1", now=10.0) is True
    assert throttle.next_release == 10.5
    assert throttle.held == {}
    assert throttle.offer("AAPL", "a2", now=10.1) is False
    assert throttle.offer("MSFT", "m1", now=10.2) is False
    assert throttle.held == {"AAPL": "a2", "MSFT": "m1"}
    assert throttle.next_release == 10.5, "holding does not move the release"


def test_offer_after_the_interval_passes_when_nothing_is_held() -> None:
    throttle: Throttle[str] = Throttle(rate=4.0)
    assert throttle.offer("AAPL", "a1", now=0.0)
    assert not throttle.offer("AAPL", "a2", now=0.2)
    assert throttle.release(now=0.25) == ["a2"]
    assert throttle.next_release == 0.5
    assert not throttle.offer("AAPL", "a3", now=0.49)
    assert throttle.release(now=0.5) == ["a3"]
    assert throttle.offer("MSFT", "m1", now=1.0), "a quiet interval: straight through"
    assert throttle.next_release == 1.25


def test_other_keys_wait_for_the_release_too() -> None:
    # The rate is per subscription release: a new key does not jump the queue while items
    # are held, so the subscription's messages stay in seq order.
    throttle: Throttle[str] = Throttle(rate=1.0)
    assert throttle.offer("AAPL", "a1", now=0.0)
    assert not throttle.offer("AAPL", "a2", now=0.5)
    assert not throttle.offer("MSFT", "m1", now=1.5), "past next_release, but AAPL is held"


def test_newest_per_key_wins_and_counts_as_conflated() -> None:
    throttle: Throttle[str] = Throttle(rate=1.0)
    throttle.offer("AAPL", "a1", now=0.0)
    for n in range(2, 12):
        throttle.offer("AAPL", f"a{n}", now=0.1)
    throttle.offer("MSFT", "m1", now=0.2)
    throttle.offer("MSFT", "m2", now=0.3)
    assert throttle.held == {"AAPL": "a11", "MSFT": "m2"}
    assert throttle.conflated == 10
    assert throttle.release(now=1.0) == ["a11", "m2"]
    assert throttle.conflated == 10


def test_release_is_in_the_order_of_the_last_update() -> None:
    throttle: Throttle[int] = Throttle(rate=1.0)
    throttle.offer("A", 1, now=0.0)  # passes
    throttle.offer("A", 2, now=0.1)
    throttle.offer("B", 3, now=0.2)
    throttle.offer("A", 4, now=0.3)
    throttle.offer("C", 5, now=0.4)
    throttle.offer("B", 6, now=0.5)
    # Each key's newest item, oldest update first: the items' own order (seq order).
    assert throttle.release(now=1.0) == [4, 5, 6]
    assert throttle.held == {}
    assert throttle.next_release == 2.0
    assert throttle.release(now=2.0) == [], "nothing held, nothing released"


# ------------------------------------------------------------------ through the hub


@pytest.fixture
def world() -> World:
    """A hub whose timers fire as the fake clock passes them; nothing may be closed."""
    return World(1 << 20, allow_closes=False)


def test_rate_limited_subscription_gets_the_first_message_at_once(world: World) -> None:
    connection = world.connect()
    subscription = world.subscribe(connection, "market_data", rate_limit=2)
    assert subscription.gated and subscription.throttle is not None
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    assert world.scheduler.later == [], "nothing held: no release timer"
    world.flush()
    assert seqs(connection) == [("AAPL", 1)]


def test_later_messages_are_held_and_released_by_the_timer(world: World) -> None:
    connection = world.connect()
    subscription = world.subscribe(connection, "market_data", rate_limit=2)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.clock.now += 0.1
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.hub.dispatch(sequenced(quote("MSFT"), 3))
    world.hub.dispatch(sequenced(quote("AAPL"), 4))
    world.hub.dispatch(sequenced(quote("GOOG"), 5))
    world.flush()
    assert seqs(connection) == [("AAPL", 1)]
    # One timer for the whole hold, due at the next release (0.5 s after the first).
    assert world.scheduler.delays == [pytest.approx(0.4)]
    assert subscription.throttle is not None
    assert subscription.throttle.conflated == 1
    world.release(0.4)
    world.flush()
    # Newest per key, in seq order.
    assert seqs(connection) == [("AAPL", 1), ("MSFT", 3), ("AAPL", 4), ("GOOG", 5)]
    assert subscription.messages_delivered == 4


def test_each_key_gets_at_most_rate_messages_per_second(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data", rate_limit=4)
    sent_at: list[float] = []
    seq = 0
    for step in range(1000):  # 10 s in steps of 10 ms, a quote every 100 ms
        if step % 10 == 0:
            seq += 1
            world.hub.dispatch(sequenced(quote("AAPL"), seq))
        world.scheduler.advance(0.01)
        world.flush()
        sent_at.extend([world.clock.now] * (len(seqs(connection)) - len(sent_at)))
    got = [s for _, s in seqs(connection)]
    assert got == sorted(got), "seq order"
    assert len(got) == len(set(got)), "no duplicates"
    # One at once, then one release every 0.25 s: 4 a second (plus the first).
    assert 40 <= len(got) <= 41
    for first, fifth in zip(sent_at, sent_at[4:], strict=False):
        assert fifth - first >= 1.0 - 0.011, "at most 4 in any second"
    assert got[-1] >= 98, "each release carries the newest value"


def test_messages_of_one_subscription_stay_in_seq_order(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data", rate_limit=10)
    symbols = ["AAPL", "MSFT", "GOOG"]
    for seq in range(1, 61):
        world.hub.dispatch(sequenced(quote(symbols[seq % 3]), seq))
        if seq % 7 == 0:
            world.scheduler.advance(0.1)
            world.flush()
    world.scheduler.advance(1.0)
    world.flush()
    got = [s for _, s in seqs(connection)]
    assert got == sorted(got)
    assert len(got) < 60, "conflated"
    # Every key ends on its newest value.
    last = {key: s for key, s in seqs(connection)}
    assert last == {"AAPL": 60, "GOOG": 59, "MSFT": 58}


def test_quote_and_bar_of_one_symbol_are_throttled_apart(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data", rate_limit=1)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(bar("AAPL"), 2))
    world.hub.dispatch(sequenced(quote("AAPL"), 3))
    world.hub.dispatch(sequenced(quote("AAPL"), 4))
    world.release(1.0)
    world.flush()
    assert seqs(connection) == [("AAPL", 1), ("AAPL", 2), ("AAPL", 4)]


def test_removed_subscription_pending_release_delivers_nothing(world: World) -> None:
    connection = world.connect()
    subscription = world.subscribe(connection, "market_data", rate_limit=2)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.flush()
    assert len(world.scheduler.later) == 1
    world.hub.remove_subscription(subscription)
    world.release(0.5)
    world.flush()
    assert seqs(connection) == [("AAPL", 1)]
    assert not connection.outbox


def test_unthrottled_subscriptions_of_other_connections_are_not_delayed(world: World) -> None:
    throttled, plain = world.connect(), world.connect()
    world.subscribe(throttled, "market_data", rate_limit=1)
    world.subscribe(plain, "market_data")
    for seq in range(1, 4):
        world.hub.dispatch(sequenced(quote("AAPL"), seq))
    world.flush()
    assert seqs(plain) == [("AAPL", 1), ("AAPL", 2), ("AAPL", 3)]
    assert seqs(throttled) == [("AAPL", 1)]


def test_release_to_a_paused_connection_is_conflated_there(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data", rate_limit=2)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.hub.pause(connection)
    world.release(0.5)
    assert len(connection.outbox.latest) == 1
    world.hub.dispatch(sequenced(quote("AAPL"), 3))  # held again: the next release is 0.5 s away
    world.release(0.5)
    assert len(connection.outbox.latest) == 1
    assert world.hub.counters.conflated == 1
    world.hub.resume(connection)
    world.flush()
    assert seqs(connection) == [("AAPL", 1), ("AAPL", 3)]


def test_overlapping_throttled_and_plain_subscriptions_deliver_each_message_once(
    world: World,
) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data", rate_limit=2, symbols=["AAPL", "MSFT"])
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(quote("MSFT"), 2))
    world.hub.dispatch(sequenced(quote("AAPL"), 3))
    world.release(0.5)
    world.flush()
    assert seqs(connection) == [("AAPL", 1), ("MSFT", 2), ("AAPL", 3)]


def test_messages_held_under_a_wider_token_are_not_released_after_a_narrower_one(
    world: World,
) -> None:
    def alice(*portfolios: str) -> Principal:
        return Principal(
            user_id="alice",
            roles=frozenset({"subscriber"}),
            portfolios=frozenset(portfolios),
            authenticated=True,
        )

    reader = world.connect()
    spec = STREAMS["strategy_performance"]
    held = world.subscribe(reader, "strategy_performance", rate_limit=1.0)
    held.set_reader(message_check(alice("PF-A", "PF-B"), spec))
    update = {
        "type": "strategy_performance",
        "strategy_id": "S-1",
        "strategy_name": "EMA cross",
        "portfolio_id": "PF-B",
        "data": {
            "total_return": 0.01,
            "sharpe_ratio": 1.0,
            "max_drawdown": 0.02,
            "trade_count": 1,
            "win_rate": 1.0,
            "profit_factor": 2.0,
        },
    }
    first, second = sequenced(update, 1), sequenced(update, 2)
    world.hub.dispatch(first)
    world.hub.dispatch(second)  # held by the throttle
    world.flush()
    assert [m["seq"] for m in received(reader)] == [1]
    held.set_reader(message_check(alice("PF-A"), spec))  # a refresh narrowed the token
    world.release(1.0)
    assert [m["seq"] for m in received(reader)] == [1], "PF-B is no longer granted"
