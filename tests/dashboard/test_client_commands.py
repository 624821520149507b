"""The JavaScript client's newer commands against a real gateway, in Chromium.

`updateSubscription` switches filters in place (the latest values of new keys follow, on a
latest-value stream and on position_updates), `getSnapshot` and `getTradeHistory` answer
correlated requests, `sync` measures the clock, topics subscribe by their key, and the
control messages carry `topic`, `updated`, `user_id` and a numeric `client_timestamp`.

The page is the dashboard (same origin and Content-Security-Policy as any page serving the
client); each test makes a client of its own there, `window.t.client`.
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

# A client of the test's own beside the dashboard's: no batching, no heartbeats (the test
# sends one), every frame it receives kept in `t.frames`.
START = """async () => {
  const { TidewireClient } = await import("/tidewire-client.js");
  const config = await (await fetch("/api/config")).json();
  const client = new TidewireClient(config.ws_url, {
    heartbeatInterval: null, requestTimeout: 10000,
  });
  const frames = [];
  client.on("frame", (f) => { if (f.direction === "in" && f.message) frames.push(f.message); });
  await client.connect({ timeout: 10000 });
  window.t = { client, frames, got: [], resyncs: 0 };
  return frames.find((f) => f.type === "connection_established");
}"""

# Subscribe, recording each message delivered as "<symbol>:<seq>" (resync markers counted).
SUBSCRIBE = """async ([stream, filters]) => {
  const sub = await window.t.client.subscribe(stream, {
    filters,
    onMessage: (m) => (m.type === "resync"
      ? window.t.resyncs++
      : window.t.got.push(`${m.symbol}:${m.seq}`)),
  });
  window.t.sub = sub;
  return { id: sub.subscriptionId, stream: sub.stream, topic: sub.topic, filters: sub.filters };
}"""

UPDATE = """async (change) => {
  const sub = await window.t.client.updateSubscription(window.t.sub.subscriptionId, change);
  const reply = window.t.frames.filter((f) => f.type === "subscription_confirmed").at(-1);
  return { same: sub === window.t.sub, filters: sub.filters, rateLimit: sub.rateLimit,
           confirmations: sub.confirmations, updates: sub.updates, reply };
}"""


def quote(symbol: str, bid: float) -> dict[str, Any]:
    return {
        "type": "market_data",
        "symbol": symbol,
        "venue": "XNAS",
        "data_type": "quote",
        "data": {"bid_price": bid, "ask_price": bid + 0.1},
    }


def position(symbol: str, quantity: float) -> dict[str, Any]:
    return {
        "type": "position_update",
        "portfolio_id": "PF-A",
        "symbol": symbol,
        "data": {"quantity": quantity, "avg_price": 10.0, "unrealized_pnl": 0.0},
    }


def trade(n: int, symbol: str, remaining: float) -> dict[str, Any]:
    return {
        "type": "trade_updates",
        "user_id": "trader-1",
        "data": {
            "trade_id": f"T-{n}",
            "order_id": f"O-{n}",
            "symbol": symbol,
            "side": "buy",
            "quantity": 10,
            "price": 100.0 + n,
            "remaining_quantity": remaining,
        },
    }


def start(page: Page, live: Any) -> dict[str, Any]:
    page.goto(live.url + "?panel=viewer")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    established: dict[str, Any] = page.evaluate(START)
    return established


def got(page: Page) -> list[str]:
    value: list[str] = page.evaluate("() => [...window.t.got]")
    return value


def wait_for_delivery(page: Page, item: str) -> None:
    """Until the subscription delivered `item` ("<symbol>:<seq>"); as a function (CSP)."""
    page.wait_for_function("(item) => window.t.got.includes(item)", arg=item)


def wait_for_count(page: Page, count: int) -> None:
    page.wait_for_function("(n) => window.t.got.length >= n", arg=count)


def test_update_subscription_switches_filters_in_place(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = live_gateway()
    page = browser_page
    established = start(page, live)
    assert established["user_id"] == "anonymous"  # authentication is off
    live.publish(quote("MSFT", 200.0), quote("AAPL", 100.0))  # seq 1, 2

    sub = page.evaluate(SUBSCRIBE, ["market_data", {"symbols": ["AAPL"]}])
    assert sub["topic"] == "market_data"
    wait_for_delivery(page, "AAPL:2")

    updated = page.evaluate(UPDATE, {"filters": {"symbols": ["AAPL", "MSFT"]}})
    assert updated["same"] and updated["updates"] == 1 and updated["confirmations"] == 1
    assert updated["filters"] == {"symbols": ["AAPL", "MSFT"]}
    assert updated["reply"]["updated"] is True
    assert updated["reply"]["topic"] == "market_data"
    wait_for_delivery(page, "MSFT:1")  # the new key's latest value, older than AAPL:2
    live.publish(quote("AAPL", 101.0), quote("MSFT", 201.0))  # seq 3, 4
    wait_for_delivery(page, "MSFT:4")
    assert got(page) == ["AAPL:2", "MSFT:1", "AAPL:3", "MSFT:4"]

    # Narrower, with a rate limit: AAPL no longer comes.
    narrowed = page.evaluate(UPDATE, {"filters": {"symbols": ["MSFT"]}, "rateLimit": 5})
    assert narrowed["filters"] == {"symbols": ["MSFT"]} and narrowed["rateLimit"] == 5
    assert narrowed["reply"]["rate_limit"] == 5
    live.publish(quote("AAPL", 102.0), quote("MSFT", 202.0))  # seq 5, 6
    wait_for_delivery(page, "MSFT:6")
    assert "AAPL:5" not in got(page)
    # Filters removed ({}), rate limit removed (null -> 0 on the wire).
    cleared = page.evaluate(UPDATE, {"filters": {}, "rateLimit": None})
    assert cleared["filters"] == {} and cleared["rateLimit"] is None
    assert page.evaluate("() => window.t.resyncs") == 0


def test_update_on_positions_delivers_the_new_keys_latest_values(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    """position_updates is reliable with last values: the new key's latest value is older
    than what the subscription delivered, and arrives once."""
    live = live_gateway()
    page = browser_page
    start(page, live)
    live.publish(position("MSFT", 5), position("AAPL", 7))  # seq 1, 2
    page.evaluate(SUBSCRIBE, ["position_updates", {"symbols": ["AAPL"]}])
    wait_for_delivery(page, "AAPL:2")

    updated = page.evaluate(UPDATE, {"filters": {"symbols": ["AAPL", "MSFT"]}})
    assert updated["reply"]["updated"] is True
    wait_for_delivery(page, "MSFT:1")
    live.publish(position("AAPL", 8))  # seq 3
    wait_for_delivery(page, "AAPL:3")
    assert got(page) == ["AAPL:2", "MSFT:1", "AAPL:3"]
    # A refused update (a filter the stream does not take) leaves the subscription going.
    refused = page.evaluate(
        """async () => {
          const sub = window.t.sub;
          try {
            const filters = { severity: "high" };
            await window.t.client.updateSubscription(sub.subscriptionId, { filters });
          } catch (e) {
            return { code: e.errorCode, active: sub.active, filters: sub.filters };
          }
        }"""
    )
    assert refused["code"] == "invalid_filter" and refused["active"] is True
    assert refused["filters"] == {"symbols": ["AAPL", "MSFT"]}
    assert page.evaluate("() => window.t.resyncs") == 0


def test_topic_subscription_routes_by_its_key(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    live = live_gateway()
    page = browser_page
    start(page, live)
    sub = page.evaluate(SUBSCRIBE, ["market_data.AAPL", {}])
    assert sub["stream"] == "market_data" and sub["filters"] == {"symbols": ["AAPL"]}
    confirmed = page.evaluate(
        "() => window.t.frames.find((f) => f.type === 'subscription_confirmed')"
    )
    assert confirmed["topic"] == "market_data.AAPL"
    assert page.evaluate("() => window.t.sub.topic") == "market_data.AAPL"
    live.publish(quote("MSFT", 1.0), quote("AAPL", 2.0))  # seq 1, 2
    wait_for_delivery(page, "AAPL:2")
    assert got(page) == ["AAPL:2"]


def test_get_snapshot_and_trade_history(browser_page: Page, live_gateway: LiveFactory) -> None:
    live = live_gateway()
    page = browser_page
    start(page, live)
    bar = {
        "type": "market_data",
        "symbol": "AAPL",
        "data": {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0},
    }
    live.publish(quote("AAPL", 100.0), quote("MSFT", 200.0), bar, quote("AAPL", 100.5))

    snapshot = page.evaluate(
        "async () => window.t.client.getSnapshot('market_data', { symbols: ['AAPL'], venue: '' })"
    )
    # One message per snapshot unit (symbol and data_type), in seq order.
    assert [(m["data_type"], m["seq"]) for m in snapshot["messages"]] == [("bar", 3), ("quote", 4)]
    assert snapshot["stream"] == "market_data" and snapshot["truncated"] is False
    assert snapshot["position"]["seq"] == 4
    limited = page.evaluate("async () => window.t.client.getSnapshot('quotes', null, { limit: 1 })")
    assert len(limited["messages"]) == 1 and limited["truncated"] is True
    topic = page.evaluate("async () => window.t.client.getSnapshot('market_data.MSFT')")
    assert topic["topic"] == "market_data.MSFT"
    assert [m["symbol"] for m in topic["messages"]] == ["MSFT"]

    live.publish(trade(1, "AAPL", 0), trade(2, "MSFT", 0), trade(3, "AAPL", 5), trade(4, "AAPL", 0))
    history = page.evaluate(
        "async () => window.t.client.getTradeHistory({ symbols: ['AAPL'] }, { limit: 2 })"
    )
    trades = history["trades"]
    assert [t["data"]["trade_id"] for t in trades] == ["T-3", "T-4"]  # the newest, oldest first
    assert [t["data"]["status"] for t in trades] == ["partial", "filled"]
    assert {t["user_id"] for t in trades} == {"trader-1"}
    assert {t["key"] for t in trades} == {"trader-1"}  # keyed by the user: no portfolio
    assert history["position"]["seq"] == 4
    # Replies, not data: nothing was routed to a subscription.
    assert page.evaluate("() => window.t.client.subscriptions.size") == 0


def test_sync_and_heartbeat_echo_numbers(browser_page: Page, live_gateway: LiveFactory) -> None:
    live = live_gateway()
    page = browser_page
    start(page, live)
    clock = page.evaluate("async () => window.t.client.sync()")
    assert clock["rttMs"] >= 0
    # One machine, one clock: the gateway read it within the round trip.
    assert abs(clock["offsetMs"]) <= clock["rttMs"] / 2 + 5
    response = page.evaluate("() => window.t.frames.find((f) => f.type === 'sync_response')")
    assert isinstance(response["client_timestamp"], int | float)
    assert isinstance(response["server_time"], int | float)
    page.evaluate("async () => window.t.client.ping()")
    echoed = page.evaluate(
        "() => window.t.frames.find((f) => f.type === 'heartbeat_response').client_timestamp"
    )
    assert isinstance(echoed, int | float) and not isinstance(echoed, bool)


def test_concurrent_queries_wait_their_turn(browser_page: Page, live_gateway: LiveFactory) -> None:
    """The gateway answers one get_snapshot/get_trade_history at a time per connection
    (another in flight: `rate_limited`); the client sends them one after another."""
    live = live_gateway()
    page = browser_page
    start(page, live)
    live.publish(quote("AAPL", 100.0), quote("MSFT", 200.0), trade(1, "AAPL", 0))
    results = page.evaluate(
        """async () => {
          const c = window.t.client;
          const settled = await Promise.allSettled([
            c.getSnapshot('market_data', { symbols: ['AAPL'] }),
            c.getTradeHistory({ symbols: ['AAPL'] }),
            c.getSnapshot('market_data.MSFT'),
          ]);
          return settled.map((r) => r.status === 'fulfilled'
            ? { ok: true, value: r.value } : { ok: false, error: String(r.reason) });
        }"""
    )
    assert [r["ok"] for r in results] == [True, True, True], results
    assert [m["symbol"] for m in results[0]["value"]["messages"]] == ["AAPL"]
    assert [t["data"]["trade_id"] for t in results[1]["value"]["trades"]] == ["T-1"]
    assert [m["symbol"] for m in results[2]["value"]["messages"]] == ["MSFT"]
    errors = page.evaluate("() => window.t.frames.filter((f) => f.type === 'error')")
    assert errors == []


def test_update_while_disconnected_is_sent_behind_the_resubscription(
    browser_page: Page, live_gateway: LiveFactory
) -> None:
    """Offline, an update waits: the resubscription keeps the confirmed filters, the update
    follows it and resolves on its own confirmation; a widening one on position_updates then
    brings the new key's current value (older than `since`), a refused one changes nothing."""
    live = live_gateway()
    page = browser_page
    start(page, live)
    live.publish(position("MSFT", 5), position("AAPL", 7))  # seq 1, 2
    page.evaluate(SUBSCRIBE, ["position_updates", {"symbols": ["AAPL"]}])
    wait_for_delivery(page, "AAPL:2")

    offline = page.evaluate(
        """async () => {
          const { client, sub } = window.t;
          client.disconnect();
          let settled = false;
          const pending = client.updateSubscription(sub.subscriptionId,
                                                    { filters: { symbols: ["AAPL", "MSFT"] } });
          pending.then(() => (settled = true), () => (settled = true));
          await new Promise((r) => setTimeout(r, 50));
          const before = { settled, filters: sub.filters };
          await client.connect({ timeout: 10000 });
          const updated = await pending;
          return { before, same: updated === sub, filters: sub.filters, active: sub.active };
        }"""
    )
    assert offline["before"] == {"settled": False, "filters": {"symbols": ["AAPL"]}}
    assert offline["same"] and offline["active"]
    assert offline["filters"] == {"symbols": ["AAPL", "MSFT"]}
    wait_for_delivery(page, "MSFT:1")  # MSFT's current value, from before `since`
    live.publish(position("MSFT", 6))  # seq 3
    wait_for_delivery(page, "MSFT:3")
    assert got(page) == ["AAPL:2", "MSFT:1", "MSFT:3"]

    refused = page.evaluate(
        """async () => {
          const { client, sub } = window.t;
          client.disconnect();
          const pending = client.updateSubscription(sub.subscriptionId,
                                                    { filters: { severity: "high" } });
          await client.connect({ timeout: 10000 });
          try {
            await pending;
            return { code: null };
          } catch (e) {
            return { code: e.errorCode, active: sub.active, confirmed: sub.confirmed,
                     filters: sub.filters };
          }
        }"""
    )
    assert refused == {
        "code": "invalid_filter",
        "active": True,
        "confirmed": True,
        "filters": {"symbols": ["AAPL", "MSFT"]},
    }
    live.publish(position("AAPL", 9))  # seq 4: the subscription goes on
    wait_for_delivery(page, "AAPL:4")
    assert page.evaluate("() => window.t.resyncs") == 0
