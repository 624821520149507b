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
from tidewire.protocol.messages import PROTOCOL_VERSION, TOP_LEVEL_FIELDS, DataMessage
from tidewire.protocol.payloads import MARKET_DATA_PAYLOADS, PAYLOAD_OF_TYPE, Payload
from tidewire.protocol.streams import SEVERITY_ALIASES, STREAM_OF_TYPE, STREAMS

# The smallest valid `data` of every message type (market_data: a quote).
MINIMAL_DATA: dict[str, dict[str, Any]] = {
    "market_data": {"bid": 100.0, "ask": 100.5},
    "trade_updates": {
        "trade_id": "T1",
        "order_id": "O1",
        "symbol": "AAPL",
        "side": "buy",
        "quantity": 10,
        "price": 101.5,
    },
    "order_update": {
        "order_id": "O1",
        "symbol": "AAPL",
        "side": "sell",
        "order_type": "limit",
        "quantity": 10,
        "filled_quantity": 0,
        "status": "open",
    },
    "position_update": {"symbol": "AAPL", "quantity": 5, "avg_price": 99.5, "unrealized_pnl": 2.5},
    "risk_alert": {"metric": "var", "current_value": 2.0, "threshold": 1.0, "timestamp": "t"},
    "breach_alert": {"metric": "dd", "current_value": 9.0, "threshold": 5.0, "timestamp": "t"},
    "performance_update": {"total_value": 1e6, "total_pnl": 10.0, "daily_pnl": -1.0},
    "strategy_performance": {"strategy_id": "S1", "pnl": 3.0, "trades": 7},
    "execution_analytics": {"order_id": "O1", "symbol": "AAPL", "slippage_bps": 1.2},
    "risk_metrics": {"var_95": 1.0, "exposure": 2.0, "leverage": 1.5},
    "engine_status": {"status": "running"},
    "system_health": {"status": "healthy"},
    "event": {"message": "started"},
    "alert": {"message": "careful"},
    "system_alert": {"message": "disk"},
    "notification": {"message": "hello"},
}

# Key values the minimal messages carry (top level unless the payload already holds it).
KEYS: dict[str, dict[str, str]] = {
    "symbol": {"symbol": "AAPL"},
    "portfolio_id": {"portfolio_id": "PF-1"},
    "strategy_id": {},  # strategy_performance data carries strategy_id
    "engine_id": {"engine_id": "nautilus-1"},
    "component": {"component": "gateway"},
    "source": {},
}


def valid(message_type: str, /, **extra: Any) -> dict[str, Any]:
    """A minimal valid producer message of `message_type`."""
    spec = STREAMS[STREAM_OF_TYPE[message_type]]
    key = KEYS[spec.key_field]
    if message_type == "execution_analytics":
        key = {}  # its data carries the symbol
    return {"type": message_type, **key, "data": dict(MINIMAL_DATA[message_type]), **extra}


def refused(raw: Any, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        build_data_message(raw, **kwargs)
    return caught.value


def test_minimal_data_covers_every_message_type() -> None:
    assert set(MINIMAL_DATA) == set(STREAM_OF_TYPE)


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("message_type", sorted(STREAM_OF_TYPE))
def test_every_message_type_is_accepted(message_type: str) -> None:
    raw = valid(message_type)
    message = build_data_message(raw)
    spec = STREAMS[STREAM_OF_TYPE[message_type]]
    assert message.type == message_type
    assert message.stream == spec.name
    assert message.data is raw["data"]
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
    raw = valid("market_data", data={"bid": Decimal("100.10"), "ask": Decimal("100.20")})
    message = build_data_message(raw)
    assert message.data["bid"] == Decimal("100.10")


def test_integers_are_accepted_for_float_fields() -> None:
    raw = valid("position_update")
    raw["data"].update(quantity=5, avg_price=100, unrealized_pnl=0)
    assert build_data_message(raw).data["avg_price"] == 100


def test_top_level_fields_are_lifted_from_data() -> None:
    raw = valid("trade_updates", venue="XNAS")
    raw["data"]["strategy_id"] = "S9"
    message = build_data_message(raw)
    assert message.symbol == "AAPL"  # from data
    assert message.strategy_id == "S9"  # from data
    assert message.venue == "XNAS"  # from the top level


def test_top_level_value_wins_over_data() -> None:
    raw = valid("position_update", symbol="TOP")
    assert build_data_message(raw).symbol == "TOP"


def test_key_may_come_from_data() -> None:
    raw: dict[str, Any] = {"type": "position_update", "data": {**MINIMAL_DATA["position_update"]}}
    raw["data"]["portfolio_id"] = "PF-in-data"
    message = build_data_message(raw)
    assert (message.key, message.portfolio_id) == ("PF-in-data", "PF-in-data")


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
    error = refused({field: "nope", "type": "event", "data": {"message": "x"}})
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
    error = refused({"stream": ["events"], "data": {"message": "x"}})
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "stream"}


@pytest.mark.parametrize("raw", [{"data": {"message": "x"}}, {"type": 5, "data": {}}])
def test_type_or_stream_is_required(raw: dict[str, Any]) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "type"}


# --------------------------------------------------------------------------- data


def _required_fields(schema: type[Payload]) -> list[str]:
    info = mi.type_info(schema)
    assert isinstance(info, mi.StructType)
    return [field.name for field in info.fields if field.required]


def _payload_of(message_type: str) -> type[Payload]:
    if message_type == "market_data":
        return MARKET_DATA_PAYLOADS["quote"]
    return PAYLOAD_OF_TYPE[message_type]


MISSING = [
    (message_type, field)
    for message_type in sorted(STREAM_OF_TYPE)
    for field in _required_fields(_payload_of(message_type))
]


@pytest.mark.parametrize(("message_type", "field"), MISSING)
def test_missing_required_data_field(message_type: str, field: str) -> None:
    # market_data: declare the quote, or a quote without `bid` would be inferred as a trade.
    raw = valid(message_type, data_type="quote") if message_type == "market_data" else None
    raw = raw or valid(message_type)
    del raw["data"][field]
    if field in TOP_LEVEL_FIELDS:
        raw[field] = raw.get(field, "X")  # present at top level only: data still lacks it
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "data", "type": message_type}
    assert f"`{field}`" in error.message


@pytest.mark.parametrize(
    ("message_type", "required"),
    [
        ("risk_alert", {"metric", "current_value", "threshold", "timestamp"}),
        ("position_update", {"quantity", "avg_price", "unrealized_pnl"}),
        ("event", {"message"}),
    ],
)
def test_required_fields_of_the_original_protocol(message_type: str, required: set[str]) -> None:
    assert required <= set(_required_fields(PAYLOAD_OF_TYPE[message_type]))


@pytest.mark.parametrize(
    ("message_type", "field", "value"),
    [
        ("position_update", "quantity", "ten"),
        ("trade_updates", "side", "hold"),
        ("order_update", "status", "lost"),
        ("engine_status", "status", "sleepy"),
        ("strategy_performance", "trades", 1.5),
        ("risk_alert", "threshold", None),
        ("event", "message", 5),
    ],
)
def test_wrongly_typed_data_field(message_type: str, field: str, value: Any) -> None:
    raw = valid(message_type)
    raw["data"][field] = value
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert f"$.{field}" in error.message


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
        ({"bid": 1.0, "ask": 1.1}, "quote"),
        ({"bid": 1.0, "ask": 1.1, "last_trade_price": 1.05}, "quote"),
        ({"open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10}, "bar"),
        ({"price": 1.0, "size": 3}, "trade"),
    ],
)
def test_market_data_type_is_inferred(data: dict[str, Any], data_type: str) -> None:
    message = build_data_message({"type": "market_data", "symbol": "AAPL", "data": data})
    assert message.data_type == data_type


def test_declared_data_type_wins_over_inference() -> None:
    raw: dict[str, Any] = {"type": "market_data", "symbol": "A", "data_type": "trade"}
    raw["data"] = {"bid": 1.0, "ask": 1.1, "price": 1.0, "size": 1.0}
    assert build_data_message(raw).data_type == "trade"


def test_declared_data_type_is_validated_against_its_payload() -> None:
    raw = {"type": "market_data", "symbol": "A", "data_type": "quote", "data": {"price": 1.0}}
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "data", "type": "market_data"}


def test_data_type_may_be_given_in_data() -> None:
    raw: dict[str, Any] = {"type": "market_data", "symbol": "A", "data": {"data_type": "bar"}}
    raw["data"].update(open=1, high=1, low=1, close=1, volume=1)
    assert build_data_message(raw).data_type == "bar"


@pytest.mark.parametrize("data_type", ["tick", "QUOTE", "book"])
def test_unknown_data_type(data_type: str) -> None:
    raw = {"type": "market_data", "symbol": "A", "data_type": data_type, "data": {"bid": 1}}
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": "data_type"}


def test_inferred_trade_without_price_is_refused() -> None:
    error = refused({"type": "market_data", "symbol": "A", "data": {"bid": 1.0}})
    assert error.details == {"field": "data", "type": "market_data"}


# --------------------------------------------------------------------------- keys


KEYED = [
    (message_type, spec.key_field)
    for message_type, stream in sorted(STREAM_OF_TYPE.items())
    if (spec := STREAMS[stream]).key_field != "source"
    and spec.key_field not in _required_fields(_payload_of(message_type))
]


@pytest.mark.parametrize(("message_type", "key_field"), KEYED)
def test_missing_key(message_type: str, key_field: str) -> None:
    raw = valid(message_type)
    raw.pop(key_field, None)
    raw["data"].pop(key_field, None)
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"field": key_field}
    assert f"`{key_field}`" in error.message


def test_keys_the_payload_requires_come_from_data() -> None:
    """strategy_performance and execution_analytics carry their key in `data`."""
    assert {t for t, _ in KEYED} == set(STREAM_OF_TYPE) - {
        "strategy_performance",
        "execution_analytics",
        "event",
        "alert",
        "system_alert",
        "notification",
    }
    assert build_data_message(valid("strategy_performance")).key == "S1"
    assert build_data_message(valid("execution_analytics")).key == "AAPL"


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
    sequenced = msgspec.structs.replace(message, seq=4, epoch="e")
    again = build_data_message(msgspec.json.decode(msgspec.json.encode(sequenced)))
    assert again.data == message.data and again.key == message.key
    assert again.message_id == message.message_id


@pytest.mark.parametrize("field", [f for f in TOP_LEVEL_FIELDS if f != "severity"])
@pytest.mark.parametrize("value", ["", 5, ["A"]])
def test_top_level_fields_must_be_non_empty_strings(field: str, value: Any) -> None:
    error = refused(valid("event", **{field: value}))
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
    raw = valid("alert")
    raw["data"]["severity"] = "warning"
    assert build_data_message(raw).severity == "medium"


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
    wire = msgspec.json.decode(msgspec.json.encode(build_data_message(valid("event"))))
    assert not set(TOP_LEVEL_FIELDS) & set(wire)
    assert "correlation_id" not in wire


def test_source_is_on_the_wire_even_for_the_default_producer() -> None:
    wire = msgspec.json.decode(msgspec.json.encode(build_data_message(valid("event"))))
    assert wire["source"] == "api"
    assert wire["version"] == PROTOCOL_VERSION
