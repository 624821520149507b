"""The hub of core/hub.py without sockets or an event loop.

A `FakeScheduler` records what the hub schedules and runs it on demand; a `FakeTransport`
records writes, pings and closes. Frames written are parsed back (RFC 6455) and decoded.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import tidewire.core.hub as hub_module
from tidewire.brokers.memory import MemoryBroker
from tidewire.core.auth import ROLE_SUBSCRIBER, Principal
from tidewire.core.connection import Connection
from tidewire.core.hub import Hub
from tidewire.core.ratelimit import TokenBucket
from tidewire.core.subscription import Subscription
from tidewire.protocol.codec import ENCODE, WIRE_FORMATS, WireFormat
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, Pong, now_iso
from tidewire.protocol.streams import STREAMS

MAX_OUTBOX = 64 * 1024

# ------------------------------------------------------------------ fakes


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """Records call_soon / call_later callbacks; tests run them when they choose."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], object]] = []
        self.later: list[tuple[float, Callable[[], object]]] = []
        self.soon_calls = 0
        self.later_calls = 0

    def call_soon(self, callback: Callable[[], object]) -> FakeHandle:
        self.soon_calls += 1
        self.soon.append(callback)
        return FakeHandle()

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeHandle:
        self.later_calls += 1
        self.later.append((delay, callback))
        return FakeHandle()

    def run_soon(self) -> int:
        """One event-loop iteration: run what is queued now (not what it schedules)."""
        ready, self.soon = self.soon, []
        for callback in ready:
            callback()
        return len(ready)

    def run_later(self) -> int:
        ready, self.later = self.later, []
        for _, callback in ready:
            callback()
        return len(ready)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.pings = 0
        self.buffer_size = 0
        """What `write_buffer_size` reports: bytes the 'kernel' did not take."""

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def write_buffer_size(self) -> int:
        return self.buffer_size

    def ping(self) -> None:
        self.pings += 1

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


# ------------------------------------------------------------------ helpers


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked, unfragmented frame in one write."""
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        first, second = data[i], data[i + 1]
        assert first & 0x80, "FIN must be set"
        length = second & 0x7F
        i += 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        frames.append((first & 0x0F, data[i : i + length]))
        i += length
    assert i == len(data)
    return frames


def decode(opcode: int, payload: bytes) -> Any:
    assert opcode in (0x1, 0x2)
    return msgspec.msgpack.decode(payload) if opcode == 0x2 else json.loads(payload)


def received(transport: FakeTransport) -> list[dict[str, Any]]:
    """Every message written to `transport`, batch frames unpacked."""
    out: list[dict[str, Any]] = []
    for write in transport.writes:
        for opcode, payload in parse_frames(write):
            message = decode(opcode, payload)
            if message.get("type") == "batch":
                out.extend(message["messages"])
            else:
                out.append(message)
    return out


_ids = itertools.count(1)
_seqs: Counter[str] = Counter()


def sequenced(raw: dict[str, Any], seq: int | None = None, epoch: str = "ep") -> DataMessage:
    message = build_data_message(raw)
    if seq is None:
        _seqs[message.stream] += 1
        seq = _seqs[message.stream]
    return msgspec.structs.replace(message, seq=seq, epoch=epoch)


def quote(symbol: str, seq: int | None = None, priority: int = 2, **top: Any) -> DataMessage:
    raw = {"type": "market_data", "symbol": symbol, "data": {"bid": 1.0, "ask": 2.0}}
    return sequenced({**raw, "priority": priority, **top}, seq)


def alert(portfolio: str, severity: str = "high", seq: int | None = None) -> DataMessage:
    data = {"metric": "var", "current_value": 2.0, "threshold": 1.0, "timestamp": now_iso()}
    raw = {"type": "risk_alert", "portfolio_id": portfolio, "severity": severity, "data": data}
    return sequenced(raw, seq)


def event(severity: str = "high", seq: int | None = None) -> DataMessage:
    raw = {"type": "system_alert", "source": "operator", "severity": severity}
    return sequenced({**raw, "data": {"message": "maintenance at 18:00"}}, seq)


class World:
    """A hub with a fake scheduler and clock, and helpers to add connections."""

    def __init__(self, max_outbox_bytes: int = MAX_OUTBOX) -> None:
        self.clock = FakeClock(1000.0)
        self.scheduler = FakeScheduler()
        self.hub = Hub(self.scheduler, max_outbox_bytes, clock=self.clock)
        self._ids = itertools.count(1)

    def connect(self, fmt: WireFormat = WireFormat.JSON, batch_ms: int = 0) -> Connection:
        now = self.clock()
        connection = Connection(
            connection_id=f"c{next(self._ids)}",
            transport=FakeTransport(),
            wire_format=fmt,
            principal=Principal(user_id=None, roles=frozenset({ROLE_SUBSCRIBER})),
            inbound=TokenBucket(50.0, 200, now),
            now=now,
            connected_at=now_iso(),
            batch_ms=batch_ms,
        )
        self.hub.add_connection(connection)
        return connection

    def subscribe(
        self, connection: Connection, stream: str, sid: str = "", **filters: Any
    ) -> Subscription:
        spec = STREAMS[stream]
        subscription = Subscription(
            connection,
            sid or f"sub-{len(connection.subscriptions) + 1}",
            spec,
            validate_filters(filters, spec),
            now_iso(),
        )
        self.hub.add_subscription(subscription)
        return subscription

    def flush(self) -> None:
        self.scheduler.run_soon()


def transport(connection: Connection) -> FakeTransport:
    assert isinstance(connection.transport, FakeTransport)
    return connection.transport


HIGH_WATER = MAX_OUTBOX // 2


def backlog(connection: Connection, size: int) -> None:
    """The peer stopped reading: `size` bytes wait in the transport, which pauses writing
    above its high-water mark (as asyncio's pause_writing does in the data plane)."""
    transport(connection).buffer_size = size
    connection.write_paused = size > HIGH_WATER


def seqs(connection: Connection) -> list[tuple[str, int]]:
    return [(m["key"], m["seq"]) for m in received(transport(connection)) if "seq" in m]


@pytest.fixture
def world() -> World:
    return World()


# ------------------------------------------------------------------ index


def test_keyed_subscription_sees_only_its_keys_wildcard_sees_all(world: World) -> None:
    aapl = world.connect()
    both = world.connect()
    everything = world.connect()
    world.subscribe(aapl, "market_data", symbols=["AAPL"])
    world.subscribe(both, "market_data", symbols=["AAPL", "MSFT"])
    world.subscribe(everything, "market_data")
    for seq, symbol in enumerate(["AAPL", "MSFT", "GOOG", "AAPL", "TSLA"], start=1):
        world.hub.dispatch(quote(symbol, seq))
    world.flush()
    assert seqs(aapl) == [("AAPL", 1), ("AAPL", 4)]
    assert seqs(both) == [("AAPL", 1), ("MSFT", 2), ("AAPL", 4)]
    assert seqs(everything) == [("AAPL", 1), ("MSFT", 2), ("GOOG", 3), ("AAPL", 4), ("TSLA", 5)]


def test_subscription_to_another_stream_sees_nothing(world: World) -> None:
    risk = world.connect()
    world.subscribe(risk, "risk_alerts")
    world.subscribe(risk, "market_data", symbols=["MSFT"])
    world.hub.dispatch(quote("AAPL"))
    world.flush()
    assert transport(risk).writes == []
    assert world.scheduler.soon_calls == 0, "nothing queued, nothing scheduled"


def test_keyed_subscription_with_extra_filter_is_checked_per_message(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "risk_alerts", portfolio_ids=["PF-1"], severity="high")
    world.hub.dispatch(alert("PF-1", "low", seq=1))
    world.hub.dispatch(alert("PF-1", "critical", seq=2))
    world.hub.dispatch(alert("PF-2", "critical", seq=3))
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
    world.hub.dispatch(quote("AAPL", 1))
    world.hub.dispatch(quote("MSFT", 2))
    assert len(connection.outbox.pending) == 2
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
    world.hub.dispatch(quote("AAPL", 1))
    json_frames = [c.outbox.pending[0] for c in json_connections]
    msgpack_frames = [c.outbox.pending[0] for c in msgpack_connections]
    assert all(f is json_frames[0] for f in json_frames)
    assert all(f is msgpack_frames[0] for f in msgpack_frames)
    assert json_frames[0] != msgpack_frames[0]
    assert decimal_connection.outbox.pending[0] is not json_frames[0]
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

    real_build_frame = hub_module.build_frame

    def build_frame(payload: bytes, binary: bool) -> bytes:
        frames[binary] += 1
        return real_build_frame(payload, binary)

    monkeypatch.setattr(hub_module, "ENCODE", tuple(counting(f) for f in WIRE_FORMATS))
    monkeypatch.setattr(hub_module, "build_frame", build_frame)
    for fmt in [WireFormat.JSON] * 4 + [WireFormat.MSGPACK] * 3:
        world.subscribe(world.connect(fmt), "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    assert encodes == {WireFormat.JSON: 1, WireFormat.MSGPACK: 1}
    assert frames == {False: 1, True: 1}
    world.hub.dispatch(quote("AAPL", 2))
    assert encodes == {WireFormat.JSON: 2, WireFormat.MSGPACK: 2}


def test_message_nobody_wants_is_never_encoded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(obj: Any) -> bytes:
        raise AssertionError("encoded a message with no recipient")

    monkeypatch.setattr(hub_module, "ENCODE", tuple(fail for _ in WIRE_FORMATS))
    world.subscribe(world.connect(), "market_data", symbols=["MSFT"])
    world.subscribe(world.connect(), "market_data", venue="XNAS")
    world.hub.dispatch(quote("AAPL", 1, venue="BATS"))
    world.hub.dispatch(alert("PF-1"))


def test_frames_encoded_counter_counts_one_per_wire_format(world: World) -> None:
    for fmt in [WireFormat.JSON] * 3 + [WireFormat.MSGPACK] * 2:
        world.subscribe(world.connect(fmt), "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    world.hub.dispatch(quote("MSFT", 2))
    assert world.hub.counters.frames_encoded == 4


# ------------------------------------------------------------------ flush


def test_one_write_per_connection_per_flush(world: World) -> None:
    a, b = world.connect(), world.connect()
    world.subscribe(a, "market_data")
    world.subscribe(b, "market_data", symbols=["AAPL"])
    for seq in range(1, 11):
        world.hub.dispatch(quote("AAPL", seq))
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
    assert world.hub.counters.writes == 2
    assert world.hub.counters.flushes == 1
    assert world.hub.counters.bytes_written == sum(len(transport(c).writes[0]) for c in (a, b))
    assert a.last_outbound == world.clock.now


def test_flush_is_scheduled_once_per_iteration(world: World) -> None:
    connections = [world.connect() for _ in range(5)]
    for connection in connections:
        world.subscribe(connection, "market_data")
    for seq in range(1, 21):
        world.hub.dispatch(quote("AAPL", seq))
    world.hub.send(connections[0], Pong())
    assert world.scheduler.soon_calls == 1
    assert world.scheduler.later_calls == 0
    assert world.scheduler.run_soon() == 1
    assert world.scheduler.soon == [], "the flush schedules nothing by itself"
    # The next iteration schedules a fresh flush.
    world.hub.dispatch(quote("AAPL", 21))
    assert world.scheduler.soon_calls == 2
    world.flush()
    assert all(len(transport(c).writes) == 2 for c in connections)


def test_flush_with_nothing_dirty_writes_nothing(world: World) -> None:
    connection = world.connect()
    world.hub.flush()
    assert transport(connection).writes == []


@pytest.mark.parametrize("fmt", [WireFormat.JSON, WireFormat.MSGPACK], ids=lambda f: f.name)
def test_batched_connection_gets_one_batch_frame_per_batch_ms(
    world: World, fmt: WireFormat
) -> None:
    batched = world.connect(fmt, batch_ms=50)
    plain = world.connect(fmt)
    world.subscribe(batched, "market_data")
    world.subscribe(plain, "market_data")
    for seq in range(1, 6):
        world.hub.dispatch(quote("AAPL", seq))
    world.hub.send(batched, Pong(correlation_id="r1"))
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
    # The reply is urgent: it leads the batch.
    assert [m["type"] for m in batch["messages"]] == ["pong"] + ["market_data"] * 5
    assert [m["seq"] for m in batch["messages"][1:]] == [1, 2, 3, 4, 5]
    # The data inside the batch is the same message every other recipient gets.
    assert batch["messages"][1] == decode(*parse_frames(transport(plain).writes[0])[0])
    # Next batch window: a new call_later.
    world.hub.dispatch(quote("AAPL", 6))
    assert world.scheduler.later_calls == 2


def test_urgent_data_goes_first_within_a_flush(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    world.hub.dispatch(quote("AAPL", 2, priority=4))
    world.hub.dispatch(quote("AAPL", 3, priority=3))
    world.hub.dispatch(quote("AAPL", 4, priority=4))
    world.hub.dispatch(quote("AAPL", 5))
    world.flush()
    assert [s for _, s in seqs(connection)] == [2, 4, 1, 3, 5]


def test_urgent_data_does_not_overtake_earlier_flushes(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    world.flush()
    world.hub.dispatch(quote("AAPL", 2, priority=4))
    world.flush()
    assert [s for _, s in seqs(connection)] == [1, 2]


def test_reply_goes_ahead_of_data_pending_in_the_same_flush(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    world.flush()
    world.hub.dispatch(quote("AAPL", 2))
    world.hub.dispatch(quote("AAPL", 3))
    world.hub.send(connection, Pong(correlation_id="req-7"))
    world.flush()
    assert len(transport(connection).writes) == 2
    second = [decode(*f) for f in parse_frames(transport(connection).writes[1])]
    assert [m["type"] for m in second] == ["pong", "market_data", "market_data"]
    assert second[0]["correlation_id"] == "req-7"


def test_non_urgent_reply_keeps_its_place(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    world.hub.send(connection, Pong(), urgent=False)
    world.flush()
    assert [m["type"] for m in received(transport(connection))] == ["market_data", "pong"]


def test_messages_through_a_memory_broker_arrive_in_seq_order(world: World) -> None:
    broker = MemoryBroker()
    broker.set_consumer(world.hub.dispatch)
    connection = world.connect()
    world.subscribe(connection, "market_data", symbols=["AAPL"])
    for symbol in ["AAPL", "MSFT", "AAPL", "AAPL"]:
        broker.publish_now(
            build_data_message(
                {"type": "market_data", "symbol": symbol, "data": {"bid": 1, "ask": 2}}
            )
        )
    world.flush()
    messages = received(transport(connection))
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
    world.hub.dispatch(quote("AAPL", 1))
    world.flush()
    assert seqs(a) == [("AAPL", 1)], "still subscribed through the wildcard"
    world.hub.remove_subscription(wildcard)
    world.hub.remove_subscription(other)
    assert world.hub._index == {}
    assert world.hub.subscriber_count("market_data") == 0
    assert a.subscriptions == {} and b.subscriptions == {}
    world.hub.dispatch(quote("AAPL", 2))
    world.hub.dispatch(alert("PF-1"))
    world.flush()
    assert seqs(a) == [("AAPL", 1)]
    assert transport(b).writes == []


def test_removing_one_of_two_keyed_subscriptions_keeps_the_other(world: World) -> None:
    a, b = world.connect(), world.connect()
    first = world.subscribe(a, "market_data", symbols=["AAPL"])
    world.subscribe(b, "market_data", symbols=["AAPL"])
    world.hub.remove_subscription(first)
    world.hub.dispatch(quote("AAPL", 1))
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
    world.hub.dispatch(quote("AAPL", 1))
    world.hub.dispatch(alert("PF-1"))
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
    world.hub.dispatch(quote("AAPL", 1))
    world.hub.remove_connection(connection)
    world.flush()
    assert transport(connection).writes == []


# ------------------------------------------------------------------ slow consumers


def test_slow_consumer_is_closed_with_4008_and_gets_nothing_more(world: World) -> None:
    slow, fast = world.connect(), world.connect()
    for connection in (slow, fast):
        world.subscribe(connection, "market_data")
    backlog(slow, MAX_OUTBOX + 1)
    world.hub.dispatch(quote("AAPL", 1))
    world.flush()
    assert len(transport(slow).writes) == 1
    assert [code for code, _ in transport(slow).closes] == [CloseCode.SLOW_CONSUMER]
    assert slow.closed and slow.close_code == 4008
    assert world.hub.counters.slow_consumer_closes == 1
    for seq in range(2, 5):
        world.hub.dispatch(quote("AAPL", seq))
    world.hub.send(slow, Pong())
    world.flush()
    assert len(transport(slow).writes) == 1
    assert not slow.outbox
    assert len(transport(slow).closes) == 1
    assert [s for _, s in seqs(fast)] == [1, 2, 3, 4]
    assert not fast.closed


def test_write_buffer_at_the_limit_is_not_slow(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    backlog(connection, MAX_OUTBOX)
    world.hub.dispatch(quote("AAPL", 1))
    world.flush()
    assert transport(connection).closes == []
    assert world.hub.counters.slow_consumer_closes == 0


def test_buffer_size_is_only_checked_while_writing_is_paused(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    transport(connection).buffer_size = MAX_OUTBOX * 10
    assert not connection.write_paused
    world.hub.dispatch(quote("AAPL", 1))
    world.flush()
    assert transport(connection).closes == []
    connection.write_paused = True
    world.hub.dispatch(quote("AAPL", 2))
    world.flush()
    assert [code for code, _ in transport(connection).closes] == [4008]


def test_slow_batched_connection_is_closed_too(world: World) -> None:
    connection = world.connect(batch_ms=10)
    world.subscribe(connection, "market_data")
    backlog(connection, MAX_OUTBOX + 1)
    world.hub.dispatch(quote("AAPL", 1))
    world.scheduler.run_later()
    assert [code for code, _ in transport(connection).closes] == [4008]
    assert world.hub.counters.slow_consumer_closes == 1
    world.hub.dispatch(quote("AAPL", 2))
    assert world.scheduler.later == []
    assert len(transport(connection).writes) == 1


def test_close_flushes_pending_output_first(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    world.hub.close(connection, CloseCode.GOING_AWAY, "bye")
    assert seqs(connection) == [("AAPL", 1)]
    assert transport(connection).closes == [(1001, "bye")]
    world.hub.close(connection, CloseCode.NORMAL, "again")
    assert len(transport(connection).closes) == 1, "close is idempotent"
    world.flush()
    assert len(transport(connection).writes) == 1


def test_close_of_a_connection_whose_final_flush_overflows_closes_once(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.hub.dispatch(quote("AAPL", 1))
    backlog(connection, MAX_OUTBOX + 1)
    world.hub.close(connection, CloseCode.GOING_AWAY, "bye")
    assert len(transport(connection).closes) == 1
    assert connection.close_code == transport(connection).closes[0][0]


# ------------------------------------------------------------------ heartbeats


INTERVAL, TIMEOUT = 10.0, 30.0


@pytest.mark.parametrize(
    ("idle", "pinged", "closed"),
    [
        (0.0, False, False),
        (9.5, False, False),
        (10.0, True, False),
        (29.9, True, False),
        (30.0, False, True),
        (500.0, False, True),
    ],
)
def test_tick_pings_then_closes_on_inbound_silence(
    world: World, idle: float, pinged: bool, closed: bool
) -> None:
    connection = world.connect()
    now = connection.last_inbound + idle
    world.hub.tick(now, INTERVAL, TIMEOUT)
    assert transport(connection).pings == (1 if pinged else 0)
    assert connection.closed is closed
    if closed:
        assert [code for code, _ in transport(connection).closes] == [4010]
        assert world.hub.counters.heartbeat_timeouts == 1
    else:
        assert transport(connection).closes == []


def test_tick_skips_closed_connections(world: World) -> None:
    connection = world.connect()
    world.hub.close(connection, CloseCode.NORMAL, "done")
    world.hub.tick(connection.last_inbound + 1000, INTERVAL, TIMEOUT)
    assert transport(connection).closes == [(1000, "done")]
    assert transport(connection).pings == 0
    assert world.hub.counters.heartbeat_timeouts == 0


def test_outbound_silence_gets_heartbeats_counting_up(world: World) -> None:
    connection = world.connect()
    counters = []
    for _ in range(3):
        world.clock.now += INTERVAL
        connection.last_inbound = world.clock.now  # the client keeps talking
        world.hub.tick(world.clock.now, INTERVAL, TIMEOUT)
        world.flush()
        heartbeat = received(transport(connection))[-1]
        assert heartbeat["type"] == "heartbeat"
        assert heartbeat["server_timestamp"].endswith("Z")
        counters.append(heartbeat["counter"])
    assert counters == [1, 2, 3]
    assert transport(connection).closes == []


def test_no_heartbeat_while_data_flows_or_one_is_pending(world: World) -> None:
    connection = world.connect()
    world.subscribe(connection, "market_data")
    world.clock.now += 5
    world.hub.dispatch(quote("AAPL", 1))
    world.flush()
    connection.last_inbound = world.clock.now + 9
    world.hub.tick(world.clock.now + 9, INTERVAL, TIMEOUT)
    assert not connection.outbox, "written 9 s ago: no heartbeat yet"
    world.hub.tick(world.clock.now + 10, INTERVAL, TIMEOUT)
    world.hub.tick(world.clock.now + 11, INTERVAL, TIMEOUT)
    world.flush()
    types = [m["type"] for m in received(transport(connection))]
    assert types == ["market_data", "heartbeat"], "one heartbeat, not one per tick"


# ------------------------------------------------------------------ broadcast


def test_broadcast_reaches_each_connection_exactly_once(world: World) -> None:
    subscribed = world.connect()
    filtered_out = world.connect()
    other_stream = world.connect()
    unsubscribed = world.connect()
    world.subscribe(subscribed, "events", severity="medium")
    world.subscribe(filtered_out, "events", severity="critical")
    world.subscribe(other_stream, "market_data")
    message = event("high", seq=1)
    recipients = world.hub.broadcast(message)
    # The broker delivers the same message through the index as well.
    world.hub.dispatch(message)
    world.flush()
    assert recipients == 4
    for connection in (subscribed, filtered_out, other_stream, unsubscribed):
        got = [m for m in received(transport(connection)) if m.get("stream") == "events"]
        assert len(got) == 1, connection.connection_id
        assert got[0]["seq"] == 1
    frames = [transport(c).writes[0] for c in (filtered_out, other_stream, unsubscribed)]
    assert all(f is frames[0] for f in frames), "encoded once for every recipient"
