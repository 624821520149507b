"""Which close codes lead to a reconnection (docs/protocol.md section 6)."""

from __future__ import annotations

import pytest

from tidewire.client.errors import AuthenticationError, ConnectionClosedError
from tidewire.client.reconnect import reconnect_refusal, throttled
from tidewire.protocol.errors import RECONNECT_CLOSE_CODES


def _refusal(code: int, **options: object) -> ConnectionClosedError | None:
    settings: dict[str, object] = {"auto_reconnect": True, "attempts": 0, "max_attempts": None}
    settings.update(options)
    return reconnect_refusal(code, "why", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [1001, 1006, 1011, 1012, 1013, 4000, 4008, 4009, 4010, 4029])
def test_reconnects_after_transient_closes(code: int) -> None:
    assert code in RECONNECT_CLOSE_CODES
    assert _refusal(code) is None


@pytest.mark.parametrize("code", [1000, 1002, 1008, 1009, 4003])
def test_does_not_reconnect_after_final_closes(code: int) -> None:
    error = _refusal(code)
    assert isinstance(error, ConnectionClosedError)
    assert not isinstance(error, AuthenticationError)
    assert error.code == code
    assert error.reason == "why"


def test_4001_is_an_authentication_error() -> None:
    error = _refusal(4001)
    assert isinstance(error, AuthenticationError)
    assert error.code == 4001


def test_auto_reconnect_off_never_reconnects() -> None:
    error = _refusal(1006, auto_reconnect=False)
    assert isinstance(error, ConnectionClosedError)
    assert "auto_reconnect" in str(error)


def test_attempt_limit() -> None:
    assert _refusal(1006, attempts=2, max_attempts=3) is None
    error = _refusal(1006, attempts=3, max_attempts=3)
    assert isinstance(error, ConnectionClosedError)
    assert "3 reconnection attempt" in str(error)
    assert isinstance(_refusal(1012, attempts=0, max_attempts=0), ConnectionClosedError)


def test_throttling_codes_back_off_harder() -> None:
    assert throttled(4009) and throttled(4029)
    assert not throttled(1006) and not throttled(4008)
