"""Outbox of core/outbox.py: one write per flush, ordered lane first, conflation, batches."""

from __future__ import annotations

import json

import msgspec
import pytest

from fakes import decode, parse_frames
from tidewire.core.frames import build_frame
from tidewire.core.outbox import Outbox
from tidewire.protocol.codec import ENCODE, WireFormat


def frame(text: str) -> bytes:
    return build_frame(text.encode(), False)


def test_take_joins_everything_in_order_and_empties() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    assert not outbox
    items = [frame(json.dumps({"n": n})) for n in range(5)]
    for item in items:
        outbox.push(item)
    assert outbox
    assert outbox.pending_bytes == sum(len(item) for item in items)
    data = outbox.take()
    assert data == b"".join(items)
    assert [json.loads(p) for _, p in parse_frames(data)] == [{"n": n} for n in range(5)]
    assert not outbox
    assert outbox.pending_bytes == 0
    assert outbox.ordered == [] and outbox.market == [] and outbox.latest == {}


def test_take_of_a_single_frame_returns_the_shared_bytes() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    shared = frame('{"type":"x"}')
    outbox.push(shared)
    assert outbox.take() is shared


def test_pending_bytes_count_every_lane() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    outbox.push(b"a" * 10)
    outbox.push(b"b" * 7, ordered=False)
    outbox.push(b"c" * 3)
    outbox.push_latest(("market_data", "AAPL"), b"d" * 5)
    assert outbox.pending_bytes == 25
    assert len(outbox.take()) == 25
    assert outbox.pending_bytes == 0


def test_ordered_lane_goes_first_each_lane_in_arrival_order() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    outbox.push(b"m1", ordered=False)
    outbox.push(b"o1")
    outbox.push_latest(("market_data", "A"), b"l1")
    outbox.push(b"m2", ordered=False)
    outbox.push(b"o2", ordered=True)
    outbox.push(b"m3", ordered=False)
    assert outbox.ordered == [b"o1", b"o2"]
    assert outbox.market == [b"m1", b"m2", b"m3"]
    assert outbox.take() == b"o1o2m1m2m3l1"


def test_outbox_is_reusable_after_take() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    outbox.push(b"first")
    outbox.push(b"market", ordered=False)
    outbox.push_latest(("market_data", "A"), b"latest")
    outbox.take()
    outbox.push(b"second", ordered=False)
    assert outbox.take() == b"second"
    outbox.push_latest(("market_data", "A"), b"third")
    assert outbox.conflated == 0, "the key was taken: nothing was replaced"
    assert outbox.take() == b"third"


# ------------------------------------------------------------------ conflation


def test_push_latest_keeps_the_newest_item_per_key() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    aapl, msft = ("market_data", "AAPL"), ("market_data", "MSFT")
    outbox.push_latest(aapl, b"aapl-1")
    outbox.push_latest(msft, b"msft-22")
    outbox.push_latest(aapl, b"aapl-333")
    assert outbox.latest == {msft: b"msft-22", aapl: b"aapl-333"}
    assert outbox.conflated == 1
    # The replaced item's bytes are no longer counted: memory is bounded by the keys.
    assert outbox.pending_bytes == len(b"msft-22") + len(b"aapl-333")
    # In the order of the last update: aapl-333 came after msft-22.
    assert outbox.take() == b"msft-22aapl-333"
    assert outbox.latest == {}
    assert outbox.pending_bytes == 0


def test_memory_of_the_latest_lane_is_bounded_by_the_number_of_keys() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    keys = [("market_data", f"S{n}") for n in range(5)]
    for i in range(1000):
        outbox.push_latest(keys[i % 5], b"x" * (i % 7 + 1))
    assert len(outbox.latest) == 5
    assert outbox.conflated == 995
    assert outbox.pending_bytes == sum(len(item) for item in outbox.latest.values())


def test_conflation_keys_are_stream_and_snapshot_key() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    outbox.push_latest(("market_data", "AAPL\x1fquote"), b"q")
    outbox.push_latest(("market_data", "AAPL\x1fbar"), b"b")
    outbox.push_latest(("system_health", "AAPL"), b"h")
    assert outbox.conflated == 0
    assert len(outbox.latest) == 3
    assert outbox.take() == b"qbh"


@pytest.mark.parametrize(
    "fmt",
    [WireFormat.JSON, WireFormat.JSON_DECIMAL_STRINGS, WireFormat.MSGPACK],
    ids=lambda f: f.name,
)
def test_batched_take_is_one_batch_frame(fmt: WireFormat) -> None:
    outbox = Outbox(fmt, batched=True)
    messages = [{"type": "market_data", "seq": n} for n in range(1, 4)]
    for message in messages[:2]:
        outbox.push(ENCODE[fmt](message), ordered=False)
    outbox.push(ENCODE[fmt]({"type": "pong"}))
    outbox.push_latest(("market_data", "AAPL"), ENCODE[fmt](messages[2]))
    data = outbox.take()
    frames = parse_frames(data)
    assert len(frames) == 1
    opcode, payload = frames[0]
    assert opcode == (0x2 if fmt.binary else 0x1)
    assert decode(opcode, payload) == {"type": "batch", "messages": [{"type": "pong"}, *messages]}
    assert not outbox
    assert outbox.latest == {}


def test_batched_msgpack_payload_is_msgpack_not_json() -> None:
    outbox = Outbox(WireFormat.MSGPACK, batched=True)
    outbox.push(msgspec.msgpack.encode({"type": "market_data", "data": {"bid": 1.5}}))
    ((opcode, payload),) = parse_frames(outbox.take())
    assert opcode == 0x2
    with pytest.raises(ValueError):
        json.loads(payload)
    batch = msgspec.msgpack.decode(payload)
    assert batch["type"] == "batch"
    assert batch["messages"] == [{"type": "market_data", "data": {"bid": 1.5}}]


def test_batched_pending_bytes_count_payloads() -> None:
    outbox = Outbox(WireFormat.JSON, batched=True)
    outbox.push(b'{"a":1}', ordered=False)
    outbox.push(b'{"b":2}')
    outbox.push_latest(("market_data", "AAPL"), b'{"c":3}')
    outbox.push_latest(("market_data", "AAPL"), b'{"c":44}')
    assert outbox.pending_bytes == 22
    outbox.take()
    assert outbox.pending_bytes == 0
    assert not outbox
