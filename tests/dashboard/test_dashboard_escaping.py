"""What producers send is shown as text, never as markup (Chromium against a real gateway).

The streaming panel writes its tables and cards as HTML; a field that should be a number or
a timestamp but is some other string goes through the format helpers' fallback, which must
escape it. Also: engine cards show engine_status `memory_usage` in megabytes, the schema's
unit (system_health's `memory_usage` is a percentage).
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
PAYLOAD = "<img src=x id=pwned>"
TIME_PAYLOAD = "<img src=x id=pwned-time>"


def open_dashboard(page: Page, live: Any) -> None:
    page.goto(live.url + "?panel=streaming")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    page.wait_for_function(
        "() => [...window.tidewire.client.subscriptions.values()].every(s => s.confirmed)"
    )


def test_producer_strings_in_numeric_and_time_fields_are_shown_as_text(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = live_gateway()
    page = browser_page
    open_dashboard(page, live)
    live.publish(
        {
            "type": "performance_update",
            "portfolio_id": "PF-XSS",
            "data": {
                "pnl": 10,
                "returns": 0.01,
                "total_value": PAYLOAD,
                "daily_pnl": PAYLOAD,
                "timestamp": TIME_PAYLOAD,
            },
        },
        {
            "type": "system_health",
            "component": "gw-xss",
            "data": {"status": "healthy", "memory_mb": PAYLOAD, "latency_ms": PAYLOAD},
        },
        {
            "type": "engine_status",
            "engine_id": "ENG-MEM",
            "data": {"state": "running", "uptime": 60, "memory_usage": 2048},
        },
    )

    page.get_by_test_id("stream-tab-performance_updates").click()
    row = page.get_by_test_id("rows-performance_updates").locator("tr", has_text="PF-XSS")
    expect(row.locator("td").nth(4)).to_have_text(PAYLOAD)  # total_value, literally
    expect(row.locator("td").nth(5)).to_have_text(PAYLOAD)  # daily_pnl
    expect(row).to_contain_text(TIME_PAYLOAD)  # the timestamp, as it came

    page.get_by_test_id("stream-tab-system_health").click()
    health = page.get_by_test_id("cards-system_health").locator(".status-card[data-name='gw-xss']")
    expect(health).to_contain_text(f"mem {PAYLOAD} MB")
    expect(health).to_contain_text(f"{PAYLOAD} ms")

    page.get_by_test_id("stream-tab-engine_status").click()
    engine = page.get_by_test_id("cards-engine_status").locator(".status-card[data-name='ENG-MEM']")
    expect(engine).to_contain_text("mem 2048 MB")
    expect(engine).not_to_contain_text("%")

    assert page.locator("#pwned").count() == 0
    assert page.locator("#pwned-time").count() == 0
    assert page.locator("img[src=x]").count() == 0
