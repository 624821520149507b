"""Clients that stop reading: raw WebSocket sockets with a small receive buffer.

A `StalledClient` sets SO_RCVBUF before it connects (so the TCP window it advertises stays
small), upgrades, subscribes to the given streams, reads until every subscription is
confirmed, and then never reads again: the gateway's writes back up into the client's
receive buffer, the gateway's kernel send buffer, its transport buffer and finally the
connection's outbox, which is where the slow-consumer policy acts.

At the end `drain()` reads everything the kernel still holds for it and parses the frames,
to see how the stream ended: a close frame (with its code), or just EOF, or a reset.

`tcp_queues` reads /proc/net/tcp: the bytes the kernel holds in each socket's send queue
(sent but not acknowledged, or not sent) and receive queue (not yet read by the process).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from bench.clients.raw import _masked_text_frame, _upgrade_request

CONFIRMED = b"subscription_confirmed"


@dataclass
class FrameSummary:
    """What a stream of server frames contained."""

    frames: int = 0
    data_frames: int = 0
    close_code: int | None = None
    close_reason: str = ""
    trailing_bytes: int = 0
    """Bytes after the last complete frame (a frame cut by the end of the stream)."""


def parse_frames(data: bytes | bytearray) -> FrameSummary:
    """Walk unmasked server frames (RFC 6455 section 5.2) from the start of `data`."""
    summary = FrameSummary()
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos + 2 <= end:
        opcode = view[pos] & 0x0F
        length = view[pos + 1] & 0x7F
        header = 2
        if length == 126:
            if pos + 4 > end:
                break
            length = struct.unpack_from("!H", view, pos + 2)[0]
            header = 4
        elif length == 127:
            if pos + 10 > end:
                break
            length = struct.unpack_from("!Q", view, pos + 2)[0]
            header = 10
        if view[pos + 1] & 0x80:
            header += 4  # masked (a server never masks; tolerated)
        if pos + header + length > end:
            break
        payload = view[pos + header : pos + header + length]
        summary.frames += 1
        if opcode in (0x1, 0x2, 0x0):
            summary.data_frames += 1
        elif opcode == 0x8:
            if length >= 2:
                summary.close_code = struct.unpack_from("!H", payload, 0)[0]
                summary.close_reason = bytes(payload[2:]).decode(errors="replace")
            else:
                summary.close_code = 1005  # no status code present
        pos += header + length
    summary.trailing_bytes = end - pos
    return summary


def subscribe_frame(stream: str) -> bytes:
    return _masked_text_frame(json.dumps({"type": "subscribe", "stream": stream}).encode())


@dataclass
class StalledClient:
    """One connection that subscribes and then never reads (see the module docstring)."""

    sock: socket.socket
    local_port: int
    confirmed_at: float
    """time.monotonic() when the last confirmation was read: from here on nothing is read."""
    received: bytearray = field(default_factory=bytearray)
    """Every byte read after the HTTP response (the frames), handshake and drain included."""
    rcvbuf: int = 0
    """SO_RCVBUF as the kernel reports it (Linux doubles the requested value)."""

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        streams: list[str],
        rcvbuf: int,
        path: str = "/ws",
        timeout: float = 10.0,
    ) -> StalledClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Before connect: the window scale and the first advertised window depend on it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(_upgrade_request(host, port, path))
            deadline = time.monotonic() + timeout
            data = b""
            while b"\r\n\r\n" not in data:
                data += _recv(sock, deadline)
            head, _, rest = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            sock.sendall(b"".join(subscribe_frame(stream) for stream in streams))
            received = bytearray(rest)
            while received.count(CONFIRMED) < len(streams):
                received += _recv(sock, deadline)
            confirmed_at = time.monotonic()
            sock.setblocking(False)
            return cls(
                sock,
                sock.getsockname()[1],
                confirmed_at,
                received,
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            )
        except BaseException:
            sock.close()
            raise

    def drain(self, timeout: float) -> dict[str, Any]:
        """Read until EOF (or a reset, or `timeout`); what the stream held and how it ended."""
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        before = len(self.received)
        ending = "timeout"
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                ending = "reset"
                break
            except OSError as exc:
                ending = f"error: {exc}"
                break
            if not chunk:
                ending = "eof"
                break
            self.received += chunk
        summary = parse_frames(self.received)
        return {
            "ending": ending,
            "drained_bytes": len(self.received) - before,
            "frames": summary.frames,
            "data_frames": summary.data_frames,
            "close_code": summary.close_code,
            "close_reason": summary.close_reason,
            "trailing_bytes": summary.trailing_bytes,
        }

    def close(self) -> None:
        self.sock.close()


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed during the handshake")
    return chunk


def tcp_queues(port: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(local port, remote port) -> (send queue, receive queue) bytes, for IPv4 TCP sockets
    on 127.0.0.1 with `port` at either end (/proc/net/tcp)."""
    out: dict[tuple[int, int], tuple[int, int]] = {}
    try:
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                if port not in (local, remote):
                    continue
                tx, rx = fields[4].split(":")
                out[(local, remote)] = (int(tx, 16), int(rx, 16))
    except OSError:
        pass
    return out
