"""Inbound frame rules of one connection, without I/O (docs/protocol.md, decisions table).

Every frame a client sends (data, continuation, PING, PONG, CLOSE) costs the gateway a
callback, so every frame counts against the connection's frame and byte budgets (token
buckets); past either the connection is closed with 4029. The message budget of
`CommandHandler` (4029 too) still counts whole messages on top.

Fragmented messages are reassembled here; the bytes held by every connection's unfinished
message are charged to one per-process `ReassemblyBudget`, so many connections holding
half a message cannot fill the process: a fragment that would take it past its limit closes
that connection with 1009.

RFC 6455 rules picows leaves to the application: RSV bits without a negotiated extension
(we negotiate none), a continuation without a started message, a new message while one is
unfinished (1002), invalid UTF-8 in a text message (1007), and close codes a peer must never
send (1002).

The data plane turns a `Violation` into a close and a rate-limited warning (`WarnLimiter`),
and counts each kind in `InboundCounters`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from picows import WSMsgType

from tidewire.core.ratelimit import TokenBucket
from tidewire.protocol.errors import CloseCode

FLOOD = CloseCode.INBOUND_RATE_EXCEEDED

PROTOCOL_ERROR = 1002
INVALID_TEXT = 1007
MESSAGE_TOO_BIG = 1009


class Kind(enum.StrEnum):
    """What went wrong; the key of the counters and of the once-per-connection warning."""

    FRAME_RATE = "frame_rate"
    BYTE_RATE = "byte_rate"
    RSV_BITS = "rsv_bits"
    LONE_CONTINUATION = "lone_continuation"
    INTERLEAVED = "interleaved_message"
    INVALID_UTF8 = "invalid_utf8"
    CLOSE_CODE = "invalid_close_code"
    MESSAGE_TOO_BIG = "message_too_big"
    REASSEMBLY_BUDGET = "reassembly_budget"


@dataclass(frozen=True, slots=True)
class Violation:
    kind: Kind
    code: int
    """The close code the connection gets."""
    reason: str


def close_code_violation(code: int, payload_size: int) -> Violation | None:
    """RFC 6455 7.4: the codes a peer may send. An empty close frame (no code) is fine;
    1005, 1006 and 1015 are for reporting only, 1016-2999 are unassigned, 5000+ do not
    exist. picows refuses most of these itself, but lets 1006, 0 and 5000+ through."""
    if payload_size == 0:
        return None
    if (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999:
        return None
    return Violation(Kind.CLOSE_CODE, PROTOCOL_ERROR, f"close code {code} may not be sent")


class ReassemblyBudget:
    """Bytes held in every connection's unfinished fragmented message, per process."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size


Message = tuple[bytes, bool]
"""A complete inbound message: payload and whether it is binary."""


class InboundFrames:
    """One connection's frame budgets and reassembly state."""

    __slots__ = ("_binary", "_budget", "_bytes", "_fragments", "_frames", "_max_message")

    def __init__(
        self,
        frames: TokenBucket,
        bytes_: TokenBucket,
        budget: ReassemblyBudget,
        max_message_bytes: int,
    ) -> None:
        self._frames = frames
        self._bytes = bytes_
        self._budget = budget
        self._max_message = max_message_bytes
        """The per-connection cap on a reassembled message (max_frame_bytes)."""
        self._fragments: bytearray | None = None
        self._binary = False

    @property
    def held(self) -> int:
        """Bytes of the unfinished message, charged to the process budget."""
        return len(self._fragments) if self._fragments is not None else 0

    def admit(self, now: float, size: int, rsv: bool) -> Violation | None:
        """Charge one frame of `size` payload bytes, of any type, against the budgets."""
        if not self._frames.take(now):
            return Violation(Kind.FRAME_RATE, FLOOD, "frame rate exceeded")
        # A frame larger than the burst could never pass: charge it the whole burst.
        if not self._bytes.take(now, min(size, self._bytes.burst)):
            return Violation(Kind.BYTE_RATE, FLOOD, "byte rate exceeded")
        if rsv:
            return Violation(Kind.RSV_BITS, PROTOCOL_ERROR, "RSV bits set without an extension")
        return None

    def data(
        self, msg_type: WSMsgType, fin: bool, payload: memoryview
    ) -> Message | Violation | None:
        """A TEXT, BINARY or CONTINUATION frame: the message it completes, a violation, or
        None while the message is unfinished."""
        if msg_type is WSMsgType.CONTINUATION:
            fragments = self._fragments
            if fragments is None:
                return Violation(Kind.LONE_CONTINUATION, PROTOCOL_ERROR, "no message to continue")
            size = len(payload)
            if len(fragments) + size > self._max_message:
                return Violation(Kind.MESSAGE_TOO_BIG, MESSAGE_TOO_BIG, "message too big")
            if not self._budget.reserve(size):
                return self._over_budget()
            fragments += payload
            if not fin:
                return None
            self.release()
            return self._complete(bytes(fragments), self._binary)
        if self._fragments is not None:
            return Violation(Kind.INTERLEAVED, PROTOCOL_ERROR, "new message before the last ended")
        binary = msg_type is WSMsgType.BINARY
        if fin:
            return self._complete(bytes(payload), binary)
        if not self._budget.reserve(len(payload)):
            return self._over_budget()
        self._fragments = bytearray(payload)
        self._binary = binary
        return None

    def release(self) -> None:
        """Give the unfinished message's bytes back (message done, or connection gone)."""
        if self._fragments is not None:
            self._budget.release(len(self._fragments))
            self._fragments = None

    def _over_budget(self) -> Violation:
        return Violation(
            Kind.REASSEMBLY_BUDGET, MESSAGE_TOO_BIG, "gateway reassembly buffers full; retry"
        )

    @staticmethod
    def _complete(payload: bytes, binary: bool) -> Message | Violation:
        if not binary:
            try:
                payload.decode()
            except UnicodeDecodeError:
                return Violation(Kind.INVALID_UTF8, INVALID_TEXT, "text message is not UTF-8")
        return payload, binary


class InboundCounters:
    """Violations by kind since start, and the warnings left out by `WarnLimiter`."""

    def __init__(self) -> None:
        self.violations: Counter[str] = Counter()
        self.warnings_suppressed = 0


class WarnLimiter:
    """At most one warning per kind per `interval` seconds for the whole process (one
    client per connection could otherwise flood the log), on top of once per connection."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def allow(self, kind: str, now: float) -> int | None:
        """None: leave this warning out; otherwise how many were left out since the last."""
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] += 1
            return None
        self._last[kind] = now
        return self._suppressed.pop(kind, 0)


class PicowsLog(logging.LoggerAdapter[logging.Logger]):
    """The logger handed to picows. Its own refusals (a parser error: bad opcode, unmasked
    or oversized control frame, close code 1005/1015, a frame over max_frame_bytes) are one
    ERROR line per connection, so any number of strangers could flood the log: every line
    of WARNING and above passes at most once per `interval` seconds per kind (its format
    string), parser errors as warnings and counted."""

    PARSER_ERROR = "WS parser error"

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        super().__init__(logger)
        self.parser_errors = 0
        """picows parser refusals since start (each closed its connection)."""
        self.suppressed = 0
        self._limiter = WarnLimiter(interval)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.WARNING:
            kind = str(msg)
            if kind.startswith(self.PARSER_ERROR):
                self.parser_errors += 1
                level = logging.WARNING
            left_out = self._limiter.allow(kind, time.monotonic())
            if left_out is None:
                self.suppressed += 1
                return
            if left_out:
                msg = f"{msg} ({left_out} similar lines left out)"
        super().log(level, msg, *args, **kwargs)
