"""Outbox of core/outbox.py: one write per flush, urgent first, batch frames."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from tidewire.core.frames import build_frame
from tidewire.core.outbox import Outbox
from tidewire.protocol.codec import ENCODE, WireFormat


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of every unmasked, unfragmented frame in `data`."""
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        first, second = data[i], data[i + 1]
        assert first & 0x80, "FIN must be set"
        assert not second & 0x80, "server frames are never masked"
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
    assert outbox.pending == [] and outbox.urgent == []


def test_take_of_a_single_frame_returns_the_shared_bytes() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    shared = frame('{"type":"x"}')
    outbox.push(shared)
    assert outbox.take() is shared


def test_pending_bytes_count_urgent_and_normal_items() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    outbox.push(b"a" * 10)
    outbox.push(b"b" * 7, urgent=True)
    outbox.push(b"c" * 3)
    assert outbox.pending_bytes == 20
    assert len(outbox.take()) == 20
    assert outbox.pending_bytes == 0


def test_urgent_items_go_first_each_group_in_arrival_order() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    outbox.push(b"n1")
    outbox.push(b"u1", urgent=True)
    outbox.push(b"n2")
    outbox.push(b"u2", urgent=True)
    outbox.push(b"n3")
    assert outbox.take() == b"u1u2n1n2n3"


def test_outbox_is_reusable_after_take() -> None:
    outbox = Outbox(WireFormat.JSON, batched=False)
    outbox.push(b"first", urgent=True)
    outbox.take()
    outbox.push(b"second")
    assert outbox.take() == b"second"


def decode(opcode: int, payload: bytes) -> Any:
    return msgspec.msgpack.decode(payload) if opcode == 0x2 else json.loads(payload)


@pytest.mark.parametrize(
    "fmt",
    [WireFormat.JSON, WireFormat.JSON_DECIMAL_STRINGS, WireFormat.MSGPACK],
    ids=lambda f: f.name,
)
def test_batched_take_is_one_batch_frame(fmt: WireFormat) -> None:
    outbox = Outbox(fmt, batched=True)
    messages = [{"type": "market_data", "seq": n} for n in range(1, 4)]
    for message in messages:
        outbox.push(ENCODE[fmt](message))
    outbox.push(ENCODE[fmt]({"type": "pong"}), urgent=True)
    data = outbox.take()
    frames = parse_frames(data)
    assert len(frames) == 1
    opcode, payload = frames[0]
    assert opcode == (0x2 if fmt.binary else 0x1)
    assert decode(opcode, payload) == {"type": "batch", "messages": [{"type": "pong"}, *messages]}
    assert not outbox


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
    outbox.push(b'{"a":1}')
    outbox.push(b'{"b":2}', urgent=True)
    assert outbox.pending_bytes == 14
    outbox.take()
    assert outbox.pending_bytes == 0
    assert not outbox
