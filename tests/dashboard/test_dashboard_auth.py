"""The dashboard against a gateway with authentication on (`**SECURE`), in Chromium.

It asks for a token before connecting; a valid token makes live data flow, limited to the
token's portfolios, and is remembered in sessionStorage only; a refused token and an
expired one (close 4001, or a handshake refused while reconnecting) are said so; a new
token given while connected goes as a refresh, never shown in the protocol viewer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
OTHER_KEY = "not-the-gateway-secret-but-32-bytes-long"


def alert(portfolio: str, message: str) -> dict[str, Any]:
    return {
        "type": "risk_alert",
        "portfolio_id": portfolio,
        "severity": "high",
        "risk_type": "var",
        "data": {
            "metric": "var_95",
            "current_value": 1_250_000,
            "threshold": 1_000_000,
            "timestamp": "2026-01-02T10:00:00Z",
            "message": message,
        },
    }


def secure_gateway(live_gateway: LiveFactory) -> Any:
    # No leeway: a token ends at its `exp`, not ten seconds later (the default).
    return live_gateway(simulator=True, jwt_leeway=0, **SECURE)


def wait_until(page: Page, condition: str) -> None:
    """Bounded wait for a JavaScript condition, as a function (the CSP forbids eval)."""
    page.wait_for_function(f"() => ({condition})")


def use_token(page: Page, jwt: str) -> None:
    page.get_by_test_id("auth-token").fill(jwt)
    page.get_by_test_id("auth-apply").click()


def test_asks_for_a_token_then_streams_only_entitled_data(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = secure_gateway(live_gateway)
    page = browser_page
    page.goto(live.url)
    status = page.get_by_test_id("status")
    message = page.get_by_test_id("auth-message")
    expect(message).to_have_attribute("data-phase", "missing")
    expect(message).to_contain_text("needs a token")
    expect(page.get_by_test_id("top-auth")).to_have_text("token needed")
    expect(status).to_have_attribute("data-state", "disconnected")

    jwt = token("alice", portfolios=["PF-ALPHA"])
    use_token(page, jwt)
    expect(status).to_have_attribute("data-state", "connected")
    expect(message).to_have_attribute("data-phase", "ok")
    expect(message).to_contain_text("Signed in as alice")
    expect(page.get_by_test_id("conn-user")).to_have_text("alice")
    expect(page.get_by_test_id("top-auth")).to_be_hidden()
    expect(page.get_by_test_id("auth-token")).to_have_value("")  # not left in the field
    # Remembered for this tab only.
    assert page.evaluate("() => sessionStorage.getItem('tidewire.token')") == jwt
    assert page.evaluate("() => localStorage.length") == 0
    wait_until(page, "window.tidewire.client.messagesReceived > 50")

    # The subscription manager: every stream subscribed; portfolio data of PF-ALPHA only.
    page.get_by_test_id("tab-subscriptions").click()
    expect(page.get_by_test_id("sub-rows").locator("tr")).to_have_count(12)
    for stream in ("order_updates", "position_updates", "performance_updates"):
        row = page.locator(f"tr[data-id='dash-{stream}']")
        expect(row.locator("[data-c=state]")).to_have_text("live")
        wait_until(
            page,
            f"window.tidewire.client.subscriptions.get('dash-{stream}').messagesReceived >= 3",
        )
        expect(row.locator("[data-c=keys]")).to_have_text("PF-ALPHA")
    # Published in this order on one stream: once the second shows, the first would have.
    live.publish(alert("PF-BETA", "beta breach"), alert("PF-ALPHA", "alpha breach"))
    page.get_by_test_id("tab-streaming").click()
    page.get_by_test_id("stream-tab-risk_alerts").click()
    feed = page.get_by_test_id("feed-risk_alerts")
    expect(feed).to_contain_text("alpha breach")
    expect(feed).not_to_contain_text("beta breach")
    rows = page.get_by_test_id("rows-order_updates")
    page.get_by_test_id("stream-tab-order_updates").click()
    expect(rows.locator("tr").first).to_be_visible()
    assert "PF-BETA" not in rows.inner_text() and "PF-GAMMA" not in rows.inner_text()

    # A reload connects with the remembered token, nothing typed.
    page.reload()
    expect(status).to_have_attribute("data-state", "connected")
    page.get_by_test_id("tab-connection").click()
    expect(page.get_by_test_id("conn-user")).to_have_text("alice")


def test_a_refused_token_is_said_so(browser_page: Page, live_gateway: LiveFactory) -> None:
    live = secure_gateway(live_gateway)
    page = browser_page
    page.goto(live.url)
    message = page.get_by_test_id("auth-message")
    use_token(page, token("alice", key=OTHER_KEY))
    expect(message).to_have_attribute("data-phase", "refused")
    expect(message).to_contain_text("Token refused: token signature does not verify")
    expect(page.get_by_test_id("top-auth")).to_have_text("token refused")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "disconnected")
    assert page.evaluate("() => sessionStorage.getItem('tidewire.token')") is None

    # Something that is not a JWT at all is refused as well, without a page error.
    use_token(page, "not a token")
    expect(message).to_have_attribute("data-phase", "refused")


def test_expiry_closes_with_4001_and_a_new_token_reconnects(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = secure_gateway(live_gateway)
    page = browser_page
    page.goto(live.url)
    status = page.get_by_test_id("status")
    message = page.get_by_test_id("auth-message")
    use_token(page, token("alice", ttl=4))
    expect(status).to_have_attribute("data-state", "connected")
    # Less than a minute left: the page warns, then says it expired when the gateway closes.
    expect(message).to_have_attribute("data-phase", re.compile("expiring|expired"))
    expect(message).to_have_attribute("data-phase", "expired")
    expect(message).to_contain_text("Token expired (close 4001)")
    expect(status).to_have_attribute("data-state", "closed")
    expect(page.get_by_test_id("conn-close")).to_have_text("4001")
    expect(page.get_by_test_id("top-auth")).to_have_text("token expired")

    use_token(page, token("alice"))
    expect(status).to_have_attribute("data-state", "connected")
    expect(message).to_have_attribute("data-phase", "ok")
    # The dashboard's subscriptions, ended with the closed client, are made again.
    page.get_by_test_id("tab-subscriptions").click()
    expect(page.get_by_test_id("sub-rows").locator("tr")).to_have_count(12)
    expect(page.locator("tr[data-id='dash-market_data'] [data-c=state]")).to_have_text("live")


def test_a_handshake_refused_while_reconnecting_is_reported(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = secure_gateway(live_gateway)
    page = browser_page
    page.goto(live.url)
    status = page.get_by_test_id("status")
    use_token(page, token("alice", ttl=3))
    expect(status).to_have_attribute("data-state", "connected")
    expires = page.evaluate("() => window.tidewire.client.tokenExpiresAt")
    live.stop()
    expect(status).to_have_attribute("data-state", "reconnecting")
    # The gateway comes back once the token has expired: its handshake gets 401, which a
    # browser only sees as a failed connection; the dashboard asks the control plane why.
    wait_until(page, f"Date.now() > {expires}")
    live.restart()
    message = page.get_by_test_id("auth-message")
    expect(message).to_have_attribute("data-phase", "expired")
    expect(message).to_contain_text("Token expired")
    expect(status).to_have_attribute("data-state", "closed")


def test_a_new_token_while_connected_is_a_refresh_never_shown(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = secure_gateway(live_gateway)
    page = browser_page
    page.goto(live.url)
    first, second = token("alice"), token("alice", ttl=7200)
    use_token(page, first)
    message = page.get_by_test_id("auth-message")
    expect(message).to_have_attribute("data-phase", "ok")
    before = page.evaluate("() => window.tidewire.client.tokenExpiresAt")
    use_token(page, second)
    expect(message).to_contain_text("Token renewed as alice")
    wait_until(page, f"window.tidewire.client.tokenExpiresAt > {before}")
    assert page.evaluate("() => window.tidewire.client.connectionId") is not None

    # The protocol viewer shows the refresh frame with its token masked.
    page.get_by_test_id("tab-viewer").click()
    page.get_by_test_id("viewer-type").select_option("refresh")
    row = page.get_by_test_id("viewer-rows").locator("tr").first
    expect(row).to_contain_text("refresh")
    row.click()
    detail = page.get_by_test_id("viewer-detail")
    expect(detail).to_contain_text('token: "***"')
    page.get_by_test_id("tab-connection").click()
    expect(page.get_by_test_id("conn-log")).to_contain_text("auth")
    html = page.content()
    assert first not in html and second not in html

    # A token of another user cannot be a refresh: the dashboard reconnects with it.
    use_token(page, token("bob", portfolios=["PF-BETA"]))
    expect(page.get_by_test_id("conn-user")).to_have_text("bob")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    expect(message).to_contain_text("as bob")
