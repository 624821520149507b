"""Seeded, time-budgeted mutation fuzz of the inbound frame rules (server/framing.py).

(1) pure: `InboundFrames` driven as the data plane drives it (`_ClientListener.on_ws_frame`:
    `admit`, then PING / PONG / CLOSE / data), several connections sharing one
    `ReassemblyBudget`, with long sequences of (opcode, fin, rsv, payload) mutated from valid
    ones: fragmented messages cut anywhere (inside UTF-8 characters too), control frames
    between fragments, lone and interleaved continuations, RSV bits, invalid UTF-8, messages
    past the per-connection cap and the process budget, random close codes, floods. Every
    answer must be None, a message or a `Violation` with its documented close code (1002,
    1007, 1009, 4029), and an independent model of the rules (docs/protocol.md) says which;
    nothing may raise; the budget always equals what the live connections hold and is back
    to zero once every connection released.
(2) live: a real gateway (picows on 127.0.0.1) gets raw TCP connections, handshaken by
    hand, that write seeded mutations of masked client frames (header bit flips, wrong or
    huge lengths, unmasked frames, RSV bits, bad opcodes, fragmented control frames, cut off
    messages, random bytes, floods), each closed by either side. Any close frame the
    gateway sends carries a documented code (never 1011 unless it echoes the client's own
    close frame); a complete frame stream is always answered (a pong or a close: no hang);
    no ERROR record or traceback is logged; a healthy subscribed client keeps receiving what
    the test publishes; the reassembly budget is back to zero at the end.

The loop runs until its time budget is spent (time is a budget, never an assertion); the
inputs of iteration `n` depend only on the seed and `n`, so any failure names both.

    TIDEWIRE_FUZZ_SECONDS   seconds per file (default 30: 1/3 pure, 2/3 live)
    TIDEWIRE_FUZZ_SEED      the seed (default fixed, so CI is reproducible)
    TIDEWIRE_FUZZ_ITERATION replay only this iteration (with the seed of the failure)

Replay a failure:  TIDEWIRE_FUZZ_SEED=<seed> TIDEWIRE_FUZZ_ITERATION=<n> \\
                       .venv/bin/pytest -q -p no:cacheprovider tests/fuzz/test_fuzz_frames.py
An hour (both files, 1800 s each):  make fuzz   (TIDEWIRE_FUZZ_SECONDS=... to change it)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import random
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from picows import WSMsgType

from messages import quote
from support import TIMEOUT, WsClient
from tidewire.core.ratelimit import TokenBucket
from tidewire.server.app import Gateway
from tidewire.server.framing import (
    InboundFrames,
    Kind,
    ReassemblyBudget,
    Violation,
    close_code_violation,
)

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]

SECONDS = float(os.environ.get("TIDEWIRE_FUZZ_SECONDS", "30"))
SEED = int(os.environ.get("TIDEWIRE_FUZZ_SEED", "6455"))
_REPLAY = os.environ.get("TIDEWIRE_FUZZ_ITERATION")
REPLAY = int(_REPLAY) if _REPLAY else None

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MSG_TYPES = {
    CONT: WSMsgType.CONTINUATION,
    TEXT: WSMsgType.TEXT,
    BINARY: WSMsgType.BINARY,
    CLOSE: WSMsgType.CLOSE,
    PING: WSMsgType.PING,
    PONG: WSMsgType.PONG,
}

CODE_OF_KIND: dict[Kind, int] = {
    Kind.FRAME_RATE: 4029,
    Kind.BYTE_RATE: 4029,
    Kind.RSV_BITS: 1002,
    Kind.LONE_CONTINUATION: 1002,
    Kind.INTERLEAVED: 1002,
    Kind.INVALID_UTF8: 1007,
    Kind.CLOSE_CODE: 1002,
    Kind.MESSAGE_TOO_BIG: 1009,
    Kind.REASSEMBLY_BUDGET: 1009,
}
"""docs/protocol.md, decisions table: the close code of every inbound rule."""

SENDABLE_CLOSE_CODES = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])
"""RFC 6455 7.4: the codes a peer may put in a close frame."""

GATEWAY_CLOSE_CODES = frozenset({1002, 1007, 1009, 4029})
"""What the gateway may close a connection with for the frames it sent (docs/protocol.md,
close codes and framing); besides these it only echoes a client's own valid close code."""


def iterations(name: str, seconds: float) -> Iterator[tuple[int, random.Random]]:
    """(n, the rng of iteration n) until `seconds` are spent; one only when replaying."""
    if REPLAY is not None:
        yield REPLAY, random.Random(f"{SEED}/{name}/{REPLAY}")
        return
    deadline = time.monotonic() + seconds
    for n in itertools.count():
        if n and time.monotonic() >= deadline:
            return
        yield n, random.Random(f"{SEED}/{name}/{n}")


def where(name: str, n: int) -> str:
    return f"[replay: TIDEWIRE_FUZZ_SEED={SEED} TIDEWIRE_FUZZ_ITERATION={n}, test {name}]"


# ------------------------------------------------------------------ shared generators

UTF8_SAMPLES = ["ping", "é", "€", "😀", "中文", "\u0000", "\u202e", "ß" * 3, '"}{', " "]
INVALID_UTF8 = [b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80"]
INTERESTING_CLOSE_CODES: list[int] = [
    *(0, 1, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1014, 1015, 1016),
    *(2999, 3000, 4000, 4029, 4999, 5000, 65535),
]


def text_payload(rng: random.Random, size: int) -> bytes:
    """Valid UTF-8 of about `size` bytes, multi-byte characters included."""
    out = bytearray()
    while len(out) < size:
        out += rng.choice(UTF8_SAMPLES).encode()
    return bytes(out)


def corrupt_utf8(rng: random.Random, payload: bytes) -> bytes:
    at = rng.randrange(len(payload) + 1)
    return payload[:at] + rng.choice(INVALID_UTF8) + payload[at:]


def split(rng: random.Random, payload: bytes, parts: int) -> list[bytes]:
    """`payload` cut at random points (possibly inside a character, possibly empty)."""
    cuts = sorted(rng.randint(0, len(payload)) for _ in range(parts - 1))
    bounds = [0, *cuts, len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(bounds)]


def close_code(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.5:
        return rng.choice(INTERESTING_CLOSE_CODES)
    if pick < 0.8:
        return int(rng.choice(sorted(SENDABLE_CLOSE_CODES)))
    return rng.randrange(65536)


# ------------------------------------------------------------------ (1) pure InboundFrames

PureFrame = tuple[int, bool, int, bytes]
"""(opcode, fin, rsv bits, payload) as picows hands them to on_ws_frame."""


def pure_message(rng: random.Random, max_message: int) -> list[PureFrame]:
    """One valid message (or control frame), possibly fragmented with control frames in
    between, as a well-behaved client would send it."""
    kind = rng.random()
    if kind < 0.15:
        opcode = rng.choice([PING, PONG])
        return [(opcode, True, 0, rng.randbytes(rng.randint(0, 125)))]
    if kind < 0.22:
        code = close_code(rng)
        if rng.random() < 0.1:
            return [(CLOSE, True, 0, b"")]
        return [(CLOSE, True, 0, struct.pack("!H", code) + text_payload(rng, rng.randint(0, 8)))]
    binary = rng.random() < 0.3
    size = rng.choice([0, 1, 2, 10, 50, rng.randint(0, max_message), max_message])
    payload = rng.randbytes(size) if binary else text_payload(rng, size)[: max(size, 0)]
    if rng.random() < 0.4:
        return [(BINARY if binary else TEXT, True, 0, payload)]
    parts = split(rng, payload, rng.randint(2, 8))
    frames: list[PureFrame] = [(BINARY if binary else TEXT, False, 0, parts[0])]
    for part in parts[1:]:
        if rng.random() < 0.15:  # control frames may come between fragments
            frames.append((rng.choice([PING, PONG]), True, 0, rng.randbytes(rng.randint(0, 5))))
        frames.append((CONT, False, 0, part))
    last = frames[-1]
    frames[-1] = (last[0], True, last[2], last[3])
    return frames


def pure_mutate(rng: random.Random, frames: list[PureFrame], max_message: int) -> None:
    """Break the sequence in one of the ways picows lets through to the application."""
    if not frames:
        return
    i = rng.randrange(len(frames))
    opcode, fin, rsv, payload = frames[i]
    match rng.randrange(10):
        case 0:
            frames[i] = (opcode, not fin, rsv, payload)
        case 1:
            frames[i] = (opcode, fin, rng.randint(1, 7), payload)
        case 2:
            if opcode in (CONT, TEXT, BINARY):
                frames[i] = (rng.choice([CONT, TEXT, BINARY]), fin, rsv, payload)
        case 3:
            del frames[i]
        case 4:
            frames.insert(i, frames[i])
        case 5:
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        case 6:
            if opcode in (CONT, TEXT):
                frames[i] = (opcode, fin, rsv, corrupt_utf8(rng, payload))
        case 7:
            if opcode in (CONT, TEXT, BINARY):
                size = rng.randint(max_message // 2, max_message + 10)
                frames[i] = (opcode, fin, rsv, payload + b"x" * size)
        case 8:
            frames[i] = (CLOSE, True, 0, struct.pack("!H", close_code(rng)))
        case _:
            frames[i] = (opcode, fin, rsv, b"")


@dataclass
class PureConnection:
    """One connection of the model: its InboundFrames and what the test fed it."""

    rules: InboundFrames
    started: bool = False
    binary: bool = False
    fed: bytearray = field(default_factory=bytearray)


class PureWorld:
    """Several connections sharing one reassembly budget, dispatched like the data plane."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = 1000.0
        self.max_message = rng.choice([256, 1024, 4096])
        self.max_frame = self.max_message  # picows max_frame_size = settings.max_frame_bytes
        self.budget = ReassemblyBudget(rng.choice([1024, 4096, 16384, 1 << 20]))
        self.connections = [self.open() for _ in range(rng.randint(1, 4))]
        self.messages = 0
        self.violations: dict[Kind, int] = dict.fromkeys(Kind, 0)

    def open(self) -> PureConnection:
        rng = self.rng
        frame_rate = rng.choice([10.0, 1000.0, 1e9])
        frame_burst = rng.choice([5, 50, 100_000])
        byte_rate = rng.choice([1000.0, 1e6, 1e12])
        byte_burst = rng.choice([1024, 65536, 1 << 40])
        return PureConnection(
            InboundFrames(
                TokenBucket(frame_rate, frame_burst, self.now),
                TokenBucket(byte_rate, byte_burst, self.now),
                self.budget,
                self.max_message,
            )
        )

    def gone(self, index: int) -> None:
        """What on_ws_disconnected (or a violation's close) does; a new client takes its
        place."""
        self.connections[index].rules.release()
        self.connections[index] = self.open()

    def feed(self, index: int, frame: PureFrame, info: str) -> None:
        opcode, fin, rsv, payload = frame
        conn = self.connections[index]
        if len(payload) > self.max_frame or (opcode in (CLOSE, PING, PONG) and len(payload) > 125):
            self.gone(index)  # picows refuses it before the gateway sees it
            return
        if opcode in (CLOSE, PING, PONG) and not fin:
            self.gone(index)  # picows: a fragmented control frame is a protocol error
            return
        violation = conn.rules.admit(self.now, len(payload), bool(rsv))
        if violation is not None:
            self.violated(index, violation, None, info)
            return
        assert not rsv, f"RSV bits {rsv} admitted {info}"
        if opcode in (PING, PONG):
            return
        if opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            found = close_code_violation(code, len(payload))
            if len(payload) == 0 or code in SENDABLE_CLOSE_CODES:
                assert found is None, f"close code {code} refused: {found} {info}"
                self.gone(index)  # echoed, then disconnected
            else:
                self.violated(index, found, Kind.CLOSE_CODE, info)
            return
        expected = self.expect(conn, opcode, fin, payload)
        result = conn.rules.data(MSG_TYPES[opcode], fin, memoryview(payload))
        if isinstance(result, Violation):
            self.violated(index, result, expected if isinstance(expected, Kind) else None, info)
            assert result.kind is expected, f"{result} where the model says {expected} {info}"
            return
        assert not isinstance(expected, Kind), f"got {result!r:.80}, expected {expected} {info}"
        if result is None:
            assert expected is None, f"message {expected!r:.80} not completed {info}"
            return
        assert expected is not None, f"message {result!r:.80} completed too soon {info}"
        assert result == expected, f"reassembled {result!r:.80} != {expected!r:.80} {info}"
        self.messages += 1

    def expect(
        self, conn: PureConnection, opcode: int, fin: bool, payload: bytes
    ) -> Kind | tuple[bytes, bool] | None:
        """The rules of docs/protocol.md, written independently of framing.py; updates the
        model's state as the gateway should."""
        size = len(payload)
        if opcode == CONT:
            if not conn.started:
                return Kind.LONE_CONTINUATION
            if len(conn.fed) + size > self.max_message:
                return Kind.MESSAGE_TOO_BIG
            if self.budget.used + size > self.budget.limit:
                return Kind.REASSEMBLY_BUDGET
            conn.fed += payload
            if not fin:
                return None
            conn.started = False
            return self.complete(bytes(conn.fed), conn.binary)
        if conn.started:
            return Kind.INTERLEAVED
        if fin:
            return self.complete(payload, opcode == BINARY)
        if self.budget.used + size > self.budget.limit:
            return Kind.REASSEMBLY_BUDGET
        conn.started, conn.binary, conn.fed = True, opcode == BINARY, bytearray(payload)
        return None

    @staticmethod
    def complete(payload: bytes, binary: bool) -> Kind | tuple[bytes, bool]:
        if not binary:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return Kind.INVALID_UTF8
        return payload, binary

    def violated(
        self, index: int, violation: Violation | None, expected: Kind | None, info: str
    ) -> None:
        assert isinstance(violation, Violation), f"no violation, expected {expected} {info}"
        assert violation.kind in CODE_OF_KIND, f"undocumented kind {violation} {info}"
        assert violation.code == CODE_OF_KIND[violation.kind], f"{violation} {info}"
        assert violation.reason, f"{violation} {info}"
        if expected is not None:
            assert violation.kind is expected, f"{violation}, expected {expected} {info}"
        self.violations[violation.kind] += 1
        self.gone(index)

    def check(self, info: str) -> None:
        held = [c.rules.held for c in self.connections]
        assert self.budget.used == sum(held), f"budget {self.budget.used} != held {held} {info}"
        assert 0 <= self.budget.used <= self.budget.limit, f"budget {self.budget.used} {info}"
        assert all(h <= self.max_message for h in held), f"held {held} {info}"
        for conn in self.connections:
            assert conn.rules.held == (len(conn.fed) if conn.started else 0), info


def pure_sequence(world: PureWorld) -> list[tuple[int, PureFrame]]:
    """(connection index, frame): the connections' messages interleaved, then mutated."""
    rng = world.rng
    out: list[tuple[int, PureFrame]] = []
    for _ in range(rng.randint(5, 60)):
        frames = pure_message(rng, world.max_message)
        for _ in range(rng.choice([0, 0, 1, 1, 2, 5])):
            pure_mutate(rng, frames, world.max_message)
        index = rng.randrange(len(world.connections))
        if rng.random() < 0.03:  # a flood of tiny frames
            frames = frames + [(PING, True, 0, b"")] * rng.randint(10, 200)
        out.extend((index, f) for f in frames)
    if rng.random() < 0.3:  # messages of several connections in flight at once
        rng.shuffle(out)
    return out


def test_inbound_frames_fuzz() -> None:
    budget = SECONDS / 3
    started = time.monotonic()
    count = frames = 0
    kinds: dict[Kind, int] = dict.fromkeys(Kind, 0)
    for n, rng in iterations("pure-frames", budget):
        world = PureWorld(rng)
        for step, (index, frame) in enumerate(pure_sequence(world)):
            info = f"at frame {step} {frame!r:.120} of connection {index} {where('pure', n)}"
            world.feed(index, frame, info)
            world.check(info)
            world.now += rng.choice([0.0, 0.0, 1e-4, 0.01, 0.5])
            frames += 1
        for index in range(len(world.connections)):
            world.connections[index].rules.release()
            assert world.connections[index].rules.held == 0
        assert world.budget.used == 0, f"budget {world.budget.used} after release {where('', n)}"
        for kind, seen in world.violations.items():
            kinds[kind] += seen
        count += 1
    elapsed = time.monotonic() - started
    print(
        f"\npure frames: seed {SEED}, {count} sequences, {frames} frames in {elapsed:.1f} s "
        f"({frames / elapsed:.0f} frames/s); violations {dict(kinds)}"
    )
    if REPLAY is None and SECONDS >= 10:
        # A fuzz that never reaches a rule is not fuzzing it.
        assert all(kinds.values()), f"rules never reached: {kinds} (seed {SEED})"


# ------------------------------------------------------------------ (2) live, raw sockets

LIVE_SETTINGS = {
    "max_message_bytes": 4096,
    "max_frame_bytes": 8192,
    "max_reassembly_bytes": 32768,
    "max_inbound_frames_per_second": 200.0,
    "inbound_frame_burst": 300,
    "max_inbound_per_second": 1000.0,
    "inbound_burst": 1000,
}
WORKERS = 8
"""Raw connections in flight at once."""
HEALTH_EVERY = 50
"""Raw connections between two checks of the healthy client."""


def ws_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    form: int | None = None,
    key: bytes | None = None,
) -> bytes:
    """One client frame; `length`: the declared payload length (default: the real one);
    `form`: force the 7, 16 or 64-bit length encoding."""
    declared = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if masked else 0
    form = form or (7 if declared < 126 else 16 if declared < 65536 else 64)
    if form == 7:
        header = struct.pack("!BB", first, mask_bit | (declared & 0x7F))
    elif form == 16:
        header = struct.pack("!BBH", first, mask_bit | 126, declared & 0xFFFF)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, declared & 0xFFFFFFFFFFFFFFFF)
    if not masked:
        return header + payload
    key = key if key is not None else os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def command_text(rng: random.Random, message_id: str) -> bytes:
    command: dict[str, Any] = rng.choice(
        [
            {"type": "ping"},
            {"type": "heartbeat", "client_timestamp": rng.randint(0, 2**40)},
            {"type": "subscribe", "stream": "market_data", "filters": {"symbols": ["ZZZ"]}},
            {"type": "list_subscriptions"},
            {"type": "sync"},
            {"type": "nope"},
        ]
    )
    return json.dumps({**command, "message_id": message_id, "x": rng.choice(UTF8_SAMPLES)}).encode(
        "utf-8", "surrogatepass"
    )


def live_frames(rng: random.Random, n: int, max_frame: int) -> list[bytes]:
    """The frames of one raw connection, valid ones mutated."""
    key = rng.randbytes(4)
    out: list[bytes] = []
    for i in range(rng.randint(1, 6)):
        pick = rng.random()
        mid = f"f{n}-{i}"
        if pick < 0.3:
            out.append(ws_frame(TEXT, command_text(rng, mid), key=key))
        elif pick < 0.4:
            out.append(ws_frame(BINARY, rng.randbytes(rng.randint(0, 300)), key=key))
        elif pick < 0.55:
            out.append(ws_frame(rng.choice([PING, PONG]), rng.randbytes(rng.randint(0, 125))))
        elif pick < 0.6:
            payload = struct.pack("!H", close_code(rng)) + text_payload(rng, rng.randint(0, 20))
            out.append(ws_frame(CLOSE, payload[:125]))
        elif pick < 0.62:
            out.append(ws_frame(PING, b"") * rng.randint(300, 700))  # past the frame burst
        else:
            body = command_text(rng, mid)
            if rng.random() < 0.3:
                body = body + b" " * rng.randint(0, 3 * max_frame)  # past max_frame_bytes
            if rng.random() < 0.2:
                body = corrupt_utf8(rng, body)
            parts = split(rng, body, rng.randint(2, 6))
            opcode = TEXT
            for j, part in enumerate(parts):
                last = j == len(parts) - 1
                if last and rng.random() < 0.15:
                    break  # cut off: the message never ends
                out.append(ws_frame(opcode, part, fin=last, key=key))
                opcode = CONT
                if rng.random() < 0.1:
                    out.append(ws_frame(PING, b"between"))
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        live_mutate(rng, out, max_frame)
    return out


def live_mutate(rng: random.Random, frames: list[bytes], max_frame: int) -> None:
    if not frames:
        frames.append(rng.randbytes(rng.randint(1, 40)))
        return
    i = rng.randrange(len(frames))
    data = bytearray(frames[i])
    if len(data) < 2:
        frames[i] = rng.randbytes(rng.randint(1, 40))
        return
    match rng.randrange(12):
        case 0:  # a bit of the first two header bytes
            data[rng.randrange(2)] ^= 1 << rng.randrange(8)
        case 1:  # RSV bits
            data[0] |= rng.randint(1, 7) << 4
        case 2:  # a reserved opcode
            data[0] = (data[0] & 0xF0) | rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
        case 3:  # unmasked
            frames[i] = ws_frame(TEXT, b'{"type": "ping"}', masked=False)
            return
        case 4:  # a declared length that does not match
            real = rng.randint(0, 40)
            declared = rng.choice(
                [
                    *(0, max(0, real - 1), real + 1, real + 100, max_frame, max_frame + 1),
                    *(2**16, 2**31, 2**63 - 1, 2**64 - 1),
                ]
            )
            frames[i] = ws_frame(TEXT, b"x" * real, length=declared, form=rng.choice([None, 64]))
            return
        case 5:  # a non-minimal length encoding
            frames[i] = ws_frame(TEXT, b'{"type": "ping"}', form=rng.choice([16, 64]))
            return
        case 6:  # a fragmented or oversized control frame
            opcode = rng.choice([PING, PONG, CLOSE])
            if rng.random() < 0.5:
                frames[i] = ws_frame(opcode, b"\x03\xe8", fin=False)
            else:
                frames[i] = ws_frame(opcode, b"\x03\xe8" + b"x" * rng.randint(124, 300))
            return
        case 7:  # random bytes in between
            frames.insert(i, rng.randbytes(rng.randint(1, 64)))
            return
        case 8:  # cut the stream
            frames[i] = bytes(data[: rng.randrange(len(data))])
            del frames[i + 1 :]
            return
        case 9:  # a byte anywhere
            data[rng.randrange(len(data))] = rng.randrange(256)
        case 10:
            frames.insert(i, frames[i])
            return
        case _:
            del frames[i]
            return
    frames[i] = bytes(data)


@dataclass
class StreamView:
    """What the gateway's parser should see in what the client wrote."""

    complete: bool
    """Every frame arrived whole (or the parser must give up on a header before the end)."""
    close_codes: set[int]
    """Codes of the client's close frames: the gateway may echo those."""


def view(stream: bytes, max_frame: int) -> StreamView:
    codes: set[int] = set()
    i = 0
    while i < len(stream):
        if len(stream) - i < 2:
            return StreamView(False, codes)
        first, second = stream[i], stream[i + 1]
        size, i = second & 0x7F, i + 2
        if size >= 126:
            width = 2 if size == 126 else 8
            if len(stream) - i < width:
                return StreamView(False, codes)
            size, i = int.from_bytes(stream[i : i + width], "big"), i + width
        opcode = first & 0x0F
        if size > max_frame or (opcode >= 8 and size > 125) or opcode not in MSG_TYPES:
            return StreamView(True, codes)  # refused on the header
        if not second & 0x80:
            return StreamView(True, codes)  # unmasked: refused
        if len(stream) - i < 4 + size:
            return StreamView(False, codes)
        key, payload = stream[i : i + 4], stream[i + 4 : i + 4 + size]
        i += 4 + size
        if opcode == CLOSE and size >= 2:
            codes.add(int.from_bytes(bytes(b ^ key[j % 4] for j, b in enumerate(payload[:2]))))
    return StreamView(True, codes)


@dataclass
class Seen:
    """What one raw connection got back."""

    pongs: set[str] = field(default_factory=set)
    close_codes: list[int | None] = field(default_factory=list)
    eof: bool = False


async def read_server(reader: asyncio.StreamReader, seen: Seen, probe: str | None) -> None:
    """Server frames until its close frame, EOF, or the probe's pong."""
    try:
        while True:
            first, second = await reader.readexactly(2)
            assert not second & 0x80, "a server frame is masked"
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await reader.readexactly(8))
            payload = await reader.readexactly(size)
            opcode = first & 0x0F
            if opcode == CLOSE:
                seen.close_codes.append(int.from_bytes(payload[:2]) if len(payload) >= 2 else None)
                return
            if opcode == TEXT:
                message = json.loads(payload)
                if message.get("type") == "pong" and message.get("correlation_id"):
                    seen.pongs.add(message["correlation_id"])
                    if message["correlation_id"] == probe:
                        return
    except (asyncio.IncompleteReadError, ConnectionError):
        seen.eof = True


async def raw_connection(gateway: Gateway, n: int, rng: random.Random) -> str:
    """One fuzzed connection; returns how it ended (for the statistics)."""
    max_frame = gateway.settings.max_frame_bytes
    info = where("live", n)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", gateway.port), TIMEOUT
    )
    try:
        key = base64.b64encode(rng.randbytes(16)).decode()
        writer.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), f"handshake: {head!r:.200} {info}"
        frames = live_frames(rng, n, max_frame)
        stream = b"".join(frames)
        seen_view = view(stream, max_frame)
        ending = rng.choice(["probe", "probe", "probe", "eof", "abort"])
        probe = f"probe-{n}"
        probe_frame = ws_frame(TEXT, json.dumps({"type": "ping", "message_id": probe}).encode())
        if ending == "probe" and not seen_view.complete:
            ending = "eof"  # the gateway waits for the rest of a frame: end it with EOF
        seen = Seen()
        reading = asyncio.ensure_future(read_server(reader, seen, probe))
        try:
            writer.write(stream)
            if ending == "abort":
                writer.transport.abort()
                return "abort"
            if ending == "eof":
                writer.write_eof()
            else:
                writer.write(probe_frame)
            done, _ = await asyncio.wait([reading], timeout=TIMEOUT)
            answered = bool(done)
        finally:
            reading.cancel()
        hint = f"sent {stream[:300]!r} ({len(stream)} bytes); got {seen} {info}"
        for code in seen.close_codes:
            allowed = GATEWAY_CLOSE_CODES | seen_view.close_codes
            assert code is None or code in allowed, f"closed with {code} {hint}"
        if ending == "eof":
            assert answered, f"no EOF from the gateway {TIMEOUT} s after ours: {hint}"
            return "eof"
        # A complete stream and a ping after it: a pong, a close or EOF, never silence.
        assert answered, f"no answer to a complete stream and a ping in {TIMEOUT} s: {hint}"
        if seen.close_codes and seen.close_codes[0] not in GATEWAY_CLOSE_CODES:
            return "echoed"
        if seen.close_codes or seen.eof:
            return f"closed {seen.close_codes[0] if seen.close_codes else 'eof'}"
        # Served to the end: the client closes, the gateway echoes.
        seen = Seen()
        reading = asyncio.ensure_future(read_server(reader, seen, None))
        writer.write(ws_frame(CLOSE, struct.pack("!H", 1000)))
        try:
            await asyncio.wait_for(reading, TIMEOUT)
        finally:
            reading.cancel()
        assert seen.close_codes in ([1000], []), f"echo {seen} {hint}"
        return "served"
    finally:
        writer.transport.abort()


async def until(condition: Callable[[], bool], what: str) -> None:
    async def wait() -> None:
        while not condition():  # noqa: ASYNC110 - it changes on socket reads: no event
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(wait(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"{what} within {TIMEOUT} s (seed {SEED})") from None


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        + (f"\n{logging.Formatter().formatException(r.exc_info)}" if r.exc_info else "")
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


async def test_live_frames_fuzz(
    make_gateway: MakeGateway, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gateway = await make_gateway(**LIVE_SETTINGS)
    healthy = await connect(gateway)
    confirmed = await healthy.subscribe("market_data", filters={"symbols": ["AAPL"]})
    assert confirmed["type"] == "subscription_confirmed", confirmed
    published = 0

    async def still_served(n: int) -> None:
        nonlocal published
        published += 1
        await gateway.publish(quote("AAPL", bid=float(published)))
        [message] = await healthy.data(1)
        assert message["data"]["bid_price"] == published, f"healthy got {message} {where('', n)}"

    started = time.monotonic()
    endings: dict[str, int] = {}
    count = 0
    numbers = iterations("live-frames", SECONDS * 2 / 3)
    health = asyncio.Lock()

    async def worker() -> None:
        nonlocal count
        for n, rng in numbers:  # shared: each worker takes the next iteration
            ending = await raw_connection(gateway, n, rng)
            kind = ending if ending.startswith("closed") else ending.split(" ")[0]
            endings[kind] = endings.get(kind, 0) + 1
            count += 1
            errors = errors_logged(caplog)
            assert not errors, f"logged {errors} by iteration {n} or those in flight (seed {SEED})"
            if count % HEALTH_EVERY == 0:
                async with health:
                    await still_served(n)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    elapsed = time.monotonic() - started
    await still_served(-1)
    await until(lambda: len(gateway.hub.connections) == 1, "every raw connection gone")
    assert gateway.data_plane.reassembly.used == 0, f"reassembly {gateway.data_plane.reassembly}"
    assert not errors_logged(caplog)
    print(
        f"\nlive frames: seed {SEED}, {count} connections in {elapsed:.1f} s "
        f"({count / elapsed:.0f}/s); endings {dict(sorted(endings.items()))}; "
        f"violations {dict(gateway.data_plane.inbound_counters.violations)}; "
        f"picows refusals {gateway.data_plane.picows_log.parser_errors}"
    )
