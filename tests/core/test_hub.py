"""The hub of core/hub.py without sockets or an event loop.

A `World` of tests/fakes.py is a hub with a fake scheduler, which records what the hub
schedules and runs it on demand, and fake transports, which record writes, pings and closes.
Frames written are parsed back (RFC 6455) and decoded. Heartbeats and the stall limit
(core/heartbeats.py) are in test_heartbeats.py, the write scheduling itself (core/flusher.py)
in test_flusher.py, rate limits in test_throttle.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import tidewire.core.hub as hub_module
from fakes import World, decode, parse_frames, received, seqs, transport
from messages import bar, engine_status, quote, risk_alert, sequenced, system_alert
from tidewire.brokers.base import Handlers
from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.codec import ENCODE, WIRE_FORMATS, WireFormat
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import HeartbeatResponse, Pong, StreamPosition, now_iso

MAX_OUTBOX = 64 * 1024
HIGH_WATER = MAX_OUTBOX // 2


@pytest.fixture
def world() -> World:
    world = World(MAX_OUTBOX)
    assert world.high_water == HIGH_WATER
    return world


# ------------------------------------------------------------------ index


def test_keyed_subscription_sees_only_its_keys_wildcard_sees_all(world: World) -> None:
    aapl = world.connect()
    both = world.connect()
    everything = world.connect()
    world.subscribe(aapl, "market_data", symbols=["AAPL"])
    world.subscribe(both, "market_data", symbols=["AAPL", "MSFT"])
    world.subscribe(everything, "market_data")
    for seq, symbol in enumerate(["AAPL", "MSFT", "GOOG", "AAPL", "TSLA"], start=1):
        world.hub.dispatch(sequenced(quote(symbol), seq))
    world.flush()
    assert seqs(aapl) == [("AAPL", 1), ("AAPL", 4)]
    assert seqs(both) == [("AAPL", 1), ("MSFT", 2), ("AAPL", 4)]
    assert seqs(everything) == [("AAPL", 1), ("MSFT", 2), ("GOOG", 3), ("AAPL", 4), ("TSLA", 5)]


def test_subscription_to_another_stream_sees_nothing(world: World) -> None:
    risk = world.connect()
    world.subscribe(risk, "risk_alerts")
    world.subscribe(risk, "market_data", symbols=["MSFT"])
    world.hub.dispatch(sequenced(quote("AAPL")))
    world.flush()
    assert transport(risk).writes == []
    assert world.scheduler.soon_calls == 0, "nothing queued, nothing scheduled"


def test_keyed_subscription_with_extra_filter_is_checked_per_message(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "risk_alerts", portfolio_ids=["PF-1"], severity="high")
    world.hub.dispatch(sequenced(risk_alert("PF-1", "low"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1", "critical"), 2))
    world.hub.dispatch(sequenced(risk_alert("PF-2", "critical"), 3))
    world.flush()
    assert seqs(connection) == [("PF-1", 2)]


def test_message_matching_several_subscriptions_of_one_connection_is_queued_once(
    world: World,
) -> None:
    connection = world.connect()
    other = world.connect()
    world.subscribe(connection, "market_data", symbols=["AAPL"])
    world.subscribe(connection, "market_data", symbols=["AAPL", "MSFT"])
    world.subscribe(connection, "market_data")
    world.subscribe(other, "market_data", symbols=["AAPL"])
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(quote("MSFT"), 2))
    # Latest-value data takes the outbox's market lane.
    assert len(connection.outbox.market) == 2
    assert connection.outbox.ordered == []
    world.flush()
    assert seqs(connection) == [("AAPL", 1), ("MSFT", 2)]
    assert seqs(other) == [("AAPL", 1)]
    assert world.hub.counters.deliveries == 3
    assert world.hub.counters.messages_dispatched == 2


# ------------------------------------------------------------------ encode once


def test_every_recipient_of_a_wire_format_gets_the_same_bytes_object(world: World) -> None:
    json_connections = [world.connect(WireFormat.JSON) for _ in range(3)]
    msgpack_connections = [world.connect(WireFormat.MSGPACK) for _ in range(2)]
    decimal_connection = world.connect(WireFormat.JSON_DECIMAL_STRINGS)
    for i, connection in enumerate([*json_connections, *msgpack_connections, decimal_connection]):
        # keyed and wildcard subscriptions alike
        if i % 2:
            world.subscribe(connection, "market_data")
        else:
            world.subscribe(connection, "market_data", symbols=["AAPL"])
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    json_frames = [c.outbox.market[0] for c in json_connections]
    msgpack_frames = [c.outbox.market[0] for c in msgpack_connections]
    assert all(f is json_frames[0] for f in json_frames)
    assert all(f is msgpack_frames[0] for f in msgpack_frames)
    assert json_frames[0] != msgpack_frames[0]
    assert decimal_connection.outbox.market[0] is not json_frames[0]
    world.flush()
    # One pending frame per connection: the write is that very object, not a copy.
    json_writes = [transport(c).writes[0] for c in json_connections]
    assert all(w is json_frames[0] for w in json_writes)
    assert all(transport(c).writes[0] is msgpack_frames[0] for c in msgpack_connections)
    ((opcode, payload),) = parse_frames(msgpack_frames[0])
    assert opcode == 0x2
    assert decode(opcode, payload)["key"] == "AAPL"


def test_message_is_encoded_once_per_wire_format_in_use(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    encodes: Counter[WireFormat] = Counter()
    frames: Counter[bool] = Counter()

    def counting(fmt: WireFormat) -> Callable[[Any], bytes]:
        def encode(obj: Any) -> bytes:
            encodes[fmt] += 1
            return ENCODE[fmt](obj)

        return encode

    real_build_frame = hub_module.build_frame  # type: ignore[attr-defined]

    def build_frame(payload: bytes, binary: bool) -> bytes:
        frames[binary] += 1
        return real_build_frame(payload, binary)

    monkeypatch.setattr(hub_module, "ENCODE", tuple(counting(f) for f in WIRE_FORMATS))
    monkeypatch.setattr(hub_module, "build_frame", build_frame)
    for fmt in [WireFormat.JSON] * 4 + [WireFormat.MSGPACK] * 3:
        world.subscribe(world.connect(fmt), "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    assert encodes == {WireFormat.JSON: 1, WireFormat.MSGPACK: 1}
    assert frames == {False: 1, True: 1}
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    assert encodes == {WireFormat.JSON: 2, WireFormat.MSGPACK: 2}


def test_message_nobody_wants_is_never_encoded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(obj: Any) -> bytes:
        raise AssertionError("encoded a message with no recipient")

    monkeypatch.setattr(hub_module, "ENCODE", tuple(fail for _ in WIRE_FORMATS))
    world.subscribe(world.connect(), "market_data", symbols=["MSFT"])
    world.subscribe(world.connect(), "market_data", venue="XNAS")
    world.hub.dispatch(sequenced(quote("AAPL", venue="BATS"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1")))
    counters = world.hub.counters
    assert (counters.messages_dispatched, counters.deliveries, counters.frames_encoded) == (2, 0, 0)
    world.flush()
    assert all(not transport(c).writes for c in world.hub.connections.values())


def test_frames_encoded_counter_counts_one_per_wire_format(world: World) -> None:
    for fmt in [WireFormat.JSON] * 3 + [WireFormat.MSGPACK] * 2:
        world.subscribe(world.connect(fmt), "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(quote("MSFT"), 2))
    assert world.hub.counters.frames_encoded == 4


# ------------------------------------------------------------------ flush


def test_one_write_per_connection_per_flush(world: World) -> None:
    a, b = world.connect(), world.connect()
    world.subscribe(a, "market_data")
    world.subscribe(b, "market_data", symbols=["AAPL"])
    for seq in range(1, 11):
        world.hub.dispatch(sequenced(quote("AAPL"), seq))
    assert transport(a).writes == [], "nothing is written before the flush"
    assert world.scheduler.soon_calls == 1
    world.flush()
    for connection in (a, b):
        assert len(transport(connection).writes) == 1
        frames = parse_frames(transport(connection).writes[0])
        assert len(frames) == 10
        assert [decode(*f)["seq"] for f in frames] == list(range(1, 11))
        assert not connection.outbox
        assert not connection.dirty
    counters = world.hub.flusher.counters
    assert counters.writes == 2
    assert counters.flushes == 1
    assert counters.bytes_written == sum(len(transport(c).writes[0]) for c in (a, b))
    assert a.last_outbound == world.clock.now


def test_flush_is_scheduled_once_per_iteration(world: World) -> None:
    connections = [world.connect() for _ in range(5)]
    for connection in connections:
        world.subscribe(connection, "market_data")
    for seq in range(1, 21):
        world.hub.dispatch(sequenced(quote("AAPL"), seq))
    world.hub.send(connections[0], Pong())
    assert world.scheduler.soon_calls == 1
    assert world.scheduler.later_calls == 0
    assert world.scheduler.run_soon() == 1
    assert world.scheduler.soon == [], "the flush schedules nothing by itself"
    # The next iteration schedules a fresh flush.
    world.hub.dispatch(sequenced(quote("AAPL"), 21))
    assert world.scheduler.soon_calls == 2
    world.flush()
    assert all(len(transport(c).writes) == 2 for c in connections)


def test_flush_with_nothing_dirty_writes_nothing(world: World) -> None:
    connection = world.connect()
    world.hub.flusher.flush()
    assert transport(connection).writes == []
    assert world.hub.flusher.counters.writes == 0


@pytest.mark.parametrize("fmt", [WireFormat.JSON, WireFormat.MSGPACK], ids=lambda f: f.name)
def test_batched_connection_gets_one_batch_frame_per_batch_ms(
    world: World, fmt: WireFormat
) -> None:
    batched = world.connect(fmt, batch_ms=50)
    plain = world.connect(fmt)
    world.subscribe(batched, "market_data")
    world.subscribe(plain, "market_data")
    for seq in range(1, 6):
        world.hub.dispatch(sequenced(quote("AAPL"), seq))
    assert world.scheduler.later_calls == 1
    assert world.scheduler.later[0][0] == pytest.approx(0.05)
    assert world.scheduler.soon_calls == 1, "only the unbatched connection uses call_soon"
    world.flush()
    assert transport(batched).writes == []
    assert len(transport(plain).writes) == 1
    world.scheduler.run_later()
    assert len(transport(batched).writes) == 1
    frames = parse_frames(transport(batched).writes[0])
    assert len(frames) == 1
    opcode, payload = frames[0]
    assert opcode == (0x2 if fmt.binary else 0x1)
    batch = decode(opcode, payload)
    assert batch["type"] == "batch"
    assert [m["seq"] for m in batch["messages"]] == [1, 2, 3, 4, 5]
    # The data inside the batch is the same message every other recipient gets.
    assert batch["messages"][0] == decode(*parse_frames(transport(plain).writes[0])[0])
    # Next batch window: a new call_later.
    world.hub.dispatch(sequenced(quote("AAPL"), 6))
    assert world.scheduler.later_calls == 2


def test_a_reply_flushes_a_batching_connection_without_waiting_for_the_timer(
    world: World,
) -> None:
    batched = world.connect(WireFormat.JSON, batch_ms=50)
    world.subscribe(batched, "market_data")
    for seq in range(1, 4):
        world.hub.dispatch(sequenced(quote("AAPL"), seq))
    world.hub.send(batched, Pong(correlation_id="r1"))
    world.flush()  # this loop iteration: the timer has not fired
    assert len(transport(batched).writes) == 1
    ((opcode, payload),) = parse_frames(transport(batched).writes[0])
    batch = decode(opcode, payload)
    # One batch frame; the reply takes the ordered lane, ahead of latest-value data.
    assert [m["type"] for m in batch["messages"]] == ["pong"] + ["market_data"] * 3
    world.scheduler.run_later()  # the timer finds nothing left to write
    assert len(transport(batched).writes) == 1


# ------------------------------------------------------------------ order within a flush


def test_critical_message_goes_ahead_of_latest_value_data(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.subscribe(connection, "risk_alerts")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(quote("MSFT"), 2))
    world.hub.dispatch(sequenced(risk_alert("PF-1", "critical", priority=4), 1))
    world.hub.dispatch(sequenced(quote("AAPL", priority=3), 3))
    world.flush()
    assert len(transport(connection).writes) == 1
    assert [(m["stream"], m["seq"]) for m in received(connection)] == [
        ("risk_alerts", 1),
        ("market_data", 1),
        ("market_data", 2),
        ("market_data", 3),
    ]


def test_critical_latest_value_message_keeps_its_place_in_its_stream(world: World) -> None:
    """A critical message of a latest-value stream never overtakes older ones of that stream."""
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.subscribe(connection, "engine_status")
    world.hub.dispatch(sequenced(engine_status("E1", "running"), 1))
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(engine_status("E1", "down", priority=4), 2))
    world.flush()
    assert [(m["stream"], m["seq"]) for m in received(connection)] == [
        ("engine_status", 1),
        ("market_data", 1),
        ("engine_status", 2),
    ]


def test_critical_message_does_not_overtake_earlier_reliable_messages(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.subscribe(connection, "risk_alerts")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1", "critical", priority=4), 2))
    world.hub.dispatch(sequenced(risk_alert("PF-1"), 3))
    world.flush()
    assert [(m["stream"], m["seq"]) for m in received(connection)] == [
        ("risk_alerts", 1),
        ("risk_alerts", 2),
        ("risk_alerts", 3),
        ("market_data", 1),
    ]


def test_critical_data_does_not_overtake_earlier_flushes(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    world.hub.dispatch(sequenced(quote("AAPL", priority=4), 2))
    world.flush()
    assert [s for _, s in seqs(connection)] == [1, 2]


def test_critical_message_keeps_seq_order_within_its_subscription(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data", symbols=["AAPL"])
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(quote("AAPL", priority=4), 2))
    world.flush()
    assert seqs(connection) == [("AAPL", 1), ("AAPL", 2)]


def test_reply_keeps_fifo_order_with_reliable_data_and_goes_ahead_of_latest_value_data(
    world: World,
) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.subscribe(connection, "risk_alerts")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1"), 7))
    world.hub.send(
        connection,
        HeartbeatResponse(
            correlation_id="hb",
            client_timestamp=1.0,
            server_timestamp=now_iso(),
            positions={"risk_alerts": StreamPosition("ep", 7)},
        ),
    )
    world.hub.dispatch(sequenced(risk_alert("PF-1"), 8))
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.hub.send(connection, Pong(correlation_id="req-9"))
    world.flush()
    assert len(transport(connection).writes) == 1
    messages = received(connection)
    assert [(m["type"], m.get("seq")) for m in messages] == [
        ("risk_alert", 7),
        ("heartbeat_response", None),
        ("risk_alert", 8),
        ("pong", None),
        ("market_data", 1),
        ("market_data", 2),
    ]
    # The position a reply reports is never ahead of what the client got before it.
    assert messages[1]["positions"] == {"risk_alerts": {"epoch": "ep", "seq": 7}}
    assert messages[3]["correlation_id"] == "req-9"


def test_reply_goes_ahead_of_latest_value_data_pending_in_the_same_flush(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.hub.dispatch(sequenced(quote("AAPL"), 3))
    world.hub.send(connection, Pong(correlation_id="req-7"))
    world.flush()
    assert len(transport(connection).writes) == 2
    second = [decode(*f) for f in parse_frames(transport(connection).writes[1])]
    assert [m["type"] for m in second] == ["pong", "market_data", "market_data"]
    assert second[0]["correlation_id"] == "req-7"
    assert [m["seq"] for m in second[1:]] == [2, 3]


def test_replies_keep_their_order(world: World) -> None:
    connection = world.connect()
    for n in range(3):
        world.hub.send(connection, Pong(correlation_id=f"r{n}"))
    world.flush()
    assert [m["correlation_id"] for m in received(connection)] == ["r0", "r1", "r2"]


def test_messages_through_a_memory_broker_arrive_in_seq_order(world: World) -> None:
    broker = MemoryBroker()
    broker.attach(Handlers(message=world.hub.dispatch))
    connection = world.connect()
    world.subscribe(connection, "market_data", symbols=["AAPL"])
    for symbol in ["AAPL", "MSFT", "AAPL", "AAPL"]:
        broker.publish_now(build_data_message(quote(symbol)))
    world.flush()
    messages = received(connection)
    assert [m["seq"] for m in messages] == [1, 3, 4]
    assert {m["epoch"] for m in messages} == {broker.position("market_data").epoch}


# ------------------------------------------------------------------ removal


def test_removed_subscription_gets_nothing_and_leaves_the_index(world: World) -> None:
    a, b = world.connect(), world.connect()
    keyed = world.subscribe(a, "market_data", symbols=["AAPL", "MSFT"])
    wildcard = world.subscribe(a, "market_data")
    other = world.subscribe(b, "risk_alerts", portfolio_ids=["PF-1"])
    assert world.hub.subscriber_count("market_data") == 2
    world.hub.remove_subscription(keyed)
    assert "sub-1" not in a.subscriptions
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    assert seqs(a) == [("AAPL", 1)], "still subscribed through the wildcard"
    world.hub.remove_subscription(wildcard)
    world.hub.remove_subscription(other)
    assert world.hub._index == {}
    assert world.hub.subscriber_count("market_data") == 0
    assert a.subscriptions == {} and b.subscriptions == {}
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.hub.dispatch(sequenced(risk_alert("PF-1")))
    world.flush()
    assert seqs(a) == [("AAPL", 1)]
    assert transport(b).writes == []


def test_removing_one_of_two_keyed_subscriptions_keeps_the_other(world: World) -> None:
    a, b = world.connect(), world.connect()
    first = world.subscribe(a, "market_data", symbols=["AAPL"])
    world.subscribe(b, "market_data", symbols=["AAPL"])
    world.hub.remove_subscription(first)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    assert transport(a).writes == []
    assert seqs(b) == [("AAPL", 1)]
    assert set(world.hub._index["market_data"].by_key) == {"AAPL"}


def test_removed_connection_leaves_no_subscription_behind(world: World) -> None:
    a, b = world.connect(), world.connect()
    world.subscribe(a, "market_data", symbols=["AAPL"])
    world.subscribe(a, "market_data")
    world.subscribe(a, "risk_alerts", severity="low")
    world.subscribe(b, "market_data", symbols=["MSFT"])
    world.hub.remove_connection(a)
    assert a.closed
    assert a.connection_id not in world.hub.connections
    assert list(world.hub.subscriptions()) == list(b.subscriptions.values())
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1")))
    world.flush()
    assert transport(a).writes == []
    world.hub.remove_connection(b)
    assert world.hub._index == {}
    assert world.hub.counters.connections_closed == 2
    world.hub.remove_connection(b)
    assert world.hub.counters.connections_closed == 2, "idempotent"


def test_connection_removed_while_dirty_is_not_written(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.remove_connection(connection)
    world.flush()
    assert transport(connection).writes == []


# ------------------------------------------------------------------ slow consumers

SYMBOLS = ["AAPL", "MSFT", "GOOG", "TSLA", "AMZN"]


def test_paused_connection_is_not_written_and_schedules_nothing(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.subscribe(connection, "risk_alerts")
    world.hub.pause(connection)
    assert connection.write_paused
    assert connection.paused_at == world.clock.now
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1"), 1))
    world.hub.send(connection, Pong())
    assert world.scheduler.soon == [] and world.scheduler.later == []
    world.flush()
    assert transport(connection).writes == []
    assert connection.outbox
    assert not connection.closed


def test_paused_connection_conflates_latest_value_messages_per_key(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.pause(connection)
    for seq in range(1, 1001):
        world.hub.dispatch(sequenced(quote(SYMBOLS[seq % 5]), seq))
    world.flush()
    assert transport(connection).writes == [], "nothing is written while paused"
    outbox = connection.outbox
    # Memory bounded by the number of keys, whatever the count of messages.
    assert len(outbox.latest) == 5
    assert outbox.ordered == [] and outbox.market == []
    assert outbox.pending_bytes == sum(len(item) for item in outbox.latest.values())
    assert world.hub.counters.conflated == 995
    assert outbox.conflated == 995
    assert not connection.closed
    world.hub.resume(connection)
    assert transport(connection).writes == [], "resume schedules the write, it does not do it"
    world.flush()
    assert len(transport(connection).writes) == 1
    # The newest quote per symbol, in seq order.
    assert seqs(connection) == [(SYMBOLS[seq % 5], seq) for seq in range(996, 1001)]
    assert not connection.outbox
    assert outbox.latest == {}


def test_conflation_keeps_older_values_already_queued_before_the_pause(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))  # queued, not yet written
    world.hub.pause(connection)
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.hub.dispatch(sequenced(quote("AAPL"), 3))
    world.hub.resume(connection)
    world.flush()
    # Seq order holds: the one queued before the pause, then the newest.
    assert seqs(connection) == [("AAPL", 1), ("AAPL", 3)]
    assert world.hub.counters.conflated == 1


def test_market_data_of_different_data_types_is_not_conflated_together(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.pause(connection)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(bar("AAPL"), 2))
    world.hub.dispatch(sequenced(quote("AAPL"), 3))
    world.hub.dispatch(sequenced(quote("MSFT"), 4))
    world.hub.dispatch(sequenced(bar("AAPL"), 5))
    assert len(connection.outbox.latest) == 3
    assert world.hub.counters.conflated == 2
    world.hub.resume(connection)
    world.flush()
    messages = received(connection)
    assert [(m["key"], m["data_type"], m["seq"]) for m in messages] == [
        ("AAPL", "quote", 3),
        ("MSFT", "quote", 4),
        ("AAPL", "bar", 5),
    ]


def test_paused_connection_queues_reliable_messages_in_order(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "risk_alerts")
    world.subscribe(connection, "market_data")
    world.hub.pause(connection)
    for seq in range(1, 21):
        world.hub.dispatch(sequenced(risk_alert("PF-1"), seq))
        world.hub.dispatch(sequenced(quote("AAPL"), seq))
    assert len(connection.outbox.ordered) == 20, "reliable messages are never conflated"
    assert world.hub.counters.conflated == 19
    world.hub.resume(connection)
    world.flush()
    assert len(transport(connection).writes) == 1
    messages = received(connection)
    assert [(m["stream"], m["seq"]) for m in messages] == [
        *[("risk_alerts", seq) for seq in range(1, 21)],
        ("market_data", 20),
    ]


@pytest.mark.parametrize("in_transport", [0, HIGH_WATER + 1])
def test_reliable_backlog_past_the_limit_closes_with_4008(world: World, in_transport: int) -> None:
    slow, fast = world.connect(), world.connect()
    for connection in (slow, fast):
        world.subscribe(connection, "risk_alerts")
    world.hub.pause(slow)
    transport(slow).buffer_size = in_transport
    seq = 0
    while not slow.closed:
        before = slow.outbox.pending_bytes
        seq += 1
        assert seq < 10_000, "never closed"
        world.hub.dispatch(sequenced(risk_alert("PF-1"), seq))
        if not slow.closed:
            assert before < slow.outbox.pending_bytes
            assert slow.outbox.pending_bytes + in_transport <= MAX_OUTBOX
    # Closed by the very message that took the backlog past the limit.
    assert before + in_transport <= MAX_OUTBOX < slow.outbox.pending_bytes + in_transport
    assert transport(slow).closes == [(CloseCode.SLOW_CONSUMER, "slow consumer")]
    assert slow.close_code == 4008
    assert transport(slow).writes == [], "a slow consumer's backlog is not written"
    assert world.hub.counters.slow_consumer_closes == 1
    world.hub.dispatch(sequenced(risk_alert("PF-1"), seq + 1))
    world.hub.send(slow, Pong())
    world.hub.resume(slow)
    world.flush()
    assert transport(slow).writes == []
    assert len(transport(slow).closes) == 1
    assert [s for _, s in seqs(fast)] == list(range(1, seq + 2))
    assert not fast.closed


def test_latest_value_backlog_stays_bounded_and_open(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.pause(connection)
    for seq in range(1, 5001):
        world.hub.dispatch(sequenced(quote(SYMBOLS[seq % 5]), seq))
    assert not connection.closed
    assert connection.outbox.pending_bytes < MAX_OUTBOX // 10


def test_slow_consumer_is_closed_with_4008_and_gets_nothing_more(world: World) -> None:
    slow, fast = world.connect(), world.connect()
    for connection in (slow, fast):
        world.subscribe(connection, "market_data")
    world.backlog(slow, MAX_OUTBOX + 1)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    assert [code for code, _ in transport(slow).closes] == [CloseCode.SLOW_CONSUMER]
    assert slow.closed and slow.close_code == 4008
    assert world.hub.counters.slow_consumer_closes == 1
    for seq in range(2, 5):
        world.hub.dispatch(sequenced(quote("AAPL"), seq))
    world.hub.send(slow, Pong())
    world.flush()
    assert transport(slow).writes == []
    assert len(transport(slow).closes) == 1
    assert [s for _, s in seqs(fast)] == [1, 2, 3, 4]
    assert not fast.closed


@pytest.mark.parametrize(("spare", "closed"), [(0, False), (-1, True)])
def test_backlog_at_the_limit_is_not_slow(world: World, spare: int, closed: bool) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    message = sequenced(quote("AAPL"), 1)
    size = len(hub_module.EncodedMessage(message).frame(WireFormat.JSON))
    # Transport buffer + outbox: exactly the limit, or one byte past it.
    world.backlog(connection, MAX_OUTBOX - size - spare)
    world.hub.dispatch(message)
    assert connection.outbox.pending_bytes == size
    assert connection.closed is closed
    assert world.hub.counters.slow_consumer_closes == int(closed)


def test_buffer_size_is_only_checked_while_writing_is_paused(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    transport(connection).buffer_size = MAX_OUTBOX * 10
    assert not connection.write_paused
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    assert transport(connection).closes == []
    world.hub.pause(connection)
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    assert [code for code, _ in transport(connection).closes] == [4008]


def test_write_that_pauses_the_transport_past_the_limit_closes_with_4008(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")

    def kernel_full(data: bytes) -> None:
        world.backlog(connection, MAX_OUTBOX + 1)

    transport(connection).on_write = kernel_full
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    assert len(transport(connection).writes) == 1
    assert [code for code, _ in transport(connection).closes] == [4008]
    assert world.hub.counters.slow_consumer_closes == 1


def test_write_that_pauses_the_transport_below_the_limit_keeps_it_open(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    transport(connection).on_write = lambda data: world.backlog(connection, HIGH_WATER + 1)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.flush()
    assert connection.write_paused and not connection.closed
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    world.hub.dispatch(sequenced(quote("AAPL"), 3))
    world.flush()
    assert len(transport(connection).writes) == 1
    transport(connection).on_write = None
    world.backlog(connection, 0)
    world.flush()
    assert seqs(connection) == [("AAPL", 1), ("AAPL", 3)]


def test_slow_batched_connection_is_closed_too(world: World) -> None:
    connection = world.connect(batch_ms=10)
    world.subscribe(connection, "market_data")
    world.subscribe(connection, "risk_alerts")
    world.backlog(connection, MAX_OUTBOX + 1)
    world.hub.dispatch(sequenced(risk_alert("PF-1"), 1))
    assert [code for code, _ in transport(connection).closes] == [4008]
    assert world.hub.counters.slow_consumer_closes == 1
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    assert world.scheduler.later == []
    assert transport(connection).writes == []


def test_paused_batched_connection_gets_one_batch_after_resume(world: World) -> None:
    connection = world.connect(batch_ms=10)
    world.subscribe(connection, "market_data")
    world.subscribe(connection, "risk_alerts")
    world.hub.pause(connection)
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.dispatch(sequenced(risk_alert("PF-1"), 1))
    world.hub.dispatch(sequenced(quote("AAPL"), 2))
    assert world.scheduler.later == []
    world.hub.resume(connection)
    assert [delay for delay, _ in world.scheduler.later] == [pytest.approx(0.01)]
    world.scheduler.run_later()
    ((opcode, payload),) = parse_frames(transport(connection).writes[0])
    batch = decode(opcode, payload)
    assert [(m["stream"], m["seq"]) for m in batch["messages"]] == [
        ("risk_alerts", 1),
        ("market_data", 2),
    ]


def test_close_flushes_pending_output_first(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.hub.close(connection, CloseCode.GOING_AWAY, "bye")
    assert seqs(connection) == [("AAPL", 1)]
    assert transport(connection).closes == [(1001, "bye")]
    world.hub.close(connection, CloseCode.NORMAL, "again")
    assert len(transport(connection).closes) == 1, "close is idempotent"
    world.flush()
    assert len(transport(connection).writes) == 1


def test_close_of_a_paused_connection_writes_nothing(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    world.backlog(connection, MAX_OUTBOX + 1)
    world.hub.close(connection, CloseCode.GOING_AWAY, "bye")
    assert transport(connection).writes == []
    assert transport(connection).closes == [(1001, "bye")]
    assert connection.close_code == 1001


def test_close_whose_final_write_overflows_closes_once_with_4008(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(sequenced(quote("AAPL"), 1))
    transport(connection).on_write = lambda data: world.backlog(connection, MAX_OUTBOX + 1)
    world.hub.close(connection, CloseCode.GOING_AWAY, "bye")
    assert len(transport(connection).writes) == 1
    assert [code for code, _ in transport(connection).closes] == [4008]
    assert connection.close_code == 4008


# ------------------------------------------------------------------ broadcast


def test_broadcast_reaches_each_connection_exactly_once(world: World) -> None:
    subscribed = world.connect()
    filtered_out = world.connect()
    other_stream = world.connect()
    unsubscribed = world.connect()
    world.subscribe(subscribed, "events", severity="medium")
    world.subscribe(filtered_out, "events", severity="critical")
    world.subscribe(other_stream, "market_data")
    message = sequenced(system_alert("high"), 1)
    recipients = world.hub.broadcast(message)
    # The broker delivers the same message through the index as well.
    world.hub.dispatch(message)
    world.flush()
    assert recipients == 4
    for connection in (subscribed, filtered_out, other_stream, unsubscribed):
        got = [m for m in received(connection) if m.get("stream") == "events"]
        assert len(got) == 1, connection.connection_id
        assert got[0]["seq"] == 1
    frames = [transport(c).writes[0] for c in (filtered_out, other_stream, unsubscribed)]
    assert all(f is frames[0] for f in frames), "encoded once for every recipient"
