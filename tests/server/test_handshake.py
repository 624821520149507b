"""server/handshake.py: subprotocols, query options and where a handshake's token comes from."""

from __future__ import annotations

import pytest

from tidewire.protocol.codec import WireFormat
from tidewire.server.handshake import HandshakeRefused, negotiate

JSON = "tidewire.v3.json"


def refused(*args: object, **kwargs: object) -> HandshakeRefused:
    with pytest.raises(HandshakeRefused) as caught:
        negotiate(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_defaults_and_options() -> None:
    plain = negotiate("/ws", None, 1000)
    assert (plain.path, plain.subprotocol, plain.wire_format, plain.batch_ms, plain.token) == (
        "/ws",
        None,
        WireFormat.JSON,
        0,
        None,
    )
    options = negotiate("/ws?batch_ms=50&decimals=string", "tidewire.v3.msgpack", 1000)
    assert options.subprotocol == "tidewire.v3.msgpack" and options.batch_ms == 50
    assert options.wire_format is WireFormat.MSGPACK_DECIMAL_STRINGS


def test_unknown_query_options_and_subprotocols_are_refused() -> None:
    assert refused("/ws?foo=1", None, 1000).status == 400
    assert refused("/ws", "chat", 1000).status == 400
    assert refused("/ws?batch_ms=5000", None, 1000).status == 400


def test_the_token_comes_from_the_header_first() -> None:
    both = negotiate(
        "/ws", f"{JSON}, tidewire.token.from-entry", 1000, authorization="Bearer from-header"
    )
    assert both.token == "from-header"
    assert both.subprotocol == JSON  # the token entry is never echoed
    assert negotiate("/ws", f"tidewire.token.abc.def, {JSON}", 1000).token == "abc.def"
    # A proxy's Basic credentials are not a token: the client may still send `auth`.
    assert negotiate("/ws", None, 1000, authorization="Basic dXNlcg==").token is None


def test_a_token_entry_alone_is_refused_clearly() -> None:
    error = refused("/ws", "tidewire.token.abc", 1000)
    assert error.status == 400 and JSON in error.reason


def test_query_tokens_only_when_turned_on() -> None:
    error = refused("/ws?token=abc", None, 1000)
    assert error.status == 400 and "auth_query_token" in error.reason and "abc" not in error.reason
    assert negotiate("/ws?token=abc", None, 1000, query_token=True).token == "abc"


def test_close_reasons_fit_a_close_frame() -> None:
    from tidewire.server.dataplane import MAX_CLOSE_REASON_BYTES, close_reason

    assert close_reason("token expired") == b"token expired"
    long = close_reason("é" * 100)  # 200 bytes of two-byte characters
    assert len(long) <= MAX_CLOSE_REASON_BYTES and long.decode() == "é" * 61
