"""The data plane: picows WebSocket server on the client port (docs/protocol.md section 1).

A thin edge: it negotiates the handshake (path, subprotocol, query options), turns picows
callbacks into calls on the core (`Hub`, `CommandHandler`), and writes the hub's pre-built
frames straight to the socket's transport. Paths: /ws and /ws/realtime (the original
frontend's), and GET /healthz for load balancers. Every inbound frame first passes the
rules of `server/framing.py` (frame and byte budgets, reassembly, RFC 6455).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from tidewire import __version__
from tidewire.core.auth import UNAUTHENTICATED, Authenticator, Principal
from tidewire.core.commands import CommandHandler
from tidewire.core.connection import Connection
from tidewire.core.hub import Hub
from tidewire.core.ratelimit import TokenBucket
from tidewire.protocol.codec import WireFormat
from tidewire.protocol.errors import CloseCode, ProtocolError
from tidewire.protocol.messages import (
    ACCEPTED_VERSIONS,
    ConnectionEstablished,
    Limits,
    iso_of,
    now_iso,
)
from tidewire.protocol.paths import path_subscriptions
from tidewire.security.browser import origin_allowed
from tidewire.server.framing import (
    InboundCounters,
    InboundFrames,
    PicowsLog,
    ReassemblyBudget,
    Violation,
    WarnLimiter,
    close_code_violation,
)
from tidewire.server.handshake import HandshakeRefused, check_version, negotiate
from tidewire.settings import GatewaySettings

log = logging.getLogger("tidewire.dataplane")
PICOWS_LOG = logging.getLogger("tidewire.picows")

# Small initial read buffer: it grows on demand, and idle connections must stay small.
READ_BUFFER_INIT_SIZE = 2048
# How long a closing connection may take to flush before it is aborted.
CLOSE_GRACE_SECONDS = 5.0


MAX_CLOSE_REASON_BYTES = 123
"""RFC 6455: a close frame's payload is at most 125 bytes, two of them the code."""


def close_reason(reason: str) -> bytes:
    """`reason` as UTF-8, cut at a character boundary to fit a close frame: a longer one
    makes clients fail the connection (1002/1006) and lose the close code."""
    data = reason.encode()
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return data
    return data[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()


class _ClientListener(WSListener):
    """picows callbacks of one client; also the core's `Transport` for it."""

    def __init__(
        self, plane: DataPlane, fmt: WireFormat, path: str, batch_ms: int, principal: Principal
    ) -> None:
        self._plane = plane
        self._fmt = fmt
        self._path = path
        self._batch_ms = batch_ms
        self._principal = principal
        self._ws: WSTransport | None = None
        self._raw: Any = None
        settings = plane.settings
        now = plane.clock()
        self._inbound = InboundFrames(
            TokenBucket(settings.max_inbound_frames_per_second, settings.inbound_frame_burst, now),
            TokenBucket(settings.max_inbound_bytes_per_second, settings.inbound_bytes_burst, now),
            plane.reassembly,
            settings.max_frame_bytes,
        )
        self._warned: set[str] = set()
        self.connection: Connection | None = None

    # ---- picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._ws = transport
        self._raw = raw = transport.underlying_transport
        # The hub writes pre-built frames straight to the socket's transport: bind its C
        # write here so the flush calls it without a Python frame in between.
        self.write = raw.write  # type: ignore[method-assign]
        # pause_writing fires above this mark, and only then does the hub check for a slow
        # consumer, so it must sit below the outbox limit.
        raw.set_write_buffer_limits(high=min(65536, self._plane.settings.max_outbox_bytes // 2))
        sock = raw.get_extra_info("socket")
        send_buffer = self._plane.settings.socket_send_buffer
        if sock is not None and send_buffer:
            # A bounded kernel send buffer: otherwise Linux autotunes it to megabytes, and a
            # client that stops reading is noticed (paused, conflated, cut off) only after
            # those megabytes went out at its stream's rate.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        peer = raw.get_extra_info("peername")
        self.connection = self._plane.open(
            self, self._fmt, self._path, self._batch_ms, peer, self._principal
        )

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        connection = self.connection
        if connection is None or connection.closed:
            return
        inbound = self._inbound
        now = self._plane.clock()
        violation = inbound.admit(now, frame.payload_size, frame.rsv1 or frame.rsv2 or frame.rsv3)
        if violation is not None:
            self._violated(connection, violation)
            return
        msg_type = frame.msg_type
        if msg_type is WSMsgType.PING:
            # picows's auto-pong is off so that pings count against the budgets above.
            connection.last_inbound = now
            transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.PONG:  # liveness only
            connection.last_inbound = now
        elif msg_type is WSMsgType.CLOSE:
            violation = close_code_violation(frame.get_close_code().value, frame.payload_size)
            if violation is not None:
                self._violated(connection, violation)
                return
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        else:
            result = inbound.data(msg_type, frame.fin, frame.get_payload_as_memoryview())
            if result is None:
                connection.last_inbound = now
            elif isinstance(result, Violation):
                self._violated(connection, result)
            else:
                self._plane.commands.on_frame(connection, result[0], result[1])

    def _violated(self, connection: Connection, violation: Violation) -> None:
        """Close for a broken rule; warn once per connection per kind, and rate-limited
        across the process (each stranger could otherwise write a line per frame)."""
        self._inbound.release()
        plane = self._plane
        plane.inbound_counters.violations[violation.kind] += 1
        if violation.kind not in self._warned:
            self._warned.add(violation.kind)
            left_out = plane.warnings.allow(violation.kind, plane.clock())
            if left_out is None:
                plane.inbound_counters.warnings_suppressed += 1
            else:
                log.warning(
                    "closing %s with %d: %s (%d similar warnings left out)",
                    connection.connection_id,
                    violation.code,
                    violation.reason,
                    left_out,
                )
        plane.hub.close(connection, violation.code, violation.reason)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._inbound.release()
        if self.connection is not None:
            self._plane.closed(self.connection)

    def pause_writing(self) -> None:
        if self.connection is not None:
            self._plane.hub.pause(self.connection)

    def resume_writing(self) -> None:
        if self.connection is not None:
            self._plane.hub.resume(self.connection)

    # ---- core Transport

    def write(self, data: bytes) -> None:
        self._raw.write(data)

    def write_buffer_size(self) -> int:
        return int(self._raw.get_write_buffer_size())

    def ping(self) -> None:
        if self._ws is not None:
            self._ws.send_ping()

    def close(self, code: int, reason: str) -> None:
        ws = self._ws
        if ws is None or ws.is_disconnected:
            return
        ws.send_close(WSCloseCode(code), close_reason(reason))
        ws.disconnect(graceful=True)
        # A peer that does not read would keep a graceful close (and its buffer) forever.
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, self._abort)

    def _abort(self) -> None:
        if self._ws is not None and not self._ws.is_disconnected:
            sock = self._raw.get_extra_info("socket") if self._raw is not None else None
            if sock is not None:
                # Linger 0: the kernel drops what the peer never read (a reset), instead of
                # keeping it for as long as the peer acknowledges zero-window probes.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._ws.disconnect(graceful=False)


class DataPlane:
    """Accepts client connections and wires them to the hub."""

    def __init__(
        self,
        settings: GatewaySettings,
        hub: Hub,
        commands: CommandHandler,
        authenticator: Authenticator,
        clock: Callable[[], float] = time.monotonic,
        allowed_origins: Callable[[], frozenset[str]] = frozenset,
        ssl: Any = None,
    ) -> None:
        """`allowed_origins()`: the Origins a browser may connect from (a callable: the
        default names the control plane's port, bound after this plane); `ssl`: an
        SSLContext."""
        self.settings = settings
        self.allowed_origins = allowed_origins
        self._ssl = ssl
        self.hub = hub
        self.commands = commands
        self.authenticator = authenticator
        self.clock = clock
        self._server: asyncio.Server | None = None
        self._id_prefix = os.urandom(3).hex()
        self._ids = 0
        self.port = 0
        self.reassembly = ReassemblyBudget(settings.max_reassembly_bytes)
        """Bytes of every connection's unfinished fragmented message."""
        self.inbound_counters = InboundCounters()
        self.warnings = WarnLimiter()
        self.picows_log = PicowsLog(PICOWS_LOG)
        """picows's own refusals, counted and rate-limited."""
        self._drained = asyncio.Event()
        """Set whenever the last connection goes away (awaited by `stop`)."""

    async def start(self) -> None:
        self._server = await ws_create_server(
            self._route,
            self.settings.host,
            self.settings.port,
            websocket_handshake_timeout=self.settings.handshake_timeout,
            max_frame_size=self.settings.max_frame_bytes,
            # Pings are answered in on_ws_frame, after they are counted: picows's own
            # answer would let a ping flood cost the loop without any budget seeing it.
            enable_auto_pong=False,
            read_buffer_init_size=READ_BUFFER_INIT_SIZE,
            logger_name=self.picows_log,
            # Plain asyncio transports: aiofastnet's cost ~5 KiB more per idle connection
            # for no CPU gain measured here (BENCHMARKS.md).
            use_aiofastnet=False,
            # A resume storm reconnects thousands of clients at once: asyncio's default
            # backlog of 100 overflows and makes them wait for a SYN retransmission.
            backlog=2048,
            # Several worker processes share the client port only when asked (--workers):
            # by default a second gateway on the same port must fail, not split the traffic.
            reuse_port=self.settings.reuse_port,
            ssl=self._ssl,
        )
        # picows logs whole upgrade requests (they carry tokens) at its debug levels and a
        # line per connection at INFO (an outsider's reconnect loop would flood the log).
        PICOWS_LOG.setLevel(max(logging.WARNING, PICOWS_LOG.getEffectiveLevel()))
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server going away"
    ) -> None:
        """Stop accepting, close every connection with `code`, wait for them to go."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.hub.connections.values()):
            self.hub.close(connection, code, reason)
        if self.hub.connections:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), CLOSE_GRACE_SECONDS)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _route(self, request: WSUpgradeRequest) -> WSUpgradeResponseWithListener | None:
        path = request.path.decode("latin-1")
        bare = urlsplit(path).path
        if bare == "/healthz":
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_ok_response(
                    b'{"status":"ok"}', {"Content-Type": "application/json"}
                ),
                None,
            )
        if path_subscriptions(bare) is None:
            return None
        headers = request.headers
        try:
            check_version(headers.get("Sec-WebSocket-Version"))
            if len(self.hub.connections) >= self.settings.max_connections:
                raise HandshakeRefused(503, "too many connections")
            if not origin_allowed(headers.get("Origin"), self.allowed_origins()):
                raise HandshakeRefused(403, "origin not allowed (setting allowed_origins)")
            handshake = negotiate(
                path,
                ", ".join(headers.getall("Sec-WebSocket-Protocol", [])) or None,
                self.settings.max_batch_ms,
                authorization=headers.get("Authorization"),
                query_token=self.settings.auth_query_token,
            )
            principal = self._principal(handshake.token)
            if (
                not principal.authenticated
                and self.authenticator.required
                and self.hub.ledger.unauthenticated >= self.settings.max_unauthenticated_connections
            ):
                # Strangers must not fill the process: those with tokens still get in.
                raise HandshakeRefused(503, "too many connections waiting to authenticate")
        except HandshakeRefused as exc:
            extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(exc.status, exc.reason.encode(), extra),
                None,
            )
        subprotocol = handshake.subprotocol
        answer = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(answer),
            _ClientListener(
                self, handshake.wire_format, handshake.path, handshake.batch_ms, principal
            ),
        )

    def _principal(self, token: str | None) -> Principal:
        """Who a handshake's token names; no token: anonymous (auth off) or, until `auth`
        arrives, unauthenticated. A bad token refuses the handshake with 401."""
        if token is None:
            if self.authenticator.required:
                return UNAUTHENTICATED
            return self.authenticator.authenticate(None)
        try:
            return self.authenticator.authenticate(token)
        except ProtocolError as exc:
            raise HandshakeRefused(401, exc.message) from None

    def closed(self, connection: Connection) -> None:
        self.hub.remove_connection(connection)
        if not self.hub.connections:
            self._drained.set()

    def open(
        self,
        listener: _ClientListener,
        fmt: WireFormat,
        path: str,
        batch_ms: int,
        peer: Any,
        principal: Principal,
    ) -> Connection:
        settings = self.settings
        now = self.clock()
        self._ids += 1
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
        ledger = self.hub.ledger
        connection = Connection(
            connection_id=f"{self._id_prefix}-{self._ids}",
            transport=listener,
            wire_format=fmt,
            principal=principal,
            inbound=TokenBucket(settings.max_inbound_per_second, settings.inbound_burst, now),
            now=now,
            connected_at=now_iso(),
            remote=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else address,
            path=path,
            batch_ms=batch_ms,
            address=address,
            auth_deadline=(
                now + settings.auth_timeout
                if self.authenticator.required and not principal.authenticated
                else 0.0
            ),
        )
        expires_at = iso_of(principal.expires_at)  # before the hub holds the connection
        over = None
        if ledger.address_count(address) >= settings.max_connections_per_address:
            over = f"more than {settings.max_connections_per_address} connections from {address}"
        elif principal.user_id is not None:
            over = ledger.over_user_limit(principal.user_id, settings.max_connections_per_user)
        self.hub.add_connection(connection)
        if over is not None:
            self.hub.close(connection, CloseCode.TOO_MANY_CONNECTIONS, over)
            return connection
        self.hub.send(
            connection,
            ConnectionEstablished(
                connection_id=connection.connection_id,
                server_version=__version__,
                protocol_versions=list(ACCEPTED_VERSIONS),
                heartbeat_interval=settings.heartbeat_interval,
                limits=Limits(
                    max_subscriptions=settings.max_subscriptions,
                    max_message_bytes=settings.max_message_bytes,
                    max_inbound_per_second=settings.max_inbound_per_second,
                ),
                user_id=connection.user_id or ("anonymous" if principal.open_access else None),
                auth_required=connection.auth_deadline > 0,
                expires_at=expires_at,
            ),
        )
        if not connection.auth_deadline:
            self.commands.subscribe_path(connection)
        return connection
