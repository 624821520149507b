"""The entitlement rules of core/entitlements.py: who reads, subscribes to and publishes what."""

from __future__ import annotations

from typing import Any

import pytest

from messages import order, quote, sequenced, system_alert, trade
from tidewire.core.auth import Principal
from tidewire.core.entitlements import (
    authorize_publish,
    authorize_subscribe,
    message_check,
    readable,
    still_covers,
)
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.messages import Filters
from tidewire.protocol.streams import STREAMS


def user(
    sub: str = "alice",
    portfolios: frozenset[str] | None = frozenset({"PF-A"}),
    roles: tuple[str, ...] = ("subscriber",),
    streams: frozenset[str] | None = None,
) -> Principal:
    return Principal(
        user_id=sub,
        roles=frozenset(roles),
        portfolios=portfolios,
        streams=streams,
        authenticated=True,
    )


OPEN = Principal(user_id=None, roles=frozenset({"subscriber"}), portfolios=None, open_access=True)


def subscribe(principal: Principal, stream: str, **filters: Any) -> Filters:
    spec = STREAMS[stream]
    return authorize_subscribe(principal, spec, validate_filters(filters or None, spec))


def forbidden(principal: Principal, stream: str, **filters: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        subscribe(principal, stream, **filters)
    assert caught.value.code is ErrorCode.FORBIDDEN
    return caught.value


# ------------------------------------------------------------------ reading


def test_a_message_of_a_portfolio_is_read_only_by_its_holders() -> None:
    message = sequenced(order("PF-B"), 1)
    assert not readable(user(), message)
    assert readable(user(portfolios=frozenset({"PF-A", "PF-B"})), message)
    assert readable(user(portfolios=None), message)  # ["*"]
    assert not readable(user(portfolios=frozenset()), message)
    assert readable(OPEN, message)


def test_the_portfolio_decides_on_streams_not_keyed_by_portfolio() -> None:
    alert = sequenced(system_alert("high", portfolio_id="PF-B"), 1)
    assert alert.stream == "events"
    assert not readable(user(), alert)
    assert readable(user(portfolios=frozenset({"PF-B"})), alert)


def test_a_message_addressed_to_a_user_is_read_by_that_user_and_admins() -> None:
    note = sequenced(system_alert("low", user_id="bob"), 1)
    assert not readable(user("alice", portfolios=None), note)
    assert readable(user("bob", portfolios=frozenset()), note)
    assert readable(user("ops", portfolios=frozenset(), roles=("admin",)), note)


def test_firm_wide_messages_are_read_by_every_user_within_its_streams() -> None:
    tick = sequenced(quote("AAPL"), 1)
    assert readable(user(portfolios=frozenset()), tick)
    assert not readable(user(streams=frozenset({"order_updates"})), tick)
    assert readable(user(streams=frozenset({"market_data"})), tick)


def test_only_streams_not_keyed_by_portfolio_check_each_message() -> None:
    alice = user()
    assert message_check(alice, STREAMS["position_updates"]) is None  # the index narrows
    # Trades and orders may name only a user: every message is checked.
    assert message_check(alice, STREAMS["order_updates"]) is alice
    assert message_check(alice, STREAMS["trade_updates"]) is alice
    assert message_check(alice, STREAMS["events"]) is alice
    assert message_check(alice, STREAMS["market_data"]) is alice
    assert message_check(OPEN, STREAMS["events"]) is None
    admin_all = user(portfolios=None, roles=("admin",))
    assert message_check(admin_all, STREAMS["events"]) is None


# ------------------------------------------------------------------ subscribing


def test_no_portfolio_filter_means_the_tokens_portfolios_never_all() -> None:
    filters = subscribe(user(portfolios=frozenset({"PF-B", "PF-A"})), "position_updates")
    assert filters.portfolio_ids == ["PF-A", "PF-B"]
    assert subscribe(user(portfolios=None), "position_updates").portfolio_ids is None
    assert subscribe(OPEN, "position_updates").portfolio_ids is None


def test_trades_and_orders_are_not_narrowed_but_checked() -> None:
    """A trade may name only its user: narrowing to portfolios would hide it from them."""
    alice = user(portfolios=frozenset({"PF-A"}))
    assert subscribe(alice, "trade_updates").portfolio_ids is None
    own = sequenced(trade(user="alice"), 1)
    other = sequenced(trade(user="bob"), 2)
    assert readable(alice, own) and not readable(alice, other)
    assert readable(user(roles=("admin",)), other)


def test_own_portfolios_are_kept_and_foreign_ones_are_forbidden() -> None:
    alice = user(portfolios=frozenset({"PF-A", "PF-B"}))
    assert subscribe(alice, "trade_updates", portfolio_ids=["PF-B"]).portfolio_ids == ["PF-B"]
    error = forbidden(alice, "trade_updates", portfolio_ids=["PF-A", "PF-X"])
    assert error.details == {"portfolio_ids": ["PF-X"]}
    forbidden(alice, "events", portfolio_ids=["PF-X"])  # on every stream with the filter


def test_a_token_without_portfolios_cannot_subscribe_to_portfolio_streams() -> None:
    nobody = user(portfolios=frozenset())
    forbidden(nobody, "position_updates")
    assert subscribe(nobody, "market_data") == Filters()


def test_streams_outside_the_claim_are_forbidden() -> None:
    quotes_only = user(streams=frozenset({"market_data"}))
    assert subscribe(quotes_only, "market_data") == Filters()
    assert forbidden(quotes_only, "order_updates").details == {"stream": "order_updates"}


def test_a_user_id_filter_must_name_the_token_user_unless_admin() -> None:
    assert subscribe(user("alice"), "events", user_id="alice").user_id == "alice"
    forbidden(user("alice"), "events", user_id="bob")
    admin = user("ops", roles=("admin",))
    assert subscribe(admin, "events", user_id="bob").user_id == "bob"


def test_subscribing_needs_the_subscriber_or_admin_role() -> None:
    forbidden(user(roles=("publisher",)), "market_data")
    assert subscribe(user(roles=("admin",)), "market_data") == Filters()
    forbidden(Principal(user_id=None), "market_data")  # unauthenticated


def test_a_refreshed_token_covers_what_it_still_grants() -> None:
    narrower = user(portfolios=frozenset({"PF-A"}))
    orders, events = STREAMS["position_updates"], STREAMS["events"]
    assert still_covers(narrower, orders, Filters(portfolio_ids=["PF-A"]))
    assert not still_covers(narrower, orders, Filters(portfolio_ids=["PF-A", "PF-B"]))
    # An unnarrowed subscription of a ["*"] token is covered only by another ["*"] token.
    assert not still_covers(narrower, orders, Filters())
    assert still_covers(user(portfolios=None), orders, Filters())
    # Other streams go on, checking messages against the new token.
    assert still_covers(narrower, events, Filters())
    assert not still_covers(narrower, events, Filters(portfolio_ids=["PF-B"]))
    quotes_only = user(streams=frozenset({"market_data"}))
    assert not still_covers(quotes_only, orders, Filters(portfolio_ids=["PF-A"]))


# ------------------------------------------------------------------ publishing


def test_publishing_needs_the_role_the_stream_and_the_portfolio() -> None:
    message = sequenced(order("PF-A"), 1)
    publisher = user(roles=("publisher",))
    authorize_publish(publisher, message)
    with pytest.raises(ProtocolError, match="publisher role"):
        authorize_publish(user(), message)
    with pytest.raises(ProtocolError, match="portfolio PF-B"):
        authorize_publish(publisher, sequenced(order("PF-B"), 1))
    with pytest.raises(ProtocolError, match="stream order_updates"):
        authorize_publish(user(roles=("publisher",), streams=frozenset({"market_data"})), message)
    authorize_publish(user(roles=("admin",), portfolios=None), sequenced(order("PF-Z"), 1))
    with pytest.raises(ProtocolError, match="anonymous_roles"):
        authorize_publish(OPEN, message)


def test_firm_wide_messages_need_a_firm_wide_publisher() -> None:
    restricted = user(roles=("publisher",))
    alerts = (system_alert("high", source="risk"), system_alert("low", source="oms", user_id="b"))
    for firm_wide in (quote("AAPL"), *alerts):
        with pytest.raises(ProtocolError, match="names no portfolio"):
            authorize_publish(restricted, sequenced(firm_wide, 1))
        authorize_publish(user(roles=("publisher",), portfolios=None), sequenced(firm_wide, 1))
    with pytest.raises(ProtocolError, match="reserved"):
        authorize_publish(
            user(roles=("publisher",), portfolios=None),
            sequenced(system_alert("high", source="operator"), 1),
        )
