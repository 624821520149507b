"""Settings of the Nautilus source: where to read, how to resume, how to attribute events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tidewire.sources.nautilus.feed import FeedOptions
from tidewire.sources.nautilus.mapping import MappingOptions, PortfolioField

__all__ = ["DEFAULT_OFFSETS_KEY", "DEFAULT_STREAMS", "NautilusConfig", "is_pattern"]

DEFAULT_STREAMS: tuple[str, ...] = ("trader-*",)
"""Every stream of every trader written with Nautilus's default key prefixes
(`use_trader_prefix=True`): `trader-{trader_id}[:{instance_id}]:{streams_prefix}[:{topic}]`.
Keys that are not streams (Nautilus's cache database uses the same prefix) are ignored."""
DEFAULT_OFFSETS_KEY = "tidewire:nautilus:offsets"


def is_pattern(key: str) -> bool:
    """Whether a configured stream is a glob pattern (found with SCAN) rather than a key."""
    return any(char in key for char in "*?[")


@dataclass(frozen=True, slots=True)
class NautilusConfig:
    """Everything the Nautilus source needs; only `url` has no useful default."""

    url: str = "redis://127.0.0.1:6379/0"
    """Redis that NautilusTrader's `MessageBusConfig.database` writes to."""
    streams: tuple[str, ...] = DEFAULT_STREAMS
    """Stream keys, or glob patterns matched against the keys of type stream (SCAN) every
    `discover_interval`. One stream for all topics (`stream_per_topic=False`) and one per
    topic both work; set this to match custom prefixes, e.g. `("gw",)` for
    `use_trader_prefix=False, use_trader_id=False, streams_prefix="gw"`, or
    `("trader-GW-001:stream:*",)` for one trader."""
    offsets_key: str | None = DEFAULT_OFFSETS_KEY
    """Redis hash (in the same Redis) holding the last entry id processed per stream, so a
    restarted gateway resumes there. None: do not store; every start follows `start_from`.
    Gateways that share a Redis but not a broker each need their own key."""
    start_from: Literal["earliest", "latest"] = "earliest"
    """Where to start in a stream with no stored position: its first entry, or after its
    current last entry (the older entries then only warm the state up)."""
    warmup: bool = True
    """Re-read the entries before the starting position without publishing them, to rebuild
    order state and restate the latest values (see `feed`)."""
    portfolio_field: PortfolioField = "account_id"
    portfolios: Mapping[str, str] = field(default_factory=dict)
    """Renames from `portfolio_field` values to Tidewire portfolio ids."""
    symbol_style: Literal["instrument_id", "symbol"] = "instrument_id"
    engine_id: str | None = None
    heartbeat_interval: float | None = None
    stale_after: float = 2.0
    """Missed heartbeat intervals before the engine is `stale`."""
    down_after: float = 5.0
    """Missed heartbeat intervals before the engine is `down`."""
    discover_interval: float = 0.2
    """Least seconds between two scans for new streams matching a pattern. The first
    entries of a stream created later (one stream per topic: a topic's first message) wait
    for the next scan. A scan that takes long (a big keyspace) spaces the next ones out so
    that scanning takes at most ~2% of the time."""
    block_ms: int = 100
    """Longest wait of one XREAD; also how often silence is checked and scans can run."""
    batch_size: int = 1000
    """Entries per XREAD / XRANGE call."""
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    """Backoff bounds (seconds) between attempts to reach Redis; jittered, doubling."""
    source: str = "nautilus"

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("streams must name at least one key or pattern")
        if self.block_ms <= 0 or self.batch_size <= 0 or self.discover_interval <= 0:
            raise ValueError("block_ms, batch_size and discover_interval must be positive")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        if not 0 < self.stale_after < self.down_after:
            raise ValueError("need 0 < stale_after < down_after")

    def feed_options(self) -> FeedOptions:
        return FeedOptions(
            mapping=MappingOptions(
                source=self.source,
                portfolio_field=self.portfolio_field,
                portfolios=dict(self.portfolios),
                symbol_style=self.symbol_style,
            ),
            engine_id=self.engine_id,
            heartbeat_interval=self.heartbeat_interval,
            stale_after=self.stale_after,
            down_after=self.down_after,
        )
