"""core/expiry.py: the auth deadline and token expiry during a connection."""

from __future__ import annotations

from fakes import World, connection, transport
from tidewire.core import expiry
from tidewire.core.auth import Principal


def test_unauthenticated_connections_are_closed_at_their_deadline() -> None:
    world = World()
    waiting = connection(principal=Principal(user_id=None))
    waiting.auth_deadline = 1005.0
    world.hub.add_connection(waiting)
    assert expiry.sweep(world.hub, 1004.9, 0.0, 0.0) == 0
    assert expiry.sweep(world.hub, 1005.0, 0.0, 0.0) == 1
    assert transport(waiting).closes == [(4001, "authentication timeout")]


def test_a_connection_is_closed_when_its_token_expires_past_the_leeway() -> None:
    world = World()
    principal = Principal(user_id="alice", expires_at=2000.0, authenticated=True)
    holder = connection(principal=principal)
    world.hub.add_connection(holder)
    assert expiry.sweep(world.hub, 0.0, 2004.0, leeway=5.0) == 0
    assert expiry.sweep(world.hub, 0.0, 2005.0, leeway=5.0) == 1
    assert transport(holder).closes == [(4001, "token expired")]
    # A refreshed token moves the deadline: nothing more to close.
    world.hub.identify(holder, Principal(user_id="alice", expires_at=9000.0, authenticated=True))
    assert expiry.sweep(world.hub, 0.0, 2010.0, leeway=5.0) == 0


def test_a_connection_is_closed_when_its_token_is_revoked() -> None:
    world = World()
    listed = connection(principal=Principal(user_id="a", token_id="t-1", authenticated=True))
    other = connection(principal=Principal(user_id="b", token_id="t-2", authenticated=True))
    for c in (listed, other):
        world.hub.add_connection(c)
    assert expiry.sweep(world.hub, 0.0, 0.0, 0.0, lambda p: p.token_id == "t-1") == 1
    assert transport(listed).closes == [(4001, "token revoked")]
    assert transport(other).closes == []
