"""What a principal may read, subscribe to and publish (docs/protocol.md, "Who reads what").

Pure rules, no I/O. One rule decides whether a principal may read a message, and the same
rule serves live fan-out, snapshots and replays (through `Subscription.matches`):

* a message that names a portfolio (`portfolio_id`) is readable by principals entitled to
  that portfolio (the token's `portfolio_ids`; `["*"]` = all), whatever its stream;
* a message that names a user (`user_id`) and no portfolio is readable by that user and
  by admins;
* any other message (market data, engine status, system health, firm-wide events) is
  readable by every authenticated principal;
* and a principal with a `streams` claim reads only those streams.

Subscriptions to portfolio-keyed streams are narrowed to the token's portfolios when they
name none, so the hub's index alone enforces the rule there; on other streams a restricted
principal's subscription checks each message. With authentication off (`open_access`)
nothing is enforced beyond roles.
"""

from __future__ import annotations

import msgspec

from tidewire.core.auth import ROLE_ADMIN, ROLE_PUBLISHER, ROLE_SUBSCRIBER, Principal
from tidewire.protocol.errors import ErrorCode, ProtocolError
from tidewire.protocol.messages import DataMessage, Filters
from tidewire.protocol.streams import StreamSpec

OPERATOR_SOURCE = "operator"
"""The `source` of operator notices (POST /api/broadcast); producers may not claim it."""


def portfolio_keyed(spec: StreamSpec) -> bool:
    """Streams partitioned by portfolio: their every message names one. (Trades and orders
    may name only a user, so theirs are checked message by message.)"""
    return spec.key_field == "portfolio_id" and spec.key_fallback is None


def readable(principal: Principal, message: DataMessage) -> bool:
    """Whether `principal` may receive `message` (the one rule; see the module docstring)."""
    if principal.open_access:
        return True
    if principal.streams is not None and message.stream not in principal.streams:
        return False
    portfolio = message.portfolio_id
    if portfolio is not None:
        return principal.reads_portfolio(portfolio)
    user = message.user_id
    if user is not None:
        return user == principal.user_id or principal.admin
    return True


def message_check(principal: Principal, spec: StreamSpec) -> Principal | None:
    """The principal a subscription must check each message against, or None when the
    subscription's filters and the hub's index already guarantee the rule."""
    if principal.open_access:
        return None
    if portfolio_keyed(spec):
        return None  # narrowed to the token's portfolios: the index enforces it
    if principal.portfolios is None and principal.admin:
        return None  # reads every portfolio and every user's messages
    return principal


def authorize_subscribe(principal: Principal, spec: StreamSpec, filters: Filters) -> Filters:
    """The filters a subscription of `principal` gets: `filters`, narrowed to the token's
    portfolios on portfolio-keyed streams when they name none.

    Raises ProtocolError(forbidden) when the principal may not subscribe, the stream is
    outside its `streams`, a `portfolio_ids` filter names a portfolio outside its token, or
    a `user_id` filter names another user (admins excepted).
    """
    if not principal.has_role(ROLE_SUBSCRIBER, ROLE_ADMIN):
        raise ProtocolError(ErrorCode.FORBIDDEN, "subscribing needs the subscriber role")
    if principal.open_access:
        return filters
    if principal.streams is not None and spec.name not in principal.streams:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"the token does not grant stream {spec.name}",
            {"stream": spec.name},
        )
    if filters.user_id is not None and filters.user_id != principal.user_id and not principal.admin:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "a user_id filter must name the token's own user",
            {"filter": "user_id"},
        )
    granted = principal.portfolios
    if filters.portfolio_ids is not None and granted is not None:
        foreign = [p for p in filters.portfolio_ids if p not in granted]
        if foreign:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"the token does not grant portfolio(s) {', '.join(foreign)}",
                {"portfolio_ids": foreign},
            )
    if portfolio_keyed(spec) and filters.portfolio_ids is None and granted is not None:
        if not granted:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"the token grants no portfolio, and {spec.name} is keyed by portfolio",
                {"stream": spec.name},
            )
        filters = msgspec.structs.replace(filters, portfolio_ids=sorted(granted))
    return filters


def still_covers(new: Principal, spec: StreamSpec, filters: Filters) -> bool:
    """Whether a refreshed token `new` still grants a subscription confirmed with `filters`
    (after narrowing) under an earlier token of the same user.

    On portfolio-keyed streams the confirmed `portfolio_ids` decide (the hub's index holds
    the subscription under them); on other streams the subscription goes on with `new` as
    the principal each message is checked against (`message_check`), so the filters alone
    decide.
    """
    try:
        authorize_subscribe(new, spec, filters)
    except ProtocolError:
        return False
    if portfolio_keyed(spec) and not new.open_access:
        # An unnarrowed subscription (made under `["*"]`) reads every portfolio: only a
        # token that still grants all of them covers it.
        return filters.portfolio_ids is not None or new.portfolios is None
    return True


def authorize_publish(principal: Principal, message: DataMessage) -> None:
    """Raise ProtocolError(forbidden) unless `principal` may publish `message`.

    Publishing needs the publisher (or admin) role, a stream inside the token's `streams`,
    and, for a message that names a portfolio, that portfolio in the token; a message that
    names none is firm-wide and needs `["*"]` (or admin). `source: "operator"` is the
    control plane's.
    """
    if not principal.has_role(ROLE_PUBLISHER, ROLE_ADMIN):
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "publishing needs the publisher role"
            + (
                " (setting anonymous_roles while authentication is off)"
                if principal.open_access
                else ""
            ),
        )
    if principal.open_access:
        return
    if principal.streams is not None and message.stream not in principal.streams:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"the token does not grant stream {message.stream}",
            {"stream": message.stream},
        )
    portfolio = message.portfolio_id
    if portfolio is not None:
        if not principal.reads_portfolio(portfolio):
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"the token does not grant portfolio {portfolio}",
                {"portfolio_id": portfolio},
            )
    elif principal.portfolios is not None and not principal.admin:
        # A message naming no portfolio reaches every tenant (or a user of any tenant).
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "a message that names no portfolio is firm-wide: publishing it needs "
            'portfolio_ids ["*"] or the admin role',
        )
    if message.source == OPERATOR_SOURCE and not principal.admin:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"source {OPERATOR_SOURCE!r} is reserved for operator notices (/api/broadcast)",
            {"field": "source"},
        )


def publish_scope(principal: Principal) -> str:
    """The idempotency scope of a principal's publishes (`brokers.base.idempotency_key`):
    its user when authenticated, so one publisher cannot claim another's message ids."""
    if principal.authenticated and principal.user_id is not None:
        return principal.user_id
    return ""
