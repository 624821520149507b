"""What every field of a data message means, in one short sentence; docstrings of structs.

Read by the "Message types" tables of docs/protocol.md (`protocol.reference`) and by the
JSON Schema and TypeScript export (descriptions, JSDoc). A field's docstring in
`protocol.payloads` or `protocol.messages` wins over the tables here (`reference` asks the
docstring first); `meaning()` looks up the most specific entry. No I/O beyond reading the
protocol's own source for docstrings.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Literal

import msgspec

Place = Literal["top", "data"]

ENVELOPE: dict[str, str] = {
    "type": "The message type: it selects the shape of the other fields.",
    "version": "Protocol version of the server that sent it.",
    "timestamp": "When the event happened (ISO-8601 UTC); the gateway's clock when the "
    "producer gave none.",
    "message_id": "Unique id (the producer's, or assigned): publishing an id twice delivers it "
    "once.",
    "correlation_id": "The producer's correlation id, passed through.",
    "priority": "1 low, 2 normal (the default, left out), 3 high, 4 critical.",
    "source": "The producer (`api`, `ws`, `simulator`, `nautilus`, `operator`, ...).",
    "sequence": "Equal to `seq` (the original declared it and never filled it).",
    "stream": "The stream the message travels on.",
    "key": "The value of the stream's key field (or of its fallback) in this message.",
    "seq": "Position in the stream: +1 per message within an epoch.",
    "epoch": "Name of the stream's history: a new one when history was lost.",
    "broadcast": "True on an operator notice that every connection receives "
    "(`POST /api/broadcast`).",
    "data": "The payload: its fields depend on `type`.",
}

TOP: dict[str, str] = {
    "symbol": "The instrument (ticker, or a venue-qualified id such as `AUD/USD.SIM`).",
    "venue": "Where the instrument trades.",
    "data_type": "Which kind of market data (inferred from the `data` fields when absent).",
    "asset_class": "Asset class of the instrument (`equity`, `fx`, `crypto`, ...).",
    "portfolio_id": "The portfolio (account) concerned.",
    "strategy_id": "The strategy concerned.",
    "user_id": "The user concerned.",
    "severity": "How serious (`info`, `warning`, `error`, `fatal` are accepted as "
    "low, medium, high, critical).",
    "risk_type": "The kind of risk.",
    "engine_id": "The trading engine (or one of its components).",
    "component": "The system component concerned.",
    "alert_category": "A grouping of alerts chosen by the producer.",
    "alert_level": "How serious the alert is (also sent as `severity`).",
    "alert_type": "What kind of problem.",
    "breach_type": "The kind of limit breached.",
    "command": "The command that was run.",
    "command_id": "The id of the command, as it was given.",
    "event_id": "Unique id of the event.",
    "event_type": "What happened (`session_started`, `strategy_deployed`, ...).",
    "execution_id": "The execution analysed.",
    "metric_type": "Which metric `data.value` holds (`var_95`, `leverage`, ...).",
    "order_id": "The order.",
    "order_status": "The order's status after the event.",
    "position_side": "Direction of the position.",
    "status": "The outcome.",
    "strategy_name": "Display name of the strategy.",
    "trade_type": "Execution, fill or partial fill.",
}

DATA: dict[str, str] = {
    "timestamp": "When the event happened (ISO-8601).",
    "price": "Price.",
    "bid_price": "Best bid.",
    "ask_price": "Best ask.",
    "bid_size": "Quantity at the best bid.",
    "ask_size": "Quantity at the best ask.",
    "volume": "Traded volume (of the bar, or of the day).",
    "open": "First price of the bar.",
    "high": "Highest price of the bar.",
    "low": "Lowest price of the bar.",
    "close": "Last price of the bar.",
    "change": "Price change over the session.",
    "change_percent": "`change` in percent.",
    "last_trade_price": "Price of the last trade.",
    "last_trade_size": "Quantity of the last trade.",
    "last_trade_time": "When the last trade happened (ISO-8601).",
    "trade_id": "The trade (fill).",
    "symbol": "The instrument.",
    "side": "Buy or sell.",
    "quantity": "Quantity.",
    "status": "Status.",
    "order_id": "The order the trade filled.",
    "filled_quantity": "Quantity filled so far.",
    "remaining_quantity": "Quantity still to fill.",
    "avg_fill_price": "Average price of the fills so far.",
    "commission": "Commission charged.",
    "fees": "Other fees charged.",
    "execution_id": "The venue's execution id.",
    "venue": "Where it executed.",
    "execution_time": "When it executed (ISO-8601).",
    "slippage_bps": "Slippage against the benchmark, in basis points.",
    "order_type": "`market`, `limit`, `stop`, ...",
    "time_in_force": "`day`, `gtc`, `ioc`, ...",
    "order_time": "When the order was placed (ISO-8601).",
    "last_update_time": "When the order last changed (ISO-8601).",
    "cancel_reason": "Why it was cancelled or expired.",
    "reject_reason": "Why it was rejected or denied.",
    "avg_price": "Average entry price.",
    "unrealized_pnl": "P&L of the open quantity at the market price.",
    "market_price": "Price the position is marked at.",
    "realized_pnl": "P&L realised by closing trades.",
    "cost_basis": "What the open quantity cost.",
    "market_value": "Value of the position at `market_price`.",
    "day_pnl": "P&L since the start of the day.",
    "total_pnl": "Realised plus unrealised P&L.",
    "pnl": "Profit and loss.",
    "sharpe_ratio": "Sharpe ratio.",
    "max_drawdown": "Largest peak-to-trough loss, as a fraction.",
    "win_rate": "Share of winning trades (0 to 1).",
    "profit_factor": "Gross profit divided by gross loss.",
    "total_trades": "Number of trades.",
    "winning_trades": "Number of winning trades.",
    "losing_trades": "Number of losing trades.",
    "avg_trade_pnl": "Average P&L per trade.",
    "best_trade": "P&L of the best trade.",
    "worst_trade": "P&L of the worst trade.",
    "metric": "The metric measured.",
    "current_value": "Its current value.",
    "threshold": "The threshold it crossed.",
    "message": "Text for people.",
    "limit_value": "The limit.",
    "breach_percentage": "How far past the limit, in percent of it.",
    "recommended_action": "What the producer suggests doing.",
    "auto_action_taken": "Whether something was done automatically.",
    "limit_type": "The limit breached.",
    "breach_duration": "How long the limit has been breached (seconds).",
    "auto_action": "What was done automatically.",
    "manual_override": "Whether someone overrode the limit.",
    "total_return": "Return since inception, as a fraction.",
    "trade_count": "Number of trades.",
    "calmar_ratio": "Calmar ratio.",
    "sortino_ratio": "Sortino ratio.",
    "var_95": "Value at risk at 95%.",
    "cvar_95": "Conditional value at risk at 95%.",
    "alpha": "Alpha against the benchmark.",
    "beta": "Beta against the benchmark.",
    "information_ratio": "Information ratio.",
    "tracking_error": "Tracking error against the benchmark.",
    "fill_price": "Average price obtained.",
    "benchmark_price": "Price it is compared with (arrival price, VWAP, ...).",
    "slippage": "`fill_price - benchmark_price`.",
    "execution_time_ms": "How long it took, in milliseconds.",
    "execution_shortfall": "Implementation shortfall.",
    "market_impact": "Price move caused by the order.",
    "timing_cost": "Cost of the delay before executing.",
    "opportunity_cost": "Cost of the quantity left unfilled.",
    "venue_quality": "Score of the venue's execution.",
    "fill_ratio": "Filled quantity divided by ordered quantity.",
    "participation_rate": "Share of the market volume the order took.",
    "value": "The metric's value.",
    "percentile": "Where the value stands in its history (0 to 100).",
    "historical_avg": "Average of the metric over its history.",
    "trend": "Direction the metric is moving.",
    "confidence_level": "Confidence level of the estimate (0 to 1).",
    "calculation_method": "How it was computed (`historical`, `parametric`, ...).",
    "lookback_period": "History it was computed on (`30d`, or days).",
    "cpu_usage": "CPU use, in percent.",
    "memory_usage": "Memory use.",
    "disk_usage": "Disk use, in percent.",
    "network_latency": "Network latency, in milliseconds.",
    "active_connections": "Open connections.",
    "error_rate": "Errors per second.",
    "throughput": "Messages (or requests) per second.",
    "uptime": "Seconds since it started.",
    "version": "Its software version.",
    "last_restart": "When it last restarted (ISO-8601).",
    "health_score": "Overall health score.",
    "state": "What the engine is doing.",
    "active_strategies": "Strategies running.",
    "orders_processed": "Orders handled since start.",
    "trades_executed": "Trades executed since start.",
    "last_heartbeat": "When its last heartbeat arrived (ISO-8601).",
    "error_count": "Errors since start.",
    "warning_count": "Warnings since start.",
    "performance_score": "Overall performance score.",
    "description": "What happened, for people.",
    "title": "Short title.",
    "category": "A grouping chosen by the producer.",
    "tags": "Labels.",
    "user_id": "The user who caused it.",
    "session_id": "The session it happened in.",
    "source": "Who raised it.",
    "affected_component": "The component affected.",
    "resolution_steps": "What to do about it.",
    "auto_resolve": "Whether it clears by itself.",
    "expiry_time": "When it stops being relevant (ISO-8601).",
    "acknowledged": "Whether someone acknowledged it.",
    "impact_level": "How much it affects users.",
    "estimated_resolution_time": "When it should be resolved (ISO-8601).",
    "mitigation_actions": "What is being done about it.",
    "result": "The command's result (any JSON).",
    "error": "Why the command failed (any JSON).",
}

# Where one type means something more specific than the generic entry: (type, field), the
# field written `name` for the top level and `data.name` inside `data`.
BY_TYPE: dict[tuple[str, str], str] = {
    ("trade_updates", "data.quantity"): "Quantity of this fill.",
    ("trade_updates", "data.price"): "Price of this fill.",
    ("trade_updates", "data.filled_quantity"): "The order's filled quantity after this fill.",
    ("trade_updates", "data.remaining_quantity"): "The order's quantity still to fill.",
    ("order_update", "data.quantity"): "Quantity ordered.",
    ("order_update", "data.price"): "Limit (or stop) price.",
    ("position_update", "data.quantity"): "Quantity held.",
    ("market_data", "data.price"): "Last (or reference) price.",
    ("risk_alert", "risk_type"): "The kind of risk (the metric's name when the producer "
    "gave none).",
    ("risk_alert", "data.limit_value"): "The hard limit, when it differs from the threshold.",
    ("system_alert", "data.metric"): "The metric that raised it.",
    ("system_alert", "data.current_value"): "The metric's current value.",
    ("system_alert", "data.threshold"): "The metric's threshold.",
    ("system_alert", "data.description"): "What is wrong, for people.",
    ("system_health", "status"): "The component's health, as in `data.status`.",
    ("system_health", "data.status"): "The component's health.",
    ("system_health", "data.memory_usage"): "Memory use, in percent.",
    ("engine_status", "data.memory_usage"): "Memory use, in megabytes.",
    ("command_response", "status"): "Whether the command succeeded, failed or still runs.",
    ("command_response", "data.execution_time_ms"): "How long the command took, in milliseconds.",
    ("execution_analytics", "symbol"): "The instrument executed.",
    ("notification", "data.title"): "Short title.",
    ("notification", "data.message"): "The notice, for people.",
    ("alert", "data.message"): "The alert, for people.",
    ("alert", "severity"): "Same value as `alert_level` (filters read `severity`).",
    ("strategy_performance", "strategy_id"): "The strategy.",
    ("performance_update", "strategy_id"): "The strategy, when the P&L is one strategy's.",
    ("position_update", "strategy_id"): "The strategy holding the position (several may "
    "trade one symbol in one account).",
}


def meaning(message_type: str | None, place: Place, name: str) -> str:
    """The meaning of field `name` at `place` of `message_type` (None: the envelope).

    Raises KeyError for a field nobody described (a test keeps every field described).
    """
    if message_type is not None:
        specific = BY_TYPE.get((message_type, name if place == "top" else f"data.{name}"))
        if specific is not None:
            return specific
    if place == "data":
        return DATA[name]
    return ENVELOPE.get(name) or TOP[name]


# --------------------------------------------------------------------------- docstrings


def class_doc(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return None
    return inspect.cleandoc(doc)


@functools.cache
def attribute_docs(cls: type) -> dict[str, str]:
    """Docstrings written under a struct's fields (`seq: int = 0` then `\"\"\"...\"\"\"`).

    Python keeps no trace of them at run time, so they are read from the source; a class whose
    source is unavailable simply has none.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is msgspec.Struct or not issubclass(klass, msgspec.Struct):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        node = tree.body[0] if tree.body else None
        if not isinstance(node, ast.ClassDef):
            continue
        for statement, following in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs
