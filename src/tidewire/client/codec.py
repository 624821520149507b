"""Frames of the client's subprotocol and the connection URL (docs/protocol.md section 1).

`tidewire.v3.json` travels in text frames, `tidewire.v3.msgpack` in binary frames, with the
same field names. Connection options are query parameters of the WebSocket URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from tidewire.protocol.codec import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, SUBPROTOCOLS


class FrameCodec:
    """Encodes commands and decodes server frames for one subprotocol."""

    def __init__(self, subprotocol: str = SUBPROTOCOL_JSON) -> None:
        if subprotocol not in SUBPROTOCOLS:
            raise ValueError(
                f"unknown subprotocol {subprotocol!r}; use one of {', '.join(SUBPROTOCOLS)}"
            )
        self.subprotocol = subprotocol
        self.binary = subprotocol == SUBPROTOCOL_MSGPACK
        """True when frames are binary (msgpack), False for text (JSON)."""
        self._encode = msgspec.msgpack.encode if self.binary else msgspec.json.encode
        self._json = msgspec.json.Decoder()
        self._msgpack = msgspec.msgpack.Decoder()

    def encode(self, message: dict[str, Any]) -> bytes:
        """One command as frame payload (UTF-8 JSON or msgpack)."""
        return self._encode(message)

    def decode(self, frame: bytes | str) -> dict[str, Any]:
        """One server frame as a message object.

        Frames are read in the subprotocol's format (a `str` is always JSON). Raises ValueError
        when the frame is not one object of that format.
        """
        try:
            if isinstance(frame, str) or not self.binary:
                value = self._json.decode(frame)
            else:
                value = self._msgpack.decode(frame)
        except msgspec.DecodeError as exc:
            raise ValueError(f"undecodable frame: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("a frame must hold one object")
        return value


def connection_url(url: str, *, batch_ms: int | None, decimals_as_strings: bool) -> str:
    """`url` with the connection options as query parameters (`batch_ms`, `decimals`).

    Parameters already in `url` are kept, except those the options set.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"the gateway URL must start with ws:// or wss://, not {url!r}")
    options: dict[str, str] = {}
    if batch_ms is not None:
        if batch_ms < 1:
            raise ValueError("batch_ms must be at least 1")
        options["batch_ms"] = str(batch_ms)
    if decimals_as_strings:
        options["decimals"] = "string"
    if not options:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in options]
    query.extend(options.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
