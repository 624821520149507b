"""msgspec types for every message of docs/protocol.md sections 2, 3 and 6.

Client commands and server replies are tagged unions on `type`, so one decode both
validates a command and picks its class. Data messages (section 4) share one struct,
`DataMessage`: the fan-out encodes it once and every recipient gets the same bytes.
"""

from __future__ import annotations

import os
import typing
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import msgspec.inspect

from tidewire.protocol.errors import ProtocolError
from tidewire.protocol.shapes import TOP_LEVEL_FIELDS

PROTOCOL_VERSION = "3.0"
# Versions a client may put in `version`; older ones are mapped by protocol.compat.
ACCEPTED_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "2.0", "3.0")

Priority = Literal[1, 2, 3, 4]
PRIORITY_LOW, PRIORITY_NORMAL, PRIORITY_HIGH, PRIORITY_CRITICAL = 1, 2, 3, 4


def _protocol_version() -> str:
    return PROTOCOL_VERSION


# A default_factory, unlike a plain default, is never omitted by omit_defaults: every
# message must carry `version` on the wire.
VERSION_FIELD: str = msgspec.field(default_factory=_protocol_version)


def now_iso() -> str:
    """Current time as ISO-8601 UTC with microseconds and `Z` (the envelope's `timestamp`)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_id_prefix = os.urandom(4).hex()
_id_counter = 0


def iso_of(unix_seconds: float | None) -> str | None:
    """Unix seconds as ISO-8601 UTC (`2026-12-03T18:00:00Z`), None for None."""
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_message_id() -> str:
    """A message id unique across processes: random process prefix plus a counter."""
    global _id_counter
    _id_counter += 1
    return f"tw-{_id_prefix}-{_id_counter:x}"


class StreamPosition(msgspec.Struct, frozen=True):
    """Where a stream stands: its history name and the last seq published in it.

    `epoch` changes whenever history is lost (an in-memory broker restarted, Redis lost the
    stream): seq 10 of epoch "a1" and seq 10 of epoch "b2" are different messages, so a client
    that resumes with the wrong epoch is told to resync instead of getting a wrong replay.
    `seq` 0 means nothing has been published in this epoch yet.
    """

    epoch: str
    seq: int


# --------------------------------------------------------------------------- data messages


class DataMessage(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """One message of a stream, as delivered to every subscriber (section 2).

    Frozen because one instance (and its encoded bytes) is shared by every recipient.
    Optional top-level fields are omitted from the wire when unset.
    """

    type: str
    version: str = VERSION_FIELD
    timestamp: str
    message_id: str
    stream: str
    key: str
    seq: int = 0
    """Offset in the stream, strictly increasing by 1 within an epoch; 0 before sequencing."""
    epoch: str = ""
    source: str = msgspec.field(default_factory=lambda: "api")
    """Producer name; a default_factory so that omit_defaults never drops it."""
    data: dict[str, Any]
    correlation_id: str | None = None
    priority: int = PRIORITY_NORMAL
    sequence: int = 0
    """The original protocol's name for `seq`; always equal to it."""
    # Type-specific top-level fields of the original shapes (protocol.shapes); filters and
    # entitlements read the routing ones.
    symbol: str | None = None
    venue: str | None = None
    data_type: str | None = None
    asset_class: str | None = None
    portfolio_id: str | None = None
    strategy_id: str | None = None
    user_id: str | None = None
    severity: str | None = None
    risk_type: str | None = None
    engine_id: str | None = None
    component: str | None = None
    alert_category: str | None = None
    alert_level: str | None = None
    alert_type: str | None = None
    breach_type: str | None = None
    command: str | None = None
    command_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    execution_id: str | None = None
    metric_type: str | None = None
    order_id: str | None = None
    order_status: str | None = None
    position_side: str | None = None
    status: str | None = None
    strategy_name: str | None = None
    trade_type: str | None = None
    broadcast: bool = False
    """An operator notice (POST /api/broadcast) that every connected client receives,
    subscribed or not. Only the control plane sets it: producers cannot."""

    def sequenced(self, seq: int, epoch: str) -> DataMessage:
        """This message at `seq` of `epoch` (`sequence` follows `seq`)."""
        return msgspec.structs.replace(self, seq=seq, sequence=seq, epoch=epoch)


if set(TOP_LEVEL_FIELDS) - set(DataMessage.__struct_fields__):  # pragma: no cover
    raise AssertionError("DataMessage lacks a top-level field of protocol.shapes")


# --------------------------------------------------------------------------- filters


class Filters(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Server-side filters of a subscription (section 3). Unset means "no constraint"."""

    symbols: list[str] | None = None
    portfolio_ids: list[str] | None = None
    strategy_ids: list[str] | None = None
    user_id: str | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = None
    """Minimum severity: low < medium < high < critical."""
    min_price: float | None = None
    max_price: float | None = None
    venue: str | None = None
    asset_class: str | None = None


# --------------------------------------------------------------------------- client commands


class Command(
    msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", forbid_unknown_fields=False
):
    """Fields every client command may carry."""

    version: str = PROTOCOL_VERSION
    timestamp: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    priority: int = PRIORITY_NORMAL


ClientTime = int | float | str
"""A client's clock as it sent it (epoch milliseconds, or an ISO string): echoed unchanged."""


class Subscribe(Command, tag="subscribe"):
    stream: str = ""
    """The stream (or `topic`: a stream with a key suffix, `market_data.AAPL`)."""
    filters: Any = None
    """Validated separately (into `Filters`) so a bad filter reports `invalid_filter`."""
    subscription_id: str | None = None
    rate_limit: float | None = None
    """Maximum messages per second for this subscription (latest-value streams only)."""
    since: StreamPosition | None = None
    snapshot: bool | None = None
    topic: str | None = None
    """The topic as the client named it, when it had a key suffix (set by protocol.compat)."""
    event_types: list[str] | None = None
    """The original trade-updates hook's form: one subscription per stream these events
    travel on (`trade_executed`, `order_status`, `position_update`, `pnl_update`, or any
    message type or stream name), ids `<subscription_id>.<stream>`."""


class UpdateSubscription(Command, tag="update_subscription"):
    """New filters and/or rate limit for an existing subscription (also `update_filters`).

    Absent fields are kept; `filters: {}` removes every filter; `rate_limit: 0` removes the
    limit. Takes effect between two messages: no gap, no duplicate. On streams with a
    snapshot, the latest values of keys the old filters did not cover follow."""

    subscription_id: str
    filters: Any = None
    rate_limit: float | None = None


class GetSnapshot(Command, tag="get_snapshot"):
    """The latest values of a stream for `filters`, as one `snapshot` reply."""

    stream: str = ""
    filters: Any = None
    topic: str | None = None
    limit: int | None = None
    """At most this many messages (default and maximum: `max_query_messages`)."""


class GetTradeHistory(Command, tag="get_trade_history"):
    """Recent trades readable by the caller, from the history of `trade_updates`."""

    filters: Any = None
    limit: int | None = None
    """At most this many trades, newest last (default 100, at most 1000)."""


class Sync(Command, tag="sync"):
    """Clock synchronisation: answered with `sync_response` at once."""

    client_timestamp: ClientTime | None = None


class SubscribeOrderBook(Command, tag="subscribe_order_book"):
    """The original order-book hook's subscribe; answered `unknown_stream` until order
    books exist."""

    symbol: str | None = None
    venue: str | None = None
    asset_class: str | None = None
    currency: str | None = None
    subscription_id: str | None = None


class UnsubscribeOrderBook(Command, tag="unsubscribe_order_book"):
    symbol: str | None = None
    venue: str | None = None
    subscription_id: str | None = None


class Unsubscribe(Command, tag="unsubscribe"):
    subscription_id: str | None = None
    subscription_ids: list[str] | None = None


class ListSubscriptions(Command, tag="list_subscriptions"):
    """One page of the connection's subscriptions, in the order they were made."""

    limit: int | None = None
    """At most this many (default and maximum: `max_list_page`)."""
    after: str | None = None
    """The `next` of the previous page: the subscriptions made after this one."""


class Heartbeat(Command, tag="heartbeat"):
    """Sent by clients (with `client_timestamp`) and by the server (with `counter`)."""

    client_timestamp: ClientTime | None = None
    counter: int | None = None
    server_timestamp: str | None = None


class Auth(Command, tag="auth"):
    token: str


class Refresh(Command, tag="refresh"):
    token: str


class Publish(Command, tag="publish"):
    message: dict[str, Any]


class Ping(Command, tag="ping"):
    """The original dialect's `{"action":"ping"}`; answered with `pong`."""


ClientCommand = (
    Subscribe
    | Unsubscribe
    | ListSubscriptions
    | Heartbeat
    | Auth
    | Refresh
    | Publish
    | Ping
    | UpdateSubscription
    | GetSnapshot
    | GetTradeHistory
    | Sync
    | SubscribeOrderBook
    | UnsubscribeOrderBook
)


# --------------------------------------------------------------------------- server replies


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type"):
    """Envelope of every server reply (section 2)."""

    version: str = VERSION_FIELD
    timestamp: str = msgspec.field(default_factory=now_iso)
    message_id: str = msgspec.field(default_factory=new_message_id)
    correlation_id: str | None = None
    priority: int = PRIORITY_NORMAL


class Limits(msgspec.Struct, kw_only=True):
    max_subscriptions: int
    max_message_bytes: int
    max_inbound_per_second: float


class ConnectionEstablished(Reply, tag="connection_established"):
    connection_id: str
    server_version: str
    protocol_versions: list[str]
    heartbeat_interval: float
    """Seconds of silence after which the server sends `heartbeat`."""
    limits: Limits
    user_id: str | None = None
    auth_required: bool = False
    """True: this connection has no token yet and must send `auth` within `auth_timeout`
    seconds; only `auth` and `ping` are answered until then."""
    expires_at: str | None = None
    """When the connection's token expires (ISO-8601): send `refresh` before then."""


class SubscriptionConfirmed(Reply, tag="subscription_confirmed"):
    subscription_id: str
    stream: str
    topic: str
    """The original protocol's name of the subscription's target: the stream, with the key
    suffix when the client named one (`market_data.AAPL`)."""
    filters: Filters
    position: StreamPosition
    """The stream's position when the subscription started: live messages follow it."""
    recovered: bool | None = None
    rate_limit: float | None = None
    updated: bool = False
    """True when this confirms an `update_subscription` (the subscription went on)."""


class SubscriptionError(Reply, tag="subscription_error"):
    subscription_id: str | None
    error_code: str
    error_message: str
    retryable: bool


class UnsubscriptionConfirmed(Reply, tag="unsubscription_confirmed"):
    subscription_ids: list[str]


class SubscriptionInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    subscription_id: str
    stream: str
    filters: Filters
    rate_limit: float | None = None
    created_at: str
    messages_delivered: int = 0


class Subscriptions(Reply, tag="subscriptions"):
    subscriptions: list[SubscriptionInfo]
    next: str | None = None
    """Present when more follow: send `list_subscriptions {after: next}` for them."""


class HeartbeatResponse(Reply, tag="heartbeat_response"):
    client_timestamp: ClientTime | None
    """Echoed unchanged so the client computes its round trip."""
    server_timestamp: str
    positions: dict[str, StreamPosition]


class ServerHeartbeat(Reply, tag="heartbeat"):
    counter: int
    server_timestamp: str


class Snapshot(Reply, tag="snapshot"):
    """Answer to `get_snapshot`: the newest message per key, in seq order."""

    stream: str
    topic: str
    position: StreamPosition
    messages: list[DataMessage]
    truncated: bool = False
    """True when more messages matched than `limit` allowed (the newest are kept)."""


class TradeHistory(Reply, tag="trade_history"):
    """Answer to `get_trade_history`: `trade_updates` messages, oldest first."""

    position: StreamPosition
    trades: list[DataMessage]


class SyncResponse(Reply, tag="sync_response"):
    client_timestamp: ClientTime | None
    """Echoed unchanged."""
    server_timestamp: str
    server_time: float
    """The server's clock in epoch milliseconds (what the original client computed its
    offset from)."""


class AuthOk(Reply, tag="auth_ok"):
    user_id: str
    expires_at: str | None = None


class Ack(Reply, tag="ack"):
    ack_message_id: str
    seq: int
    status: str
    """"accepted", or "duplicate" for a message_id already published (nothing delivered)."""
    stream: str | None = None
    duplicate: bool = False


class ErrorReply(Reply, tag="error"):
    error_code: str
    error_message: str
    retryable: bool
    details: dict[str, Any] | None = None

    @classmethod
    def of(cls, error: ProtocolError, correlation_id: str | None) -> ErrorReply:
        """The `error` reply that reports `error` to the request `correlation_id`."""
        return cls(
            correlation_id=correlation_id,
            error_code=error.code.value,
            error_message=error.message,
            retryable=error.retryable,
            details=error.details,
        )


class Pong(Reply, tag="pong"):
    pass


ServerReply = (
    ConnectionEstablished
    | SubscriptionConfirmed
    | SubscriptionError
    | UnsubscriptionConfirmed
    | Subscriptions
    | HeartbeatResponse
    | ServerHeartbeat
    | AuthOk
    | Ack
    | ErrorReply
    | Pong
    | Snapshot
    | TradeHistory
    | SyncResponse
)

REPLY_TYPES: frozenset[str] = frozenset(
    str(typing.cast(msgspec.inspect.StructType, msgspec.inspect.type_info(reply)).tag)
    for reply in typing.get_args(ServerReply)
)
"""The `type` of every reply (everything the server sends that is not a data message or a
batch). `snapshot` names a stream but is a reply: its messages answer a query and are not
routed to subscriptions. Clients route by this set (the JavaScript one gets it generated)."""


class Batch(msgspec.Struct, tag="batch", tag_field="type"):
    """Several messages in one frame, for connections that asked for `batch_ms`."""

    messages: list[msgspec.Raw]


# --------------------------------------------------------------------------- REST publish


class PublishResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    message_id: str
    seq: int
    stream: str
    epoch: str
    duplicate: bool = False


class PublishResponse(msgspec.Struct, kw_only=True):
    accepted: int
    results: list[PublishResult]


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Body of every 4xx/5xx answer of the control plane."""

    error_code: str
    error_message: str
    details: dict[str, Any] | None = None
