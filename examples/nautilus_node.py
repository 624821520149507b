"""A live, offline NautilusTrader node that publishes its message bus into Redis.

No exchange and no internet: a small `LiveMarketDataClient` makes up AUD/USD quotes (a
random walk, one every 50 ms, stamped with the wall clock), the built-in sandbox execution
client (`nautilus_trader.adapters.sandbox`) fills orders against them, `EMACross` trades on
internal 1-second bars, and `DeskExerciser` (nautilus_exercise.py) rests, moves and cancels
orders, gets one denied (above the maximum quantity) and one rejected, and halts and resumes
trading. With `MessageBusConfig(database=redis)` every quote, bar, order event, fill,
position, account state, risk and component event, and a heartbeat every second, lands in
Redis, where `tidewire serve --nautilus redis://...` reads it.

    python examples/nautilus_node.py --redis redis://127.0.0.1:6380            # until Ctrl-C
    python examples/nautilus_node.py --redis redis://127.0.0.1:6380 --seconds 30

Needs `nautilus_trader` (`pip install -e ".[nautilus]"`). Settings the reference notes on
Nautilus 1.221 call for: EMACross with `request_bars=False, subscribe_trade_ticks=False`,
the instrument added to the cache before `run()`, `LiveExecEngineConfig(reconciliation=False)`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nautilus_exercise import QUOTE_SIZE, DeskExerciser, DeskExerciserConfig, random_walk
from nautilus_trader.adapters.sandbox.config import SandboxExecutionClientConfig
from nautilus_trader.adapters.sandbox.factory import SandboxLiveExecClientFactory
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.config import DatabaseConfig, MessageBusConfig
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import (
    LiveDataClientConfig,
    LiveExecEngineConfig,
    LoggingConfig,
    TradingNodeConfig,
)
from nautilus_trader.data.messages import (
    SubscribeOrderBook,
    SubscribeQuoteTicks,
    UnsubscribeOrderBook,
    UnsubscribeQuoteTicks,
)
from nautilus_trader.examples.strategies.ema_cross import EMACross, EMACrossConfig
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.data import BarType, QuoteTick
from nautilus_trader.model.identifiers import ClientId, InstrumentId, TraderId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider

INSTRUMENT = TestInstrumentProvider.default_fx_ccy("AUD/USD")  # AUD/USD.SIM


class SyntheticQuotesConfig(LiveDataClientConfig, frozen=True):
    instrument_id: str = "AUD/USD.SIM"
    interval_ms: int = 50
    seed: int = 7


class SyntheticQuotes(LiveMarketDataClient):
    """Emits a random-walk QuoteTick every `interval_ms`, stamped with the wall clock."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        config: SyntheticQuotesConfig,
    ) -> None:
        instrument_id = InstrumentId.from_str(config.instrument_id)
        super().__init__(
            loop=loop,
            client_id=ClientId("SYNTH"),
            venue=instrument_id.venue,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=InstrumentProvider(),
            config=config,
        )
        self._instrument_id = instrument_id
        self._interval = config.interval_ms / 1000
        self._walk = random_walk(0.73, None, config.seed)
        self._task: asyncio.Task[None] | None = None

    async def _connect(self) -> None:
        instrument = self._cache.instrument(self._instrument_id)
        if instrument is not None:
            self._handle_data(instrument)  # published on data.instrument.*: asset class
        self._task = self.create_task(self._emit())

    async def _disconnect(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _subscribe_quote_ticks(self, command: SubscribeQuoteTicks) -> None:
        pass  # always emitting

    async def _unsubscribe_quote_ticks(self, command: UnsubscribeQuoteTicks) -> None:
        pass

    async def _subscribe_order_book_deltas(self, command: SubscribeOrderBook) -> None:
        pass  # the sandbox venue asks; it builds its book from the quotes

    async def _unsubscribe_order_book_deltas(self, command: UnsubscribeOrderBook) -> None:
        pass

    async def _emit(self) -> None:
        instrument: Instrument | None = self._cache.instrument(self._instrument_id)
        precision = instrument.price_precision if instrument is not None else 5
        size = Quantity.from_int(QUOTE_SIZE)
        while True:
            bid, ask = next(self._walk)
            now = self._clock.timestamp_ns()
            tick = QuoteTick(
                self._instrument_id,
                Price(bid, precision),
                Price(ask, precision),
                size,
                size,
                now,
                now,
            )
            self._handle_data(tick)
            await asyncio.sleep(self._interval)


class SyntheticQuotesFactory(LiveDataClientFactory):
    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: SyntheticQuotesConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> SyntheticQuotes:
        return SyntheticQuotes(loop, msgbus, cache, clock, config)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis URL")
    parser.add_argument("--trader-id", default="TIDEWIRE-001")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    parser.add_argument("--one-stream", action="store_true", help="stream_per_topic=False")
    parser.add_argument("--interval-ms", type=int, default=50, help="milliseconds per quote")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def make_node(args: argparse.Namespace) -> TradingNode:
    url = urlparse(args.redis)
    config = TradingNodeConfig(
        trader_id=TraderId(args.trader_id),
        logging=LoggingConfig(log_level=args.log_level),
        message_bus=MessageBusConfig(
            database=DatabaseConfig(type="redis", host=url.hostname, port=url.port or 6379),
            encoding=args.encoding,
            stream_per_topic=not args.one_stream,
            heartbeat_interval_secs=1,
        ),
        data_clients={"SYNTH": SyntheticQuotesConfig(interval_ms=args.interval_ms)},
        exec_clients={
            "SIM": SandboxExecutionClientConfig(
                venue="SIM",
                starting_balances=["1_000_000 USD"],
                base_currency="USD",
                oms_type="NETTING",
                account_type="MARGIN",
            )
        },
        exec_engine=LiveExecEngineConfig(reconciliation=False),
        timeout_connection=10.0,
        timeout_disconnection=5.0,
        timeout_post_stop=1.0,
    )
    node = TradingNode(config=config)
    node.add_data_client_factory("SYNTH", SyntheticQuotesFactory)
    node.add_exec_client_factory("SIM", SandboxLiveExecClientFactory)
    node.build()
    node.kernel.cache.add_instrument(INSTRUMENT)
    node.trader.add_strategy(
        EMACross(
            EMACrossConfig(
                instrument_id=INSTRUMENT.id,
                bar_type=BarType.from_str("AUD/USD.SIM-1-SECOND-BID-INTERNAL"),
                trade_size=Decimal(100_000),
                request_bars=False,
                subscribe_trade_ticks=False,
                subscribe_quote_ticks=True,
            )
        )
    )
    exerciser = DeskExerciser(DeskExerciserConfig(instrument_id=INSTRUMENT.id))
    exerciser.attach_risk_engine(node.kernel.risk_engine)
    node.trader.add_strategy(exerciser)
    return node


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    node = make_node(args)
    if args.seconds is not None:
        node.kernel.loop.call_later(args.seconds, node.stop)
    print(
        f"Nautilus node {args.trader_id} publishing to {args.redis} "
        f"({args.encoding}, {'one stream' if args.one_stream else 'a stream per topic'})",
        file=sys.stderr,
    )
    try:
        node.run()
    except KeyboardInterrupt:
        pass
    finally:
        node.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
