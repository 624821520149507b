"""The valuation and status streams of the simulator: positions, portfolios, strategies, engine.

`StatusReporter` is composed by `MarketModel`, which calls it after fills, every position and
status interval and at random times. It values positions and books at the current mids
(position updates, performance, risk metrics), fires edge-triggered risk and breach alerts
when limits are crossed, reports strategy statistics and the engine's status and health, and
raises the operational alerts no position produces.

Every message is in its canonical shape (see `market_model`). Definitions:

* performance: `pnl` is the portfolio's total P&L (earlier days included), `returns` that
  P&L as a fraction of the capital it was made on (`pnl / (total_value - pnl)`, the
  gateway's own derivation); `daily_pnl`, `total_value` and the parts are extras.
* strategy performance: `total_return` is the strategy's P&L over its share of the
  portfolio's capital (split evenly between its strategies), `max_drawdown` the largest
  drop of that P&L from its running peak as the same fraction, `trade_count` its fills;
  `win_rate` and `profit_factor` count fills that reduced a position (0 before the first;
  `profit_factor` is capped at 100, and 100 while closes won and none lost); `sharpe_ratio`
  is 0 until ten status intervals have passed.
* risk metrics: one message per `metric_type` (var_95, exposure, leverage, margin_used,
  net_exposure, concentration) with its `value` and `trend` against the previous report.
* engine status: `state` starting (first step), degraded, else running; `uptime` is the
  simulated seconds since the start. System health: `cpu_usage` in percent of a core,
  `memory_usage` in percent of a 4096 MB budget (`memory_mb` is the amount),
  `network_latency` in ms.
* every breach alert also raises an `alert` (for people) on the events stream.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tidewire.sources.accounting import Book, Mark, Position, Strategy, book_pnl, unrealized_pnl
from tidewire.sources.instruments import decimals, strategy_name, where

__all__ = ["ENGINE_ID", "HEALTH_COMPONENTS", "Emit", "Raw", "StatusReporter"]

Raw = dict[str, Any]
"""A producer message as `build_data_message` takes it."""


class Emit(Protocol):
    """Appends a message of type `kind` to the step's output; `top` are its top-level fields."""

    def __call__(self, kind: str, data: Raw, **top: Any) -> None: ...


ENGINE_ID = "SIM-ENGINE-1"
HEALTH_COMPONENTS = ("sim-market-data", "sim-order-gateway")
_LEVELS = ("low", "medium", "high", "critical")
_MEMORY_BUDGET_MB = 4096.0
_LATENCY_THRESHOLD_MS = 20.0
_PROFIT_FACTOR_CAP = 100.0
_PRIORITY = {"low": 2, "medium": 2, "high": 3, "critical": 4}
# rule -> (metric, what it measures, medium/high/critical thresholds); see _check_limit.
_LIMITS: dict[str, tuple[str, str, tuple[float, float, float]]] = {
    "concentration": ("position_concentration", "largest position / capital", (0.16, 0.175, 0.19)),
    "leverage": ("gross_leverage", "gross exposure / portfolio value", (0.9, 1.05, 1.2)),
    "drawdown": ("intraday_drawdown", "drop from the day's high", (0.0015, 0.0025, 0.004)),
    "var": ("var_95_utilisation", "1-day 95% VaR / capital", (0.012, 0.014, 0.016)),
}


class StatusReporter:
    """Reports books, strategies and the engine through `emit`; keeps the engine's health."""

    def __init__(
        self,
        emit: Emit,
        marks: Mapping[str, Mark],
        rng: random.Random,
        now: Callable[[], str],
    ) -> None:
        """`marks`: the current quote of every symbol a book may hold, by symbol.

        `rng` is the model's own generator (drawn from here in a fixed order, so a seed still
        gives one output); `now` returns the timestamp of the current step, for alerts.
        """
        self._emit, self._marks, self._rng, self._now = emit, marks, rng, now
        self.degraded_until: float | None = None
        """Simulated time the current degradation ends; None while the engine is healthy."""
        self._health = {
            name: [rng.uniform(5, 20), rng.uniform(150, 400)] for name in HEALTH_COMPONENTS
        }

    # ------------------------------------------------------------------ valuation and status

    def position(self, book: Book, symbol: str, position: Position) -> None:
        """A position update: `position` of `book` in `symbol`, marked at the current mid."""
        market = self._marks[symbol]
        inst = market.inst
        unrealized = unrealized_pnl(position, market)
        digits = decimals(inst.tick)
        data = {
            "quantity": position.qty,
            "avg_price": round(position.avg, digits + 4),
            "unrealized_pnl": round(unrealized, 2) if position.qty else 0.0,
            "realized_pnl": round(position.realized, 2),
            "market_price": round(market.mid, digits + 1),
            "market_value": round(position.qty * market.mid * inst.multiplier, 2),
            "cost_basis": round(position.qty * position.avg * inst.multiplier, 2),
        }
        side = "long" if position.qty > 0 else "short" if position.qty < 0 else "flat"
        owner = {"strategy_id": position.strategy_id, **book.who(), **where(inst)}
        self._emit("position_update", data, position_side=side, **owner)

    def portfolio(self, book: Book) -> None:
        """Performance and risk metrics of `book`, and alerts for the limits they cross."""
        capital = book.spec.capital
        realized, unrealized, commissions = book_pnl(book, self._marks)
        daily = realized + unrealized - commissions
        value = capital + book.prior_pnl + daily
        book.high = max(book.high, value)
        pnl = book.prior_pnl + daily
        performance = {
            "pnl": round(pnl, 2),
            "returns": round(pnl / (value - pnl), 8),  # value - pnl is the capital
            "total_value": round(value, 2),
            "daily_pnl": round(daily, 2),
            "realized_pnl": round(realized, 2),
            "unrealized_pnl": round(unrealized, 2),
            "commissions": round(commissions, 2),
        }
        self._emit("performance_update", performance, **book.who())
        gross = net = variance = margin = largest = 0.0
        for symbol, position in book.positions.items():
            inst = self._marks[symbol].inst
            exposure = position.qty * self._marks[symbol].mid * inst.multiplier
            gross, net = gross + abs(exposure), net + exposure
            largest = max(largest, abs(exposure))
            variance += (exposure * inst.volatility / math.sqrt(252)) ** 2  # independent
            margin += abs(exposure) * inst.margin_rate
        var_95 = 1.645 * math.sqrt(variance)
        metrics = {
            "var_95": round(var_95, 2),
            "exposure": round(gross, 2),
            "leverage": round(gross / value, 4),
            "margin_used": round(margin, 2),
            "net_exposure": round(net, 2),
            "concentration": round(largest / capital, 6),
        }
        for metric_type, metric in metrics.items():
            self._metric(book, metric_type, metric)
        self._check_limit(book, "concentration", largest / capital)
        self._check_limit(book, "leverage", gross / value)
        self._check_limit(book, "drawdown", (book.high - value) / book.high)
        self._check_limit(book, "var", var_95 / capital)

    def _metric(self, book: Book, metric_type: str, value: float) -> None:
        """One risk metric of `book`, with its trend against the value reported last."""
        previous = book.metrics.get(metric_type)
        book.metrics[metric_type] = value
        trend = "stable"
        if previous is not None and abs(value - previous) > 1e-3 * abs(previous) + 1e-9:
            trend = "increasing" if value > previous else "decreasing"
        data: Raw = {"value": value, "trend": trend}
        if metric_type == "var_95":
            data.update(
                confidence_level=0.95, calculation_method="parametric", lookback_period="1d"
            )
        self._emit("risk_metrics", data, metric_type=metric_type, **book.who())

    def strategy(self, strategy: Strategy) -> None:
        """Return, drawdown, trade count, win rate, profit factor and Sharpe ratio."""
        realized, unrealized, commissions = book_pnl(
            strategy.book, self._marks, strategy.strategy_id
        )
        pnl = realized + unrealized - commissions
        strategy.marks.append(pnl)
        strategy.peak_pnl = max(strategy.peak_pnl, pnl)
        strategy.max_drawdown = max(strategy.max_drawdown, strategy.peak_pnl - pnl)
        marks = list(strategy.marks)
        steps = [later - earlier for earlier, later in itertools.pairwise(marks)]
        sharpe = 0.0
        if len(steps) >= 10:
            mean = sum(steps) / len(steps)
            deviation = math.sqrt(sum((step - mean) ** 2 for step in steps) / len(steps))
            # t-statistic of the recent P&L increments, clipped to a plausible range.
            sharpe = mean / deviation * math.sqrt(len(steps)) if deviation else 0.0
            sharpe = round(max(-4.0, min(4.0, sharpe)), 3)
        profit_factor = 0.0  # nothing won yet
        if strategy.gross_loss:
            profit_factor = min(_PROFIT_FACTOR_CAP, strategy.gross_profit / strategy.gross_loss)
        elif strategy.gross_profit:
            profit_factor = _PROFIT_FACTOR_CAP  # won without a loss: no finite ratio
        capital = strategy.capital
        performance = {
            "total_return": round(pnl / capital, 8),
            "sharpe_ratio": sharpe,
            "max_drawdown": round(strategy.max_drawdown / capital, 8),
            "trade_count": strategy.fills,
            "win_rate": round(strategy.wins / strategy.closes, 4) if strategy.closes else 0.0,
            "profit_factor": round(profit_factor, 4),
            "pnl": round(pnl, 2),
        }
        owner = {
            "strategy_id": strategy.strategy_id,
            "strategy_name": strategy_name(strategy.strategy_id),
            **strategy.book.who(),
        }
        self._emit("strategy_performance", performance, **owner)

    def engine(
        self, elapsed: float, *, open_orders: int, orders: int, fills: int, strategies: int
    ) -> None:
        """Engine status and the health of each component, `elapsed` seconds after the start
        (`orders` and `fills` so far, `strategies` trading)."""
        degraded = self.degraded_until is not None
        state = "starting" if elapsed == 0 else "degraded" if degraded else "running"
        engine: Raw = {
            "state": state,
            "uptime": round(elapsed, 3),
            "active_strategies": strategies,
            "orders_processed": orders,
            "trades_executed": fills,
            "last_heartbeat": self._now(),
            "open_orders": open_orders,
        }
        if degraded:
            engine["message"] = "market data latency elevated"
        severity = "medium" if degraded else "low"
        self._emit("engine_status", engine, engine_id=ENGINE_ID, severity=severity)
        for index, component in enumerate(HEALTH_COMPONENTS):
            stats = self._health[component]
            stats[0] = min(95.0, max(1.0, stats[0] + self._rng.gauss(0, 2)))
            stats[1] = min(4000.0, max(100.0, stats[1] + self._rng.gauss(0, 5)))
            sick = degraded and index == 0
            health = {
                "status": "degraded" if sick else "healthy",
                "cpu_usage": round(stats[0], 1),
                "memory_usage": round(100 * stats[1] / _MEMORY_BUDGET_MB, 1),
                "memory_mb": round(stats[1], 1),
                "network_latency": round(
                    self._rng.uniform(40, 120) if sick else self._rng.uniform(0.2, 3), 3
                ),
                "uptime": round(elapsed, 3),
            }
            severity = "medium" if sick else "low"
            self._emit("system_health", health, component=component, severity=severity)

    # ------------------------------------------------------------------ occasional

    def throttle_alert(self, book: Book) -> None:
        """An operational alert, which no position rule produces: order rate near a throttle."""
        rng = self._rng
        limit = float(rng.choice((60, 120, 300)))
        rate = float(round(limit * rng.uniform(0.85, 1.3)))
        alert = ("operational", "orders_per_minute", rate, limit)
        text = "order rate close to the strategy's throttle"
        self._risk_alert(book, alert, rng.choice(_LEVELS[:2]), text)

    def fat_finger_alert(self, book: Book) -> None:
        """A breach no position rule produces: an order blocked for its notional."""
        rng = self._rng
        limit = book.spec.capital * 0.02
        value = limit * rng.uniform(1.05, 3.0)
        alert = ("fat_finger", "single_order_notional", value, limit)
        text = "order blocked before routing: notional above the hard limit"
        self._breach_alert(book, alert, rng.choice(_LEVELS[2:]), text, "order blocked")

    def degrade(self, elapsed: float) -> None:
        """Degrade the engine for a few seconds from `elapsed` on."""
        self.degraded_until = elapsed + self._rng.uniform(5.0, 15.0)
        alert_data: Raw = {
            "description": "market data latency elevated",
            "metric": "network_latency",
            "current_value": round(self._rng.uniform(40, 120), 3),
            "threshold": _LATENCY_THRESHOLD_MS,
            "impact_level": "medium",
        }
        top = {"component": HEALTH_COMPONENTS[0], "alert_type": "latency"}
        self._emit("system_alert", alert_data, severity="medium", **top)

    def recover(self, elapsed: float) -> None:
        """End a degradation that is over at `elapsed`; nothing otherwise."""
        if self.degraded_until is not None and elapsed >= self.degraded_until:
            self.degraded_until = None
            text = "market data latency back to normal"
            event = {"title": "Engine recovered", "description": text, "category": "system"}
            self._emit("event", event, event_type="engine_recovered", severity="low")

    # ------------------------------------------------------------------ alerts

    def _check_limit(self, book: Book, rule: str, measured: float) -> None:
        """Alert when a limit level is crossed upwards, and once when back within limits.

        Edge-triggered with 10 % hysteresis so a value hovering at a threshold does not flood
        the reliable risk_alerts stream; reaching the critical level also is a breach.
        """
        metric, meaning, thresholds = _LIMITS[rule]
        level = sum(measured >= threshold for threshold in thresholds)
        previous = book.levels.get(rule, 0)
        if level == previous or (level < previous and measured >= 0.9 * thresholds[previous - 1]):
            return
        book.levels[rule] = level
        if 0 < level < previous:
            return  # easing from one level to a lower one is not news; all clear is
        threshold = thresholds[max(level, 1) - 1]
        text = f"{meaning} at {measured:.2%}, limit {threshold:.2%}"
        if level == 0:
            text = f"{meaning} back within limits at {measured:.2%}"
        alert = (rule, metric, measured, threshold)
        self._risk_alert(book, alert, _LEVELS[level], text)
        if level == len(thresholds):
            self._breach_alert(book, alert, "critical", f"hard limit breached: {text}")

    def _risk_alert(
        self, book: Book, alert: tuple[str, str, float, float], severity: str, text: str
    ) -> None:
        risk_type, metric, value, threshold = alert
        data = {
            "metric": metric,
            "current_value": round(value, 6),
            "threshold": threshold,
            "message": text,
            "timestamp": self._now(),
        }
        top = {"severity": severity, "risk_type": risk_type, "priority": _PRIORITY[severity]}
        self._emit("risk_alert", data, **top, **book.who())

    def _breach_alert(
        self,
        book: Book,
        alert: tuple[str, str, float, float],
        severity: str,
        text: str,
        auto_action: str | None = None,
    ) -> None:
        """A breach alert, and the `alert` that tells people about it."""
        breach_type, metric, value, limit = alert
        data: Raw = {
            "limit_type": metric,
            "current_value": round(value, 6),
            "limit_value": limit,
            "breach_percentage": round(100 * (value - limit) / abs(limit), 4),
            "message": text,
            "timestamp": self._now(),
        }
        if auto_action is not None:
            data["auto_action"] = auto_action
        top = {"severity": severity, "breach_type": breach_type, "priority": _PRIORITY[severity]}
        self._emit("breach_alert", data, **top, **book.who())
        portfolio = book.spec.portfolio_id
        notice: Raw = {
            "title": f"{portfolio}: {metric} limit breached",
            "message": text,
            "source": "risk engine",
            "affected_component": portfolio,
        }
        level = {"alert_level": severity, "severity": severity, "alert_category": "risk"}
        self._emit("alert", notice, priority=_PRIORITY[severity], **level, **book.who())
