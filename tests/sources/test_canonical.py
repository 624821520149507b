"""Tidewire's own producers speak the canonical shapes: ingest has nothing to map or derive.

For many messages of every kind the simulator emits, and for every message the Nautilus
feed makes of the recorded NautilusTrader payloads (tests/nautilus/data), including its
liveness reports: the 0.1 mapping (`protocol.legacy.upgrade`) changes nothing, every
required field of the message's shape (top level and `data`) is already there, and
`build_data_message` keeps every field where and as the producer put it.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tidewire.protocol import legacy
from tidewire.protocol.ingest import build_data_message, build_data_messages
from tidewire.protocol.shapes import SHAPES, TOP_LEVEL_FIELDS
from tidewire.sources.market_model import MarketModel
from tidewire.sources.nautilus.entries import HEARTBEAT_TOPIC, Entry, decode_entry, entry_millis
from tidewire.sources.nautilus.feed import FeedOptions, NautilusFeed

# Recorded from a real NautilusTrader 1.221 backtest (see tests/nautilus/conftest.py, whose
# fixture reads them for the tests there).
RECORDINGS = Path(__file__).resolve().parents[1] / "nautilus" / "data"

Raw = dict[str, Any]
CLOCK = 1_700_000_000.0
SIMULATOR_TYPES = {
    "market_data",
    "trade_updates",
    "order_update",
    "position_update",
    "performance_update",
    "risk_alert",
    "breach_alert",
    "strategy_performance",
    "execution_analytics",
    "risk_metrics",
    "system_health",
    "engine_status",
    "event",
    "alert",
    "system_alert",
    "notification",
}
NAUTILUS_TYPES = {
    "market_data",
    "trade_updates",
    "order_update",
    "position_update",
    "performance_update",
    "risk_alert",
    "engine_status",
}


def top_of(raw: Raw) -> Raw:
    """The top-level fields of a producer's message that ingest reads as the shape's."""
    return {name: raw[name] for name in TOP_LEVEL_FIELDS if raw.get(name) is not None}


def required_data(message_type: str) -> set[str]:
    payload = SHAPES[message_type].payload
    return {field.name for field in msgspec.structs.fields(payload) if field.required}


def assert_canonical(raw: Raw, source: str) -> None:
    kind = raw["type"]
    shape = SHAPES[kind]
    top, data = top_of(raw), raw["data"]
    # Nothing for the 0.1 mapping to rename or move.
    upgraded_top, upgraded_data = dict(top), dict(data)  # upgrade changes keys only
    legacy.upgrade(kind, upgraded_top, upgraded_data)
    assert (upgraded_top, upgraded_data) == (top, data), raw
    # Every required field present before derivation.
    assert set(shape.required) <= set(top), (kind, set(shape.required) - set(top))
    assert not shape.any_of or set(shape.any_of) & set(top), raw
    missing = required_data(kind) - {name for name, value in data.items() if value is not None}
    assert not missing, (kind, missing)
    if kind == "market_data":
        assert top.get("data_type") in ("tick", "quote", "bar", "trade"), raw
    # Accepted as it is: one message, no field renamed, moved, added or changed.
    assert len(build_data_messages(raw, default_source=source)) == 1
    message = build_data_message(raw, default_source=source)
    assert message.data == data, (kind, set(message.data.items()) ^ set(data.items()))
    for name, value in top.items():
        assert getattr(message, name) == value, (kind, name)
    assert message.timestamp == raw["timestamp"] == data["timestamp"], raw


# --------------------------------------------------------------------------- simulator


def simulated(seed: int, seconds: float, dt: float = 0.1) -> list[Raw]:
    model = MarketModel(seed, clock=lambda: CLOCK, quotes_per_second=20.0, orders_per_second=3.0)
    steps = [0.0] + [dt] * int(seconds / dt)
    return [raw for step in steps for raw in model.step(step)]


@pytest.mark.parametrize("seed", [3, 11])
def test_the_simulator_speaks_canonical(seed: int) -> None:
    raws = simulated(seed, 300.0)
    counts = Counter(raw["type"] for raw in raws)
    assert set(counts) == SIMULATOR_TYPES, SIMULATOR_TYPES - set(counts)
    # Many of every kind where there are many: the rare ones (alerts) at least once.
    assert min(counts[kind] for kind in ("order_update", "trade_updates", "risk_metrics")) > 100
    for raw in raws:
        assert_canonical(raw, "simulator")


# --------------------------------------------------------------------------- nautilus


def recorded_entries(path: Path) -> Iterator[Entry]:
    for item in json.loads(path.read_text())["entries"]:
        fields = {
            key.encode(): base64.b64decode(value["base64"])
            if isinstance(value, dict)
            else str(value).encode()
            for key, value in item["fields"].items()
        }
        yield decode_entry(item["stream"], item["id"], fields)


def nautilus_raws(path: Path) -> Iterator[Raw]:
    """Every message the feed makes of a recording (read as it was written), then its
    liveness reports: periodic, Redis lost, Redis back, and a fresh trader's heartbeat."""
    feed = NautilusFeed(FeedOptions(status_every=1.0))
    now = 0.0
    for entry in recorded_entries(path):
        now = entry_millis(entry.entry_id) / 1000 + 0.01
        yield from feed.entry(entry, now)
    yield from feed.tick(now + 2.0)
    yield from feed.unreachable("redis://127.0.0.1:1: Connection refused", now + 3.0)
    yield from feed.reachable(now + 4.0)
    beat = Entry("trader-GW-9:stream", f"{int(now * 1000) + 5000}-0", HEARTBEAT_TOPIC, None)
    yield from feed.entry(beat, now + 5.1)


@pytest.mark.parametrize("path", sorted(RECORDINGS.glob("*.json")), ids=lambda p: p.stem)
def test_the_nautilus_mapping_speaks_canonical(path: Path) -> None:
    raws = list(nautilus_raws(path))
    kinds = {raw["type"] for raw in raws}
    assert kinds == NAUTILUS_TYPES, NAUTILUS_TYPES ^ kinds
    states = {raw["data"]["state"] for raw in raws if raw["type"] == "engine_status"}
    assert {"running", "stopped", "down"} <= states
    for raw in raws:
        assert_canonical(raw, "nautilus")
