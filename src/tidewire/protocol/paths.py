"""WebSocket paths: `/ws`, `/ws/realtime` and the original client's per-topic paths.

A per-topic path opens a connection already subscribed to its stream (docs/protocol.md
section 1, "Paths"): the server subscribes on the client's behalf right after
`connection_established` (after `auth`, when the token comes that way), with subscription
ids the client can unsubscribe. Pure: a path in, subscribe commands out.
"""

from __future__ import annotations

from urllib.parse import unquote

from tidewire.protocol.messages import Subscribe

PLAIN_PATHS = frozenset({"/ws", "/ws/realtime"})
MARKET_DATA_PREFIX = "/api/v1/ws/market-data/"
# The subscription id `market_data.<symbol>` must fit the 128 characters of an id.
MAX_PATH_SYMBOL_LENGTH = 128 - len("market_data.")

# The streams a per-topic path subscribes to. /ws/messagebus carries what a trading engine
# puts on its bus (orders, fills, positions, P&L, risk, engine state, events); market data
# for every symbol is left to /api/v1/ws/market-data/{symbol} and explicit subscriptions.
TOPIC_PATHS: dict[str, tuple[str, ...]] = {
    "/ws/system/health": ("system_health",),
    "/ws/trades/updates": ("trade_updates",),
    "/ws/messagebus": (
        "order_updates",
        "trade_updates",
        "position_updates",
        "performance_updates",
        "risk_alerts",
        "engine_status",
        "events",
    ),
}


def path_subscriptions(path: str) -> list[Subscribe] | None:
    """The subscriptions a connection on `path` (without its query) starts with; None when
    `path` is not a WebSocket path of the gateway."""
    if path in PLAIN_PATHS:
        return []
    streams = TOPIC_PATHS.get(path)
    if streams is not None:
        return [Subscribe(stream=stream, subscription_id=stream) for stream in streams]
    if path.startswith(MARKET_DATA_PREFIX):
        symbol = unquote(path[len(MARKET_DATA_PREFIX) :])
        if (
            not symbol
            or "/" in path[len(MARKET_DATA_PREFIX) :]
            or len(symbol) > MAX_PATH_SYMBOL_LENGTH
        ):
            return None
        return [
            Subscribe(
                stream="market_data",
                subscription_id=f"market_data.{symbol}",
                topic=f"market_data.{symbol}",
                filters={"symbols": [symbol]},
            )
        ]
    return None
