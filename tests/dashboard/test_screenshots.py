"""Screenshots of every panel of the dashboard, on live simulated data.

Normally they go to a temporary folder (the test proves every panel renders). To refresh
the ones shown in the README:

    TIDEWIRE_SCREENSHOTS=docs/screenshots .venv/bin/pytest -p no:cacheprovider \
        tests/dashboard/test_screenshots.py

which also lets the charts fill for longer and restarts the gateway once, so the
connection panel shows a recovery.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
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

REPO = Path(__file__).resolve().parents[2]
PANELS = ("connection", "subscriptions", "viewer", "statistics", "streaming")


def alert(portfolio: str, severity: str, metric: str, value: float, limit: float) -> dict[str, Any]:
    return {
        "type": "risk_alert" if severity != "critical" else "breach_alert",
        "portfolio_id": portfolio,
        "severity": severity,
        "risk_type": metric,
        "data": {
            "metric": metric,
            "current_value": value,
            "threshold": limit,
            "timestamp": "2026-01-02T10:00:00Z",
            "message": f"{metric} at {value / limit:.0%} of its limit",
        },
    }


ALERTS = [
    alert("PF-ALPHA", "low", "gross_exposure", 41_000_000, 50_000_000),
    alert("PF-BETA", "medium", "concentration", 0.22, 0.25),
    alert("PF-GAMMA", "high", "var_95", 960_000, 1_000_000),
    alert("PF-ALPHA", "critical", "drawdown", 0.061, 0.05),
    alert("PF-BETA", "high", "leverage", 3.9, 4.0),
]


def test_screenshot_every_panel(
    browser_page: Page, live_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    target = os.environ.get("TIDEWIRE_SCREENSHOTS")
    folder = (REPO / target) if target else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for_docs = bool(target)
    live = live_gateway(simulator=True)
    page = browser_page
    page.goto(live.url)
    status = page.get_by_test_id("status")
    expect(status).to_have_attribute("data-state", "connected")
    if for_docs:
        # One restart, so the connection panel shows what a recovery looks like.
        page.wait_for_timeout(3000)
        live.restart()
        expect(page.get_by_test_id("recovery")).to_have_attribute("data-phase", "recovered")
    live.publish(*ALERTS)
    # Long enough for the charts to have a history worth looking at.
    page.wait_for_timeout(20_000 if for_docs else 2000)

    page.get_by_test_id("tab-subscriptions").click()
    page.get_by_test_id("sub-streams").select_option(["market_data", "trade_updates"])
    page.get_by_test_id("sub-symbols").fill("AAPL, MSFT, NVDA")
    page.get_by_test_id("sub-create").click()
    expect(page.get_by_test_id("sub-rows").locator("tr")).to_have_count(14)

    page.get_by_test_id("tab-viewer").click()
    rows = page.get_by_test_id("viewer-rows").locator("tr")
    page.get_by_test_id("viewer-type").select_option("market_data")
    page.get_by_test_id("viewer-search").fill("AAPL")
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('[data-testid=viewer-rows] tr')];"
        " return rows.length > 2 && rows.every(r => r.cells[5].textContent === 'AAPL'); }"
    )
    page.get_by_test_id("viewer-pause").click()
    rows.nth(2).click()
    expect(page.get_by_test_id("viewer-detail").locator("details").first).to_be_visible()
    page.get_by_test_id("viewer-pause").click()

    shots = {}
    for panel in PANELS:
        page.get_by_test_id(f"tab-{panel}").click()
        expect(page.get_by_test_id(f"panel-{panel}")).to_be_visible()
        if panel == "viewer":
            page.get_by_test_id("viewer-pause").click()  # a still list for the picture
        page.wait_for_timeout(700)  # a few draws
        shots[panel] = folder / f"{panel}.png"
        page.screenshot(path=shots[panel])
        if panel == "viewer":
            page.get_by_test_id("viewer-pause").click()
    for stream, name in (
        ("risk_alerts", "streaming-alerts"),
        ("order_updates", "streaming-orders"),
    ):
        page.get_by_test_id(f"stream-tab-{stream}").click()
        page.wait_for_timeout(500)
        shots[name] = folder / f"{name}.png"
        page.screenshot(path=shots[name])
    for path in shots.values():
        assert path.stat().st_size > 10_000, path
