"""The dashboard under the control plane's Content-Security-Policy, in Chromium.

The policy allows the page's own scripts and styles only (no inline script, no style
attribute, no eval) and WebSocket connections to the data plane. Every violation fires a
`securitypolicyviolation` event, which an init script (not subject to the policy) collects
while the test goes through every panel; there must be none. With authentication off the
page shows nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import IN_CI
from tokens import SECURE, token

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)

LiveFactory = Callable[..., Any]

COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push({
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    line: event.lineNumber,
    sample: event.sample,
  });
});
"""
NOTICE = {
    "type": "notification",
    "source": "ops",
    "severity": "medium",
    "data": {"title": "Desk notice", "message": "Rebalance at 16:00"},
}


def wait_until(page: Page, condition: str) -> None:
    """Bounded wait for a JavaScript condition, as a function: Playwright polls a bare
    expression with `eval`, which is one of the things the policy refuses."""
    page.wait_for_function(f"() => ({condition})")


def exercise_every_panel(page: Page, tmp_path: Path) -> None:
    """Use each panel the way an operator would: what they draw, build and handle."""
    page.get_by_test_id("btn-reconnect").click()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    expect(page.get_by_test_id("conn-latency")).to_contain_text("ms")

    page.get_by_test_id("tab-subscriptions").click()
    page.get_by_test_id("sub-streams").select_option(["market_data"])
    page.get_by_test_id("sub-symbols").fill("AAPL")
    page.get_by_test_id("sub-create").click()
    row = page.get_by_test_id("sub-rows").locator("tr", has_text="symbols=AAPL")
    expect(row.locator("[data-c=state]")).to_have_text("live")
    expect(row.locator(".bar i")).to_be_visible()  # the health bar, sized through CSSOM

    page.get_by_test_id("tab-viewer").click()
    rows = page.get_by_test_id("viewer-rows").locator("tr")
    expect(rows.first).to_be_visible()
    page.get_by_test_id("viewer-pause").click()
    rows.first.click()
    expect(page.get_by_test_id("viewer-detail").locator("details").first).to_be_visible()
    with page.expect_download() as download:
        page.get_by_test_id("viewer-export-csv").click()
    download.value.save_as(tmp_path / "capture.csv")
    page.get_by_test_id("viewer-pause").click()

    page.get_by_test_id("tab-statistics").click()
    expect(page.get_by_test_id("chart-latency").locator("canvas")).to_have_count(1)
    wait_until(page, "window.tidewire.telemetry.rates.msgsIn > 0")

    page.get_by_test_id("tab-streaming").click()
    expect(page.get_by_test_id("market-charts").locator("canvas").first).to_be_visible()
    for stream in ("order_updates", "events", "engine_status"):
        page.get_by_test_id(f"stream-tab-{stream}").click()
        expect(page.get_by_test_id(f"stream-view-{stream}")).to_be_visible()
    expect(page.get_by_test_id("feed-events")).to_contain_text("Rebalance at 16:00")
    page.get_by_test_id("tab-connection").click()
    expect(page.get_by_test_id("conn-log")).to_contain_text("connected")


@pytest.mark.parametrize("secure", [False, True], ids=["auth-off", "auth-on"])
def test_no_policy_violation_in_any_panel(
    browser_page: Page, live_gateway: LiveFactory, tmp_path: Path, secure: bool
) -> None:
    live = live_gateway(simulator=True, **(SECURE if secure else {}))
    page = browser_page
    page.add_init_script(COLLECT_VIOLATIONS)
    response = page.goto(live.url)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe" not in policy  # the test is only worth something against a strict policy

    status = page.get_by_test_id("status")
    if secure:
        page.get_by_test_id("auth-token").fill(token("alice", portfolios=["*"]))
        page.get_by_test_id("auth-apply").click()
    else:
        # Authentication off: no token field, no token hint, nothing changes visibly.
        expect(page.get_by_test_id("auth-card")).to_have_count(0)
        expect(page.get_by_test_id("top-auth")).to_be_hidden()
        expect(page.get_by_test_id("conn-user")).to_have_count(0)
    expect(status).to_have_attribute("data-state", "connected")
    live.publish(NOTICE)
    exercise_every_panel(page, tmp_path)

    violations = page.evaluate("() => window.__cspViolations")
    assert violations == [], violations


def test_the_collector_sees_violations(browser_page: Page, live_gateway: LiveFactory) -> None:
    """The listener works: an inline style written as HTML is refused and reported."""
    live = live_gateway()
    page = browser_page
    page.add_init_script(COLLECT_VIOLATIONS)
    page.goto(live.url)
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    page.evaluate(
        "() => document.body.insertAdjacentHTML('beforeend', '<i style=\"color: red\">x</i>')"
    )
    wait_until(page, "window.__cspViolations.length > 0")
    directives = {v["directive"] for v in page.evaluate("() => window.__cspViolations")}
    assert directives & {"style-src-attr", "style-src"}
