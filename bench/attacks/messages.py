"""The messages the attacks publish on the victim streams, and `publish_instruments`.

`order_message` (order_updates, reliable: the Redis garbage victim and the long absence),
`quote_message` (market_data: the latest values behind snapshots) and
`publish_instruments`, one quote each for many distinct symbols (big snapshots, the latest
keys bound).
"""

from __future__ import annotations

from typing import Any

from bench.attacks.clients import Publisher, Target


def order_message(n: int, run: str) -> dict[str, Any]:
    return {
        "type": "order_update",
        "message_id": f"order-{run}-{n}",
        "portfolio_id": "VICTIM",
        "order_id": f"O{n}",
        "symbol": "AAPL",
        "order_status": "open",
        "data": {"side": "buy", "quantity": 100, "filled_quantity": 0, "n": n},
    }


def quote_message(symbol: str, n: int = 0) -> dict[str, Any]:
    bid = 100.0 + (n % 1000) / 100.0
    return {
        "type": "market_data",
        "symbol": symbol,
        "venue": "SIM",
        "data_type": "quote",
        "data": {"bid_price": bid, "ask_price": round(bid + 0.02, 2), "n": n},
    }


async def publish_instruments(target: Target, count: int, prefix: str = "I") -> None:
    """One quote each for `count` distinct symbols `<prefix>0`..."""
    publisher = Publisher(target.http_url)
    try:
        await publisher.publish_many([quote_message(f"{prefix}{n}", n) for n in range(count)])
    finally:
        await publisher.close()
