"""NautilusTrader as a Tidewire producer: its message bus, read from Redis Streams.

NautilusTrader (with `MessageBusConfig(database=DatabaseConfig(type="redis", ...))`) copies
every message of its bus into Redis Streams. This package reads them and publishes quotes,
bars, orders, fills, positions, balances, risk alerts and engine status as Tidewire
messages. It needs `redis` and `msgspec` only, never `nautilus_trader` itself.

Modules, one concern each (the pure ones have no I/O and are tested on recorded payloads):

- `config`: `NautilusConfig`, every setting with its default
- `values` (pure): Nautilus value formats (decimal strings, money, timestamps, ids)
- `entries` (pure): stream entries of both layouts, JSON/msgpack/text payload sniffing
- `market` (pure): quotes, trade ticks and bars as `market_data` data
- `orders` (pure): order state from order events; `order_update` and `trade_updates` data
- `portfolio` (pure): position events and account balances
- `risk` (pure): risk alerts from TradingStateChanged and OrderDenied reasons
- `status` (pure): component states as engine statuses
- `mapping` (pure): dispatch, envelopes, portfolio attribution, dropping repeated events
- `liveness` (pure): heartbeats to engine status running / stale / down
- `feed` (pure): mapping + liveness + warm-up, fed entry by entry
- `reader`: the Redis edge (discovery, XREAD, XRANGE, stored positions)
- `source`: `NautilusSource`, the asyncio task tying reader, feed and broker together
"""

from tidewire.sources.nautilus.config import NautilusConfig
from tidewire.sources.nautilus.feed import FeedOptions, NautilusFeed
from tidewire.sources.nautilus.mapping import MappingOptions, NautilusMapper
from tidewire.sources.nautilus.source import NautilusSource

__all__ = [
    "FeedOptions",
    "MappingOptions",
    "NautilusConfig",
    "NautilusFeed",
    "NautilusMapper",
    "NautilusSource",
]
