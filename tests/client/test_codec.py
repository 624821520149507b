"""Frames of both subprotocols and the connection URL's query options."""

from __future__ import annotations

import msgspec
import pytest

from tidewire.client.codec import FrameCodec, connection_url


def test_json_round_trip() -> None:
    codec = FrameCodec("tidewire.v3.json")
    assert not codec.binary
    payload = codec.encode({"type": "heartbeat", "client_timestamp": 5})
    assert payload == b'{"type":"heartbeat","client_timestamp":5}'
    assert codec.decode(payload) == {"type": "heartbeat", "client_timestamp": 5}
    assert codec.decode('{"a":1}') == {"a": 1}


def test_msgpack_round_trip() -> None:
    codec = FrameCodec("tidewire.v3.msgpack")
    assert codec.binary
    payload = codec.encode({"type": "subscribe", "stream": "market_data"})
    assert msgspec.msgpack.decode(payload) == {"type": "subscribe", "stream": "market_data"}
    assert codec.decode(payload) == {"type": "subscribe", "stream": "market_data"}


@pytest.mark.parametrize("frame", [b"not json", b"[1, 2]", b"{"])
def test_bad_frames_are_value_errors(frame: bytes) -> None:
    with pytest.raises(ValueError):
        FrameCodec().decode(frame)


def test_unknown_subprotocol_is_refused() -> None:
    with pytest.raises(ValueError, match=r"tidewire\.v3\.json"):
        FrameCodec("tidewire.v2.json")


def test_url_without_options_is_unchanged() -> None:
    url = "ws://h:1/ws?token=abc"
    assert connection_url(url, batch_ms=None, decimals_as_strings=False) == url


def test_url_options_are_query_parameters() -> None:
    assert (
        connection_url("ws://h:1/ws", batch_ms=20, decimals_as_strings=True)
        == "ws://h:1/ws?batch_ms=20&decimals=string"
    )
    assert (
        connection_url("wss://h/ws?token=a&batch_ms=5", batch_ms=50, decimals_as_strings=False)
        == "wss://h/ws?token=a&batch_ms=50"
    )


@pytest.mark.parametrize(
    ("url", "batch_ms"), [("http://h/ws", None), ("h:1/ws", None), ("ws://h/ws", 0)]
)
def test_bad_urls_and_options(url: str, batch_ms: int | None) -> None:
    with pytest.raises(ValueError):
        connection_url(url, batch_ms=batch_ms, decimals_as_strings=True)
