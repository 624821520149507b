"""Entries of both layouts, payload sniffing (JSON, msgpack, text), ordering helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tidewire.sources.nautilus.entries import (
    HEARTBEAT_TOPIC,
    EntryError,
    decode_entry,
    entry_id_key,
    merge_by_id,
    sniff,
    trader_of_key,
)

QUOTE = {"type": "QuoteTick", "instrument_id": "AUD/USD.SIM", "bid_price": "0.73269"}


def test_sniff() -> None:
    assert sniff(msgspec.json.encode(QUOTE)) == "json"
    assert sniff(msgspec.msgpack.encode(QUOTE)) == "msgpack"
    big = {f"k{i}": i for i in range(20)}  # more than 15 keys: map16 (0xde)
    assert sniff(msgspec.msgpack.encode(big)) == "msgpack"
    assert sniff(b"2026-11-26T14:47:11.774934008+00:00") == "text"
    assert sniff(b"") == "text"


def test_layout_of_1_221() -> None:
    fields = {b"topic": b"data.quotes.SIM.AUD/USD", b"payload": msgspec.json.encode(QUOTE)}
    entry = decode_entry("k", "1-0", fields)
    assert entry.topic == "data.quotes.SIM.AUD/USD"
    assert entry.payload == QUOTE
    assert entry.kind == "QuoteTick"


def test_layout_of_1_231_sniffs_instead_of_trusting_encoding() -> None:
    # 1.231 adds `type` (always empty) and `encoding`, which says Json for msgpack payloads.
    fields = {
        b"topic": b"data.quotes.SIM.AUD/USD",
        b"type": b"",
        b"payload": msgspec.msgpack.encode(QUOTE),
        b"encoding": b"Json",
    }
    assert decode_entry("k", "1-0", fields).payload == QUOTE


def test_heartbeat_is_bare_text() -> None:
    fields = {b"topic": HEARTBEAT_TOPIC.encode(), b"payload": b"2026-11-26T14:47:11.77+00:00"}
    entry = decode_entry("k", "1-0", fields)
    assert entry.payload is None and entry.kind is None
    assert entry.text == "2026-11-26T14:47:11.77+00:00"


def test_str_fields_work_too() -> None:
    entry = decode_entry("k", "1-0", {"topic": "t", "payload": '{"type": "Bar"}'})
    assert entry.kind == "Bar"


@pytest.mark.parametrize(
    "fields",
    [
        {b"payload": b"{}"},
        {b"topic": b"t"},
        {b"topic": b"t", b"payload": b"{not json"},
        {b"topic": b"t", b"payload": b"\x81\xa1"},  # truncated msgpack
        {b"topic": b"t", b"payload": b"\xff\xfe"},  # neither
    ],
)
def test_bad_entries_raise(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(EntryError):
        decode_entry("k", "1-0", fields)


def test_every_recorded_entry_decodes(recording: Callable[[str], Any]) -> None:
    for name in ("backtest_json_per_topic", "backtest_msgpack_one_stream"):
        kinds = set()
        for stream, entry_id, fields in recording(name).entries:
            entry = decode_entry(stream, entry_id, fields)
            kinds.add(entry.kind or entry.topic)
        assert {"QuoteTick", "OrderFilled", "PositionChanged", HEARTBEAT_TOPIC} <= kinds


def test_both_encodings_decode_to_the_same_objects(recording: Callable[[str], Any]) -> None:
    def first_of_each_kind(name: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for stream, entry_id, fields in recording(name).entries:
            entry = decode_entry(stream, entry_id, fields)
            if entry.payload is not None and entry.kind not in found:
                payload = dict(entry.payload)
                payload.pop("event_id", None)  # random per run
                found[entry.payload["type"]] = payload
        return found

    as_json = first_of_each_kind("backtest_json_per_topic")
    as_msgpack = first_of_each_kind("backtest_msgpack_one_stream")
    assert as_json.keys() == as_msgpack.keys()
    for kind in ("QuoteTick", "OrderInitialized", "AccountState", "Bar", "TradeTick"):
        assert as_json[kind] == as_msgpack[kind], kind


def test_merge_by_id_orders_across_streams() -> None:
    merged = merge_by_id(
        [
            ("a", [("1-0", "a1"), ("3-0", "a3"), ("10-0", "a10")]),
            ("b", [("2-0", "b2"), ("3-1", "b3"), ("9-5", "b9")]),
        ]
    )
    assert [fields for _, _, fields in merged] == ["a1", "b2", "a3", "b3", "b9", "a10"]
    assert entry_id_key("1795704431817-12") == (1795704431817, 12)


def test_trader_of_key() -> None:
    assert trader_of_key("trader-GATEWAY-001:stream:data.quotes.SIM.AUD/USD") == "GATEWAY-001"
    assert trader_of_key("trader-GATEWAY-001:abc123:stream") == "GATEWAY-001"
    assert trader_of_key("BACKTESTER-001:gw") == "BACKTESTER-001"  # use_trader_prefix=False
    assert trader_of_key("gw") is None  # use_trader_id=False
    assert trader_of_key("gw:health:heartbeat") is None
