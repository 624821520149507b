"""JSON and msgpack codecs (docs/protocol.md section 1) and decoding of client commands.

A connection speaks one of four *wire formats*: JSON or msgpack, with numbers or with decimal
strings. The hub encodes each data message at most once per wire format in use, so every
recipient of a format gets the same bytes.
"""

from __future__ import annotations

import enum
import typing
from typing import Any

import msgspec

from tidewire.protocol.compat import normalize_command
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import ClientCommand

SUBPROTOCOL_JSON = "tidewire.v3.json"
SUBPROTOCOL_MSGPACK = "tidewire.v3.msgpack"
SUBPROTOCOLS: tuple[str, ...] = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)


class WireFormat(enum.IntEnum):
    """How one connection's frames are encoded; the value indexes per-message frame caches."""

    JSON = 0
    JSON_DECIMAL_STRINGS = 1
    MSGPACK = 2
    MSGPACK_DECIMAL_STRINGS = 3

    @property
    def binary(self) -> bool:
        return self >= WireFormat.MSGPACK

    @staticmethod
    def of(subprotocol: str, decimals_as_strings: bool) -> WireFormat:
        base = WireFormat.MSGPACK if subprotocol == SUBPROTOCOL_MSGPACK else WireFormat.JSON
        return WireFormat(base + 1) if decimals_as_strings else base


WIRE_FORMATS = tuple(WireFormat)

_ENCODERS: tuple[msgspec.json.Encoder | msgspec.msgpack.Encoder, ...] = (
    msgspec.json.Encoder(decimal_format="number"),
    msgspec.json.Encoder(decimal_format="string"),
    msgspec.msgpack.Encoder(decimal_format="number"),
    msgspec.msgpack.Encoder(decimal_format="string"),
)
ENCODE = tuple(encoder.encode for encoder in _ENCODERS)
"""`ENCODE[wire_format](obj)`: the encoder of each wire format."""


_json_decoder = msgspec.json.Decoder()
_msgpack_decoder = msgspec.msgpack.Decoder()

UNDECODABLE: tuple[type[Exception], ...] = (
    msgspec.DecodeError,
    ValueError,  # invalid UTF-8 in a string
    RecursionError,  # nesting deeper than the decoder's stack
)
"""What decoding untrusted bytes may raise: each is the sender's mistake, never ours."""


def encode(obj: Any, wire_format: WireFormat) -> bytes:
    """Encode one message in a connection's wire format."""
    return ENCODE[wire_format](obj)


def decode_object(payload: bytes, binary: bool, wire_format: WireFormat) -> dict[str, Any]:
    """Decode one inbound frame into a JSON object.

    A text frame that is not JSON is `invalid_json`; a binary frame that is not msgpack, a frame
    of the wrong kind for the subprotocol, or a value that is not an object, `invalid_message`.
    """
    if binary != wire_format.binary:
        kind = "binary" if binary else "text"
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"{kind} frames are not used by this connection's subprotocol "
            f"({SUBPROTOCOL_MSGPACK if wire_format.binary else SUBPROTOCOL_JSON})",
        )
    try:
        value = _msgpack_decoder.decode(payload) if binary else _json_decoder.decode(payload)
    except UNDECODABLE as exc:
        reason = str(exc)[:200] or type(exc).__name__
        if binary:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"not msgpack: {reason}") from None
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not JSON: {reason}") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be an object")
    return value


_COMMAND_TYPES = frozenset(cls.__struct_config__.tag for cls in typing.get_args(ClientCommand))


def to_command(raw: dict[str, Any]) -> ClientCommand:
    """Map a decoded object (any dialect) to a typed client command.

    Raises ProtocolError: `unknown_type`, `unsupported_version` or `invalid_message` (with the
    JSON path of the bad field in the message).
    """
    cmd = normalize_command(raw)
    command_type = cmd.get("type")
    if not isinstance(command_type, str) or command_type not in _COMMAND_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {command_type!r}",
            {"type": command_type},
        )
    try:
        command: ClientCommand = msgspec.convert(cmd, ClientCommand)
        return command
    except msgspec.ValidationError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"invalid {command_type}: {exc}", {"type": command_type}
        ) from None


def message_id_of(raw: dict[str, Any]) -> str | None:
    """The request's `message_id` when it is a string, for `correlation_id` on error replies."""
    value = raw.get("message_id")
    return value if isinstance(value, str) else None
