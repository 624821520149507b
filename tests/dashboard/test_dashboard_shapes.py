"""The dashboard shows the canonical message shapes, in Chromium against a real gateway.

One message of each kind is published with the original field names (top-level `symbol`,
`order_status`, `position_side`, `metric_type`, ...; `data.bid_price`, `data.state`,
`data.description`, ...) and each tab of the streaming panel shows what it says, including
the fields the gateway derives (remaining quantity, position side, trade status, breach
percentage). Also: risk metrics as a portfolio x metric table, a filter change applied in
place from the subscription manager, the clock offset measured with `sync`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support import IN_CI

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)

LiveFactory = Callable[..., Any]
NONE = "\u2013"  # the dashboard's en dash for a value the message does not carry
TIMES = "\u00d7"  # multiplication sign: "last <price> x <size>"

MESSAGES: list[dict[str, Any]] = [
    {
        "type": "market_data",
        "symbol": "AAPL",
        "venue": "XNAS",
        "data_type": "quote",
        "data": {"bid_price": 189.5, "ask_price": 189.6},
    },
    # A trade tick: `last_trade_size` (0.1's `size`), data_type inferred as trade.
    {"type": "market_data", "symbol": "AAPL", "data": {"price": 189.55, "last_trade_size": 300}},
    {
        "type": "order_update",
        "portfolio_id": "PF-ALPHA",
        "user_id": "trader-1",
        "order_id": "O-77",
        "symbol": "AAPL",
        "order_status": "partial",
        "data": {
            "side": "buy",
            "order_type": "limit",
            "quantity": 100,
            "filled_quantity": 40,
            "price": 189.5,
        },
    },
    {
        "type": "trade_updates",
        "user_id": "trader-9",
        "data": {
            "trade_id": "T-77",
            "order_id": "O-77",
            "symbol": "AAPL",
            "side": "buy",
            "quantity": 40,
            "price": 189.5,
            "remaining_quantity": 60,
        },
    },
    {
        "type": "position_update",
        "portfolio_id": "PF-ALPHA",
        "symbol": "TSLA",
        "data": {"quantity": -40, "avg_price": 251.0, "unrealized_pnl": -12.5},
    },
    {
        "type": "performance_update",
        "portfolio_id": "PF-ALPHA",
        "data": {"pnl": 1500, "returns": 0.015},
    },
    {
        "type": "strategy_performance",
        "strategy_id": "STRAT-X",
        "strategy_name": "Crossover",
        "data": {
            "total_return": 0.042,
            "sharpe_ratio": 1.4,
            "max_drawdown": 0.03,
            "trade_count": 12,
            "win_rate": 0.58,
            "profit_factor": 1.7,
        },
    },
    {
        "type": "execution_analytics",
        "execution_id": "X-77",
        "symbol": "AAPL",
        "data": {"fill_price": 189.52, "benchmark_price": 189.5, "execution_time_ms": 3.5},
    },
    {
        "type": "risk_metrics",
        "portfolio_id": "PF-ALPHA",
        "metric_type": "var_95",
        "data": {"value": 12500, "trend": "increasing"},
    },
    {
        "type": "risk_metrics",
        "portfolio_id": "PF-ALPHA",
        "metric_type": "leverage",
        "data": {"value": 1.8},
    },
    {
        "type": "risk_metrics",
        "portfolio_id": "PF-BETA",
        "metric_type": "var_95",
        "data": {"value": 9000},
    },
    {
        "type": "breach_alert",
        "portfolio_id": "PF-ALPHA",
        "breach_type": "position_limit",
        "severity": "critical",
        "data": {
            "limit_type": "gross_exposure",
            "current_value": 1_200_000,
            "limit_value": 1_000_000,
        },
    },
    {
        "type": "engine_status",
        "engine_id": "ENG-7",
        "data": {"state": "running", "uptime": 3725, "active_strategies": 3},
    },
    {
        "type": "system_health",
        "component": "gw-test",
        "data": {"status": "degraded", "cpu_usage": 42.5, "memory_mb": 512, "latency_ms": 1.25},
    },
    {
        "type": "event",
        "event_type": "session_start",
        "source": "ops",
        "data": {"title": "Session", "description": "Trading session opened"},
    },
    {
        "type": "alert",
        "alert_level": "high",
        "source": "ops",
        "data": {"title": "Feed lag", "message": "XNAS feed 2 s behind"},
    },
    {
        "type": "system_alert",
        "component": "redis",
        "alert_type": "latency",
        "severity": "medium",
        "source": "ops",
        "data": {"description": "Redis p99 above 5 ms"},
    },
]


def open_dashboard(page: Page, live: Any, query: str = "") -> None:
    page.goto(live.url + query)
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    page.wait_for_function(
        "() => [...window.tidewire.client.subscriptions.values()].every(s => s.confirmed)"
    )


def tab(page: Page, stream: str) -> None:
    page.get_by_test_id(f"stream-tab-{stream}").click()


def test_every_stream_shows_the_canonical_fields(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = live_gateway()
    page = browser_page
    open_dashboard(page, live, "?panel=streaming")
    live.publish(*MESSAGES)

    card = page.locator(".chart-card[data-symbol='AAPL']")
    expect(card.locator(".chart-head")).to_contain_text("189.50 / 189.60")
    expect(card.get_by_test_id("chart-last")).to_have_text(f"last 189.55 {TIMES} 300")

    tab(page, "order_updates")
    order = page.get_by_test_id("rows-order_updates").locator("tr", has_text="O-77")
    expect(order).to_contain_text("trader-1")
    expect(order.locator("td").nth(10)).to_have_text("60")  # remaining, derived
    expect(order.locator(".st-partial")).to_have_text("partial")

    tab(page, "trade_updates")
    trade = page.get_by_test_id("rows-trade_updates").locator("tr", has_text="T-77")
    expect(trade).to_contain_text("trader-9")
    expect(trade.locator(".st-partial")).to_have_text("partial")  # derived from remaining

    tab(page, "position_updates")
    position = page.get_by_test_id("rows-position_updates").locator("tr", has_text="TSLA")
    expect(position.locator("td").nth(3)).to_have_text("short")  # from the signed quantity

    tab(page, "performance_updates")
    performance = page.get_by_test_id("rows-performance_updates").locator("tr", has_text="PF-ALPHA")
    expect(performance).to_contain_text("1,500")
    expect(performance).to_contain_text("1.50%")
    expect(performance.locator("td").nth(4)).to_have_text(NONE)  # no total_value: fine

    tab(page, "strategy_performance")
    expect(page.get_by_test_id("rows-strategy_performance")).to_contain_text("Crossover")
    expect(page.get_by_test_id("rows-strategy_performance")).to_contain_text("4.20%")

    tab(page, "execution_analytics")
    execution = page.get_by_test_id("rows-execution_analytics").locator("tr", has_text="X-77")
    expect(execution.locator("td").nth(6)).to_have_text("1.06")  # slippage_bps, derived

    tab(page, "risk_metrics")
    matrix = page.get_by_test_id("risk-matrix")
    expect(matrix.locator("thead th")).to_have_text(["Portfolio", "leverage", "var_95", "Updated"])
    alpha = matrix.locator("tr[data-portfolio='PF-ALPHA']")
    expect(alpha.locator("[data-metric='var_95']")).to_contain_text("12,500")
    expect(alpha.locator("[data-metric='var_95']")).to_contain_text("▲")
    expect(alpha.locator("[data-metric='leverage']")).to_have_text("1.80")
    beta = matrix.locator("tr[data-portfolio='PF-BETA']")
    expect(beta.locator("[data-metric='var_95']")).to_have_text("9,000")
    expect(beta.locator("td").nth(1)).to_have_text(NONE)  # no leverage for PF-BETA

    tab(page, "risk_alerts")
    breach = page.get_by_test_id("feed-risk_alerts").locator(".alert[data-type='breach_alert']")
    expect(breach).to_have_attribute("data-severity", "critical")
    expect(breach).to_contain_text("gross_exposure")
    expect(breach).to_contain_text("(+20.0%)")  # breach_percentage, derived

    tab(page, "engine_status")
    engine = page.get_by_test_id("cards-engine_status").locator(".status-card[data-name='ENG-7']")
    expect(engine.locator(".state")).to_have_text("running")
    expect(engine).to_contain_text("uptime 1h 02m")
    expect(engine).to_contain_text("strategies 3")

    tab(page, "system_health")
    health = page.get_by_test_id("cards-system_health").locator(".status-card[data-name='gw-test']")
    expect(health.locator(".state")).to_have_text("degraded")
    expect(health).to_have_class("status-card warn")
    expect(health).to_contain_text("cpu 42.5%")
    expect(health).to_contain_text("mem 512 MB")  # 0.1's extensions still shown
    expect(health).to_contain_text("1.25 ms")

    tab(page, "events")
    feed = page.get_by_test_id("feed-events")
    expect(feed.locator(".alert[data-type='event']")).to_contain_text("Trading session opened")
    alert = feed.locator(".alert[data-type='alert']")
    expect(alert).to_have_attribute("data-severity", "high")
    expect(alert).to_contain_text("Feed lag")
    expect(alert).to_contain_text("XNAS feed 2 s behind")
    expect(feed.locator(".alert[data-type='system_alert']")).to_contain_text("Redis p99 above 5 ms")


def test_filters_change_in_place_and_the_clock_is_synced(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = live_gateway(simulator=True)
    page = browser_page
    open_dashboard(page, live)
    expect(page.get_by_test_id("conn-clock")).to_contain_text("rtt")

    page.get_by_test_id("tab-subscriptions").click()
    market = page.locator("tr[data-id='dash-market_data']")
    expect(market.locator("[data-c=keys]")).to_contain_text("AAPL")
    market.locator("input[data-select]").check()
    page.get_by_test_id("sub-symbols").fill("MSFT")
    page.get_by_test_id("sub-update-selected").click()
    expect(market.get_by_test_id("sub-filters")).to_have_text("symbols=MSFT")
    expect(market.locator("[data-c=keys]")).to_have_text("MSFT")  # restarted with the filters
    expect(market.locator("[data-c=state]")).to_have_text("live")  # the same subscription
    update = page.evaluate(
        "() => { const s = window.tidewire.client.subscriptions.get('dash-market_data');"
        " return { updates: s.updates, confirmations: s.confirmations, resyncs: s.resyncs }; }"
    )
    assert update == {"updates": 1, "confirmations": 1, "resyncs": 0}

    # The rate limit of the row is an update too.
    market.locator("input[data-rate-input]").fill("2")
    market.locator("button[data-rate]").click()
    page.wait_for_function(
        "() => window.tidewire.client.subscriptions.get('dash-market_data').rateLimit === 2"
    )
    assert (
        page.evaluate("() => window.tidewire.client.subscriptions.get('dash-market_data').updates")
        == 2
    )
