"""Real messages validate against the generated JSON Schema's per-type components.

* one canonical message per type (tests/vectors/original_shapes.json: the original frontend's
  shapes, every required field in its original place) goes through ingest unchanged, and as
  subscribers receive it validates against `$defs/<Type>Message` and `AnyDataMessage`; without
  any one of its required fields, or with a value outside an enumeration, it does not;
* every message the market simulator produces in a 100-second run validates;
* every message the NautilusTrader feed produces from the recorded backtests validates
  (live, after a warm-up, and while the trader goes stale, down and back).
"""

from __future__ import annotations

import base64
import copy
import json
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from tidewire.protocol import schema
from tidewire.protocol.codec import WireFormat, encode
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE
from tidewire.protocol.reference import WIRE_REQUIRED
from tidewire.protocol.shapes import SHAPES
from tidewire.sources.market_model import MarketModel
from tidewire.sources.nautilus.entries import Entry, decode_entry
from tidewire.sources.nautilus.feed import NautilusFeed

TESTS = Path(__file__).resolve().parents[1]
VECTORS = TESTS / "vectors" / "original_shapes.json"
RECORDINGS = TESTS / "nautilus" / "data"
NAUTILUS_NOW = 1_795_705_100.0  # after the recordings' entry times (their Redis clock)

Raw = dict[str, Any]


@cache
def document() -> dict[str, Any]:
    return schema.json_schema()


@cache
def validator(component: str) -> jsonschema.Draft202012Validator:
    """A validator of one `$defs` component, with the whole document for its references."""
    doc = document()
    root = {key: value for key, value in doc.items() if key != "anyOf"}
    return jsonschema.Draft202012Validator(root | {"$ref": f"#/$defs/{component}"})


def errors(component: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
        for e in validator(component).iter_errors(instance)
    ]


def delivered(message: DataMessage, seq: int = 1) -> dict[str, Any]:
    """The message as a subscriber of a JSON connection receives it."""
    decoded: dict[str, Any] = msgspec.json.decode(
        encode(message.sequenced(seq, "e1"), WireFormat.JSON)
    )
    return decoded


def invalid_delivered(messages: Iterable[DataMessage]) -> tuple[Counter[str], dict[str, Any]]:
    """Per message type, how many messages validate; and the first failure of each type."""
    valid: Counter[str] = Counter()
    failures: dict[str, Any] = {}
    for seq, message in enumerate(messages, start=1):
        wire = delivered(message, seq)
        found = errors(schema.message_name(message.type), wire)
        if found:
            failures.setdefault(message.type, {"errors": found[:5], "message": wire})
        else:
            valid[message.type] += 1
    return valid, failures


# --------------------------------------------------------------------------- canonical vectors


def vectors() -> dict[str, Raw]:
    messages: dict[str, Raw] = json.loads(VECTORS.read_text(encoding="utf-8"))["messages"]
    return messages


def test_one_vector_per_message_type() -> None:
    assert list(vectors()) == list(PAYLOAD_OF_TYPE)


def _original_required_top(message_type: str) -> tuple[str, ...]:
    """The original shape's required top level: Tidewire's "one of" starts with its field."""
    shape = SHAPES[message_type]
    return shape.required + shape.any_of[:1]


@pytest.mark.parametrize("message_type", list(PAYLOAD_OF_TYPE))
def test_vector_has_every_required_field_in_its_original_place(message_type: str) -> None:
    raw = vectors()[message_type]
    assert raw["type"] == message_type
    assert isinstance(raw["timestamp"], str)
    for name in _original_required_top(message_type):
        assert name in raw, name
    payload = PAYLOAD_OF_TYPE[message_type]
    required = [f.encode_name for f in msgspec.inspect.type_info(payload).fields if f.required]  # type: ignore[attr-defined]
    assert set(required) <= set(raw["data"]), set(required) - set(raw["data"])
    # Nothing of the type's top level hides in `data`, nothing of `data` at the top level.
    assert not set(raw["data"]) & set(SHAPES[message_type].fields) - set(payload.__struct_fields__)


@pytest.mark.parametrize("message_type", list(PAYLOAD_OF_TYPE))
def test_vector_passes_ingest_unchanged_and_validates(message_type: str) -> None:
    raw = vectors()[message_type]
    wire = msgspec.json.decode(msgspec.json.encode(build_data_message(raw).sequenced(1, "e")))
    for name, value in raw.items():
        if name != "data":
            assert wire[name] == value, name
    for name, value in raw["data"].items():
        assert wire["data"][name] == value, name
    assert errors(schema.message_name(message_type), wire) == []
    assert errors("AnyDataMessage", wire) == []
    assert errors("DataMessage", wire) == []


def _required_paths(message_type: str) -> list[tuple[str, ...]]:
    payload = PAYLOAD_OF_TYPE[message_type]
    data = [f.encode_name for f in msgspec.inspect.type_info(payload).fields if f.required]  # type: ignore[attr-defined]
    return [
        *((name,) for name in WIRE_REQUIRED),
        *((name,) for name in SHAPES[message_type].required),
        *(("data", name) for name in data),
    ]


@pytest.mark.parametrize("message_type", list(PAYLOAD_OF_TYPE))
def test_without_a_required_field_a_message_does_not_validate(message_type: str) -> None:
    wire = delivered(build_data_message(vectors()[message_type]))
    name = schema.message_name(message_type)
    for path in _required_paths(message_type):
        broken = copy.deepcopy(wire)
        target = broken
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
        assert errors(name, broken) != [], path
    any_of = SHAPES[message_type].any_of
    if any_of:
        broken = {k: v for k, v in wire.items() if k not in any_of}
        assert errors(name, broken) != [], any_of


@pytest.mark.parametrize("message_type", list(PAYLOAD_OF_TYPE))
def test_an_enumerated_field_outside_its_values_does_not_validate(message_type: str) -> None:
    wire = delivered(build_data_message(vectors()[message_type]))
    name = schema.message_name(message_type)
    for field in SHAPES[message_type].enums:
        assert errors(name, {**wire, field: "no-such-value"}) != [], field
    assert errors(name, {**wire, "type": "event" if message_type != "event" else "alert"}) != []
    assert errors(name, {**wire, "stream": "nowhere"}) != []


# --------------------------------------------------------------------------- the simulator


def test_every_simulator_message_validates() -> None:
    """The 100-second run of tests/sources/test_simulator.py (2000 steps of 50 ms)."""
    model = MarketModel(11, clock=lambda: 1_700_000_000.0, quotes_per_second=100.0)
    raws = [raw for dt in [0.0] + [0.05] * 1999 for raw in model.step(dt)]
    valid, failures = invalid_delivered(
        build_data_message(raw, default_source="simulator") for raw in raws
    )
    assert failures == {}
    assert sum(valid.values()) == len(raws)
    assert {"market_data", "order_update", "trade_updates", "position_update"} <= set(valid)


# --------------------------------------------------------------------------- NautilusTrader


def recorded_entries(name: str) -> list[Entry]:
    """The stream entries of one recording (tests/nautilus/conftest.py, `load_recording`)."""
    document = json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))

    def field(value: Any) -> bytes:
        if isinstance(value, dict):
            return base64.b64decode(value["base64"])
        return str(value).encode()

    return [
        decode_entry(
            entry["stream"],
            entry["id"],
            {key.encode(): field(value) for key, value in entry["fields"].items()},
        )
        for entry in document["entries"]
    ]


def nautilus_raws(entries: list[Entry]) -> list[Raw]:
    """What the feed makes of a recording: read live; then the trader silent, stale and
    down, Redis lost and back; and the restatement after a warm-up on half the entries."""
    feed = NautilusFeed()
    raws = [raw for entry in entries for raw in feed.entry(entry, NAUTILUS_NOW)]
    raws += feed.tick(NAUTILUS_NOW + 30.0)
    raws += feed.tick(NAUTILUS_NOW + 120.0)
    raws += feed.unreachable("connection refused", NAUTILUS_NOW + 130.0)
    raws += feed.reachable(NAUTILUS_NOW + 140.0)
    warmed = NautilusFeed()
    for entry in entries[: len(entries) // 2]:
        warmed.entry(entry, NAUTILUS_NOW, warming=True)
    return raws + warmed.end_warmup(NAUTILUS_NOW)


@pytest.mark.parametrize(
    "name", ["backtest_json_per_topic", "backtest_msgpack_one_stream", "backtest_iso_custom_prefix"]
)
def test_every_nautilus_message_validates(name: str) -> None:
    raws = nautilus_raws(recorded_entries(name))
    valid, failures = invalid_delivered(
        build_data_message(raw, default_source="nautilus") for raw in raws
    )
    assert failures == {}
    assert sum(valid.values()) == len(raws)
    assert {"market_data", "order_update", "trade_updates", "engine_status"} <= set(valid)
