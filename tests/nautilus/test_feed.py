"""The feed: mapping + liveness + warm-up, on recorded entries and without Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tidewire.sources.nautilus.entries import HEARTBEAT_TOPIC, Entry, decode_entry, entry_millis
from tidewire.sources.nautilus.feed import FeedOptions, NautilusFeed

Raw = dict[str, Any]
NOW = 1_795_705_100.0  # after the recordings' entry times (their Redis clock)


def entries_of(recording: Any) -> list[Entry]:
    return [decode_entry(s, i, f) for s, i, f in recording.entries]


def heartbeat(stream: str, millis: int) -> Entry:
    return Entry(stream, f"{millis}-0", HEARTBEAT_TOPIC, None, "2026-11-26T14:47:11Z")


@pytest.mark.parametrize(
    "name", ["backtest_json_per_topic", "backtest_msgpack_one_stream", "backtest_iso_custom_prefix"]
)
@pytest.mark.parametrize("split", [0.25, 0.5, 0.9])
def test_resuming_after_a_warm_up_continues_exactly(
    recording: Callable[[str], Any], name: str, split: float
) -> None:
    """Warm up on the first part, then read on: the same messages as one unbroken run."""
    entries = entries_of(recording(name))
    cut = int(len(entries) * split)

    unbroken = NautilusFeed()
    before = [raw for entry in entries[:cut] for raw in unbroken.entry(entry, NOW)]
    after = [raw for entry in entries[cut:] for raw in unbroken.entry(entry, NOW)]

    resumed = NautilusFeed()
    assert [resumed.entry(entry, NOW, warming=True) for entry in entries[:cut]] == [[]] * cut
    restated = resumed.end_warmup(NOW)
    assert [raw for entry in entries[cut:] for raw in resumed.entry(entry, NOW)] == after

    # The restatement is the newest message of each latest-value key and of each position.
    def key(raw: Raw) -> tuple[Any, ...]:
        data = raw["data"]
        return (
            raw["type"],
            raw.get("symbol"),
            raw.get("data_type"),
            raw.get("engine_id"),
            raw.get("portfolio_id"),
            raw.get("strategy_id"),
            data.get("position_id"),
        )

    restatable = {"market_data", "engine_status", "performance_update", "position_update"}
    newest = {key(raw): raw for raw in before if raw["type"] in restatable}
    assert sorted(map(key, restated)) == sorted(newest)
    for raw in restated:
        assert raw == newest[key(raw)]


def test_heartbeats_drive_the_trader_status() -> None:
    feed = NautilusFeed(FeedOptions(heartbeat_interval=1.0))
    stream = "trader-GW-001:stream:health:heartbeat"
    out = feed.entry(heartbeat(stream, 1_000_000), now=1000.2)
    assert [(r["engine_id"], r["data"]["state"]) for r in out] == [("GW-001", "running")]
    assert out[0]["type"] == "engine_status" and out[0]["severity"] == "low"
    assert out[0]["data"]["last_heartbeat"] == "1970-01-01T00:16:40.000000Z"
    # Stamped with the gateway's time of the report, in the envelope and in `data`.
    assert out[0]["timestamp"] == out[0]["data"]["timestamp"] == "1970-01-01T00:16:40.200000Z"
    assert out[0]["data"]["uptime"] == 0.2
    assert feed.tick(1001.5) == []
    assert [r["data"]["state"] for r in feed.tick(1002.5)] == ["stale"]
    assert [r["data"]["state"] for r in feed.tick(1005.5)] == ["down"]
    assert [r["data"]["state"] for r in feed.entry(heartbeat(stream, 1_006_000), 1006.0)] == [
        "running"
    ]


def test_an_unchanged_status_is_reported_again_with_its_uptime() -> None:
    feed = NautilusFeed(FeedOptions(heartbeat_interval=1.0, status_every=5.0))
    stream = "trader-GW-001:stream"
    for second in range(1000, 1012):
        out = feed.entry(heartbeat(stream, second * 1000), now=second + 0.1)
        if second == 1000:
            assert [r["data"]["uptime"] for r in out] == [0.1]
        elif second in (1005, 1010):
            assert [r["data"]["uptime"] for r in out] == [second - 1000 + 0.1]
        else:
            assert out == []


def test_heartbeat_times_are_corrected_for_the_redis_clock() -> None:
    feed = NautilusFeed(FeedOptions(heartbeat_interval=1.0))
    feed.clock_offset = 30.0  # Redis's clock runs 30 s ahead of ours
    out = feed.entry(heartbeat("trader-A-1:stream", 1_030_000), now=1000.5)
    assert out[0]["data"]["state"] == "running"


def test_an_old_heartbeat_read_late_is_not_alive() -> None:
    feed = NautilusFeed(FeedOptions(heartbeat_interval=1.0))
    out = feed.entry(heartbeat("trader-A-1:stream", 1_000_000), now=2000.0)
    assert out[0]["data"]["state"] == "down"


def test_engine_id_from_a_key_without_the_trader_prefix(recording: Callable[[str], Any]) -> None:
    feed = NautilusFeed()  # keys "BACKTESTER-001:gw" (use_trader_prefix=False)
    for entry in entries_of(recording("backtest_iso_custom_prefix")):
        feed.entry(entry, NOW)
    assert set(feed.liveness) == {"BACKTESTER-001"}


def test_heartbeats_without_any_trader_id_wait_for_one() -> None:
    feed = NautilusFeed(FeedOptions(heartbeat_interval=1.0))
    assert feed.entry(heartbeat("gw", 1_000_000), now=1000.1) == []  # key "gw": no trader
    assert feed.unattributed_heartbeats == 1
    event = {"type": "OrderSubmitted", "trader_id": "T-1", "client_order_id": "O", "event_id": "e"}
    feed.entry(Entry("gw", "1000050-0", "events.order.S", event), now=1000.1)
    out = feed.entry(heartbeat("gw", 1_001_000), now=1001.1)
    assert [(r["engine_id"], r["data"]["state"]) for r in out] == [("T-1", "running")]


def test_configured_engine_id(recording: Callable[[str], Any]) -> None:
    feed = NautilusFeed(FeedOptions(engine_id="DESK-NODE"))
    for entry in entries_of(recording("backtest_msgpack_one_stream")):
        feed.entry(entry, NOW)
    assert set(feed.liveness) == {"DESK-NODE"}


def test_the_trader_component_is_its_liveness(recording: Callable[[str], Any]) -> None:
    feed = NautilusFeed()
    trader = []
    for entry in entries_of(recording("backtest_msgpack_one_stream")):
        now = entry_millis(entry.entry_id) / 1000 + 0.01  # read as it was written
        for raw in feed.entry(entry, now):
            if raw["type"] == "engine_status" and raw["engine_id"] == "BACKTESTER-001":
                trader.append(raw["data"]["state"])
    # The first heartbeat says the node lives; READY/STARTING, RUNNING, STOPPING, then
    # STOPPED: silence after a clean stop is expected, never stale or down.
    assert trader[-3:] == ["running", "stopping", "stopped"]
    assert "starting" in trader and not {"stale", "down"} & set(trader)
    later = feed.tick(NOW + 3600)  # the periodic report: still stopped, never stale
    assert [r["data"]["state"] for r in later] == ["stopped"]


def test_unreachable_and_back() -> None:
    feed = NautilusFeed(FeedOptions(heartbeat_interval=1.0))
    feed.entry(heartbeat("trader-A-1:stream", 1_000_000), now=1000.1)
    down = feed.unreachable("redis://127.0.0.1:1: Connection refused", now=1000.2)
    assert [(r["data"]["state"], r["data"]["message"]) for r in down] == [
        ("down", "Redis unreachable: redis://127.0.0.1:1: Connection refused")
    ]
    assert down[0]["data"]["uptime"] == 0
    assert feed.unreachable("again", now=1000.3) == []  # reported once per outage
    back = feed.reachable(now=1000.4)
    assert [r["data"]["state"] for r in back] == ["running"]
