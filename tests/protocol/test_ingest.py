"""protocol.ingest: one validation for every producer's message."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.ingest import MAX_ID_LENGTH, build_data_message
from tidewire.protocol.messages import PROTOCOL_VERSION, DataMessage
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE, Payload
from tidewire.protocol.shapes import SHAPES, TOP_LEVEL_FIELDS
from tidewire.protocol.streams import SEVERITY_ALIASES, STREAM_OF_TYPE, STREAMS

# The smallest valid canonical message of every type: its required top-level fields and
# its required `data` fields (data.timestamp is derived from the envelope).
MINIMAL: dict[str, dict[str, Any]] = {
    "market_data": {"symbol": "AAPL", "data": {"bid_price": 100.0, "ask_price": 100.5}},
    "trade_updates": {
        "user_id": "u1",
        "portfolio_id": "PF-1",
        "data": {
            "trade_id": "T1",
            "symbol": "AAPL",
            "side": "buy",
            "quantity": 10,
            "price": 101.5,
            "status": "filled",
        },
    },
    "order_update": {
        "order_id": "O1",
        "user_id": "u1",
        "portfolio_id": "PF-1",
        "symbol": "AAPL",
        "order_status": "open",
        "data": {"side": "sell", "quantity": 10, "filled_quantity": 0, "remaining_quantity": 10},
    },
    "position_update": {
        "portfolio_id": "PF-1",
        "symbol": "AAPL",
        "position_side": "long",
        "data": {"quantity": 5, "avg_price": 99.5, "unrealized_pnl": 2.5},
    },
    "performance_update": {"portfolio_id": "PF-1", "data": {"pnl": 10.0, "returns": 0.01}},
    "risk_alert": {
        "portfolio_id": "PF-1",
        "risk_type": "var",
        "severity": "high",
        "data": {"metric": "var", "current_value": 2.0, "threshold": 1.0, "message": "var high"},
    },
    "breach_alert": {
        "portfolio_id": "PF-1",
        "breach_type": "drawdown",
        "severity": "critical",
        "data": {
            "limit_type": "max_drawdown",
            "current_value": 9.0,
            "limit_value": 5.0,
            "breach_percentage": 80.0,
        },
    },
    "strategy_performance": {
        "strategy_id": "S1",
        "strategy_name": "EMA cross",
        "data": {
            "total_return": 0.1,
            "sharpe_ratio": 1.2,
            "max_drawdown": 0.05,
            "trade_count": 7,
            "win_rate": 0.6,
            "profit_factor": 1.4,
        },
    },
    "execution_analytics": {
        "execution_id": "E1",
        "symbol": "AAPL",
        "data": {
            "fill_price": 100.02,
            "benchmark_price": 100.0,
            "slippage": 0.02,
            "slippage_bps": 2.0,
            "execution_time_ms": 3.5,
        },
    },
    "risk_metrics": {"portfolio_id": "PF-1", "metric_type": "var_95", "data": {"value": 1.0}},
    "engine_status": {"engine_id": "nautilus-1", "data": {"state": "running", "uptime": 12.5}},
    "system_health": {"component": "gateway", "data": {"status": "healthy"}},
    "event": {"event_type": "session_started", "event_id": "ev-1", "data": {"description": "x"}},
    "alert": {"alert_level": "medium", "data": {"title": "Careful", "message": "careful"}},
    "system_alert": {
        "component": "gateway",
        "alert_type": "disk",
        "severity": "high",
        "data": {"description": "disk almost full"},
    },
    "notification": {"data": {"message": "hello"}},
    "command_response": {"command": "cancel_all", "status": "success", "data": {}},
}


def valid(message_type: str, /, **extra: Any) -> dict[str, Any]:
    """A minimal valid producer message of `message_type` (fresh dicts)."""
    minimal = MINIMAL[message_type]
    return {"type": message_type, **minimal, "data": dict(minimal["data"]), **extra}


def refused(raw: Any, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw, **kwargs)
    return caught.value


def test_minimal_covers_every_message_type() -> None:
    assert set(MINIMAL) == set(STREAM_OF_TYPE) == set(SHAPES) == set(PAYLOAD_OF_TYPE)


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("message_type", sorted(STREAM_OF_TYPE))
def test_every_message_type_is_accepted(message_type: str) -> None:
    raw = valid(message_type)
    message = build_data_message(raw)
    spec = STREAMS[STREAM_OF_TYPE[message_type]]
    assert message.type == message_type
    assert message.stream == spec.name
    assert message.data == {**raw["data"], "timestamp": message.timestamp}
    assert raw["data"] is not message.data and "timestamp" not in raw["data"]  # not changed
    assert message.version == PROTOCOL_VERSION
    assert (message.seq, message.epoch) == (0, "")  # sequencing is the broker's job
    assert message.priority == 2
    assert message.source == "api"
    assert message.message_id.startswith("tw-")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", message.timestamp)
    expected_key = {
        "symbol": "AAPL",
        "portfolio_id": "PF-1",
        "strategy_id": "S1",
        "engine_id": "nautilus-1",
        "component": "gateway",
        "source": "api",
    }[spec.key_field]
    assert message.key == expected_key
    for name in SHAPES[message_type].required:
        assert getattr(message, name) == raw[name]


def test_message_ids_are_unique() -> None:
    ids = {build_data_message(valid("event")).message_id for _ in range(100)}
    assert len(ids) == 100


def test_producer_envelope_fields_are_kept() -> None:
    message = build_data_message(
        valid(
            "event",
            message_id="producer-1",
            timestamp="2024-01-01T00:00:00.000000Z",
            correlation_id="req-9",
            priority=4,
            source="nautilus",
        )
    )
    assert message.message_id == "producer-1"
    assert message.timestamp == "2024-01-01T00:00:00.000000Z"
    assert message.correlation_id == "req-9"
    assert message.priority == 4
    assert message.source == "nautilus"
    assert message.key == "nautilus"  # events are keyed by source


def test_default_source_is_used_when_the_producer_names_none() -> None:
    message = build_data_message(valid("event"), default_source="simulator")
    assert (message.source, message.key) == ("simulator", "simulator")


@pytest.mark.parametrize("priority", [1, 2, 3, 4])
def test_priorities(priority: int) -> None:
    assert build_data_message(valid("event", priority=priority)).priority == priority


def test_extra_data_fields_are_kept() -> None:
    raw = valid("position_update")
    raw["data"]["broker_ref"] = {"nested": [1, 2]}
    assert build_data_message(raw).data["broker_ref"] == {"nested": [1, 2]}


def test_decimal_numbers_from_in_process_producers_are_accepted() -> None:
    prices = {"bid_price": Decimal("100.10"), "ask_price": Decimal("100.20")}
    message = build_data_message(valid("market_data", data=prices))
    assert message.data["bid_price"] == Decimal("100.10")


def test_integers_are_accepted_for_float_fields() -> None:
    raw = valid("position_update")
    raw["data"].update(quantity=5, avg_price=100, unrealized_pnl=0)
    assert build_data_message(raw).data["avg_price"] == 100


def test_routing_fields_are_copied_up_from_data() -> None:
    raw = valid("trade_updates", venue="XNAS")
    raw["data"]["strategy_id"] = "S9"
    message = build_data_message(raw)
    assert message.symbol == "AAPL" == message.data["symbol"]  # copied: data keeps it
    assert message.strategy_id == "S9" == message.data["strategy_id"]
    assert message.venue == "XNAS"  # from the top level


def test_top_level_value_wins_over_data() -> None:
    raw = valid("position_update", symbol="TOP")
    assert build_data_message(raw).symbol == "TOP"


def test_key_may_come_from_data() -> None:
    raw = valid("position_update")
    raw["data"]["portfolio_id"] = raw.pop("portfolio_id")
    message = build_data_message(raw)
    assert (message.key, message.portfolio_id) == ("PF-1", "PF-1")


@pytest.mark.parametrize(
    "field", ["seq", "sequence", "epoch", "version", "key", "message_type", "topic"]
)
def test_sequencing_and_legacy_fields_are_accepted_and_ignored(field: str) -> None:
    value: Any = {"message_type": "market_data", "topic": "market_data"}.get(field, "x")
    if field in ("seq", "sequence"):
        value = 99
    message = build_data_message(valid("market_data", **{field: value}))
    assert (message.seq, message.epoch, message.version) == (0, "", PROTOCOL_VERSION)
    assert message.key == "AAPL"


# --------------------------------------------------------------------------- type and stream


@pytest.mark.parametrize(("stream", "spec"), list(STREAMS.items()))
def test_stream_without_type_publishes_the_main_type(stream: str, spec: Any) -> None:
    raw = valid(spec.message_types[0])
    del raw["type"]
    raw["stream"] = stream
    assert build_data_message(raw).type == spec.message_types[0]


@pytest.mark.parametrize("field", ["stream", "message_type", "topic"])
def test_stream_field_aliases_and_singular_names(field: str) -> None:
    raw = valid("risk_alert")
    del raw["type"]
    raw[field] = "risk_alert"  # singular name of risk_alerts
    message = build_data_message(raw)
    assert (message.stream, message.type) == ("risk_alerts", "risk_alert")


def test_type_and_stream_together() -> None:
    message = build_data_message(valid("breach_alert", stream="risk_alerts"))
    assert (message.stream, message.type) == ("risk_alerts", "breach_alert")


@pytest.mark.parametrize(
    ("legacy_type", "message_type", "stream"),
    [
        ("risk_alerts", "risk_alert", "risk_alerts"),
        ("trade_update", "trade_updates", "trade_updates"),
        ("orders", "order_update", "order_updates"),
        ("events", "event", "events"),
        ("quotes", "market_data", "market_data"),
    ],
)
def test_original_type_names_map_to_their_stream(
    legacy_type: str, message_type: str, stream: str
) -> None:
    raw = valid(message_type)
    raw["type"] = legacy_type
    message = build_data_message(raw)
    assert (message.type, message.stream) == (message_type, stream)


@pytest.mark.parametrize("message_type", ["bogus", "quote", "heartbeat", "subscribe"])
def test_unknown_type(message_type: str) -> None:
    error = refused({"type": message_type, "data": {}})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.details == {"type": message_type}


@pytest.mark.parametrize("field", ["stream", "message_type", "topic"])
def test_unknown_stream(field: str) -> None:
    error = refused({field: "nope", "type": "event", "data": {"description": "x"}})
    assert error.code is ErrorCode.UNKNOWN_STREAM
    assert error.details == {"stream": "nope"}


@pytest.mark.parametrize(
    ("stream", "message_type"),
    [("market_data", "risk_alert"), ("events", "market_data"), ("risk_alerts", "event")],
)
def test_type_not_published_on_the_stream(stream: str, message_type: str) -> None:
    error = refused(valid(message_type, stream=stream))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.details == {"type": message_type, "stream": stream}
    assert "allowed" in error.message


def test_stream_must_be_a_string() -> None:
    error = refused({"stream": ["events"], "data": {"description": "x"}})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "stream"}


@pytest.mark.parametrize("raw", [{"data": {"description": "x"}}, {"type": 5, "data": {}}])
def test_type_or_stream_is_required(raw: dict[str, Any]) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "type"}


# --------------------------------------------------------------------------- data


def _required_fields(schema: type[Payload]) -> list[str]:
    info = mi.type_info(schema)
    assert isinstance(info, mi.StructType)
    return [field.name for field in info.fields if field.required]


# Required data fields the gateway fills when the message says them another way.
DERIVED: dict[str, tuple[str, ...]] = {
    "order_update": ("remaining_quantity",),
    "trade_updates": ("status",),
    "breach_alert": ("breach_percentage",),
    "execution_analytics": ("slippage", "slippage_bps"),
    "risk_alert": ("message",),
}


MISSING = [
    (message_type, field)
    for message_type in sorted(STREAM_OF_TYPE)
    for field in _required_fields(PAYLOAD_OF_TYPE[message_type])
    if field not in DERIVED.get(message_type, ()) and field != "timestamp"
]


@pytest.mark.parametrize(("message_type", "field"), MISSING)
def test_missing_required_data_field(message_type: str, field: str) -> None:
    raw = valid(message_type)
    del raw["data"][field]
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "data", "type": message_type}
    assert f"`{field}`" in error.message


MISSING_TOP = [
    (message_type, field)
    for message_type, shape in sorted(SHAPES.items())
    for field in shape.required
    if (message_type, field)
    not in {
        ("position_update", "position_side"),
        ("event", "event_id"),
        ("strategy_performance", "strategy_name"),
        ("risk_alert", "risk_type"),
    }
]


@pytest.mark.parametrize(("message_type", "field"), MISSING_TOP)
def test_missing_required_top_level_field(message_type: str, field: str) -> None:
    raw = valid(message_type)
    del raw[field]
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details is not None and error.details["field"] == field
    assert f"`{field}`" in error.message


@pytest.mark.parametrize("message_type", ["trade_updates", "order_update"])
def test_trades_and_orders_need_a_user_or_a_portfolio(message_type: str) -> None:
    raw = valid(message_type)
    del raw["user_id"], raw["portfolio_id"]
    error = refused(raw)
    assert error.details == {"field": "user_id", "type": message_type}
    only_user = valid(message_type)
    del only_user["portfolio_id"]
    message = build_data_message(only_user)
    assert (message.key, message.portfolio_id) == ("u1", None)  # keyed by its user
    only_portfolio = valid(message_type)
    del only_portfolio["user_id"]
    assert build_data_message(only_portfolio).key == "PF-1"


@pytest.mark.parametrize(
    ("message_type", "required"),
    [
        ("risk_alert", {"metric", "current_value", "threshold", "message", "timestamp"}),
        ("position_update", {"quantity", "avg_price", "unrealized_pnl", "timestamp"}),
        ("performance_update", {"pnl", "returns", "timestamp"}),
        ("engine_status", {"state", "uptime", "timestamp"}),
        ("event", {"description", "timestamp"}),
        ("market_data", {"timestamp"}),
    ],
)
def test_required_fields_of_the_original_protocol(message_type: str, required: set[str]) -> None:
    assert set(_required_fields(PAYLOAD_OF_TYPE[message_type])) == required


@pytest.mark.parametrize(
    ("message_type", "field", "value"),
    [
        ("position_update", "quantity", "ten"),
        ("trade_updates", "side", "hold"),
        ("trade_updates", "status", "lost"),
        ("engine_status", "state", "sleepy"),
        ("strategy_performance", "trade_count", 1.5),
        ("risk_alert", "threshold", None),
        ("event", "description", 5),
        ("risk_metrics", "trend", "sideways"),
        ("system_health", "status", "unwell"),
        ("market_data", "timestamp", 1700000000),
    ],
)
def test_wrongly_typed_data_field(message_type: str, field: str, value: Any) -> None:
    raw = valid(message_type)
    raw["data"][field] = value
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert f"$.{field}" in error.message


@pytest.mark.parametrize(
    ("message_type", "field", "value"),
    [
        ("order_update", "order_status", "lost"),
        ("position_update", "position_side", "sideways"),
        ("market_data", "data_type", "book"),
        ("trade_updates", "trade_type", "swap"),
        ("command_response", "status", "done"),
        ("system_health", "status", "fine"),
        ("alert", "alert_level", "urgent"),
    ],
)
def test_top_level_enums(message_type: str, field: str, value: str) -> None:
    error = refused(valid(message_type, **{field: value}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details is not None and error.details["field"] == field


@pytest.mark.parametrize("data", [None, [], "text", 5])
def test_data_must_be_an_object(data: Any) -> None:
    error = refused({"type": "event", "data": data})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "data"}


def test_missing_data() -> None:
    assert refused({"type": "event"}).details == {"field": "data"}


@pytest.mark.parametrize("raw", [None, [], "event", 5])
def test_message_must_be_an_object(raw: Any) -> None:
    assert refused(raw).code is ErrorCode.INVALID_MESSAGE


# --------------------------------------------------------------------------- market data


@pytest.mark.parametrize(
    ("data", "data_type"),
    [
        ({"bid_price": 1.0, "ask_price": 1.1}, "quote"),
        ({"bid_price": 1.0, "ask_price": 1.1, "last_trade_price": 1.05}, "quote"),
        ({"open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10}, "bar"),
        ({"price": 1.0, "last_trade_size": 3}, "trade"),
        ({"price": 1.0}, "tick"),
        ({}, "tick"),
    ],
)
def test_market_data_type_is_inferred(data: dict[str, Any], data_type: str) -> None:
    message = build_data_message({"type": "market_data", "symbol": "AAPL", "data": data})
    assert message.data_type == data_type


def test_declared_data_type_wins_over_inference() -> None:
    raw: dict[str, Any] = {"type": "market_data", "symbol": "A", "data_type": "trade"}
    raw["data"] = {"bid_price": 1.0, "ask_price": 1.1, "price": 1.0}
    assert build_data_message(raw).data_type == "trade"


def test_data_type_may_be_given_in_data() -> None:
    raw: dict[str, Any] = {"type": "market_data", "symbol": "A", "data": {"data_type": "bar"}}
    raw["data"].update(open=1, high=1, low=1, close=1, volume=1)
    assert build_data_message(raw).data_type == "bar"


@pytest.mark.parametrize("data_type", ["QUOTE", "book", "ticks"])
def test_unknown_data_type(data_type: str) -> None:
    raw = {"type": "market_data", "symbol": "A", "data_type": data_type, "data": {}}
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "data_type", "type": "market_data"}


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("message_type", "key"),
    [("engine_status", "engine_id"), ("system_health", "component")],
)
def test_optional_keys_fall_back_to_the_source(message_type: str, key: str) -> None:
    raw = valid(message_type, source="node-7")
    del raw[key]
    message = build_data_message(raw)
    assert message.key == "node-7"
    assert getattr(message, key) is None


def test_market_data_needs_its_symbol() -> None:
    raw = valid("market_data")
    del raw["symbol"]
    assert refused(raw).details == {"field": "symbol", "type": "market_data"}


# --------------------------------------------------------------------------- envelope checks


@pytest.mark.parametrize("priority", [0, 5, -1, "2", 2.0, True, None])
def test_bad_priority(priority: Any) -> None:
    error = refused(valid("event", priority=priority))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "priority"}


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ({"colour": "red"}, ["colour"]),
        ({"zeta": 1, "alpha": 2}, ["alpha", "zeta"]),
        ({"subscription_id": "s"}, ["subscription_id"]),
        ({"filters": {}}, ["filters"]),
    ],
)
def test_unknown_top_level_fields(extra: dict[str, Any], fields: list[str]) -> None:
    error = refused(valid("event", **extra))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"fields": fields}
    for name in fields:
        assert name in error.message


def test_non_string_top_level_keys_are_refused_not_a_crash() -> None:
    raw: dict[Any, Any] = valid("event")
    raw[1] = "x"
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"fields": ["1"]}


def test_every_envelope_field_is_known_or_ignored() -> None:
    """A DataMessage as the gateway sends it may be published again unchanged."""
    message = build_data_message(valid("market_data", venue="XNAS"))
    sequenced = message.sequenced(4, "e")
    again = build_data_message(msgspec.json.decode(msgspec.json.encode(sequenced)))
    assert again.data == message.data and again.key == message.key
    assert again.message_id == message.message_id


@pytest.mark.parametrize("field", [f for f in TOP_LEVEL_FIELDS if f != "severity"])
@pytest.mark.parametrize("value", ["", 5, ["A"]])
def test_top_level_fields_must_be_non_empty_strings(field: str, value: Any) -> None:
    error = refused(valid("notification", **{field: value}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": field}


@pytest.mark.parametrize("source", ["", 5, None])
def test_bad_source(source: Any) -> None:
    error = refused(valid("event", source=source))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "source"}


@pytest.mark.parametrize("field", ["message_id", "timestamp", "correlation_id"])
@pytest.mark.parametrize("value", ["", 5, "x" * (MAX_ID_LENGTH + 1)])
def test_bad_envelope_strings(field: str, value: Any) -> None:
    error = refused(valid("event", **{field: value}))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": field}


def test_id_of_maximum_length_is_accepted() -> None:
    message_id = "x" * MAX_ID_LENGTH
    assert build_data_message(valid("event", message_id=message_id)).message_id == message_id


# --------------------------------------------------------------------------- severity


@pytest.mark.parametrize(
    ("given", "level"),
    [
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("critical", "critical"),
        ("HIGH", "high"),
        ("Critical", "critical"),
        *sorted(SEVERITY_ALIASES.items()),
        ("WARNING", "medium"),
    ],
)
def test_severity_levels_and_aliases(given: str, level: str) -> None:
    assert build_data_message(valid("risk_alert", severity=given)).severity == level


def test_documented_severity_aliases() -> None:
    assert SEVERITY_ALIASES["warning"] == "medium"
    assert SEVERITY_ALIASES["info"] == "low"
    assert SEVERITY_ALIASES["error"] == "high"


def test_severity_may_come_from_data() -> None:
    raw = valid("system_alert")
    raw["data"]["severity"] = raw.pop("severity")
    raw["data"]["severity"] = "warning"
    assert build_data_message(raw).severity == "medium"


def test_an_alerts_level_is_its_severity() -> None:
    message = build_data_message(valid("alert", alert_level="WARNING"))
    assert (message.alert_level, message.severity) == ("medium", "medium")


@pytest.mark.parametrize("severity", ["urgent", "sev1", "mediums"])
def test_bad_severity(severity: str) -> None:
    error = refused(valid("risk_alert", severity=severity))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "severity"}


@pytest.mark.parametrize("severity", ["", 3])
def test_severity_must_be_a_non_empty_string(severity: Any) -> None:
    assert refused(valid("risk_alert", severity=severity)).details == {"field": "severity"}


# --------------------------------------------------------------------------- the result


def test_result_is_a_frozen_data_message() -> None:
    message = build_data_message(valid("event"))
    assert isinstance(message, DataMessage)
    with pytest.raises(AttributeError):
        message.seq = 5  # type: ignore[misc]


def test_unset_top_level_fields_are_not_on_the_wire() -> None:
    wire = msgspec.json.decode(msgspec.json.encode(build_data_message(valid("notification"))))
    assert not set(TOP_LEVEL_FIELDS) & set(wire)
    assert "correlation_id" not in wire


def test_source_is_on_the_wire_even_for_the_default_producer() -> None:
    wire = msgspec.json.decode(msgspec.json.encode(build_data_message(valid("event"))))
    assert wire["source"] == "api"
    assert wire["version"] == PROTOCOL_VERSION
