"""A Subscription on its own: iteration, positions, duplicates, gaps, the subscribe command."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tidewire.client.errors import ConnectionClosedError
from tidewire.client.resync import is_resync
from tidewire.client.subscription import Subscription
from tidewire.client.wire import normalize_filters, position_of
from tidewire.protocol.messages import Filters, StreamPosition

TIMEOUT = 2.0


class Owner:
    def __init__(self) -> None:
        self.unsubscribed: list[str] = []

    async def unsubscribe(self, subscription_id: str) -> None:
        self.unsubscribed.append(subscription_id)


def make(reliable: bool = True, queue_size: int = 100, **options: Any) -> Subscription:
    settings: dict[str, Any] = {
        "subscription_id": "s1",
        "stream": "trade_updates" if reliable else "market_data",
        "filters": {},
        "rate_limit": None,
        "snapshot": None,
        "queue_size": queue_size,
        "reliable": reliable,
    }
    settings.update(options)
    return Subscription(Owner(), **settings)  # type: ignore[arg-type]


def data(seq: int, key: str = "P1", epoch: str = "e1", **extra: Any) -> dict[str, Any]:
    return {"type": "x", "key": key, "seq": seq, "epoch": epoch, **extra}


def confirmed(seq: int, epoch: str = "e1", **extra: Any) -> dict[str, Any]:
    return {
        "type": "subscription_confirmed",
        "subscription_id": "s1",
        "position": {"epoch": epoch, "seq": seq},
        **extra,
    }


def resubscribe(sub: Subscription) -> dict[str, Any]:
    """A reconnection: the connection is lost and the subscribe is sent again."""
    sub.state.on_disconnected()
    return sub.state.command("m-1")


def drain(sub: Subscription) -> list[Any]:
    """Everything queued: (key, seq) of messages, the reason of resync markers."""
    out: list[Any] = []
    while sub._buffer:
        item = sub._buffer.pop()
        if isinstance(item, dict):
            out.append((item["key"], item["seq"]))
        else:
            out.append(item.marker["reason"])
    return out


async def test_iteration_yields_messages_in_order_and_waits_for_more() -> None:
    sub = make()
    sub.confirmed(confirmed(0))
    sub.deliver(data(1))
    waiter = asyncio.create_task(anext(sub))
    assert (await asyncio.wait_for(waiter, TIMEOUT))["seq"] == 1
    waiter = asyncio.create_task(anext(sub))
    sub.deliver(data(2))
    assert (await asyncio.wait_for(waiter, TIMEOUT))["seq"] == 2
    assert sub.messages_received == 2


async def test_finish_drains_then_stops() -> None:
    sub = make()
    sub.deliver(data(1))
    sub.finish(None)
    assert not sub.active
    assert [m["seq"] async for m in sub] == [1]


async def test_finish_with_an_error_raises_it_after_the_queue() -> None:
    sub = make()
    sub.deliver(data(1))
    sub.finish(ConnectionClosedError("gave up"))
    assert (await anext(sub))["seq"] == 1
    with pytest.raises(ConnectionClosedError, match="gave up"):
        await anext(sub)


async def test_reliable_overflow_yields_a_marker_at_the_gap_and_continues() -> None:
    sub = make(reliable=True, queue_size=2)
    sub.confirmed(confirmed(0))
    markers = [sub.deliver(data(seq)) for seq in (1, 2, 3, 4)]
    # The first loss of the run is reported (for the resync handlers), once.
    assert markers[:2] == [None, None] and markers[3] is None
    assert markers[2] is not None and markers[2]["reason"] == "overflow"
    assert sub.overflowed and sub.dropped == 2 and sub.pending == 2 and sub.resyncs == 1
    assert (await anext(sub))["seq"] == 1
    sub.deliver(data(5))
    assert (await anext(sub))["seq"] == 2
    marker = await anext(sub)
    assert is_resync(marker)
    assert marker == {
        "type": "resync",
        "reason": "overflow",
        "subscription_id": "s1",
        "stream": "trade_updates",
        "position": {"epoch": "e1", "seq": 2},  # the last message queued before the gap
        "resume_position": None,
        "snapshot": False,
        "loss": True,
        "dropped": 2,
    }
    assert (await anext(sub))["seq"] == 5
    assert sub.position == StreamPosition("e1", 5)


def test_reliable_overflow_logs_one_warning_per_gap(caplog: pytest.LogCaptureFixture) -> None:
    sub = make(reliable=True, queue_size=1)
    with caplog.at_level("WARNING", logger="tidewire.client"):
        for seq in (1, 2, 3):
            sub.deliver(data(seq))
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1


async def test_latest_value_conflates_instead_of_overflowing() -> None:
    sub = make(reliable=False, queue_size=2)
    sub.confirmed(confirmed(0))
    for seq, key in enumerate("AABA", start=1):
        sub.deliver(data(seq, key=key))
    assert not sub.overflowed
    assert sub.conflated == 2
    sub.finish(None)
    assert [(m["key"], m["seq"]) async for m in sub] == [("B", 3), ("A", 4)]


def test_position_follows_confirmation_messages_and_heartbeats() -> None:
    sub = make(reliable=False)
    assert sub.position is None
    sub.confirmed(confirmed(10))
    assert sub.position == StreamPosition("e1", 10)
    sub.deliver(data(7))  # a snapshot message older than the position
    assert sub.position == StreamPosition("e1", 10)
    sub.deliver(data(11))
    assert sub.position == StreamPosition("e1", 11)
    sub.state.advance(StreamPosition("e1", 20))  # heartbeat_response.positions
    assert sub.position == StreamPosition("e1", 20)
    sub.state.advance(StreamPosition("e1", 15))
    assert sub.position == StreamPosition("e1", 20)
    sub.deliver(data(1, epoch="e2"))  # history was reset
    assert sub.position == StreamPosition("e2", 1)


def test_dropped_messages_do_not_advance_the_position() -> None:
    sub = make(queue_size=1)
    sub.confirmed(confirmed(0))
    sub.deliver(data(1))
    sub.deliver(data(2))
    assert sub.position == StreamPosition("e1", 1)


def test_recovered_resubscription_keeps_the_position_for_the_replay() -> None:
    sub = make()
    sub.confirmed(confirmed(5))
    command = resubscribe(sub)
    assert command["since"] == {"epoch": "e1", "seq": 5}
    assert not sub.state.confirmed
    assert sub.confirmed(confirmed(50, recovered=True)) is None
    assert sub.position == StreamPosition("e1", 5)
    assert sub.recovered is True and sub.resyncs == 0
    # The replay advances it message by message: lost half way, it resumes from there.
    sub.deliver(data(7))
    assert sub.position == StreamPosition("e1", 7)
    resubscribe(sub)
    sub.confirmed(confirmed(3, epoch="e9", recovered=False))
    assert sub.position == StreamPosition("e9", 3)
    assert sub.recovered is False


def test_the_confirmed_position_of_a_replay_is_taken_once_the_replay_is_in() -> None:
    sub = make()
    sub.confirmed(confirmed(5))
    resubscribe(sub)
    sub.confirmed(confirmed(50, recovered=True))
    sub.deliver(data(8))  # the replay; the rest did not match the filters
    sub.state.settle()  # a later reply: the replay is complete
    assert sub.position == StreamPosition("e1", 50)
    resubscribe(sub)
    sub.confirmed(confirmed(60, recovered=True))
    sub.deliver(data(61))  # a live message: the replay (nothing here) is complete
    sub.state.advance(StreamPosition("e1", 60))
    assert sub.position == StreamPosition("e1", 61)
    resubscribe(sub)
    sub.confirmed(confirmed(70, recovered=True))
    resubscribe(sub)  # lost before the replay was in: the confirmed position is not taken
    assert sub.state.command("m-1")["since"] == {"epoch": "e1", "seq": 61}


def test_duplicates_are_dropped_and_counted() -> None:
    sub = make()
    sub.confirmed(confirmed(0))
    for seq in (1, 2, 2, 1, 3):
        sub.deliver(data(seq))
    assert drain(sub) == [("P1", 1), ("P1", 2), ("P1", 3)]
    assert sub.duplicates == 2
    assert sub.messages_received == 3


def test_messages_before_the_confirmed_position_are_dropped_without_a_setup() -> None:
    # trade_updates has no snapshot: after the confirmation only later messages belong here
    # (older ones are another subscription's replay).
    sub = make()
    sub.confirmed(confirmed(10))
    sub.deliver(data(9))
    sub.deliver(data(10))
    sub.deliver(data(11))
    assert drain(sub) == [("P1", 11)]
    assert sub.duplicates == 2


def test_snapshot_messages_are_delivered_after_each_confirmation() -> None:
    sub = make(stream="position_updates")
    sub.confirmed(confirmed(20))
    assert sub.position is None  # taken once the snapshot is in
    for seq in (3, 9, 20, 9, 21):
        sub.deliver(data(seq))
    assert drain(sub) == [("P1", 3), ("P1", 9), ("P1", 20), ("P1", 21)]
    assert sub.duplicates == 1
    assert sub.position == StreamPosition("e1", 21)
    resubscribe(sub)
    # Same stream, history trimmed: not recovered, and the snapshot (older seqs) follows.
    marker = sub.confirmed(confirmed(40, recovered=False))
    assert marker is not None
    for seq in (3, 9, 30, 41):
        sub.deliver(data(seq))
    assert drain(sub) == ["not_recovered", ("P1", 3), ("P1", 9), ("P1", 30), ("P1", 41)]


def test_a_refused_snapshot_means_nothing_older_than_the_confirmation() -> None:
    sub = make(stream="position_updates", snapshot=False)
    sub.confirmed(confirmed(20))
    assert sub.position == StreamPosition("e1", 20)
    sub.deliver(data(5))  # another subscription's snapshot
    sub.deliver(data(21))
    assert drain(sub) == [("P1", 21)]


def test_a_new_epoch_starts_afresh() -> None:
    sub = make()
    sub.confirmed(confirmed(10))
    sub.deliver(data(11))
    sub.deliver(data(1, epoch="e2"))  # the stream's history was reset
    sub.deliver(data(2, epoch="e2"))
    assert drain(sub) == [("P1", 11), ("P1", 1), ("P1", 2)]
    assert sub.position == StreamPosition("e2", 2)


def test_latest_value_streams_judge_each_key_on_its_own() -> None:
    # Replies and critical messages overtake the market lane, so the gateway may send a
    # live message of one key between a confirmation and the snapshot of other keys.
    sub = make(reliable=False)
    sub.confirmed(confirmed(10))
    sub.deliver(data(11, key="AAPL"))  # live, queued before the confirmation
    sub.deliver(data(4, key="MSFT"))  # the snapshot
    sub.deliver(data(7, key="AAPL"))  # stale for AAPL
    sub.deliver(data(11, key="AAPL"))  # live again, after the snapshot
    sub.deliver(data(5, key="AAPL", data_type="bar"))  # a bar is its own unit
    assert drain(sub) == [("AAPL", 11), ("MSFT", 4), ("AAPL", 5)]
    assert sub.duplicates == 2


async def test_not_recovered_yields_a_marker_before_the_snapshot() -> None:
    sub = make(reliable=False)
    sub.confirmed(confirmed(10))
    sub.deliver(data(10, key="AAPL"))
    assert resubscribe(sub)["since"] == {"epoch": "e1", "seq": 10}
    info = sub.confirmed(confirmed(3, epoch="e2", recovered=False))
    assert info is not None
    sub.deliver(data(2, key="AAPL", epoch="e2"))  # the snapshot of the new epoch
    sub.deliver(data(4, key="AAPL", epoch="e2"))
    assert sub.resyncs == 1 and sub.recovered is False
    assert (await anext(sub))["seq"] == 10
    marker = await anext(sub)
    assert marker == info
    assert marker == {
        "type": "resync",
        "reason": "not_recovered",
        "subscription_id": "s1",
        "stream": "market_data",
        "position": {"epoch": "e1", "seq": 10},
        "resume_position": {"epoch": "e2", "seq": 3},
        "snapshot": True,
        "loss": False,  # a latest-value stream: the snapshot replaces the state
        "dropped": None,
    }
    assert [(await anext(sub))["seq"] for _ in range(2)] == [2, 4]


def test_not_recovered_on_a_reliable_stream_without_snapshot() -> None:
    sub = make()
    sub.confirmed(confirmed(10))
    resubscribe(sub)
    marker = sub.confirmed(confirmed(30, recovered=False))
    assert marker is not None
    assert (marker["snapshot"], marker["loss"]) == (False, True)
    assert sub.position == StreamPosition("e1", 30)
    sub.deliver(data(31))
    assert drain(sub) == ["not_recovered", ("P1", 31)]


def test_no_marker_without_since() -> None:
    sub = make(reliable=False)
    assert sub.confirmed(confirmed(3, recovered=False)) is None
    assert sub.resyncs == 0 and not sub._buffer


def test_a_position_given_at_creation_is_the_first_since() -> None:
    sub = make(since=StreamPosition("e0", 7))
    assert sub.position == StreamPosition("e0", 7)
    assert sub.state.command("m-1")["since"] == {"epoch": "e0", "seq": 7}
    marker = sub.confirmed(confirmed(2, epoch="e1", recovered=False))
    assert marker is not None and marker["position"] == {"epoch": "e0", "seq": 7}


def test_subscribe_command() -> None:
    sub = make(
        reliable=False,
        filters={"symbols": ["AAPL"]},
        rate_limit=5.0,
        snapshot=False,
    )
    first = sub.state.command("m-1")
    assert first["type"] == "subscribe"
    assert first["stream"] == "market_data"
    assert first["subscription_id"] == "s1"
    assert first["filters"] == {"symbols": ["AAPL"]}
    assert first["rate_limit"] == 5.0
    assert first["snapshot"] is False
    assert "since" not in first
    sub.confirmed(confirmed(42))
    second = sub.state.command("m-2")
    assert second["since"] == {"epoch": "e1", "seq": 42}
    assert second["message_id"] == "m-2", "each command carries the id it is given"


def test_minimal_subscribe_command() -> None:
    command = make().state.command("m-1")
    assert set(command) == {"type", "message_id", "stream", "subscription_id"}


async def test_unsubscribe_goes_through_the_owner() -> None:
    owner = Owner()
    sub = Subscription(
        owner,  # type: ignore[arg-type]
        subscription_id="x",
        stream="events",
        filters={},
        rate_limit=None,
        snapshot=None,
        queue_size=1,
        reliable=True,
    )
    await sub.unsubscribe()
    assert owner.unsubscribed == ["x"]
    sub.finish(None)
    await sub.unsubscribe()  # already ended: nothing to do
    assert owner.unsubscribed == ["x"]


def test_filters_are_copied_and_normalised() -> None:
    sub = make(filters={"symbols": ["A"]})
    sub.filters["symbols"].append("B")
    sub.filters["venue"] = "X"
    assert sub.filters == {"symbols": ["A"]}
    assert normalize_filters(None) == {}
    assert normalize_filters({"symbols": ["A"], "venue": None}) == {"symbols": ["A"]}
    assert normalize_filters(Filters(symbols=["A"], min_price=1.0)) == {
        "symbols": ["A"],
        "min_price": 1.0,
    }


@pytest.mark.parametrize(
    "value", [None, {}, {"epoch": "", "seq": 1}, {"epoch": "e", "seq": True}, {"epoch": 1}]
)
def test_malformed_positions_are_ignored(value: Any) -> None:
    assert position_of(value) is None


def test_repr_names_the_subscription() -> None:
    assert "s1" in repr(make())


def test_a_new_epoch_during_a_snapshot_drops_its_pending_position() -> None:
    sub = make(stream="position_updates")
    sub.confirmed(confirmed(40))
    sub.deliver(data(1, epoch="e2"))  # history reset before the snapshot was in
    sub.state.settle()
    assert sub.position == StreamPosition("e2", 1)
