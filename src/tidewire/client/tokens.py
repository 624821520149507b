"""Tokens in the Python SDK: a fixed token or a provider, and when to refresh.

`token=` of `TidewireClient` is a string, or a function (plain or async) returning one: the
provider is called before every connection attempt and again before the current token
expires, and the new token goes to the gateway as `refresh {token}`. The schedule and the
retries after a failed refresh are the rules of `tests/vectors/token_refresh.json`, which
the JavaScript client follows too.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime

TokenProvider = Callable[[], str | Awaitable[str]]
TokenSource = str | TokenProvider

MAX_REFRESH_LEAD = 60.0
MIN_REFRESH_LEAD = 1.0
MAX_REFRESH_RETRY = 5.0
MIN_REFRESH_RETRY = 1.0


def refresh_delay(seconds_left: float) -> float:
    """Seconds to wait before refreshing a token that expires in `seconds_left`."""
    lead = min(MAX_REFRESH_LEAD, max(MIN_REFRESH_LEAD, seconds_left / 5))
    return max(0.0, seconds_left - lead)


def refresh_retry_delay(seconds_left: float) -> float:
    """Seconds before the next try after a failed refresh: another chance before expiry,
    never a tight loop (a provider stuck on an old token, a gateway refusing it)."""
    return min(MAX_REFRESH_RETRY, max(MIN_REFRESH_RETRY, seconds_left / 2))


async def resolve_token(source: TokenSource | None) -> str | None:
    """The token to use now: the fixed one, or the provider's answer."""
    if source is None or isinstance(source, str):
        return source
    value = source()
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str) or not value:
        raise TypeError("the token provider must return a non-empty string")
    return value


def seconds_until(expires_at: object, now: float) -> float | None:
    """Seconds from `now` (Unix time) until an ISO-8601 `expires_at`; None when absent."""
    if not isinstance(expires_at, str) or not expires_at:
        return None
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() - now
