"""protocol.compat: every dialect of the original frontend maps onto a protocol-3.0 command."""

from __future__ import annotations

from typing import Any

import pytest

from tidewire.protocol.codec import to_command
from tidewire.protocol.compat import normalize_command, topic_filters
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import (
    PROTOCOL_VERSION,
    Filters,
    Heartbeat,
    Ping,
    StreamPosition,
    Subscribe,
    Unsubscribe,
)
from tidewire.protocol.streams import STREAM_ALIASES, STREAMS


def _error(raw: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        normalize_command(raw)
    return caught.value


# --------------------------------------------------------------------------- action dialect


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe", "ping"])
def test_action_becomes_type(action: str) -> None:
    cmd = normalize_command({"action": action, "stream": "market_data"})
    assert cmd["type"] == action
    assert "action" not in cmd


def test_action_subscribe_with_topic_and_loose_filters_is_a_full_subscribe() -> None:
    command = to_command(
        {
            "action": "subscribe",
            "topic": "risk_alert",
            "portfolio_ids": ["PF-1"],
            "severity": "high",
        }
    )
    assert command == Subscribe(
        stream="risk_alerts", filters={"portfolio_ids": ["PF-1"], "severity": "high"}
    )


def test_action_unsubscribe_maps_to_unsubscribe() -> None:
    assert to_command({"action": "unsubscribe", "subscription_id": "s1"}) == Unsubscribe(
        subscription_id="s1"
    )


def test_action_ping_maps_to_ping_and_keeps_message_id() -> None:
    assert to_command({"action": "ping", "message_id": "m1"}) == Ping(message_id="m1")


@pytest.mark.parametrize("action", ["publish", "auth", "heartbeat", "SUBSCRIBE", ""])
def test_other_actions_are_unknown_types(action: str) -> None:
    error = _error({"action": action})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert repr(action) in error.message


@pytest.mark.parametrize("action", [["subscribe"], {"x": 1}, 5, True])
def test_non_string_action_is_unknown_type(action: Any) -> None:
    """A list or dict `action` must not escape as TypeError (that would end the connection)."""
    assert _error({"action": action}).code is ErrorCode.UNKNOWN_TYPE


def test_null_action_is_no_type() -> None:
    assert _error({"action": None}).code is ErrorCode.INVALID_MESSAGE


def test_type_wins_over_action_and_action_is_dropped() -> None:
    cmd = normalize_command({"type": "ping", "action": "subscribe"})
    assert cmd == {"type": "ping"}


def test_neither_type_nor_action_is_invalid_message() -> None:
    error = _error({"stream": "market_data"})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "type" in error.message


# --------------------------------------------------------------------------- stream aliases


@pytest.mark.parametrize("field", ["message_type", "topic", "subscription_type", "channel"])
def test_stream_field_aliases(field: str) -> None:
    cmd = normalize_command({"type": "subscribe", field: "market_data"})
    assert cmd == {"type": "subscribe", "stream": "market_data"}


def test_explicit_stream_wins_over_alias_field() -> None:
    cmd = normalize_command({"type": "subscribe", "stream": "events", "topic": "market_data"})
    assert cmd["stream"] == "events"
    assert "topic" not in cmd


@pytest.mark.parametrize(("alias", "canonical"), sorted(STREAM_ALIASES.items()))
def test_singular_and_alias_stream_names(alias: str, canonical: str) -> None:
    assert normalize_command({"type": "subscribe", "stream": alias})["stream"] == canonical
    assert normalize_command({"action": "subscribe", "topic": alias})["stream"] == canonical


@pytest.mark.parametrize("name", list(STREAMS))
def test_canonical_stream_names_are_unchanged(name: str) -> None:
    assert normalize_command({"type": "subscribe", "stream": name})["stream"] == name


@pytest.mark.parametrize(
    ("singular", "plural"),
    [
        ("trade_update", "trade_updates"),
        ("order_update", "order_updates"),
        ("position_update", "position_updates"),
        ("risk_alert", "risk_alerts"),
        ("performance_update", "performance_updates"),
        ("risk_metric", "risk_metrics"),
        ("execution_analytic", "execution_analytics"),
        ("event", "events"),
    ],
)
def test_documented_singular_names(singular: str, plural: str) -> None:
    assert normalize_command({"type": "subscribe", "stream": singular})["stream"] == plural


def test_unknown_stream_name_is_left_for_the_subscribe_handler() -> None:
    assert normalize_command({"type": "subscribe", "stream": "nope"})["stream"] == "nope"


def test_non_string_stream_is_left_alone() -> None:
    assert normalize_command({"type": "subscribe", "stream": 5})["stream"] == 5


# --------------------------------------------------------------------------- filters


def test_top_level_filter_fields_move_into_filters() -> None:
    cmd = normalize_command(
        {
            "type": "subscribe",
            "stream": "market_data",
            "symbols": ["AAPL"],
            "venue": "XNAS",
            "min_price": 1,
            "max_price": 2,
            "asset_class": "equity",
        }
    )
    assert cmd == {
        "type": "subscribe",
        "stream": "market_data",
        "filters": {
            "symbols": ["AAPL"],
            "venue": "XNAS",
            "min_price": 1,
            "max_price": 2,
            "asset_class": "equity",
        },
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("symbols", ["A"]),
        ("portfolio_ids", ["P"]),
        ("strategy_ids", ["S"]),
        ("user_id", "u"),
        ("severity", "high"),
        ("min_price", 1.5),
        ("max_price", 2.5),
        ("venue", "V"),
        ("asset_class", "fx"),
    ],
)
def test_every_filter_field_is_recognised_at_top_level(name: str, value: Any) -> None:
    cmd = normalize_command({"type": "subscribe", "stream": "events", name: value})
    assert cmd["filters"] == {name: value}
    assert name not in cmd


def test_explicit_filters_win_over_loose_ones() -> None:
    cmd = normalize_command(
        {
            "type": "subscribe",
            "stream": "market_data",
            "symbols": ["LOOSE"],
            "venue": "V",
            "filters": {"symbols": ["EXPLICIT"]},
        }
    )
    assert cmd["filters"] == {"symbols": ["EXPLICIT"], "venue": "V"}


def test_filters_are_not_touched_on_other_commands() -> None:
    cmd = normalize_command({"type": "unsubscribe", "symbols": ["A"], "subscription_id": "s"})
    assert cmd["symbols"] == ["A"]
    assert "filters" not in cmd


# --------------------------------------------------------------------------- nested data


def test_subscribe_nested_in_data() -> None:
    command = to_command(
        {
            "type": "subscribe",
            "data": {"message_type": "position_update", "portfolio_ids": ["P1"], "snapshot": False},
        }
    )
    assert command == Subscribe(
        stream="position_updates", filters={"portfolio_ids": ["P1"]}, snapshot=False
    )


def test_nested_data_does_not_override_top_level_fields() -> None:
    cmd = normalize_command(
        {
            "type": "subscribe",
            "subscription_id": "top",
            "data": {"topic": "x", "subscription_id": "n"},
        }
    )
    assert cmd["subscription_id"] == "top"
    assert cmd["stream"] == "x"


def test_top_level_stream_wins_over_nested_data() -> None:
    cmd = normalize_command({"type": "subscribe", "stream": "events", "data": {"stream": "x"}})
    assert cmd["stream"] == "events"


@pytest.mark.parametrize(
    ("nested", "expected"),
    [
        ({"subscription_id": "s1"}, Unsubscribe(subscription_id="s1")),
        ({"subscription_ids": ["a", "b"]}, Unsubscribe(subscription_ids=["a", "b"])),
    ],
)
def test_unsubscribe_nested_in_data(nested: dict[str, Any], expected: Unsubscribe) -> None:
    assert to_command({"type": "unsubscribe", "data": nested}) == expected


def test_unsubscribe_top_level_ids_win_over_nested() -> None:
    cmd = normalize_command(
        {"type": "unsubscribe", "subscription_id": "top", "data": {"subscription_id": "n"}}
    )
    assert cmd["subscription_id"] == "top"


# --------------------------------------------------------------------------- since / sequence


def test_since_sequence_is_a_synonym_of_seq() -> None:
    command = to_command(
        {"type": "subscribe", "stream": "orders", "since": {"epoch": "e1", "sequence": 41}}
    )
    assert isinstance(command, Subscribe)
    assert command.since == StreamPosition(epoch="e1", seq=41)


def test_since_seq_wins_over_sequence() -> None:
    raw = {
        "type": "subscribe",
        "stream": "orders",
        "since": {"epoch": "e", "seq": 5, "sequence": 9},
    }
    cmd = normalize_command(raw)
    assert cmd["since"]["seq"] == 5


def test_normalize_does_not_mutate_its_input() -> None:
    since = {"epoch": "e", "sequence": 3}
    raw = {"action": "subscribe", "topic": "trade_update", "symbols": ["A"], "since": since}
    snapshot = {**raw, "since": dict(since)}
    normalize_command(raw)
    assert raw == snapshot
    assert since == {"epoch": "e", "sequence": 3}


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize("version", ["1.0", "1.1", "2.0", "3.0", 2.0, 3.0])
def test_accepted_versions_are_mapped_to_3_0(version: Any) -> None:
    cmd = normalize_command({"type": "ping", "version": version})
    assert cmd["version"] == PROTOCOL_VERSION
    assert to_command({"type": "ping", "version": version}).version == PROTOCOL_VERSION


def test_missing_version_means_current() -> None:
    assert "version" not in normalize_command({"type": "ping"})
    assert to_command({"type": "ping"}).version == PROTOCOL_VERSION


@pytest.mark.parametrize("version", ["9.9", "4.0", "0.9", "3", 2, "", "latest"])
def test_unsupported_versions_are_rejected(version: Any) -> None:
    error = _error({"type": "subscribe", "stream": "market_data", "version": version})
    assert error.code is ErrorCode.UNSUPPORTED_VERSION
    assert "3.0" in error.message
    assert not error.retryable


def test_version_is_checked_before_the_type() -> None:
    assert _error({"action": "bogus", "version": "9.9"}).code is ErrorCode.UNSUPPORTED_VERSION


# --------------------------------------------------------------------------- whole dialects


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"type": "subscribe", "stream": "market_data", "filters": {"symbols": ["A"]}},
            Subscribe(stream="market_data", filters={"symbols": ["A"]}),
        ),
        (
            {"action": "subscribe", "message_type": "trade_update", "version": "1.0"},
            Subscribe(stream="trade_updates"),
        ),
        (
            {"type": "subscribe", "topic": "quotes", "symbols": ["EURUSD"], "version": "2.0"},
            Subscribe(stream="market_data", filters={"symbols": ["EURUSD"]}),
        ),
        (
            {"type": "subscribe", "data": {"stream": "risk_alert", "severity": "high"}},
            Subscribe(stream="risk_alerts", filters={"severity": "high"}),
        ),
        (
            {"type": "heartbeat", "client_timestamp": 1700000000123, "version": "1.1"},
            Heartbeat(client_timestamp=1700000000123.0),
        ),
    ],
)
def test_dialects_end_to_end(raw: dict[str, Any], expected: Any) -> None:
    command = to_command(raw)
    assert command == expected
    if isinstance(command, Subscribe) and command.filters is not None:
        Filters(**command.filters)  # every mapped filter is a real filter field


# --------------------------------------------------------------------------- the hooks' commands


@pytest.mark.parametrize(
    ("topic", "stream", "filters"),
    [
        ("market_data.AAPL", "market_data", {"symbols": ["AAPL"]}),
        ("market_data.AAPL.NASDAQ", "market_data", {"symbols": ["AAPL.NASDAQ"]}),
        ("position_update.PF-1", "position_updates", {"portfolio_ids": ["PF-1"]}),
        ("strategy_performance.S1", "strategy_performance", {"strategy_ids": ["S1"]}),
    ],
)
def test_topic_with_a_key_suffix(topic: str, stream: str, filters: dict[str, Any]) -> None:
    command = to_command({"action": "subscribe", "topic": topic})
    assert command == Subscribe(stream=stream, topic=topic)
    assert topic_filters(STREAMS[stream], topic, None) == filters


def test_topic_suffix_and_an_agreeing_filter() -> None:
    spec = STREAMS["market_data"]
    assert topic_filters(spec, "market_data.A", {"symbols": ["A"]}) == {"symbols": ["A"]}
    assert topic_filters(spec, "market_data.A", {"symbols": []}) == {"symbols": ["A"]}
    assert topic_filters(spec, "market_data", {"venue": "X"}) == {"venue": "X"}


def test_topic_suffix_and_a_disagreeing_filter() -> None:
    with pytest.raises(ProtocolError) as caught:
        topic_filters(STREAMS["market_data"], "market_data.A", {"symbols": ["B"]})
    assert caught.value.code is ErrorCode.INVALID_FILTER
    assert caught.value.details == {"topic": "market_data.A", "filter": "symbols"}


def test_topic_suffix_on_a_stream_without_a_key_filter() -> None:
    with pytest.raises(ProtocolError) as caught:
        topic_filters(STREAMS["engine_status"], "engine_status.N1", None)
    assert caught.value.code is ErrorCode.INVALID_FILTER


def test_a_dotted_unknown_stream_stays_unknown() -> None:
    assert to_command({"type": "subscribe", "topic": "nope.AAPL"}) == Subscribe(stream="nope.AAPL")


def test_update_filters_is_update_subscription() -> None:
    from tidewire.protocol.messages import UpdateSubscription

    raw = {"type": "update_filters", "subscription_id": "s1", "symbols": ["A"], "portfolio_ids": []}
    assert to_command(raw) == UpdateSubscription(
        subscription_id="s1", filters={"symbols": ["A"], "portfolio_ids": []}
    )
    nested = {"type": "update_subscription", "data": {"subscription_id": "s1", "rate_limit": 2}}
    assert to_command(nested) == UpdateSubscription(subscription_id="s1", rate_limit=2)


def test_get_snapshot_with_a_topic() -> None:
    from tidewire.protocol.messages import GetSnapshot

    assert to_command({"type": "get_snapshot", "topic": "market_data.A"}) == GetSnapshot(
        stream="market_data", topic="market_data.A"
    )


def test_event_types_subscribe() -> None:
    raw = {"type": "subscribe", "event_types": ["trade_executed", "order_status"]}
    assert to_command(raw) == Subscribe(event_types=["trade_executed", "order_status"])


@pytest.mark.parametrize("client_timestamp", [1733000000123, 1733000000123.5, "12:00:00.123"])
def test_heartbeat_keeps_the_client_timestamp_type(client_timestamp: Any) -> None:
    command = to_command({"type": "heartbeat", "client_timestamp": client_timestamp})
    assert isinstance(command, Heartbeat)
    assert command.client_timestamp == client_timestamp
    assert type(command.client_timestamp) is type(client_timestamp)


def test_a_blank_key_filter_beside_a_topic_is_no_filter() -> None:
    spec = STREAMS["market_data"]
    assert topic_filters(spec, "market_data.A", {"symbols": ""}) == {"symbols": ["A"]}
