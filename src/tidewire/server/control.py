"""The control plane: HTTP API on the internal port (Litestar on uvicorn, same event loop).

Health and readiness probes, introspection (stats, connections, subscriptions, streams),
operator actions (disconnect a client, broadcast) and the REST publish API. Every error
answer has the body `{error_code, error_message, details}` of PROTOCOL.md section 5.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath, JSONBody
from litestar.static_files import create_static_files_router

from tidewire import __version__
from tidewire.brokers.base import BrokerUnavailable
from tidewire.dashboard import STATIC_DIR
from tidewire.protocol.errors import CloseCode, ErrorCode, ProtocolError
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import (
    PRIORITY_HIGH,
    DataMessage,
    ErrorBody,
    PublishResponse,
    PublishResult,
    StreamPosition,
)
from tidewire.protocol.streams import STREAMS

if TYPE_CHECKING:
    from tidewire.server.app import Gateway

BROADCAST_PREFIX = "broadcast-"
"""message_id prefix of operator notices (POST /api/broadcast): every node shows them to all
of its clients when the broker delivers them."""


class ConnectionInfo(msgspec.Struct, kw_only=True):
    connection_id: str
    remote: str
    path: str
    user_id: str | None
    wire_format: str
    batch_ms: int
    connected_at: str
    subscriptions: int
    messages_sent: int
    bytes_sent: int
    messages_received: int
    errors: int
    pending_bytes: int
    """Queued in the gateway, not yet handed to the socket (also includes this loop
    iteration's output, so a small value does not mean the client is behind)."""
    write_paused: bool
    """The socket's send buffer is full: the client is behind and is being held back."""
    paused_seconds: float
    """How long it has been held back (0 when it keeps up); at stall_timeout it is cut off."""
    closing: bool


class SubscriptionRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    connection_id: str
    subscription_id: str
    stream: str
    filters: dict[str, Any]
    rate_limit: float | None = None
    created_at: str
    messages_delivered: int


class StreamInfo(msgspec.Struct, kw_only=True):
    stream: str
    key_field: str
    stream_class: str
    message_types: list[str]
    filters: list[str]
    position: StreamPosition
    subscribers: int


class BroadcastRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An operator notice sent to every connected client, subscribed or not."""

    message: str
    title: str | None = None
    severity: str = "medium"
    type: str = "system_alert"


class BroadcastResponse(msgspec.Struct, kw_only=True):
    message_id: str
    seq: int
    recipients: int


def error_response(
    status: int, code: ErrorCode, message: str, details: Any = None
) -> Response[Any]:
    return Response(
        ErrorBody(error_code=code.value, error_message=message, details=details),
        status_code=status,
    )


_STATUS_OF_CODE = {ErrorCode.UNAVAILABLE: 503, ErrorCode.MESSAGE_TOO_LARGE: 413}


def create_app(gateway: Gateway) -> Litestar:
    """The Litestar application serving `gateway`'s control plane."""
    settings = gateway.settings

    @get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="Readiness: the broker takes messages and the data plane listens")
    async def readyz() -> Response[Any]:
        problems = await gateway.readiness_problems()
        if problems:
            return Response({"ready": False, "problems": problems}, status_code=503)
        return Response({"ready": True, "problems": []})

    @get("/api/config", summary="Where browsers connect: the data plane's WebSocket URL")
    async def config(request: Request[Any, Any, Any]) -> dict[str, Any]:
        # The host the browser used to reach this page is the one it can reach the data
        # plane on (unless the data plane is bound to one specific other interface).
        host = request.url.hostname or settings.host
        if settings.host not in ("0.0.0.0", "::", "127.0.0.1", "localhost"):
            host = settings.host
        return {
            "ws_url": f"ws://{host}:{gateway.port}/ws",
            "server_version": __version__,
            "heartbeat_interval": settings.heartbeat_interval,
        }

    @get("/api/stats", summary="Counters of this gateway node")
    async def stats() -> dict[str, Any]:
        return {**gateway.stats(), "broker_lag": await gateway.broker_lag()}

    @get("/api/connections", summary="Open client connections")
    async def connections() -> list[ConnectionInfo]:
        now = gateway.clock()
        return [
            ConnectionInfo(
                connection_id=c.connection_id,
                remote=c.remote,
                path=c.path,
                user_id=c.user_id,
                wire_format=c.wire_format.name.lower(),
                batch_ms=c.batch_ms,
                connected_at=c.connected_at,
                subscriptions=len(c.subscriptions),
                messages_sent=c.messages_sent,
                bytes_sent=c.bytes_sent,
                messages_received=c.messages_received,
                errors=c.errors,
                pending_bytes=c.outbox.pending_bytes,
                write_paused=c.write_paused,
                paused_seconds=round(now - c.paused_at, 3) if c.write_paused else 0.0,
                closing=c.closed,
            )
            for c in gateway.hub.connections.values()
        ]

    @delete("/api/connections/{connection_id:str}", status_code=204, summary="Disconnect a client")
    async def disconnect(connection_id: FromPath[str]) -> None:
        connection = gateway.hub.connections.get(connection_id)
        if connection is None:
            raise NotFoundException(f"no connection {connection_id!r}")
        gateway.hub.close(connection, CloseCode.NORMAL, "closed by operator")

    @get("/api/subscriptions", summary="Every subscription of every connection")
    async def subscriptions() -> list[SubscriptionRow]:
        return [
            SubscriptionRow(
                connection_id=s.connection.connection_id,
                subscription_id=s.subscription_id,
                stream=s.spec.name,
                filters=msgspec.to_builtins(s.filters),
                rate_limit=s.rate_limit,
                created_at=s.created_at,
                messages_delivered=s.messages_delivered,
            )
            for s in gateway.hub.subscriptions()
        ]

    @get("/api/streams", summary="The stream catalogue with positions and subscriber counts")
    async def streams() -> list[StreamInfo]:
        return [
            StreamInfo(
                stream=spec.name,
                key_field=spec.key_field,
                stream_class=spec.stream_class.value,
                message_types=list(spec.message_types),
                filters=sorted(spec.filters),
                position=gateway.broker.position(spec.name),
                subscribers=gateway.hub.subscriber_count(spec.name),
            )
            for spec in STREAMS.values()
        ]

    @post(
        "/api/publish",
        status_code=200,
        summary="Publish one message or a list; all or nothing, idempotent on message_id",
    )
    async def publish(request: Request[Any, Any, Any]) -> Response[Any]:
        body = await request.body()
        try:
            raw = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            return error_response(400, ErrorCode.INVALID_JSON, f"body is not JSON: {exc}")
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            return error_response(400, ErrorCode.INVALID_MESSAGE, "empty list: nothing to publish")
        if len(items) > settings.max_publish_batch:
            return error_response(
                413,
                ErrorCode.MESSAGE_TOO_LARGE,
                f"{len(items)} messages in one request; at most {settings.max_publish_batch}",
                {"limit": settings.max_publish_batch},
            )
        messages: list[DataMessage] = []
        for position, item in enumerate(items):
            try:
                messages.append(build_data_message(item, default_source="api"))
            except ProtocolError as exc:
                # Validate everything first: an invalid message publishes nothing of the request.
                details = {"index": position, **(exc.details or {})}
                return error_response(422, exc.code, exc.message, details)
        try:
            outcomes = await gateway.broker.publish_many(messages)
        except BrokerUnavailable as exc:
            return error_response(503, ErrorCode.UNAVAILABLE, f"broker unavailable: {exc}")
        results = [
            PublishResult(
                message_id=o.message.message_id,
                seq=o.message.seq,
                stream=o.message.stream,
                epoch=o.message.epoch,
                duplicate=o.duplicate,
            )
            for o in outcomes
        ]
        accepted = sum(1 for o in outcomes if not o.duplicate)
        return Response(PublishResponse(accepted=accepted, results=results))

    @post("/api/broadcast", status_code=200, summary="Send a notice to every connected client")
    async def broadcast(data: JSONBody[BroadcastRequest]) -> Response[Any]:
        raw = {
            "type": data.type,
            # Every node shows a message with this prefix to all of its clients when the
            # broker delivers it, so the notice reaches the clients of every node.
            "message_id": f"{BROADCAST_PREFIX}{uuid.uuid4().hex}",
            "source": "operator",
            "severity": data.severity,
            "priority": PRIORITY_HIGH,
            "data": {"message": data.message, **({"title": data.title} if data.title else {})},
        }
        try:
            message = build_data_message(raw, default_source="operator")
            if message.stream != "events":
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE, "type must be an events type (system_alert, ...)"
                )
            outcome = await gateway.broker.publish(message)
        except ProtocolError as exc:
            return error_response(422, exc.code, exc.message, exc.details)
        except BrokerUnavailable as exc:
            return error_response(503, ErrorCode.UNAVAILABLE, f"broker unavailable: {exc}")
        # Each node shows the notice to its own clients when the broker delivers it; this
        # counts the clients of the node that answers.
        recipients = sum(1 for c in gateway.hub.connections.values() if not c.closed)
        return Response(
            BroadcastResponse(
                message_id=outcome.message.message_id,
                seq=outcome.message.seq,
                recipients=recipients,
            )
        )

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        code = {
            404: ErrorCode.NOT_FOUND,
            405: ErrorCode.INVALID_MESSAGE,
            413: ErrorCode.MESSAGE_TOO_LARGE,
            400: ErrorCode.INVALID_MESSAGE,
        }.get(
            exc.status_code,
            ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.INVALID_MESSAGE,
        )
        extra = getattr(exc, "extra", None)
        return error_response(exc.status_code, code, str(exc.detail), extra or None)

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            config,
            stats,
            connections,
            disconnect,
            subscriptions,
            streams,
            publish,
            broadcast,
            create_static_files_router(path="/", directories=[STATIC_DIR], html_mode=True),
        ],
        exception_handlers={HTTPException: http_error},
        request_max_body_size=settings.max_publish_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Tidewire control plane",
            version=__version__,
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
        ),
        debug=False,
        # Leave the process's logging to the application that embeds the gateway.
        logging_config=None,
    )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the gateway owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlPlane:
    """Runs the control-plane app on its own socket inside the gateway's event loop."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._server: _EmbeddedServer | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    async def start(self) -> None:
        import asyncio

        settings = self._gateway.settings
        # IPPROTO_TCP, so that asyncio sets TCP_NODELAY on accepted sockets (a kept-alive
        # request otherwise waits ~40 ms for the client's delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.internal_host, settings.internal_port))
        sock.listen(512)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self._gateway),
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            await self._task
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
