"""Limits tied to identity: connections per user and per address, subscriptions per user,
publishes per second per publisher. All per gateway process. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidewire.core.ratelimit import TokenBucket
from tidewire.protocol.errors import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from tidewire.core.connection import Connection

MAX_IDLE_BUCKETS = 10_000
"""Publisher buckets kept before full (idle) ones are forgotten: memory stays bounded."""


def publisher_key(user_id: str | None, address: str) -> str:
    """Whose publish budget a publish spends: its user's, or (authentication off) its
    remote address's."""
    return user_id if user_id is not None else f"address:{address}"


class IdentityLedger:
    """Who holds how many connections and subscriptions on this node.

    The hub calls it whenever a connection opens, identifies, closes, and whenever a
    subscription is added or removed, so the counts are exact at every moment.
    """

    def __init__(self) -> None:
        self.by_user: dict[str, dict[Connection, None]] = {}
        """Open connections of each user (also used to disconnect a user)."""
        self.by_address: dict[str, int] = {}
        self.subscriptions_by_user: dict[str, int] = {}
        self.unauthenticated = 0
        """Open connections still waiting to authenticate (an `auth_deadline`)."""

    def connections_of(self, user_id: str) -> list[Connection]:
        return list(self.by_user.get(user_id, ()))

    def address_count(self, address: str) -> int:
        return self.by_address.get(address, 0)

    def user_count(self, user_id: str) -> int:
        return len(self.by_user.get(user_id, ()))

    def over_user_limit(self, user_id: str, limit: int) -> str | None:
        """The close reason (4009) when `user_id` already holds `limit` connections."""
        if self.user_count(user_id) >= limit:
            return f"more than {limit} connections for this user"
        return None

    def subscription_count(self, user_id: str) -> int:
        return self.subscriptions_by_user.get(user_id, 0)

    def opened(self, connection: Connection) -> None:
        self.by_address[connection.address] = self.by_address.get(connection.address, 0) + 1
        if connection.auth_deadline:
            self.unauthenticated += 1
        if connection.user_id is not None:
            self.by_user.setdefault(connection.user_id, {})[connection] = None

    def identified(self, connection: Connection) -> None:
        """`connection` authenticated after it opened (an `auth` message); called while its
        `auth_deadline` is still set."""
        if connection.auth_deadline:
            self.unauthenticated -= 1
        if connection.user_id is not None:
            self.by_user.setdefault(connection.user_id, {})[connection] = None

    def closed(self, connection: Connection) -> None:
        if connection.auth_deadline:
            self.unauthenticated -= 1
        count = self.by_address.get(connection.address, 0) - 1
        if count > 0:
            self.by_address[connection.address] = count
        else:
            self.by_address.pop(connection.address, None)
        user = connection.user_id
        if user is not None:
            held = self.by_user.get(user)
            if held is not None:
                held.pop(connection, None)
                if not held:
                    del self.by_user[user]

    def subscription_added(self, user_id: str | None) -> None:
        if user_id is not None:
            self.subscriptions_by_user[user_id] = self.subscriptions_by_user.get(user_id, 0) + 1

    def subscription_removed(self, user_id: str | None) -> None:
        if user_id is None:
            return
        count = self.subscriptions_by_user.get(user_id, 0) - 1
        if count > 0:
            self.subscriptions_by_user[user_id] = count
        else:
            self.subscriptions_by_user.pop(user_id, None)


class PublishRates:
    """A token bucket per publisher: `rate` messages per second, bursts of `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, publisher: str, count: int, now: float) -> float:
        """Spend `count` messages of `publisher`'s budget: 0.0 when granted, otherwise the
        seconds after which the same request would be (nothing is spent then)."""
        bucket = self._buckets.get(publisher)
        if bucket is None:
            if len(self._buckets) >= MAX_IDLE_BUCKETS:
                self._forget_idle(now)
            bucket = self._buckets[publisher] = TokenBucket(self.rate, self.burst, now)
        if bucket.take(now, count):
            return 0.0
        if count > self.burst:
            return float("inf")
        return max(0.001, (count - bucket.tokens(now)) / self.rate)

    def refusal(self, wait: float) -> ProtocolError:
        """The error of a publish that `take` refused with `wait` (REST: 429 + Retry-After)."""
        if wait == float("inf"):
            return ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more messages at once than the publish burst of {self.burst}",
                {"limit": self.burst},
            )
        return ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"publish rate above {self.rate:g} messages/s; retry in {wait:.3f} s",
            {"retry_after": round(wait, 3), "limit": self.rate},
        )

    def _forget_idle(self, now: float) -> None:
        for publisher, bucket in list(self._buckets.items()):
            if bucket.tokens(now) >= self.burst:
                del self._buckets[publisher]
        if len(self._buckets) >= MAX_IDLE_BUCKETS:
            # Every publisher is busy: forget the oldest rather than grow without bound.
            del self._buckets[next(iter(self._buckets))]
