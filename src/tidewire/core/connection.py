"""State of one client connection: identity, subscriptions, outbox, counters and limits.

No sockets here: the data plane hands each Connection a `Transport` (four methods), and
tests hand it a recording fake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tidewire.core.auth import Principal
from tidewire.core.outbox import Outbox
from tidewire.core.ratelimit import TokenBucket
from tidewire.protocol.codec import WireFormat

if TYPE_CHECKING:
    from tidewire.core.subscription import Subscription


class Transport(Protocol):
    """What the core needs from a client socket."""

    def write(self, data: bytes) -> None:
        """Queue bytes (whole WebSocket frames) for sending; never blocks."""
        ...

    def write_buffer_size(self) -> int:
        """Bytes written but not yet accepted by the kernel.

        Asked only while the connection's `write_paused` is set: the transport must set it
        when its buffer passes a high-water mark below the hub's `max_outbox_bytes`."""
        ...

    def ping(self) -> None:
        """Send a WebSocket ping; any inbound frame counts as liveness."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with `code` and drop the connection."""
        ...


class Connection:
    """One WebSocket client of this gateway node."""

    __slots__ = (
        "address",
        "auth_deadline",
        "batch_ms",
        "bytes_received",
        "bytes_sent",
        "close_code",
        "closed",
        "connected_at",
        "connection_id",
        "dirty",
        "errors",
        "heartbeat_counter",
        "inbound",
        "last_inbound",
        "last_outbound",
        "last_ping",
        "last_token",
        "messages_queued",
        "messages_received",
        "outbox",
        "path",
        "paused_at",
        "principal",
        "remote",
        "subscriptions",
        "transport",
        "wire_format",
        "write",
        "write_paused",
    )

    def __init__(
        self,
        connection_id: str,
        transport: Transport,
        wire_format: WireFormat,
        principal: Principal,
        inbound: TokenBucket,
        now: float,
        connected_at: str,
        remote: str = "",
        path: str = "/ws",
        batch_ms: int = 0,
        address: str = "",
        auth_deadline: float = 0.0,
    ) -> None:
        self.connection_id = connection_id
        self.transport = transport
        self.write = transport.write
        """`transport.write`, bound once: the flush calls it for every connection."""
        self.write_paused = False
        """Set by the transport while its buffer is above the high-water mark; only then
        does the flush ask for the buffer size (the slow-consumer check)."""
        self.paused_at = 0.0
        """When `write_paused` was last set (monotonic seconds)."""
        self.wire_format = wire_format
        self.principal = principal
        self.inbound = inbound
        self.remote = remote
        self.address = address
        """The remote IP address (per-address connection limit)."""
        self.auth_deadline = auth_deadline
        """Monotonic time by which an unauthenticated connection must send `auth` (0: none)."""
        self.path = path
        self.batch_ms = batch_ms
        """0: frames are written once per event-loop iteration; N: one batch frame per N ms."""
        self.outbox = Outbox(wire_format, batched=batch_ms > 0)
        self.subscriptions: dict[str, Subscription] = {}
        self.connected_at = connected_at
        self.last_inbound = now
        self.last_outbound = now
        self.last_ping = now
        """When the heartbeat sweep last pinged this connection (or it connected)."""
        self.heartbeat_counter = 0
        self.dirty = False
        """True while the connection waits in the hub's flush list."""
        self.last_token = 0
        """Dispatch token of the last message queued here: one delivery per message even
        when several subscriptions of this connection match it."""
        self.closed = False
        self.close_code: int | None = None
        self.messages_queued = 0
        """Messages queued for this connection (data and replies); conflated ones count."""
        self.bytes_sent = 0
        self.messages_received = 0
        self.bytes_received = 0
        self.errors = 0

    @property
    def user_id(self) -> str | None:
        return self.principal.user_id
