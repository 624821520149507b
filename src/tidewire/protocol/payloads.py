"""Required `data` fields of every message type of PROTOCOL.md section 4.

These structs validate a producer's `data` (extra fields are allowed and kept as sent) and
feed the JSON Schema and TypeScript export. Numbers accept JSON numbers and Decimals;
the connection's codec decides how they travel (numbers, or strings with `decimals=string`).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
OrderStatus = Literal[
    "pending", "open", "partial", "filled", "cancelled", "rejected", "denied", "expired"
]


class Payload(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of the payload schemas; unknown fields are allowed (and kept by ingest)."""


class QuoteData(Payload):
    """`market_data` with `data_type: "quote"`."""

    bid: float
    ask: float
    bid_size: float | None = None
    ask_size: float | None = None
    last_trade_price: float | None = None


class TradeTickData(Payload):
    """`market_data` with `data_type: "trade"`."""

    price: float
    size: float
    aggressor_side: str | None = None
    trade_id: str | None = None


class BarData(Payload):
    """`market_data` with `data_type: "bar"`."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    bar_type: str | None = None


class TradeData(Payload):
    """`trade_updates`: one fill or execution."""

    trade_id: str
    order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    commission: float | None = None


class OrderData(Payload):
    """`order_update`: the order's state after an event."""

    order_id: str
    symbol: str
    side: Side
    order_type: str
    quantity: float
    filled_quantity: float
    status: OrderStatus
    price: float | None = None
    avg_fill_price: float | None = None
    reason: str | None = None


class PositionData(Payload):
    """`position_update`: a position of a portfolio in one symbol."""

    symbol: str
    quantity: float
    avg_price: float
    unrealized_pnl: float
    realized_pnl: float | None = None
    market_value: float | None = None


class RiskAlertData(Payload):
    """`risk_alert` and `breach_alert`."""

    metric: str
    current_value: float
    threshold: float
    timestamp: str
    message: str | None = None


class PerformanceData(Payload):
    """`performance_update`: a portfolio's value and P&L."""

    total_value: float
    total_pnl: float
    daily_pnl: float
    realized_pnl: float | None = None
    unrealized_pnl: float | None = None


class StrategyPerformanceData(Payload):
    strategy_id: str
    pnl: float
    trades: int
    win_rate: float | None = None
    sharpe_ratio: float | None = None


class ExecutionAnalyticsData(Payload):
    order_id: str
    symbol: str
    slippage_bps: float
    fill_ratio: float | None = None
    latency_ms: float | None = None


class RiskMetricsData(Payload):
    var_95: float
    exposure: float
    leverage: float
    margin_used: float | None = None


class EngineStatusData(Payload):
    status: Literal["starting", "running", "degraded", "stale", "stopped", "down"]
    uptime_seconds: float | None = None
    message: str | None = None


class SystemHealthData(Payload):
    status: Literal["healthy", "degraded", "unhealthy"]
    cpu_percent: float | None = None
    memory_mb: float | None = None
    message: str | None = None


class EventData(Payload):
    """`event`, `alert`, `system_alert` and `notification`."""

    message: str
    title: str | None = None


# Schema of `data` per message type; market_data is chosen by `data_type`.
PAYLOAD_OF_TYPE: dict[str, type[Payload]] = {
    "trade_updates": TradeData,
    "order_update": OrderData,
    "position_update": PositionData,
    "risk_alert": RiskAlertData,
    "breach_alert": RiskAlertData,
    "performance_update": PerformanceData,
    "strategy_performance": StrategyPerformanceData,
    "execution_analytics": ExecutionAnalyticsData,
    "risk_metrics": RiskMetricsData,
    "engine_status": EngineStatusData,
    "system_health": SystemHealthData,
    "event": EventData,
    "alert": EventData,
    "system_alert": EventData,
    "notification": EventData,
}
MARKET_DATA_PAYLOADS: dict[str, type[Payload]] = {
    "quote": QuoteData,
    "trade": TradeTickData,
    "bar": BarData,
}
