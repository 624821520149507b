"""The `data` object of every message type: the original frontend's shapes (docs/protocol.md).

Field names, required fields and enums are the original platform's (its
`frontend/src/types/websocket.ts`); Tidewire's additions are optional and marked as
extensions in their docstrings. These structs validate a producer's `data` (extra fields
are allowed and kept as sent) and feed the JSON Schema and TypeScript export. Numbers accept
JSON numbers and Decimals; the connection's codec decides how they travel (numbers, or
strings with `decimals=string`). `timestamp` is ISO-8601 wherever it appears; ingest fills a
missing `data.timestamp` from the envelope.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Side = Literal["buy", "sell"]
OrderStatus = Literal[
    "pending", "open", "filled", "partial", "cancelled", "rejected", "denied", "expired"
]
"""The original six, then Tidewire's extensions `denied` (refused by a risk check before
reaching a venue) and `expired` (time in force elapsed)."""
PositionSide = Literal["long", "short", "flat"]
Severity = Literal["low", "medium", "high", "critical"]
DataType = Literal["tick", "quote", "bar", "trade"]
TradeType = Literal["execution", "fill", "partial_fill"]
Trend = Literal["increasing", "decreasing", "stable"]
HealthStatus = Literal["healthy", "degraded", "error"]
EngineState = Literal[
    "starting", "running", "stopping", "stopped", "error", "degraded", "stale", "down"
]
"""The original five, then Tidewire's extensions: `degraded` (running with faults), `stale`
(heartbeats late) and `down` (heartbeats stopped, or the engine's Redis unreachable)."""
CommandStatus = Literal["success", "error", "pending"]


class Payload(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of the payload schemas; unknown fields are allowed (and kept by ingest)."""

    timestamp: str
    """When the event happened (ISO-8601); filled from the envelope when absent."""


class MarketDataPayload(Payload):
    """`market_data`: a quote, trade, bar or tick of one symbol (`data_type` says which)."""

    price: float | None = None
    bid_price: float | None = None
    ask_price: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    volume: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    change: float | None = None
    change_percent: float | None = None
    last_trade_price: float | None = None
    last_trade_size: float | None = None
    last_trade_time: str | None = None


class TradePayload(Payload):
    """`trade_updates`: one fill or execution."""

    trade_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    status: OrderStatus
    """The order's status after this fill."""
    order_id: str | None = None
    filled_quantity: float | None = None
    remaining_quantity: float | None = None
    avg_fill_price: float | None = None
    commission: float | None = None
    fees: float | None = None
    execution_id: str | None = None
    venue: str | None = None
    execution_time: str | None = None
    slippage_bps: float | None = None


class OrderPayload(Payload):
    """`order_update`: the order's state after an event."""

    side: Side
    quantity: float
    filled_quantity: float
    remaining_quantity: float
    """Derived as `quantity - filled_quantity` when the producer leaves it out."""
    order_type: str | None = None
    price: float | None = None
    avg_fill_price: float | None = None
    time_in_force: str | None = None
    order_time: str | None = None
    last_update_time: str | None = None
    cancel_reason: str | None = None
    reject_reason: str | None = None


class PositionPayload(Payload):
    """`position_update`: a portfolio's position in one symbol."""

    quantity: float
    """As the producer sent it; Tidewire's producers send it signed (negative = short).
    `position_side` is the direction."""
    avg_price: float
    unrealized_pnl: float
    market_price: float | None = None
    realized_pnl: float | None = None
    cost_basis: float | None = None
    market_value: float | None = None
    day_pnl: float | None = None
    total_pnl: float | None = None


class PerformancePayload(Payload):
    """`performance_update`: a portfolio's (or one strategy's) P&L."""

    pnl: float
    returns: float
    """`pnl` as a fraction of the value it was made on (0.012 = 1.2%)."""
    sharpe_ratio: float | None = None
    max_drawdown: float | None = None
    win_rate: float | None = None
    profit_factor: float | None = None
    total_trades: int | None = None
    winning_trades: int | None = None
    losing_trades: int | None = None
    avg_trade_pnl: float | None = None
    best_trade: float | None = None
    worst_trade: float | None = None


class RiskAlertPayload(Payload):
    """`risk_alert`: a risk metric crossed its threshold."""

    metric: str
    current_value: float
    threshold: float
    message: str
    limit_value: float | None = None
    breach_percentage: float | None = None
    recommended_action: str | None = None
    auto_action_taken: bool | None = None


class BreachAlertPayload(Payload):
    """`breach_alert`: a limit was breached."""

    limit_type: str
    current_value: float
    limit_value: float
    breach_percentage: float
    """How far past the limit, in percent of it: derived as
    `100 * (current_value - limit_value) / |limit_value|` when left out."""
    breach_duration: float | None = None
    auto_action: str | None = None
    manual_override: bool | None = None


class StrategyPerformancePayload(Payload):
    """`strategy_performance`: one strategy's statistics."""

    total_return: float
    sharpe_ratio: float
    max_drawdown: float
    trade_count: int
    win_rate: float
    profit_factor: float
    calmar_ratio: float | None = None
    sortino_ratio: float | None = None
    var_95: float | None = None
    cvar_95: float | None = None
    alpha: float | None = None
    beta: float | None = None
    information_ratio: float | None = None
    tracking_error: float | None = None


class ExecutionAnalyticsPayload(Payload):
    """`execution_analytics`: the quality of one execution."""

    fill_price: float
    benchmark_price: float
    slippage: float
    """`fill_price - benchmark_price`, derived when left out."""
    slippage_bps: float
    """`slippage / benchmark_price * 10,000`, derived when left out."""
    execution_time_ms: float
    execution_shortfall: float | None = None
    market_impact: float | None = None
    timing_cost: float | None = None
    opportunity_cost: float | None = None
    venue_quality: float | None = None
    fill_ratio: float | None = None
    participation_rate: float | None = None


class RiskMetricsPayload(Payload):
    """`risk_metrics`: one metric (`metric_type`) of a portfolio."""

    value: float
    percentile: float | None = None
    historical_avg: float | None = None
    trend: Trend | None = None
    confidence_level: float | None = None
    calculation_method: str | None = None
    lookback_period: str | float | None = None


class SystemHealthPayload(Payload):
    """`system_health`: a component's health."""

    status: HealthStatus
    cpu_usage: float | None = None
    """Percent of one core."""
    memory_usage: float | None = None
    disk_usage: float | None = None
    network_latency: float | None = None
    active_connections: int | None = None
    error_rate: float | None = None
    throughput: float | None = None
    uptime: float | None = None
    version: str | None = None
    last_restart: str | None = None
    health_score: float | None = None


class EngineStatusPayload(Payload):
    """`engine_status`: a trading engine's (or one of its components') state."""

    state: EngineState
    uptime: float
    """Seconds since the engine (as seen by its producer) started."""
    memory_usage: float | None = None
    cpu_usage: float | None = None
    active_strategies: int | None = None
    orders_processed: int | None = None
    trades_executed: int | None = None
    last_heartbeat: str | None = None
    error_count: int | None = None
    warning_count: int | None = None
    performance_score: float | None = None


class EventPayload(Payload):
    """`event`: something happened (a session started, a strategy was deployed, ...)."""

    description: str
    title: str | None = None
    category: str | None = None
    tags: list[str] | None = None
    user_id: str | None = None
    session_id: str | None = None


class AlertPayload(Payload):
    """`alert`: an alert for people to read."""

    title: str
    message: str
    source: str | None = None
    affected_component: str | None = None
    resolution_steps: list[str] | None = None
    auto_resolve: bool | None = None
    expiry_time: str | None = None
    acknowledged: bool | None = None


class SystemAlertPayload(Payload):
    """`system_alert`: a component of the system needs attention."""

    description: str
    metric: str | None = None
    current_value: float | None = None
    threshold: float | None = None
    impact_level: str | None = None
    estimated_resolution_time: str | None = None
    mitigation_actions: list[str] | None = None


class NotificationPayload(Payload):
    """`notification`: the original declared the type without an interface; Tidewire reads
    `title` and `message` when present."""

    title: str | None = None
    message: str | None = None


class CommandResponsePayload(Payload):
    """`command_response`: the outcome of a command an engine was given."""

    result: Any = None
    error: Any = None
    execution_time_ms: float | None = None


# Schema of `data` per message type.
PAYLOAD_OF_TYPE: dict[str, type[Payload]] = {
    "market_data": MarketDataPayload,
    "trade_updates": TradePayload,
    "order_update": OrderPayload,
    "position_update": PositionPayload,
    "performance_update": PerformancePayload,
    "risk_alert": RiskAlertPayload,
    "breach_alert": BreachAlertPayload,
    "strategy_performance": StrategyPerformancePayload,
    "execution_analytics": ExecutionAnalyticsPayload,
    "risk_metrics": RiskMetricsPayload,
    "system_health": SystemHealthPayload,
    "engine_status": EngineStatusPayload,
    "event": EventPayload,
    "alert": AlertPayload,
    "system_alert": SystemAlertPayload,
    "notification": NotificationPayload,
    "command_response": CommandResponsePayload,
}
