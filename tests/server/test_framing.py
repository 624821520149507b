"""Inbound frames on real sockets: budgets of every frame type (4029), the per-process
reassembly budget (1009), RFC 6455 framing rules (1002, 1007) and the version check (426).

A raw client writes frames the `websockets` library would never send (RSV bits, lone
continuations, 1-byte fragments, forbidden close codes), beside a healthy client that must
keep receiving its data.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from messages import quote
from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame; `rsv`: the three RSV bits (0-7)."""
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client that writes whatever frames it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, gateway: Gateway, version: str = "13") -> RawClient:
        client, status, _ = await cls.handshake(gateway, version)
        assert status.startswith(b"HTTP/1.1 101"), status
        return client

    @classmethod
    async def handshake(cls, gateway: Gateway, version: str) -> tuple[RawClient, bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: {version}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status, _, headers = head.partition(b"\r\n")
        return cls(reader, writer), status, headers

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    async def next_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)

    async def message(self) -> dict[str, Any]:
        """The next text message (pongs skipped)."""
        while True:
            opcode, payload = await asyncio.wait_for(self.next_frame(), TIMEOUT)
            assert opcode != CLOSE, f"closed with {payload[:2].hex()}"
            if opcode == TEXT:
                value: dict[str, Any] = json.loads(payload)
                return value

    async def close_code(self) -> int:
        """Read (and drop) frames until the gateway's close frame: its code."""

        async def until_close() -> int:
            while True:
                opcode, payload = await self.next_frame()
                if opcode == CLOSE:
                    return int.from_bytes(payload[:2], "big")

        return await asyncio.wait_for(until_close(), TIMEOUT)

    async def flood_until_closed(self, *frames: bytes) -> int:
        """Write `frames` over and over until the gateway closes: its close code."""
        batch = b"".join(frames) * max(1, 4096 // len(b"".join(frames)))
        closed = asyncio.ensure_future(self.close_code())
        try:
            while not closed.done():
                self.writer.write(batch)
                try:
                    await asyncio.wait_for(self.writer.drain(), TIMEOUT)
                except ConnectionError:
                    break
                await asyncio.sleep(0)  # let the reader see the close frame
            return await closed
        finally:
            closed.cancel()

    async def welcome(self) -> dict[str, Any]:
        message = await self.message()
        assert message["type"] == "connection_established"
        return message

    def abort(self) -> None:
        self.writer.transport.abort()


async def healthy(gateway: Gateway, connect: Connect) -> WsClient:
    client = await connect(gateway)
    await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
    return client


async def still_served(gateway: Gateway, client: WsClient) -> None:
    await gateway.publish(quote("AAPL", bid=101, ask=102))
    [message] = await client.data(1)
    assert message["symbol"] == "AAPL"


# ------------------------------------------------------------------ budgets (4029)


@pytest.mark.parametrize(
    "frames",
    [
        [frame(PING, b"x")],
        [frame(PONG, b"x")],
        [frame(TEXT, b'{"type": "pi', fin=False), frame(CONT, b"n", fin=False)],
    ],
    ids=["ping-flood", "pong-flood", "continuation-flood"],
)
async def test_frame_flood_of_any_type_closes_4029(
    frames: list[bytes], make_gateway: MakeGateway, connect: Connect
) -> None:
    """Pings were answered by picows without the gateway seeing them, and 1-byte
    continuations never reached the message budget: now every frame counts."""
    gateway = await make_gateway()
    client = await healthy(gateway, connect)
    attacker = await RawClient.open(gateway)
    await attacker.welcome()
    first, *rest = frames
    attacker.send(first)  # the continuation flood needs its message started once
    assert await attacker.flood_until_closed(*(rest or [first])) == 4029
    await still_served(gateway, client)
    kinds = gateway.data_plane.inbound_counters.violations
    assert kinds["frame_rate"] == 1
    assert gateway.data_plane.reassembly.used == 0


async def test_byte_flood_closes_4029(make_gateway: MakeGateway, connect: Connect) -> None:
    gateway = await make_gateway(max_inbound_bytes_per_second=1024, inbound_bytes_burst=65536)
    client = await healthy(gateway, connect)
    attacker = await RawClient.open(gateway)
    await attacker.welcome()
    ping = json.dumps({"type": "ping", "pad": "x" * 30_000}).encode()
    attacker.send(frame(TEXT, ping), frame(TEXT, ping))
    assert (await attacker.message())["type"] == "pong"  # within the burst: served
    assert (await attacker.message())["type"] == "pong"
    attacker.send(frame(TEXT, ping))
    assert await attacker.close_code() == 4029
    assert gateway.data_plane.inbound_counters.violations["byte_rate"] == 1
    await still_served(gateway, client)


async def test_pings_are_answered_with_their_payload(gateway: Gateway) -> None:
    client = await RawClient.open(gateway)
    await client.welcome()
    client.send(frame(PING, b"hello"))
    while (reply := await asyncio.wait_for(client.next_frame(), TIMEOUT))[0] != PONG:
        pass
    assert reply == (PONG, b"hello")


# ------------------------------------------------------------------ reassembly budget (1009)


async def until(condition: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not condition():  # noqa: ASYNC110 - it changes on socket reads: no event
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), TIMEOUT)


async def test_reassembly_budget_per_process(make_gateway: MakeGateway) -> None:
    """Several connections hold unfinished messages: past the process's budget the next
    fragment is refused with 1009; finished or abandoned messages give their bytes back."""
    gateway = await make_gateway(max_reassembly_bytes=4096)
    plane = gateway.data_plane
    head = b'{"type": "ping", "pad": "' + b"x" * 1500
    holders = [await RawClient.open(gateway) for _ in range(2)]
    for n, holder in enumerate(holders, 1):
        await holder.welcome()
        holder.send(frame(TEXT, head, fin=False))
        await until(lambda n=n: plane.reassembly.used == n * len(head))  # type: ignore[misc]
    refused = await RawClient.open(gateway)
    await refused.welcome()
    refused.send(frame(TEXT, head, fin=False))
    assert await refused.close_code() == 1009
    assert plane.inbound_counters.violations["reassembly_budget"] == 1
    # A holder that goes on past the budget is refused too: the bound is a bound.
    holders[1].send(frame(CONT, b"x" * 1500, fin=False))
    assert await holders[1].close_code() == 1009
    await until(lambda: plane.reassembly.used == len(head))
    # The first holder finishes its message: served, and its bytes are back.
    holders[0].send(frame(CONT, b'"}'))
    assert (await holders[0].message())["type"] == "pong"
    assert plane.reassembly.used == 0
    # A holder that disconnects mid-message gives its bytes back as well.
    leaver = await RawClient.open(gateway)
    await leaver.welcome()
    leaver.send(frame(TEXT, head, fin=False))
    await until(lambda: plane.reassembly.used == len(head))
    leaver.abort()
    await until(lambda: plane.reassembly.used == 0)


# ------------------------------------------------------------------ RFC 6455 rules


TEXT_PING = b'{"type": "ping"}'


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([frame(TEXT, TEXT_PING, rsv=4)], 1002),
        ([frame(TEXT, TEXT_PING, rsv=1)], 1002),
        ([frame(PING, b"", rsv=2)], 1002),
        ([frame(CONT, TEXT_PING)], 1002),
        ([frame(TEXT, b'{"type":', fin=False), frame(TEXT, TEXT_PING)], 1002),
        ([frame(TEXT, b'{"type": "\xff"}')], 1007),
        ([frame(TEXT, b'{"type": "\xe2', fin=False), frame(CONT, b'\x82"}')], 1007),
        ([frame(TEXT, b'{"type": "\xed\xa0\x80"}')], 1007),
        ([frame(CLOSE, struct.pack("!H", 1005))], 1002),
        ([frame(CLOSE, struct.pack("!H", 1006))], 1002),
        ([frame(CLOSE, struct.pack("!H", 1015))], 1002),
        ([frame(CLOSE, struct.pack("!H", 5000))], 1002),
        ([frame(CLOSE, struct.pack("!H", 999))], 1002),
        ([frame(CLOSE, struct.pack("!H", 0))], 1002),
    ],
    ids=[
        "rsv1",
        "rsv3",
        "rsv-on-ping",
        "lone-continuation",
        "interleaved",
        "invalid-utf8",
        "utf8-cut-across-fragments",
        "utf8-surrogate",
        "close-1005",
        "close-1006",
        "close-1015",
        "close-5000",
        "close-999",
        "close-0",
    ],
)
async def test_rfc6455_violations_close(
    frames: list[bytes], code: int, make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway()
    client = await healthy(gateway, connect)
    raw = await RawClient.open(gateway)
    await raw.welcome()
    raw.send(*frames)
    assert await raw.close_code() == code
    await still_served(gateway, client)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 1014, 3000, 4999])
async def test_valid_close_codes_are_echoed(code: int, gateway: Gateway) -> None:
    raw = await RawClient.open(gateway)
    await raw.welcome()
    raw.send(frame(CLOSE, struct.pack("!H", code) + b"bye"))
    assert await raw.close_code() == code


async def test_valid_utf8_across_fragments_and_deep_json(gateway: Gateway) -> None:
    """A character split between fragments is fine; JSON nested too deep is an error reply,
    and the connection goes on."""
    raw = await RawClient.open(gateway)
    await raw.welcome()
    raw.send(frame(TEXT, b'{"type": "ping", "x": "\xe2', fin=False), frame(CONT, b'\x82\xac"}'))
    assert (await raw.message())["type"] == "pong"
    raw.send(frame(TEXT, b"[" * 5000))
    reply = await raw.message()
    assert (reply["type"], reply["error_code"]) == ("error", "invalid_json")
    raw.send(frame(TEXT, TEXT_PING))
    assert (await raw.message())["type"] == "pong"


@pytest.mark.parametrize("version", ["8", "12", ""])
async def test_other_websocket_versions_get_426(version: str, gateway: Gateway) -> None:
    raw, status, headers = await RawClient.handshake(gateway, version)
    assert status.startswith(b"HTTP/1.1 426"), status
    assert b"sec-websocket-version: 13" in headers.lower()
    raw.abort()


# ------------------------------------------------------------------ logging


async def test_violations_counted_and_warned_once(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Each violation is counted; the warning comes once per kind per connection and is
    rate-limited across the process, never a traceback."""
    gateway = await make_gateway()
    caplog.set_level(logging.WARNING, logger="tidewire.dataplane")
    for _ in range(3):
        raw = await RawClient.open(gateway)
        await raw.welcome()
        raw.send(frame(TEXT, TEXT_PING, rsv=4), frame(TEXT, TEXT_PING, rsv=4))
        assert await raw.close_code() == 1002
    counters = gateway.data_plane.inbound_counters
    assert counters.violations["rsv_bits"] == 3
    assert counters.warnings_suppressed == 2
    warnings = [r for r in caplog.records if r.name == "tidewire.dataplane"]
    assert len(warnings) == 1 and "RSV" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    stats = gateway.stats()  # what GET /api/stats answers
    assert stats["inbound_violations"] == {"rsv_bits": 3}
    assert stats["warnings_suppressed"] == 2


async def test_picows_refusals_counted_and_rate_limited(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """What picows refuses itself (here close code 1005) it logs at ERROR per connection:
    now counted, one warning per kind per interval."""
    gateway = await make_gateway()
    caplog.set_level(logging.WARNING, logger="tidewire.picows")
    for _ in range(3):
        raw = await RawClient.open(gateway)
        await raw.welcome()
        raw.send(frame(CLOSE, struct.pack("!H", 1005)))
        assert await raw.close_code() == 1002
    assert gateway.data_plane.picows_log.parser_errors == 3
    lines = [r for r in caplog.records if r.name.startswith("tidewire.picows")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
