"""Python SDK of the Tidewire gateway: an asyncio connection manager and subscriptions.

    async with TidewireClient("ws://127.0.0.1:8765/ws") as client:
        quotes = await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
        async for message in quotes:
            if is_resync(message):  # a gap: the snapshot that follows rebuilds the state
                continue
            data = message["data"]
            print(message["symbol"], data["bid_price"], data["ask_price"], message["seq"])

Messages are the canonical data messages: the envelope (`type`, `stream`, `key`, `seq`,
`epoch`, `timestamp`, ...), the type's top-level fields (`symbol`, `portfolio_id`,
`order_status`, ...) and the payload in `data`. Without subscribing::

    latest = await client.get_snapshot("market_data", filters={"symbols": ["AAPL"]})
    trades = await client.trade_history(filters={"portfolio_ids": ["PF-1"]}, limit=50)
    clock = await client.sync()  # clock.offset, clock.round_trip (milliseconds)
    await quotes.update(filters={"symbols": ["AAPL", "MSFT"]}, rate_limit=10)

See `TidewireClient` for the options (reconnection, heartbeats, queueing, subprotocols),
`Subscription` for iteration, positions, filter updates and what happens when a consumer
falls behind, and `tidewire.client.resync` for how gaps (a reconnection the gateway could
not recover, a queue overflow) are signalled.
"""

from tidewire.client.backoff import Backoff
from tidewire.client.clock import ClockSync
from tidewire.client.connection import TidewireClient
from tidewire.client.dispatch import MessageHandler
from tidewire.client.errors import (
    AuthenticationError,
    ConnectionClosedError,
    QueueFull,
    ServerError,
    SubscriptionError,
    TidewireError,
)
from tidewire.client.resync import NOT_RECOVERED, OVERFLOW, RESYNC, ResyncHandler, is_resync
from tidewire.client.state import ConnectionState, StateHandler
from tidewire.client.subscription import Subscription
from tidewire.protocol.messages import StreamPosition

__all__ = [
    "NOT_RECOVERED",
    "OVERFLOW",
    "RESYNC",
    "AuthenticationError",
    "Backoff",
    "ClockSync",
    "ConnectionClosedError",
    "ConnectionState",
    "MessageHandler",
    "QueueFull",
    "ResyncHandler",
    "ServerError",
    "StateHandler",
    "StreamPosition",
    "Subscription",
    "SubscriptionError",
    "TidewireClient",
    "TidewireError",
    "is_resync",
]
