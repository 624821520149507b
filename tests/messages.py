"""Producer messages for tests: the raw dicts a producer publishes, one factory per kind.

Every factory returns a fresh dict that `build_data_message` accepts; keyword arguments are
extra top-level fields (`message_id`, `priority`, `venue`, `user_id`, ...). `sequenced` turns
one into the DataMessage a broker hands the hub, for tests of the core without a broker.

They live here, not in conftest.py: conftest is pytest's fixture plugin for real servers (it
imports the gateway, websockets and httpx), and the unit tests of the core need none of that.
conftest re-exports `quote` for the modules that import it from there.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage

# ------------------------------------------------------------------ latest-value streams


def quote(symbol: str, bid: float = 100.0, ask: float | None = None, **top: Any) -> dict[str, Any]:
    """A market_data quote; `ask` defaults to `bid` + 0.1."""
    return {
        "type": "market_data",
        "symbol": symbol,
        "data_type": "quote",
        "data": {"bid_price": bid, "ask_price": bid + 0.1 if ask is None else ask},
        **top,
    }


def bar(symbol: str, **top: Any) -> dict[str, Any]:
    """A market_data bar (OHLCV): the same symbol as a quote, another snapshot key."""
    data = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}
    return {"type": "market_data", "symbol": symbol, "data": data, **top}


def engine_status(engine_id: str, status: str, **top: Any) -> dict[str, Any]:
    """An engine_status message: a latest-value stream other than market_data."""
    data = {"state": status, "uptime": 1.0}
    return {"type": "engine_status", "engine_id": engine_id, "data": data, **top}


# ------------------------------------------------------------------ reliable streams


def order(
    portfolio: str,
    n: int | None = None,
    *,
    symbol: str = "AAPL",
    price: float = 100.0,
    **top: Any,
) -> dict[str, Any]:
    """An open limit order_update of `portfolio`.

    With `n`: order O-n, with message_id "<portfolio>-<n>" (so each (portfolio, n) is
    published once and can be told apart on arrival); without: order O-1 and no message_id.
    """
    raw: dict[str, Any] = {
        "type": "order_update",
        "portfolio_id": portfolio,
        "order_id": f"O-{1 if n is None else n}",
        "symbol": symbol,
        "order_status": "open",
        "data": {
            "side": "buy",
            "order_type": "limit",
            "quantity": 10,
            "filled_quantity": 0,
            "price": price,
        },
    }
    if n is not None:
        raw["message_id"] = f"{portfolio}-{n}"
    return {**raw, **top}


def trade(
    portfolio: str | None = None, user: str | None = None, n: int = 1, **top: Any
) -> dict[str, Any]:
    """A fill (trade_updates) of `portfolio` and/or `user`: the original shape names only
    the user; keyed by the portfolio when there is one, else by the user."""
    raw: dict[str, Any] = {
        "type": "trade_updates",
        "data": {
            "trade_id": f"T-{n}",
            "order_id": f"O-{n}",
            "symbol": "AAPL",
            "side": "buy",
            "quantity": 10,
            "price": 100.0,
            "status": "filled",
        },
    }
    if portfolio is not None:
        raw["portfolio_id"] = portfolio
    if user is not None:
        raw["user_id"] = user
    return {**raw, **top}


def position(portfolio: str, symbol: str, quantity: float, **top: Any) -> dict[str, Any]:
    """A position_update: its snapshot keeps the newest per portfolio and symbol."""
    data = {"quantity": quantity, "avg_price": 10.0, "unrealized_pnl": 0.0}
    return {
        "type": "position_update",
        "portfolio_id": portfolio,
        "symbol": symbol,
        "data": data,
        **top,
    }


def risk_alert(portfolio: str, severity: str = "high", **top: Any) -> dict[str, Any]:
    """A risk_alert of `portfolio` (severity: low, medium, high or critical)."""
    return {
        "type": "risk_alert",
        "portfolio_id": portfolio,
        "severity": severity,
        "risk_type": "exposure",
        "data": {
            "metric": "gross_exposure",
            "current_value": 2.0,
            "threshold": 1.5,
            "message": "gross exposure 2.0 over its limit 1.5",
            "timestamp": "2026-01-01T00:00:00Z",
        },
        **top,
    }


def system_alert(severity: str = "high", **top: Any) -> dict[str, Any]:
    """A system_alert of the events stream, the kind an operator broadcasts."""
    return {
        "type": "system_alert",
        "source": "operator",
        "component": "gateway",
        "alert_type": "maintenance",
        "severity": severity,
        "data": {"description": "maintenance at 18:00"},
        **top,
    }


# ------------------------------------------------------------------ as the broker delivers them

_last_seq: Counter[str] = Counter()


def sequenced(raw: dict[str, Any], seq: int | None = None, *, epoch: str = "ep") -> DataMessage:
    """`raw` validated and numbered as a broker delivers it: `seq` in `epoch`.

    Without `seq`, the next number of its stream (one count per stream for the whole run).
    """
    message = build_data_message(raw)
    if seq is None:
        _last_seq[message.stream] += 1
        seq = _last_seq[message.stream]
    return message.sequenced(seq, epoch)
