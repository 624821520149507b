"""Server frames of core/frames.py, parsed back as RFC 6455 section 5.2 describes them."""

from __future__ import annotations

import pytest

from tidewire.core.frames import OPCODE_BINARY, OPCODE_TEXT, build_frame, frame_header


def parse_header(frame: bytes) -> tuple[bool, int, int, int, int]:
    """(fin, rsv bits, opcode, payload length, header length) of an unmasked frame."""
    first, second = frame[0], frame[1]
    assert not second & 0x80, "server frames are never masked"
    length = second & 0x7F
    header_length = 2
    if length == 126:
        length = int.from_bytes(frame[2:4], "big")
        header_length = 4
    elif length == 127:
        length = int.from_bytes(frame[2:10], "big")
        header_length = 10
    return bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, length, header_length


# The shortest length encoding is mandatory (RFC 6455 5.2): 7 bits up to 125, then 16, then 64.
LENGTHS = [
    (0, 2),
    (1, 2),
    (125, 2),
    (126, 4),
    (127, 4),
    (65535, 4),
    (65536, 10),
    (70000, 10),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize(("length", "header_length"), LENGTHS)
def test_header_encodes_length_in_shortest_form(
    length: int, header_length: int, binary: bool
) -> None:
    header = frame_header(length, binary)
    assert len(header) == header_length
    fin, rsv, opcode, parsed_length, parsed_header_length = parse_header(header + b"\0" * 8)
    assert parsed_length == length
    assert parsed_header_length == header_length
    assert fin is True
    assert rsv == 0
    assert opcode == (OPCODE_BINARY if binary else OPCODE_TEXT)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("length", [length for length, _ in LENGTHS])
def test_build_frame_is_header_plus_payload(length: int, binary: bool) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = build_frame(payload, binary)
    fin, _, opcode, parsed_length, header_length = parse_header(frame)
    assert fin is True
    assert opcode == (0x2 if binary else 0x1)
    assert parsed_length == length
    assert frame[header_length:] == payload
    assert len(frame) == header_length + length


def test_opcode_values_are_rfc_6455() -> None:
    assert (OPCODE_TEXT, OPCODE_BINARY) == (0x1, 0x2)
    assert build_frame(b"{}", False)[0] == 0x81
    assert build_frame(b"\x80", True)[0] == 0x82
