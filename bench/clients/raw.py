"""The default load generator client: plain sockets and one epoll loop, no asyncio.

Why not picows here: with one frame per TCP segment (servers that write each delivery
separately) the client pays one readiness event and one recv per delivery, and asyncio's
per-event machinery made the picows client cost 75-95% of the CPU the servers spent per
delivery. This loop reads each ready socket into one preallocated buffer and counts
deliveries with `bytearray.count` of the payload prefix every data frame starts with
(common.MARKER), so the client spends Python bytecode per read, not per frame.

The WebSocket part is minimal and only what the benchmark needs: the upgrade request, one
masked subscribe frame, and reading unmasked frames from the server. It does not answer
pings (every server runs with pings off) and closes by dropping the TCP connection.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bench.clients.common import CONFIRMED, MARKER, SUBSCRIBE, TS, Outcome, Totals
from bench.control import ControlBlock, Field, Phase

CARRY = len(MARKER) - 1
"""Bytes kept from the end of a read: a marker cut by a read boundary is counted once, in
the next read; a whole marker never fits in the carry, so none is counted twice."""
BATCH = 100
"""Connections opened at once: below every server's listen backlog (no dropped SYN)."""
HANDSHAKE_TIMEOUT = 10.0
READ_BUFFER = 1 << 18


def _masked_text_frame(payload: bytes) -> bytes:
    """A client frame (clients must mask, RFC 6455 section 5.3); payload < 126 bytes."""
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


def _upgrade_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _read_until(sock: socket.socket, data: bytes, needle: bytes, deadline: float) -> bytes:
    while needle not in data:
        # One deadline per batch, not a timeout per read: a server that stops answering
        # must cost the batch HANDSHAKE_TIMEOUT, not HANDSHAKE_TIMEOUT per connection.
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    return data


class RawClients:
    """N subscribed connections and the epoll loop that counts what they receive."""

    def __init__(
        self, url: str, ctl: ControlBlock, totals: Totals, sample_every: int, rcvlowat: int
    ) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path or "/"
        self.ctl = ctl
        self.totals = totals
        self.sample_mask = sample_every - 1
        self.rcvlowat = rcvlowat
        self.epoll = select.epoll()
        self.sockets: dict[int, socket.socket] = {}
        self.counts: dict[int, int] = {}
        self.carry: dict[int, bytearray] = {}
        self.errors: list[str] = []
        self.buffer = bytearray(READ_BUFFER)

    # ------------------------------------------------------------------ connecting

    def open(self, count: int) -> None:
        """Open and subscribe `count` connections, BATCH at a time; failures are recorded."""
        for start in range(0, count, BATCH):
            self._open_batch(min(BATCH, count - start))

    def _open_batch(self, count: int) -> None:
        request = _upgrade_request(*self.address, self.path)
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        pending: list[socket.socket] = []
        for _ in range(count):  # send every upgrade first, so the server works on all at once
            try:
                sock = socket.create_connection(self.address, HANDSHAKE_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
                pending.append(sock)
            except OSError as exc:
                self.errors.append(f"connect: {exc}")
        for sock in pending:
            try:
                data = _read_until(sock, b"", b"\r\n\r\n", deadline)
                head, _, rest = data.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 101"):
                    raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                sock.sendall(_masked_text_frame(SUBSCRIBE))
                _read_until(sock, rest, CONFIRMED, deadline)
            except OSError as exc:
                self.errors.append(f"handshake: {exc}")
                sock.close()
                continue
            sock.setblocking(False)
            if self.rcvlowat:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, self.rcvlowat)
            fd = sock.fileno()
            self.sockets[fd] = sock
            self.counts[fd] = 0
            self.carry[fd] = bytearray()
            self.epoll.register(fd, select.EPOLLIN)

    # ------------------------------------------------------------------ receiving

    def pump(self, done: Callable[[int], bool]) -> None:
        """Read and count until `done(phase)`; publish the received count every ms."""
        ctl, totals = self.ctl, self.totals
        buffer = self.buffer
        view = memoryview(buffer)
        sockets, counts, carries = self.sockets, self.counts, self.carry
        poll, mask = self.epoll.poll, self.sample_mask
        received = totals.received
        reads = totals.reads
        measuring = False
        next_report = 0.0
        while True:
            now = time.monotonic()
            if now >= next_report:
                totals.received = received
                totals.reads = reads
                ctl.set(Field.RECEIVED, received)
                phase = ctl.get(Field.PHASE)
                measuring = totals.measuring = phase == Phase.MEASURE
                if done(phase):
                    return
                next_report = now + 0.001
            for fd, _ in poll(0.001):
                carry = carries[fd]
                kept = len(carry)
                buffer[:kept] = carry
                try:
                    n = sockets[fd].recv_into(view[kept:])
                except BlockingIOError:
                    continue
                except OSError:
                    n = 0
                if not n:
                    self._drop(fd)
                    continue
                end = kept + n
                found = buffer.count(MARKER, 0, end)
                counts[fd] += found
                received += found
                totals.bytes += n
                carries[fd] = buffer[max(0, end - CARRY) : end]
                reads += 1
                if measuring and not reads & mask:
                    at = time.time_ns()
                    for match in TS.finditer(buffer, 0, end):
                        totals.add_sample(at - int(match.group(1)))

    def _drop(self, fd: int) -> None:
        self.epoll.unregister(fd)
        self.sockets.pop(fd).close()

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        self.epoll.close()


def run(
    url: str,
    ctl: ControlBlock,
    totals: Totals,
    connections: int,
    first: int,
    sample_every: int,
    rcvlowat: int = 0,
) -> Outcome:
    """Open `first` connections (all when 0), wait for PROCEED, open the rest, count to STOP."""
    clients = RawClients(url, ctl, totals, sample_every, rcvlowat)
    started = time.perf_counter()
    try:
        stages = [first, connections - first] if 0 < first < connections else [connections]
        for index, count in enumerate(stages):
            if index:
                clients.pump(lambda phase: phase >= Phase.STOP or ctl.get(Field.PROCEED) != 0)
            clients.open(count)
            ctl.set(Field.SUBSCRIBED, len(clients.sockets))
            ctl.set(Field.STAGES, index + 1)
        connect_seconds = time.perf_counter() - started
        clients.pump(lambda phase: phase >= Phase.STOP)
        return Outcome(
            len(clients.counts), list(clients.counts.values()), connect_seconds, clients.errors
        )
    finally:
        clients.close()
