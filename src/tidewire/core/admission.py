"""Which subscriptions a `subscribe` admits: stream, filters, id, limits, entitlements.

Problems are reported in the order of docs/protocol.md: unknown stream, invalid filter,
duplicate id, too many subscriptions; then entitlements (`forbidden`). The `event_types`
form of the original trade-updates hook admits one subscription per stream those events
travel on, all or none, with ids `<subscription_id>.<stream>` grouped under the id the
client sent (an `unsubscribe` of that id ends the group). Pure: no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidewire.core.entitlements import authorize_subscribe, message_check
from tidewire.core.subscription import Subscription
from tidewire.protocol.compat import topic_filters
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.filters import filter_value_count, validate_filters
from tidewire.protocol.messages import Filters, Subscribe, now_iso
from tidewire.protocol.streams import StreamSpec, resolve_stream, stream_of_event_type

if TYPE_CHECKING:
    from tidewire.core.commands import CommandLimits
    from tidewire.core.connection import Connection
    from tidewire.core.quotas import IdentityLedger

MAX_SUBSCRIPTION_ID_LENGTH = 128


def admit(
    connection: Connection, command: Subscribe, limits: CommandLimits, ledger: IdentityLedger
) -> list[Subscription]:
    """The subscriptions `command` creates (not registered yet); raises ProtocolError."""
    if command.event_types is None:
        return [_one(connection, command, stream_of(command), limits, ledger)]
    if command.since is not None:
        # Positions are per stream: one `since` cannot resume several.
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            "since cannot be used with event_types: resume each stream with its own subscribe",
        )
    specs = event_streams(command.event_types)
    room = limits.max_subscriptions - len(connection.subscriptions)
    if len(specs) > room:
        raise _too_many(limits.max_subscriptions, "per connection")
    user = connection.user_id
    if user is not None and ledger.subscription_count(user) + len(specs) > (
        limits.max_subscriptions_per_user
    ):
        raise _too_many(limits.max_subscriptions_per_user, "per user across its connections")
    base = command.subscription_id or free_subscription_id(connection)
    subscriptions = [
        _one(connection, command, spec, limits, ledger, f"{base}.{spec.name}") for spec in specs
    ]
    for subscription in subscriptions:
        subscription.group = base
    return subscriptions


def unsubscribe_ids(connection: Connection, ids: list[str]) -> list[str]:
    """The subscription ids an unsubscribe of `ids` names, each once: an id itself, or the
    members of the `event_types` group it names (kept as is when it is neither: the
    caller reports it not found)."""
    subscriptions = connection.subscriptions
    groups: dict[str, list[str]] | None = None
    out: dict[str, None] = {}
    for name in dict.fromkeys(ids):
        if name in subscriptions:
            out[name] = None
            continue
        if groups is None:  # built once, and only when an id is not a subscription's
            groups = {}
            for sid, sub in subscriptions.items():
                if sub.group is not None:
                    groups.setdefault(sub.group, []).append(sid)
        out.update(dict.fromkeys(groups.get(name, [name])))
    return list(out)


def stream_of(command: Subscribe) -> StreamSpec:
    spec = resolve_stream(command.stream) if command.stream else None
    if spec is None:
        if not command.stream:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "subscribe needs `stream` (or `event_types`)"
            )
        raise ProtocolError(
            ErrorCode.UNKNOWN_STREAM,
            f"unknown stream {command.stream!r}",
            {"stream": command.stream},
        )
    return spec


def event_streams(names: list[str]) -> list[StreamSpec]:
    """The streams of an `event_types` list, in first-named order, each once."""
    if not names or not all(isinstance(name, str) for name in names):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "event_types must be a non-empty list of names"
        )
    specs: dict[str, StreamSpec] = {}
    for name in names:
        spec = stream_of_event_type(name)
        if spec is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_STREAM,
                f"no stream carries events of type {name!r}",
                {"event_type": name},
            )
        specs.setdefault(spec.name, spec)
    return list(specs.values())


def check_filter_budget(
    connection: Connection, filters: Filters, limit: int, replacing: Subscription | None = None
) -> None:
    """Raise ProtocolError(invalid_filter) when `filters` would take the connection's
    subscriptions past `limit` filter values in total (`replacing`: the subscription an
    update changes, whose values are given back)."""
    held = sum(
        filter_value_count(s.filters)
        for s in connection.subscriptions.values()
        if s is not replacing
    )
    wanted = filter_value_count(filters)
    if held + wanted > limit:
        raise ProtocolError(
            ErrorCode.INVALID_FILTER,
            f"this connection's subscriptions would hold {held + wanted} filter values; "
            f"at most {limit} are allowed per connection",
            {"limit": limit, "held": held},
        )


def check_rate_limit(spec: StreamSpec, rate_limit: float) -> None:
    """Raise ProtocolError(invalid_rate_limit) unless `spec` may be limited to `rate_limit`."""
    if spec.reliable:
        raise ProtocolError(
            ErrorCode.INVALID_RATE_LIMIT,
            f"{spec.name} is a reliable stream: its messages cannot be conflated, "
            "so it takes no rate_limit",
        )
    if not rate_limit > 0:
        raise ProtocolError(ErrorCode.INVALID_RATE_LIMIT, "rate_limit must be a positive number")


def free_subscription_id(connection: Connection) -> str:
    n = len(connection.subscriptions) + 1
    while f"sub-{n}" in connection.subscriptions:
        n += 1
    return f"sub-{n}"


def _too_many(limit: int, where: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
        f"at most {limit} subscriptions {where}",
        {"limit": limit},
    )


def _one(
    connection: Connection,
    command: Subscribe,
    spec: StreamSpec,
    limits: CommandLimits,
    ledger: IdentityLedger,
    subscription_id: str | None = None,
) -> Subscription:
    raw_filters = command.filters
    if command.topic is not None:
        raw_filters = topic_filters(spec, command.topic, raw_filters)
    filters = validate_filters(raw_filters, spec, limits.max_filter_values)
    check_filter_budget(connection, filters, limits.max_filter_values_per_connection)
    if command.since is not None and command.since.seq < 0:
        raise ProtocolError(
            ErrorCode.INVALID_POSITION,
            f"since.seq must be 0 or more, not {command.since.seq}",
            {"since": {"epoch": command.since.epoch, "seq": command.since.seq}},
        )
    subscription_id = subscription_id or command.subscription_id
    if subscription_id is not None:
        if not subscription_id or len(subscription_id) > MAX_SUBSCRIPTION_ID_LENGTH:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"subscription_id must have 1 to {MAX_SUBSCRIPTION_ID_LENGTH} characters",
            )
        if subscription_id in connection.subscriptions:
            raise ProtocolError(
                ErrorCode.DUPLICATE_SUBSCRIPTION,
                f"subscription id {subscription_id!r} is already in use on this connection",
                {"subscription_id": subscription_id},
            )
    if len(connection.subscriptions) >= limits.max_subscriptions:
        raise _too_many(limits.max_subscriptions, "per connection")
    user = connection.user_id
    per_user = limits.max_subscriptions_per_user
    if user is not None and ledger.subscription_count(user) >= per_user:
        raise _too_many(per_user, "per user across its connections")
    rate_limit = command.rate_limit
    if rate_limit is not None:
        check_rate_limit(spec, rate_limit)
    principal = connection.principal
    filters = authorize_subscribe(principal, spec, filters)
    return Subscription(
        connection,
        subscription_id or free_subscription_id(connection),
        spec,
        filters,
        now_iso(),
        rate_limit=rate_limit,
        reader=message_check(principal, spec),
    )
