"""The control plane: HTTP API on the internal port (Litestar on uvicorn, same event loop).

Health and readiness probes, introspection (stats, connections, subscriptions, streams),
operator actions (disconnect a client, broadcast) and the REST publish API. Every error
answer has the body `{error_code, error_message, details}` of docs/protocol.md section 6.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, delete, get, post
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath, FromQuery
from litestar.static_files import create_static_files_router

from tidewire import __version__
from tidewire.brokers.base import BrokerUnavailable
from tidewire.core.entitlements import OPERATOR_SOURCE, authorize_publish, publish_scope
from tidewire.core.quotas import publisher_key
from tidewire.dashboard import STATIC_DIR
from tidewire.protocol.codec import UNDECODABLE
from tidewire.protocol.errors import CloseCode, ErrorCode, ProtocolError
from tidewire.protocol.ingest import build_data_message, build_data_messages
from tidewire.protocol.messages import (
    PRIORITY_HIGH,
    DataMessage,
    ErrorBody,
    PublishResponse,
    PublishResult,
    StreamPosition,
    iso_of,
)
from tidewire.protocol.streams import STREAMS
from tidewire.security.browser import (
    HttpGuard,
    content_security_policy,
    data_plane_origins,
    url_host,
)
from tidewire.server.api_access import access_guards, principal_of
from tidewire.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tidewire.server.metrics import GatewayMetrics
from tidewire.server.paging import page

if TYPE_CHECKING:
    from tidewire.server.app import Gateway


class ConnectionInfo(msgspec.Struct, kw_only=True):
    connection_id: str
    remote: str
    path: str
    user_id: str | None
    wire_format: str
    batch_ms: int
    connected_at: str
    subscriptions: int
    messages_queued: int
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


NOTICE_TYPE = "operator_notice"
"""`alert_type` / `event_type` of a broadcast notice."""


def notice(request: BroadcastRequest) -> dict[str, Any]:
    """A broadcast request as a canonical message of its `events` type: the text is a
    system_alert's `description`, an alert's `message`, ... (docs/protocol.md)."""
    text, title = request.message, request.title
    top: dict[str, Any] = {"severity": request.severity}
    data: dict[str, Any] = {"title": title} if title else {}
    match request.type:
        case "system_alert":
            top |= {"component": "gateway", "alert_type": NOTICE_TYPE}
            data["description"] = text
        case "alert":
            top |= {"alert_level": request.severity, "alert_category": NOTICE_TYPE}
            data |= {"title": title or "Notice", "message": text}
        case "event":
            top |= {"event_type": NOTICE_TYPE}
            data["description"] = text
        case _:
            data["message"] = text
    return {
        "type": request.type,
        "source": OPERATOR_SOURCE,
        "priority": PRIORITY_HIGH,
        **top,
        "data": data,
    }


class BroadcastResponse(msgspec.Struct, kw_only=True):
    message_id: str
    seq: int
    recipients: int


class WhoAmI(msgspec.Struct, kw_only=True):
    """What the caller's token grants (so a client can check a token and show it)."""

    user_id: str | None
    roles: list[str]
    portfolio_ids: list[str] | None
    """None: every portfolio (`["*"]`, or authentication off)."""
    streams: list[str] | None
    """None: every stream."""
    expires_at: str | None
    auth_required: bool


class UserDisconnected(msgspec.Struct, kw_only=True):
    user_id: str
    closed_here: int
    """Connections this node closed; every other node closes the user's own ones."""


def error_response(
    status: int, code: ErrorCode, message: str, details: Any = None
) -> Response[Any]:
    return Response(
        ErrorBody(error_code=code.value, error_message=message, details=details),
        status_code=status,
    )


def not_json(exc: Exception) -> Response[Any]:
    """The 400 of a body that does not decode (bad JSON, invalid UTF-8, too deep)."""
    return error_response(400, ErrorCode.INVALID_JSON, f"body is not JSON: {str(exc)[:200]}")


_STATUS_OF_CODE = {ErrorCode.UNAVAILABLE: 503, ErrorCode.MESSAGE_TOO_LARGE: 413}
_CODE_OF_STATUS = {
    400: ErrorCode.INVALID_MESSAGE,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_MESSAGE,
    413: ErrorCode.MESSAGE_TOO_LARGE,
    415: ErrorCode.INVALID_MESSAGE,
    429: ErrorCode.RATE_LIMITED,
}


def create_app(gateway: Gateway) -> Litestar:
    """The Litestar application serving `gateway`'s control plane."""
    settings = gateway.settings
    authenticated, publisher, admin = access_guards(gateway.authenticator)

    @get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", summary="Readiness: the broker takes messages and the data plane listens")
    async def readyz() -> Response[Any]:
        problems = await gateway.readiness_problems()
        if problems:
            return Response({"ready": False, "problems": problems}, status_code=503)
        return Response({"ready": True, "problems": []})

    metrics_registry = GatewayMetrics(gateway)

    @get(
        "/metrics",
        summary="Prometheus metrics of this node (each --workers process serves its own)",
        media_type=METRICS_CONTENT_TYPE,
    )
    async def metrics() -> Response[bytes]:
        # Open like the probes (a scraper holds no JWT), behind the Host check; it names
        # streams, wire formats and codes, never a user, portfolio or connection.
        return Response(await metrics_registry.scrape(), media_type=METRICS_CONTENT_TYPE)

    @get("/api/config", summary="Where browsers connect: the data plane's WebSocket URL")
    async def config(request: Request[Any, Any, Any]) -> dict[str, Any]:
        # The host the browser used to reach this page is the one it can reach the data
        # plane on (unless the data plane is bound to one specific other interface).
        host = request.url.hostname or settings.host
        if settings.host not in ("0.0.0.0", "::", "127.0.0.1", "localhost"):
            host = settings.host
        scheme = "wss" if gateway.ssl else "ws"
        return {
            "ws_url": f"{scheme}://{url_host(host)}:{gateway.port}/ws",
            "server_version": __version__,
            "heartbeat_interval": settings.heartbeat_interval,
            "auth_required": gateway.authenticator.required,
        }

    @get("/api/stats", summary="Counters of this gateway node", guards=[admin])
    async def stats() -> dict[str, Any]:
        return {**gateway.stats(), "broker_lag": await gateway.broker_lag()}

    @get("/api/whoami", summary="What the caller's token grants", guards=[authenticated])
    async def whoami(request: Request[Any, Any, Any]) -> WhoAmI:
        principal = principal_of(request)
        return WhoAmI(
            user_id=principal.user_id,
            roles=sorted(principal.roles),
            portfolio_ids=None if principal.portfolios is None else sorted(principal.portfolios),
            streams=None if principal.streams is None else sorted(principal.streams),
            expires_at=iso_of(principal.expires_at),
            auth_required=gateway.authenticator.required,
        )

    @get("/api/connections", summary="Open client connections (paged)", guards=[admin])
    async def connections(
        offset: FromQuery[int] = 0, limit: FromQuery[int | None] = None
    ) -> Response[Any]:
        now = gateway.clock()
        hub_connections = gateway.hub.connections
        try:
            chosen, headers = page(
                hub_connections.values(), len(hub_connections), offset, limit, settings.max_api_page
            )
        except ProtocolError as exc:
            return error_response(400, exc.code, exc.message)
        rows = [
            ConnectionInfo(
                connection_id=c.connection_id,
                remote=c.remote,
                path=c.path,
                user_id=c.user_id,
                wire_format=c.wire_format.name.lower(),
                batch_ms=c.batch_ms,
                connected_at=c.connected_at,
                subscriptions=len(c.subscriptions),
                messages_queued=c.messages_queued,
                bytes_sent=c.bytes_sent,
                messages_received=c.messages_received,
                errors=c.errors,
                pending_bytes=c.outbox.pending_bytes,
                write_paused=c.write_paused,
                paused_seconds=round(now - c.paused_at, 3) if c.write_paused else 0.0,
                closing=c.closed,
            )
            for c in chosen
        ]
        return Response(rows, headers=headers)

    @delete(
        "/api/connections/{connection_id:str}",
        status_code=204,
        summary="Disconnect a client",
        guards=[admin],
    )
    async def disconnect(connection_id: FromPath[str]) -> None:
        connection = gateway.hub.connections.get(connection_id)
        if connection is None:
            raise NotFoundException(f"no connection {connection_id!r}")
        gateway.hub.close(connection, CloseCode.OPERATOR_CLOSE, "closed by operator")

    @get(
        "/api/subscriptions",
        summary="Every subscription of every connection (paged)",
        guards=[admin],
    )
    async def subscriptions(
        offset: FromQuery[int] = 0, limit: FromQuery[int | None] = None
    ) -> Response[Any]:
        total = sum(len(c.subscriptions) for c in gateway.hub.connections.values())
        try:
            chosen, headers = page(
                gateway.hub.subscriptions(), total, offset, limit, settings.max_api_page
            )
        except ProtocolError as exc:
            return error_response(400, exc.code, exc.message)
        rows = [
            SubscriptionRow(
                connection_id=s.connection.connection_id,
                subscription_id=s.subscription_id,
                stream=s.spec.name,
                filters=msgspec.to_builtins(s.filters),
                rate_limit=s.rate_limit,
                created_at=s.created_at,
                messages_delivered=s.messages_delivered,
            )
            for s in chosen
        ]
        return Response(rows, headers=headers)

    @get(
        "/api/streams",
        summary="The stream catalogue with positions and subscriber counts",
        guards=[admin],
    )
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
        guards=[publisher],
    )
    async def publish(request: Request[Any, Any, Any]) -> Response[Any]:
        principal = principal_of(request)
        body = await request.body()
        try:
            raw = msgspec.json.decode(body)
        except UNDECODABLE as exc:
            return not_json(exc)
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
        item_of: list[int] = []  # the request item each message came from
        for position, item in enumerate(items):
            try:
                # A 0.1 risk_metrics message becomes one message per metric.
                built = build_data_messages(item, default_source="api")
            except ProtocolError as exc:
                # Validate everything first: an invalid message publishes nothing of the request.
                details = {"index": position, **(exc.details or {})}
                return error_response(422, exc.code, exc.message, details)
            messages.extend(built)
            item_of.extend([position] * len(built))
        if not principal.open_access:
            for message, position in zip(messages, item_of, strict=True):
                try:
                    authorize_publish(principal, message)
                except ProtocolError as exc:
                    details = {"index": position, **(exc.details or {})}
                    return error_response(403, exc.code, exc.message, details)
        client = request.client.host if request.client else "unknown"
        wait = gateway.publish_rates.take(
            publisher_key(principal.user_id, client), len(messages), gateway.clock()
        )
        if wait:
            refusal = gateway.publish_rates.refusal(wait)
            answer = error_response(429, refusal.code, refusal.message, refusal.details)
            if math.isfinite(wait):
                answer.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return answer
        try:
            outcomes = await gateway.broker.publish_many(messages, publish_scope(principal))
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

    @post(
        "/api/broadcast",
        status_code=200,
        summary="Send a notice to every connected client",
        guards=[admin],
    )
    async def broadcast(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            data = msgspec.json.decode(await request.body(), type=BroadcastRequest)
        except msgspec.ValidationError as exc:
            return error_response(400, ErrorCode.INVALID_MESSAGE, f"invalid notice: {exc}")
        except UNDECODABLE as exc:
            return not_json(exc)
        try:
            message = build_data_message(notice(data), default_source=OPERATOR_SOURCE)
            if message.stream != "events":
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE, "type must be an events type (system_alert, ...)"
                )
            # Every node shows a broadcast message to all of its clients when the broker
            # delivers it; only this endpoint sets the flag (producers cannot).
            message = msgspec.structs.replace(message, broadcast=True)
            outcome = await gateway.broker.publish(message)
        except ProtocolError as exc:
            return error_response(422, exc.code, exc.message, exc.details)
        except BrokerUnavailable as exc:
            return error_response(503, ErrorCode.UNAVAILABLE, f"broker unavailable: {exc}")
        # Each node shows the notice to its own clients when the broker delivers it; this
        # counts the clients of the node that answers.
        recipients = sum(
            1 for c in gateway.hub.connections.values() if gateway.hub.reaches(c, message)
        )
        return Response(
            BroadcastResponse(
                message_id=outcome.message.message_id,
                seq=outcome.message.seq,
                recipients=recipients,
            )
        )

    @post(
        # A `path` parameter, so that user ids with slashes (SPIFFE ids, team/alice) work:
        # `%2F` is decoded before routing.
        "/api/users/{target:path}",
        status_code=200,
        summary="Close every connection of a user on every node (4003)",
        guards=[admin],
    )
    async def disconnect_user(target: FromPath[str]) -> Response[Any]:
        user_id, _, action = target.lstrip("/").rpartition("/")
        if action != "disconnect" or not user_id:
            raise NotFoundException("use POST /api/users/{user_id}/disconnect")
        try:
            closed = await gateway.disconnect_user(user_id)
        except BrokerUnavailable as exc:
            return error_response(
                503,
                ErrorCode.UNAVAILABLE,
                f"closed this node's connections only; other nodes unreachable: {exc}",
            )
        return Response(UserDisconnected(user_id=user_id, closed_here=closed))

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        extra = getattr(exc, "extra", None)
        named = extra.pop("error_code", None) if isinstance(extra, dict) else None
        code = (
            ErrorCode(named)
            if named
            else _CODE_OF_STATUS.get(
                exc.status_code,
                ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.INVALID_MESSAGE,
            )
        )
        answer = error_response(exc.status_code, code, str(exc.detail), extra or None)
        if exc.headers:
            answer.headers.update(exc.headers)
        return answer

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics,
            config,
            whoami,
            stats,
            connections,
            disconnect,
            subscriptions,
            streams,
            publish,
            broadcast,
            disconnect_user,
            create_static_files_router(path="/", directories=[STATIC_DIR], html_mode=True),
        ],
        exception_handlers={HTTPException: http_error},
        cors_config=(
            CORSConfig(
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["authorization", "content-type"],
            )
            if settings.cors_origins
            else None
        ),
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
        gateway = self._gateway
        tls = gateway.ssl is not None

        def csp(host_header: str) -> str:
            return content_security_policy(
                data_plane_origins(host_header, gateway.port, tls, settings.host)
            )

        config = uvicorn.Config(
            HttpGuard(create_app(gateway), gateway.allowed_hosts, csp),
            log_level="warning",
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
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
