"""protocol.codec: frame decoding, command mapping and the four wire formats."""

from __future__ import annotations

import typing
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tidewire.protocol import codec
from tidewire.protocol.codec import (
    ENCODE,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    WIRE_FORMATS,
    WireFormat,
    decode_object,
    encode,
    message_id_of,
    to_command,
)
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import (
    Auth,
    ClientCommand,
    DataMessage,
    ErrorReply,
    Heartbeat,
    ListSubscriptions,
    Ping,
    Publish,
    Refresh,
    StreamPosition,
    Subscribe,
    Unsubscribe,
)

TEXT_FORMATS = [WireFormat.JSON, WireFormat.JSON_DECIMAL_STRINGS]
BINARY_FORMATS = [WireFormat.MSGPACK, WireFormat.MSGPACK_DECIMAL_STRINGS]


def _decode_error(payload: bytes, binary: bool, wire_format: WireFormat) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode_object(payload, binary, wire_format)
    return caught.value


def _command_error(raw: dict[str, Any]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        to_command(raw)
    return caught.value


# --------------------------------------------------------------------------- wire formats


@pytest.mark.parametrize(
    ("subprotocol", "decimals", "expected"),
    [
        (SUBPROTOCOL_JSON, False, WireFormat.JSON),
        (SUBPROTOCOL_JSON, True, WireFormat.JSON_DECIMAL_STRINGS),
        (SUBPROTOCOL_MSGPACK, False, WireFormat.MSGPACK),
        (SUBPROTOCOL_MSGPACK, True, WireFormat.MSGPACK_DECIMAL_STRINGS),
        ("", False, WireFormat.JSON),  # no subprotocol offered: JSON is the default
    ],
)
def test_wire_format_of(subprotocol: str, decimals: bool, expected: WireFormat) -> None:
    assert WireFormat.of(subprotocol, decimals) is expected


def test_binary_property() -> None:
    assert [f.binary for f in WIRE_FORMATS] == [False, False, True, True]


def test_one_encoder_per_wire_format() -> None:
    assert len(ENCODE) == len(WIRE_FORMATS) == 4
    assert [int(f) for f in WIRE_FORMATS] == [0, 1, 2, 3]


# --------------------------------------------------------------------------- decode_object


@pytest.mark.parametrize("wire_format", TEXT_FORMATS)
def test_text_frame_decodes_to_object(wire_format: WireFormat) -> None:
    assert decode_object(b'{"type": "ping", "n": [1]}', False, wire_format) == {
        "type": "ping",
        "n": [1],
    }


@pytest.mark.parametrize("wire_format", BINARY_FORMATS)
def test_binary_frame_decodes_to_object(wire_format: WireFormat) -> None:
    payload = msgspec.msgpack.encode({"type": "ping", "n": [1]})
    assert decode_object(payload, True, wire_format) == {"type": "ping", "n": [1]}


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"", b"\xff\xfe", b'{"a": 1} trailing', b"{'a': 1}", b'{"a": }', b"NaN"],
)
@pytest.mark.parametrize("wire_format", TEXT_FORMATS)
def test_text_frame_that_is_not_json_is_invalid_json(
    payload: bytes, wire_format: WireFormat
) -> None:
    error = _decode_error(payload, False, wire_format)
    assert error.code is ErrorCode.INVALID_JSON
    assert error.message.startswith("not JSON")


@pytest.mark.parametrize("payload", [b"\xc1", b"hello", b"", b"\x82\xa1a"])
@pytest.mark.parametrize("wire_format", BINARY_FORMATS)
def test_binary_frame_that_is_not_msgpack_is_invalid_message(
    payload: bytes, wire_format: WireFormat
) -> None:
    error = _decode_error(payload, True, wire_format)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.message.startswith("not msgpack")


@pytest.mark.parametrize("wire_format", TEXT_FORMATS)
def test_binary_frame_on_json_connection_is_invalid_message(wire_format: WireFormat) -> None:
    # Even a perfectly good message is refused when it arrives in the wrong kind of frame.
    error = _decode_error(b'{"type": "ping"}', True, wire_format)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "binary frames" in error.message and SUBPROTOCOL_JSON in error.message


@pytest.mark.parametrize("wire_format", BINARY_FORMATS)
def test_text_frame_on_msgpack_connection_is_invalid_message(wire_format: WireFormat) -> None:
    error = _decode_error(msgspec.msgpack.encode({"type": "ping"}), False, wire_format)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "text frames" in error.message and SUBPROTOCOL_MSGPACK in error.message


def test_wrong_frame_kind_wins_over_bad_content() -> None:
    assert _decode_error(b"{not json", True, WireFormat.JSON).code is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"ping"', b"1", b"null", b"true", b"[]"])
def test_json_value_that_is_not_an_object_is_invalid_message(payload: bytes) -> None:
    error = _decode_error(payload, False, WireFormat.JSON)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert "object" in error.message


@pytest.mark.parametrize("value", [[1, 2], "ping", 1, None])
def test_msgpack_value_that_is_not_a_map_is_invalid_message(value: Any) -> None:
    payload = msgspec.msgpack.encode(value)
    assert _decode_error(payload, True, WireFormat.MSGPACK).code is ErrorCode.INVALID_MESSAGE


# --------------------------------------------------------------------------- to_command


def test_command_types_are_the_union_tags() -> None:
    tags = {cls.__struct_config__.tag for cls in typing.get_args(ClientCommand)}
    assert tags == codec._COMMAND_TYPES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {
                "type": "subscribe",
                "stream": "market_data",
                "filters": {"symbols": ["A"]},
                "subscription_id": "s1",
                "rate_limit": 10,
                "since": {"epoch": "e", "seq": 4},
                "snapshot": False,
            },
            Subscribe(
                stream="market_data",
                filters={"symbols": ["A"]},
                subscription_id="s1",
                rate_limit=10.0,
                since=StreamPosition(epoch="e", seq=4),
                snapshot=False,
            ),
        ),
        ({"type": "unsubscribe", "subscription_ids": ["a"]}, Unsubscribe(subscription_ids=["a"])),
        ({"type": "list_subscriptions"}, ListSubscriptions()),
        ({"type": "heartbeat", "client_timestamp": 17}, Heartbeat(client_timestamp=17.0)),
        ({"type": "auth", "token": "t"}, Auth(token="t")),
        ({"type": "refresh", "token": "t"}, Refresh(token="t")),
        ({"type": "publish", "message": {"type": "event"}}, Publish(message={"type": "event"})),
        ({"type": "ping", "message_id": "m", "priority": 4}, Ping(message_id="m", priority=4)),
    ],
)
def test_every_command_type_decodes_to_its_class(raw: dict[str, Any], expected: Any) -> None:
    command = to_command(raw)
    assert type(command) is type(expected)
    assert command == expected


def test_unknown_fields_on_commands_are_ignored() -> None:
    assert to_command({"type": "ping", "colour": "red"}) == Ping()


@pytest.mark.parametrize("command_type", ["pong", "subscription_confirmed", "data", "batch", 5])
def test_unknown_type(command_type: Any) -> None:
    error = _command_error({"type": command_type})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.details == {"type": command_type}


@pytest.mark.parametrize("command_type", [["subscribe"], {"a": 1}])
def test_unhashable_type_is_unknown_type_not_a_crash(command_type: Any) -> None:
    """`{"type": []}` must be a ProtocolError; a TypeError would end the connection."""
    assert _command_error({"type": command_type}).code is ErrorCode.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"type": "subscribe", "stream": 5}, "$.stream"),
        ({"type": "subscribe", "stream": "s", "since": {"epoch": "e"}}, "$.since"),
        ({"type": "subscribe", "stream": "s", "rate_limit": "fast"}, "$.rate_limit"),
        ({"type": "heartbeat", "client_timestamp": [1]}, "$.client_timestamp"),
        ({"type": "heartbeat", "client_timestamp": True}, "$.client_timestamp"),
        ({"type": "auth"}, "token"),
        ({"type": "publish", "message": [1]}, "$.message"),
        ({"type": "unsubscribe", "subscription_ids": "a"}, "$.subscription_ids"),
        ({"type": "ping", "message_id": 5}, "$.message_id"),
    ],
)
def test_invalid_fields_are_invalid_message_naming_the_field(
    raw: dict[str, Any], path: str
) -> None:
    error = _command_error(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.details == {"type": raw["type"]}
    assert path in error.message


def test_no_type_is_invalid_message() -> None:
    assert _command_error({"stream": "market_data"}).code is ErrorCode.INVALID_MESSAGE


def test_unsupported_version_reaches_to_command() -> None:
    error = _command_error({"type": "ping", "version": "9.9"})
    assert error.code is ErrorCode.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"message_id": "m1"}, "m1"),
        ({"message_id": 5}, None),
        ({}, None),
        ({"message_id": None}, None),
    ],
)
def test_message_id_of(raw: dict[str, Any], expected: str | None) -> None:
    assert message_id_of(raw) == expected


# --------------------------------------------------------------------------- encoding


def _message(**data: Any) -> DataMessage:
    return DataMessage(
        type="market_data",
        timestamp="2024-01-02T03:04:05.000006Z",
        message_id="m1",
        stream="market_data",
        key="AAPL",
        seq=12,
        epoch="e1",
        source="simulator",
        data=data,
        symbol="AAPL",
        data_type="trade",
    )


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_round_trip_in_every_format(wire_format: WireFormat) -> None:
    message = _message(price=101.25, size=3.0, trade_id="t1", flags=[1, 2], nested={"a": None})
    frame = encode(message, wire_format)
    if wire_format.binary:
        assert msgspec.msgpack.decode(frame, type=DataMessage) == message
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(frame)
    else:
        assert msgspec.json.decode(frame, type=DataMessage) == message


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_frames_decode_back_through_decode_object(wire_format: WireFormat) -> None:
    frame = encode(_message(price=1.5, size=1.0), wire_format)
    decoded = decode_object(frame, wire_format.binary, wire_format)
    assert decoded["seq"] == 12 and decoded["data"] == {"price": 1.5, "size": 1.0}


def test_msgpack_is_smaller_than_json() -> None:
    message = _message(price=101.25, size=3.0)
    assert len(encode(message, WireFormat.MSGPACK)) < len(encode(message, WireFormat.JSON))


def test_encoding_is_deterministic() -> None:
    message = _message(price=Decimal("1.10"), size=2.0)
    for wire_format in WIRE_FORMATS:
        assert encode(message, wire_format) == encode(message, wire_format)


@pytest.mark.parametrize(
    ("wire_format", "price", "size"),
    [
        (WireFormat.JSON, 101.10, 0.1),
        (WireFormat.JSON_DECIMAL_STRINGS, "101.10", "0.10000000000000000001"),
        (WireFormat.MSGPACK, 101.1, 0.1),
        (WireFormat.MSGPACK_DECIMAL_STRINGS, "101.10", "0.10000000000000000001"),
    ],
)
def test_decimals_are_numbers_or_strings_by_format(
    wire_format: WireFormat, price: Any, size: Any
) -> None:
    message = _message(price=Decimal("101.10"), size=Decimal("0.10000000000000000001"), f=2.5)
    frame = encode(message, wire_format)
    decoded = decode_object(frame, wire_format.binary, wire_format)
    assert decoded["data"]["price"] == price and type(decoded["data"]["price"]) is type(price)
    assert decoded["data"]["size"] == size and type(decoded["data"]["size"]) is type(size)
    assert decoded["data"]["f"] == 2.5  # floats stay numbers in every format


def test_json_decimal_number_keeps_every_digit() -> None:
    frame = encode(_message(price=Decimal("12345678901234567.890")), WireFormat.JSON)
    assert b'"price":12345678901234567.890' in frame


def test_json_decimal_string_is_exact() -> None:
    frame = encode(_message(price=Decimal("101.10")), WireFormat.JSON_DECIMAL_STRINGS)
    assert b'"price":"101.10"' in frame


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_replies_round_trip(wire_format: WireFormat) -> None:
    reply = ErrorReply(
        error_code="invalid_filter", error_message="bad", retryable=False, details={"f": ["x"]}
    )
    frame = encode(reply, wire_format)
    decoded = decode_object(frame, wire_format.binary, wire_format)
    assert decoded["type"] == "error"
    assert decoded["details"] == {"f": ["x"]}
    assert decoded["message_id"] == reply.message_id
