"""What publishers make the memory broker hold: bytes per message id, per latest value and
per message of history, measured with tracemalloc (Python heap, not RSS).

    python -m bench.broker_memory [--messages 100000]

Three shapes, each on a fresh broker:
* history: order updates with ids on a reliable stream (history holds every one);
* latest values: quotes of distinct symbols without ids (one latest value each);
* ids: quotes of ONE symbol, each with its own message_id: the latest value holds one, so
  what remains is what the idempotency window keeps per id (before it kept the whole message
  for 300 s: about 900 bytes each; now its stream, seq and epoch).
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from tidewire.brokers.base import Handlers, HistoryLimit
from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.ingest import build_data_message

Raw = Callable[[int], dict[str, Any]]


def _quote(symbol: str) -> dict[str, Any]:
    data = {"bid_price": 100.0, "ask_price": 100.5, "bid_size": 10, "ask_size": 12}
    return {"type": "market_data", "symbol": symbol, "data": data}


def _order(n: int) -> dict[str, Any]:
    return {
        "type": "order_update",
        "portfolio_id": "PF-1",
        "order_id": f"O-{n}",
        "symbol": "AAPL",
        "order_status": "open",
        "message_id": f"PF-1-{n}",
        "data": {
            "side": "buy",
            "order_type": "limit",
            "quantity": 10,
            "filled_quantity": 0,
            "price": 100.0,
        },
    }


SHAPES: dict[str, Raw] = {
    "history (order updates with ids)": _order,
    "latest values (distinct symbols)": lambda n: _quote(f"S{n}"),
    "ids (one symbol, an id each)": lambda n: {**_quote("AAPL"), "message_id": f"q-{n}"},
}


def measure(make: Raw, count: int) -> float:
    """Bytes the broker holds per published message of this shape."""
    gc.collect()
    tracemalloc.start()
    broker = MemoryBroker(history_limits={"order_updates": HistoryLimit(max_messages=count)})
    broker.attach(Handlers(message=lambda message: None))
    for n in range(count):
        broker.publish_now(build_data_message(make(n)))
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    opts = parser.parse_args()
    print(f"{'shape':<36} {'bytes per message':>18}")
    for name, make in SHAPES.items():
        print(f"{name:<36} {measure(make, opts.messages):>18.0f}")


if __name__ == "__main__":
    main()
