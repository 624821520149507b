"""Identity limits of core/quotas.py: the ledger the hub keeps and the publish budgets."""

from __future__ import annotations

from fakes import World, connection, subscription
from tidewire.core.auth import Principal
from tidewire.core.quotas import MAX_IDLE_BUCKETS, PublishRates


def alice() -> Principal:
    return Principal(user_id="alice", roles=frozenset({"subscriber"}), authenticated=True)


def test_the_hub_counts_connections_per_user_and_address_exactly() -> None:
    world = World()
    ledger = world.hub.ledger
    first = connection(principal=alice())
    first.address = "10.0.0.1"
    second = connection()
    second.address = "10.0.0.1"
    world.hub.add_connection(first)
    world.hub.add_connection(second)
    assert ledger.user_count("alice") == 1 and ledger.address_count("10.0.0.1") == 2
    world.hub.identify(second, alice())  # authenticated later, with `auth`
    assert ledger.connections_of("alice") == [first, second]
    world.hub.remove_connection(first)
    world.hub.remove_connection(first)  # idempotent
    assert ledger.user_count("alice") == 1 and ledger.address_count("10.0.0.1") == 1
    world.hub.remove_connection(second)
    assert ledger.by_user == {} and ledger.by_address == {}


def test_the_hub_counts_subscriptions_per_user_across_connections() -> None:
    world = World()
    ledger = world.hub.ledger
    one, two = connection(principal=alice()), connection(principal=alice())
    for c in (one, two):
        world.hub.add_connection(c)
    first = subscription(one, "market_data")
    world.hub.add_subscription(first)
    world.hub.add_subscription(subscription(two, "market_data"))
    assert ledger.subscription_count("alice") == 2
    world.hub.remove_subscription(first)
    world.hub.remove_subscription(first)  # counted once
    assert ledger.subscription_count("alice") == 1
    world.hub.remove_connection(two)
    assert ledger.subscriptions_by_user == {}


def test_publish_budget_refuses_past_the_burst_and_says_when_to_retry() -> None:
    rates = PublishRates(rate=10.0, burst=20)
    assert rates.take("p", 20, now=0.0) == 0.0
    wait = rates.take("p", 5, now=0.0)
    assert wait == 0.5  # five messages at ten a second
    assert rates.take("other", 1, now=0.0) == 0.0  # budgets are per publisher
    assert rates.take("p", 5, now=0.5) == 0.0
    assert rates.take("p", 21, now=100.0) == float("inf")  # never fits


def test_publish_budgets_stay_bounded_in_memory() -> None:
    rates = PublishRates(rate=1.0, burst=1)
    for n in range(MAX_IDLE_BUCKETS + 50):
        rates.take(f"p{n}", 1, now=0.0)
    assert len(rates._buckets) <= MAX_IDLE_BUCKETS
