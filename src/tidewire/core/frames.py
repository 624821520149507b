"""WebSocket frames built once per message and shared by every recipient (RFC 6455 section 5.2).

Server-to-client frames are never masked, so a frame's bytes do not depend on the connection:
the hub builds a frame once and writes the same bytes to every subscriber's transport.
"""

from __future__ import annotations

import struct

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
_FIN = 0x80
_U16 = struct.Struct("!BBH")
_U64 = struct.Struct("!BBQ")


def frame_header(length: int, binary: bool) -> bytes:
    """The header of an unmasked, unfragmented frame carrying `length` payload bytes."""
    first = _FIN | (OPCODE_BINARY if binary else OPCODE_TEXT)
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _U16.pack(first, 126, length)
    return _U64.pack(first, 127, length)


def build_frame(payload: bytes, binary: bool) -> bytes:
    """A complete server frame for `payload` (text frame for JSON, binary for msgpack)."""
    return frame_header(len(payload), binary) + payload
