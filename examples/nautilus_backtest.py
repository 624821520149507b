"""Run a short NautilusTrader backtest that publishes its message bus into Redis.

Synthetic AUD/USD quotes (a seeded random walk, one per second of simulated time), the
example `EMACross` strategy on internal 5-second bars and `DeskExerciser`
(`nautilus_exercise.py`: resting orders, modifies, cancels, partial fills, a denied and a
rejected order, trading halted and resumed). Deterministic for a given seed, done in about a
second. Needs `nautilus_trader` (`pip install -e ".[nautilus]"`).

    python examples/nautilus_backtest.py --redis redis://127.0.0.1:6380 --quotes 600 \\
        --expect produced.json

`--expect` writes what the engine produced, read from its cache after the run (orders with
their final status, fills, positions, the quotes fed in), for tests that compare it with what
a Tidewire client received.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nautilus_exercise import QUOTE_SIZE, DeskExerciser, DeskExerciserConfig, random_walk
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.common.config import DatabaseConfig, MessageBusConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.examples.strategies.ema_cross import EMACross, EMACrossConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import BarType, QuoteTick, TradeTick
from nautilus_trader.model.enums import AccountType, AggressorSide, OmsType
from nautilus_trader.model.identifiers import TradeId, TraderId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider

START_NS = 1_700_000_000_000_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis URL")
    parser.add_argument("--trader-id", default="BACKTESTER-001")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    parser.add_argument(
        "--one-stream", action="store_true", help="one stream for all topics (stream_per_topic)"
    )
    parser.add_argument("--streams-prefix", default="stream")
    parser.add_argument("--no-trader-prefix", action="store_true")
    parser.add_argument("--iso-timestamps", action="store_true", help="timestamps_as_iso8601")
    parser.add_argument("--quotes", type=int, default=600, help="quotes (1 per simulated second)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--expect", type=Path, help="write what the engine produced (JSON)")
    return parser.parse_args(argv)


def make_engine(args: argparse.Namespace) -> tuple[BacktestEngine, DeskExerciser]:
    url = urlparse(args.redis)
    bus = MessageBusConfig(
        database=DatabaseConfig(type="redis", host=url.hostname, port=url.port or 6379),
        encoding=args.encoding,
        stream_per_topic=not args.one_stream,
        streams_prefix=args.streams_prefix,
        use_trader_prefix=not args.no_trader_prefix,
        timestamps_as_iso8601=args.iso_timestamps,
        heartbeat_interval_secs=1,
    )
    engine = BacktestEngine(
        BacktestEngineConfig(
            trader_id=TraderId(args.trader_id),
            logging=LoggingConfig(log_level="ERROR"),
            message_bus=bus,
        )
    )
    engine.add_venue(
        Venue("SIM"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(1_000_000, USD)],
    )
    instrument = TestInstrumentProvider.default_fx_ccy("AUD/USD")
    engine.add_instrument(instrument)
    size = Quantity.from_int(QUOTE_SIZE)
    quotes = [
        QuoteTick(
            instrument.id,
            Price(bid, 5),
            Price(ask, 5),
            size,
            size,
            START_NS + index * 1_000_000_000,
            START_NS + index * 1_000_000_000,
        )
        for index, (bid, ask) in enumerate(random_walk(0.73, args.quotes, args.seed))
    ]
    # A trade print every 10 s, at the mid, alternating aggressor sides.
    trades = [
        TradeTick(
            instrument.id,
            instrument.make_price((quote.bid_price.as_double() + quote.ask_price.as_double()) / 2),
            Quantity.from_int(50_000),
            AggressorSide.BUYER if index % 20 == 0 else AggressorSide.SELLER,
            TradeId(f"T-{index}"),
            quote.ts_event,
            quote.ts_init,
        )
        for index, quote in enumerate(quotes)
        if index % 10 == 0
    ]
    engine.add_data(quotes)
    engine.add_data(trades)
    engine.add_strategy(
        EMACross(
            EMACrossConfig(
                instrument_id=instrument.id,
                bar_type=BarType.from_str("AUD/USD.SIM-5-SECOND-BID-INTERNAL"),
                trade_size=Decimal(100_000),
                request_bars=False,
                subscribe_trade_ticks=False,
                subscribe_quote_ticks=True,
            )
        )
    )
    exerciser = DeskExerciser(DeskExerciserConfig(instrument_id=instrument.id))
    exerciser.attach_risk_engine(engine.kernel.risk_engine)
    engine.add_strategy(exerciser)
    return engine, exerciser


def produced(engine: BacktestEngine) -> dict[str, Any]:
    """What the engine produced, from its cache: the expected values of a comparison."""
    cache = engine.cache
    orders = []
    fills = []
    for order in cache.orders():
        orders.append(
            {
                "order_id": order.client_order_id.value,
                "strategy_id": order.strategy_id.value,
                "side": order.side_string(),
                "order_type": order.type_string(),
                "quantity": str(order.quantity),
                "filled_quantity": str(order.filled_qty),
                "status": order.status_string(),
                "price": str(order.price) if order.has_price else None,
                "avg_px": str(order.avg_px) if order.filled_qty > 0 else None,
                "reason": getattr(order.last_event, "reason", None),
            }
        )
        for event in order.events:
            if type(event).__name__ == "OrderFilled":
                fills.append(
                    {
                        "event_id": event.id.value,
                        "trade_id": event.trade_id.value,
                        "order_id": event.client_order_id.value,
                        "side": order.side_string(),
                        "quantity": str(event.last_qty),
                        "price": str(event.last_px),
                        "commission": str(event.commission.as_decimal()),
                        "ts_event": event.ts_event,
                    }
                )
    positions = [
        {
            "position_id": position.id.value,
            "strategy_id": position.strategy_id.value,
            "symbol": position.instrument_id.value,
            "quantity": str(position.signed_decimal_qty()),
            "avg_px_open": position.avg_px_open,
            "realized_pnl": str(position.realized_pnl.as_decimal())
            if position.realized_pnl is not None
            else None,
            "is_open": position.is_open,
        }
        for position in cache.positions()
    ]
    account = cache.accounts()[0]
    return {
        "trader_id": engine.trader_id.value,
        "account_id": account.id.value,
        "balance": str(account.balance_total(USD).as_decimal()),
        "orders": orders,
        "fills": fills,
        "positions": positions,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine, _ = make_engine(args)
    started = time.perf_counter()
    engine.run()
    result = produced(engine)
    quotes = [
        {"bid": str(tick.bid_price), "ask": str(tick.ask_price), "ts_event": tick.ts_event}
        for tick in engine.data
        if isinstance(tick, QuoteTick)
    ]
    result["quotes"] = quotes
    engine.dispose()  # flushes the Redis writer
    elapsed = time.perf_counter() - started
    print(
        f"backtest: {len(quotes)} quotes, {len(result['orders'])} orders, "
        f"{len(result['fills'])} fills, {len(result['positions'])} positions in {elapsed:.2f} s",
        file=sys.stderr,
    )
    if args.expect is not None:
        args.expect.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
