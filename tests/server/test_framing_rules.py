"""The pure inbound frame rules (server/framing.py), driven without sockets."""

from __future__ import annotations

import logging

import pytest
from picows import WSMsgType

from tidewire.core.ratelimit import TokenBucket
from tidewire.server.framing import (
    InboundFrames,
    Kind,
    PicowsLog,
    ReassemblyBudget,
    Violation,
    WarnLimiter,
    close_code_violation,
)
from tidewire.server.handshake import HandshakeRefused, check_version

TEXT, BINARY, CONT = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION


def inbound(
    budget: ReassemblyBudget | None = None,
    frames: tuple[float, float] = (10, 20),
    bytes_: tuple[float, float] = (1000, 5000),
    max_message: int = 1000,
) -> InboundFrames:
    return InboundFrames(
        TokenBucket(*frames, 0.0),
        TokenBucket(*bytes_, 0.0),
        budget or ReassemblyBudget(10_000),
        max_message,
    )


def kind(result: object) -> Kind | None:
    return result.kind if isinstance(result, Violation) else None


def test_frame_budget_counts_every_frame_and_refills() -> None:
    rules = inbound(frames=(10, 20))
    assert all(rules.admit(0.0, 1, False) is None for _ in range(20))
    assert kind(rules.admit(0.0, 1, False)) is Kind.FRAME_RATE
    assert rules.admit(1.0, 1, False) is None  # 10 tokens back after a second


def test_byte_budget_and_a_frame_larger_than_the_burst() -> None:
    rules = inbound(frames=(1000, 1000), bytes_=(100, 500))
    assert rules.admit(0.0, 400, False) is None
    violation = rules.admit(0.0, 200, False)
    assert isinstance(violation, Violation)
    assert (violation.kind, violation.code) == (Kind.BYTE_RATE, 4029)
    # Larger than the burst: charged the whole burst, so it passes once the bucket is full.
    assert rules.admit(10.0, 10_000, False) is None


def test_rsv_bits_are_a_protocol_error() -> None:
    violation = inbound().admit(0.0, 1, True)
    assert isinstance(violation, Violation) and violation.code == 1002


def test_reassembly_and_its_rules() -> None:
    budget = ReassemblyBudget(10_000)
    rules = inbound(budget)
    assert rules.data(TEXT, False, memoryview(b'{"a"')) is None
    assert budget.used == 4
    assert kind(rules.data(TEXT, True, memoryview(b"{}"))) is Kind.INTERLEAVED
    assert rules.data(CONT, False, memoryview(b":")) is None
    assert rules.data(CONT, True, memoryview(b"1}")) == (b'{"a":1}', False)
    assert budget.used == 0 and rules.held == 0
    assert kind(rules.data(CONT, True, memoryview(b"x"))) is Kind.LONE_CONTINUATION
    assert rules.data(BINARY, True, memoryview(b"\xff")) == (b"\xff", True)  # not text


def test_text_must_be_utf8_once_reassembled() -> None:
    rules = inbound()
    assert rules.data(TEXT, False, memoryview(b'"\xe2')) is None  # cut inside a character
    assert rules.data(CONT, True, memoryview(b'\x82\xac"')) == ('"€"'.encode(), False)
    violation = rules.data(TEXT, True, memoryview(b'"\xff"'))
    assert isinstance(violation, Violation) and violation.code == 1007


def test_per_connection_cap_on_a_reassembled_message() -> None:
    rules = inbound(max_message=10)
    assert rules.data(TEXT, False, memoryview(b"x" * 6)) is None
    violation = rules.data(CONT, False, memoryview(b"x" * 6))
    assert isinstance(violation, Violation) and violation.code == 1009


def test_process_budget_is_shared_and_released() -> None:
    budget = ReassemblyBudget(100)
    first, second, third = inbound(budget), inbound(budget), inbound(budget)
    assert first.data(TEXT, False, memoryview(b"x" * 60)) is None
    assert kind(second.data(TEXT, False, memoryview(b"x" * 60))) is Kind.REASSEMBLY_BUDGET
    assert third.data(BINARY, False, memoryview(b"x" * 30)) is None
    assert kind(third.data(CONT, False, memoryview(b"x" * 20))) is Kind.REASSEMBLY_BUDGET
    assert budget.used == 90
    third.release()  # what the data plane does on a violation or a disconnect
    first.release()
    assert budget.used == 0
    first.release()  # twice is harmless
    assert budget.used == 0
    assert second.data(TEXT, True, memoryview(b"{}")) == (b"{}", False)  # whole: no budget


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999])
def test_close_codes_a_peer_may_send(code: int) -> None:
    assert close_code_violation(code, 2) is None


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
def test_close_codes_a_peer_may_not_send(code: int) -> None:
    violation = close_code_violation(code, 2)
    assert isinstance(violation, Violation) and violation.code == 1002


def test_a_close_frame_without_a_code_is_fine() -> None:
    assert close_code_violation(0, 0) is None


def test_warnings_are_rate_limited_per_kind() -> None:
    limiter = WarnLimiter(interval=10.0)
    assert limiter.allow("rsv_bits", 0.0) == 0
    assert limiter.allow("rsv_bits", 1.0) is None
    assert limiter.allow("rsv_bits", 2.0) is None
    assert limiter.allow("invalid_utf8", 2.0) == 0  # another kind has its own allowance
    assert limiter.allow("rsv_bits", 10.0) == 2  # the next names what was left out


@pytest.mark.parametrize("version", [None, "", "8", "13, 8"])
def test_only_websocket_version_13(version: str | None) -> None:
    with pytest.raises(HandshakeRefused) as refused:
        check_version(version)
    assert refused.value.status == 426
    assert refused.value.headers == {"Sec-WebSocket-Version": "13"}
    check_version("13")


def test_picows_log_rate_limits_by_kind(caplog: pytest.LogCaptureFixture) -> None:
    adapter = PicowsLog(logging.getLogger("test.picows"), interval=60.0)
    with caplog.at_level(logging.DEBUG, logger="test.picows"):
        for _ in range(3):
            adapter.error("WS parser error: %s, initiate disconnect", ("bad",))
            adapter.warning("handshake failed: %s", "x")
        adapter.info("connection %s", 1)  # below WARNING: never held back
        adapter.info("connection %s", 2)
    assert adapter.parser_errors == 3 and adapter.suppressed == 4
    levels = [(r.levelno, r.getMessage()[:15]) for r in caplog.records]
    assert levels == [
        (logging.WARNING, "WS parser error"),
        (logging.WARNING, "handshake faile"),
        (logging.INFO, "connection 1"),
        (logging.INFO, "connection 2"),
    ]
