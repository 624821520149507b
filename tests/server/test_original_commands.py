"""The commands, dialects and paths of the original hooks, against a real gateway.

event_types subscriptions, topics with a key suffix, update_subscription / update_filters,
get_snapshot, sync, get_trade_history, the order-book stubs, blank filters, unsubscribe by
the client's id, the control-message fields the original client reads, and the per-topic
WebSocket paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from messages import order, position, quote, trade
from support import TIMEOUT, WsClient
from tidewire.server.app import Gateway
from tokens import SECURE, bearer, token

Connect = Callable[..., Awaitable[WsClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]


async def publish(gateway: Gateway, *raws: dict[str, Any]) -> None:
    for raw in raws:
        await gateway.publish(raw)


# --------------------------------------------------------------------------- control fields


async def test_connection_established_names_the_connection_and_user(
    gateway: Gateway, connect: Connect
) -> None:
    client = await connect(gateway, "/ws/realtime")
    assert client.welcome["connection_id"]
    assert client.welcome["user_id"] == "anonymous"


async def test_confirmation_carries_the_topic(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    plain = await client.subscribe("trade_update")  # singular alias
    assert (plain["stream"], plain["topic"]) == ("trade_updates", "trade_updates")
    suffixed = await client.request(
        {"action": "subscribe", "topic": "market_data.AAPL"}, "subscription_confirmed"
    )
    assert (suffixed["stream"], suffixed["topic"]) == ("market_data", "market_data.AAPL")
    assert suffixed["filters"] == {"symbols": ["AAPL"]}


@pytest.mark.parametrize("client_timestamp", [1733300000123, 1733300000123.25, "1733300000123"])
async def test_heartbeat_echoes_the_client_timestamp_as_sent(
    gateway: Gateway, connect: Connect, client_timestamp: Any
) -> None:
    client = await connect(gateway)
    reply = await client.request(
        {"type": "heartbeat", "client_timestamp": client_timestamp}, "heartbeat_response"
    )
    assert reply["client_timestamp"] == client_timestamp
    assert type(reply["client_timestamp"]) is type(client_timestamp)


async def test_sync_answers_with_the_server_clock(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    reply = await client.request(
        {"type": "sync", "client_timestamp": "t0", "message_id": "s1"}, "sync_response"
    )
    assert reply["correlation_id"] == "s1" and reply["client_timestamp"] == "t0"
    assert isinstance(reply["server_time"], float) and reply["server_time"] > 1.7e12
    assert reply["server_timestamp"].endswith("Z")


# --------------------------------------------------------------------------- subscribe forms


async def test_a_topic_with_a_symbol_subscribes_to_that_symbol(
    gateway: Gateway, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.request(
        {"type": "subscribe", "topic": "market_data.AAPL", "snapshot": False},
        "subscription_confirmed",
    )
    await publish(gateway, quote("MSFT"), quote("AAPL", bid=5.0))
    [received] = await client.data(1)
    assert (received["symbol"], received["data"]["bid_price"]) == ("AAPL", 5.0)
    assert await client.no_data(gateway) == []


async def test_event_types_subscribe_to_the_streams_of_those_events(
    gateway: Gateway, connect: Connect
) -> None:
    client = await connect(gateway)
    await client.send(
        {
            "type": "subscribe",
            "subscription_id": "trades",
            "event_types": ["trade_executed", "order_status", "position_update", "pnl_update"],
            "message_id": "m1",
        }
    )
    confirmed = [await client.recv_type("subscription_confirmed") for _ in range(4)]
    assert [c["subscription_id"] for c in confirmed] == [
        "trades.trade_updates",
        "trades.order_updates",
        "trades.position_updates",
        "trades.performance_updates",
    ]
    assert all(c["correlation_id"] == "m1" for c in confirmed)
    await publish(gateway, trade("PF-1", user="u1"), order("PF-1", 1))
    assert sorted(m["type"] for m in await client.data(2)) == ["order_update", "trade_updates"]
    # The id the client sent ends the whole group.
    reply = await client.request(
        {"type": "unsubscribe", "subscription_id": "trades"}, "unsubscription_confirmed"
    )
    assert len(reply["subscription_ids"]) == 4
    listing = await client.request({"type": "list_subscriptions"}, "subscriptions")
    assert listing["subscriptions"] == []


async def test_event_types_are_all_or_nothing(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    reply = await client.request(
        {"type": "subscribe", "event_types": ["trade_executed", "weather"]},
        "subscription_error",
    )
    assert reply["error_code"] == "unknown_stream"
    listing = await client.request({"type": "list_subscriptions"}, "subscriptions")
    assert listing["subscriptions"] == []


async def test_blank_filter_lists_mean_no_filter(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    reply = await client.request(
        {
            "type": "subscribe",
            "message_type": "trade_updates",
            "subscription_id": "form-1",
            "filters": {"symbols": [], "portfolio_ids": [], "strategy_ids": [], "user_id": ""},
            "version": "2.0",
        },
        "subscription_confirmed",
    )
    assert reply["filters"] == {}
    await publish(gateway, trade("PF-1"), trade(user="u2"))
    assert len(await client.data(2)) == 2
    # unsubscribe with the id the client sent
    done = await client.request(
        {"type": "unsubscribe", "subscription_id": "form-1"}, "unsubscription_confirmed"
    )
    assert done["subscription_ids"] == ["form-1"]


@pytest.mark.parametrize("command", ["subscribe_order_book", "unsubscribe_order_book"])
async def test_order_books_are_not_there_yet(
    gateway: Gateway, connect: Connect, command: str
) -> None:
    client = await connect(gateway)
    reply = await client.request(
        {"type": command, "symbol": "BTC-USD", "venue": "X", "message_id": "ob"},
        "subscription_error",
        "error",
    )
    assert reply["error_code"] == "unknown_stream"
    assert "order books" in reply["error_message"]
    assert reply["correlation_id"] == "ob"
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


# --------------------------------------------------------------------------- update_subscription


@pytest.mark.parametrize("command_type", ["update_subscription", "update_filters"])
async def test_update_changes_filters_without_a_gap_or_a_duplicate(
    gateway: Gateway, connect: Connect, command_type: str
) -> None:
    client = await connect(gateway)
    await client.subscribe("order_updates", subscription_id="o", filters={"symbols": ["AAPL"]})
    await publish(gateway, order("PF-1", 1, symbol="AAPL"), order("PF-1", 2, symbol="MSFT"))
    reply = await client.request(
        {"type": command_type, "subscription_id": "o", "filters": {"symbols": ["MSFT"]}},
        "subscription_confirmed",
    )
    assert reply["updated"] is True and reply["filters"] == {"symbols": ["MSFT"]}
    await publish(gateway, order("PF-1", 3, symbol="AAPL"), order("PF-1", 4, symbol="MSFT"))
    received = [m["order_id"] for m in client.received if m.get("type") == "order_update"]
    received += [m["order_id"] for m in await client.data(1)]
    assert received == ["O-1", "O-4"]
    assert await client.no_data(gateway) == []


async def test_widening_a_latest_value_subscription_sends_the_new_keys_latest_values(
    gateway: Gateway, connect: Connect
) -> None:
    await publish(gateway, quote("AAPL", bid=1.0), quote("MSFT", bid=2.0), quote("GOOG", bid=3.0))
    client = await connect(gateway)
    await client.subscribe("market_data", subscription_id="q", filters={"symbols": ["AAPL"]})
    [snapshot] = await client.data(1)
    assert snapshot["symbol"] == "AAPL"
    await client.request(
        {
            "type": "update_subscription",
            "subscription_id": "q",
            "filters": {"symbols": ["AAPL", "MSFT"]},
        },
        "subscription_confirmed",
    )
    [new_key] = await client.data(1)
    assert (new_key["symbol"], new_key["data"]["bid_price"]) == ("MSFT", 2.0)
    assert await client.no_data(gateway) == []  # AAPL is not sent again
    await publish(gateway, quote("GOOG", bid=4.0), quote("AAPL", bid=5.0))
    assert [m["symbol"] for m in await client.data(1)] == ["AAPL"]


async def test_update_sets_and_removes_a_rate_limit(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway)
    await client.subscribe("market_data", subscription_id="q", snapshot=False)
    limited = await client.request(
        {"type": "update_subscription", "subscription_id": "q", "rate_limit": 2},
        "subscription_confirmed",
    )
    assert limited["rate_limit"] == 2
    removed = await client.request(
        {"type": "update_subscription", "subscription_id": "q", "rate_limit": 0},
        "subscription_confirmed",
    )
    assert "rate_limit" not in removed
    await publish(gateway, *(quote("AAPL", bid=float(i)) for i in range(5)))
    assert [m["data"]["bid_price"] for m in await client.data(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"subscription_id": "nope"}, "not_found"),
        ({"subscription_id": "o", "rate_limit": 5}, "invalid_rate_limit"),
        ({"subscription_id": "o", "filters": {"severity": "high"}}, "invalid_filter"),
    ],
)
async def test_a_bad_update_changes_nothing(
    gateway: Gateway, connect: Connect, request_fields: dict[str, Any], code: str
) -> None:
    client = await connect(gateway)
    await client.subscribe("order_updates", subscription_id="o", filters={"symbols": ["AAPL"]})
    reply = await client.request({"type": "update_subscription", **request_fields}, "error")
    assert reply["error_code"] == code
    await publish(gateway, order("PF-1", 1, symbol="MSFT"), order("PF-1", 2, symbol="AAPL"))
    assert [m["order_id"] for m in await client.data(1)] == ["O-2"]


# --------------------------------------------------------------------------- one-shot queries


async def test_get_snapshot_answers_the_latest_values_for_the_filters(
    gateway: Gateway, connect: Connect
) -> None:
    await publish(
        gateway,
        quote("AAPL", bid=1.0),
        quote("AAPL", bid=1.5),
        quote("MSFT", bid=2.0),
        quote("GOOG", bid=3.0),
    )
    client = await connect(gateway)
    reply = await client.request(
        {"type": "get_snapshot", "stream": "market_data", "filters": {"symbols": ["AAPL", "MSFT"]}},
        "snapshot",
    )
    assert [(m["symbol"], m["data"]["bid_price"]) for m in reply["messages"]] == [
        ("AAPL", 1.5),
        ("MSFT", 2.0),
    ]
    assert reply["position"]["seq"] == 4 and "truncated" not in reply  # false: omitted
    topic = await client.request({"type": "get_snapshot", "topic": "market_data.GOOG"}, "snapshot")
    assert [m["symbol"] for m in topic["messages"]] == ["GOOG"]
    assert topic["topic"] == "market_data.GOOG"
    assert await client.no_data(gateway) == []  # a query subscribes to nothing


async def test_get_snapshot_is_bounded_and_refuses_streams_without_latest_values(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(max_query_messages=2)
    await publish(gateway, *(quote(f"S{i}") for i in range(5)))
    client = await connect(gateway)
    reply = await client.request({"type": "get_snapshot", "stream": "market_data"}, "snapshot")
    assert [m["symbol"] for m in reply["messages"]] == ["S3", "S4"]  # the newest
    assert reply["truncated"] is True
    error = await client.request({"type": "get_snapshot", "stream": "trade_updates"}, "error")
    assert error["error_code"] == "invalid_message"
    assert "get_trade_history" in error["error_message"]


async def test_get_trade_history_returns_recent_trades(gateway: Gateway, connect: Connect) -> None:
    await publish(gateway, *(trade("PF-1", n=n) for n in range(1, 6)), trade("PF-2", n=9))
    client = await connect(gateway)
    reply = await client.request(
        {"type": "get_trade_history", "filters": {"portfolio_ids": ["PF-1"]}, "limit": 3},
        "trade_history",
    )
    assert [m["data"]["trade_id"] for m in reply["trades"]] == ["T-3", "T-4", "T-5"]
    assert reply["position"]["seq"] == 6


async def test_queries_never_show_another_tenants_data(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    await publish(
        gateway,
        trade("PF-A", n=1),
        trade("PF-B", n=2),
        trade(user="alice", n=3),
        trade(user="bob", n=4),
        position("PF-A", "AAPL", 1),
        position("PF-B", "AAPL", 2),
    )
    alice = await connect(gateway, token=token("alice", portfolios=["PF-A"]))
    trades = await alice.request({"type": "get_trade_history"}, "trade_history")
    assert [m["data"]["trade_id"] for m in trades["trades"]] == ["T-1", "T-3"]
    positions = await alice.request(
        {"type": "get_snapshot", "stream": "position_updates"}, "snapshot"
    )
    assert [m["portfolio_id"] for m in positions["messages"]] == ["PF-A"]
    foreign = await alice.request(
        {
            "type": "get_snapshot",
            "stream": "position_updates",
            "filters": {"portfolio_ids": ["PF-B"]},
        },
        "error",
    )
    assert foreign["error_code"] == "forbidden"


async def test_user_addressed_trades_reach_their_user_only(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    alice = await connect(gateway, token=token("alice", portfolios=["PF-A"]))
    bob = await connect(gateway, token=token("bob", portfolios=["PF-B"]))
    for client in (alice, bob):
        confirmed = await client.subscribe("trade_updates")
        assert confirmed["type"] == "subscription_confirmed", confirmed
    await publish(gateway, trade(user="bob", n=1), trade(user="alice", n=2), trade("PF-A", n=3))
    assert [m["data"]["trade_id"] for m in await alice.data(2)] == ["T-2", "T-3"]
    assert [m["data"]["trade_id"] for m in await bob.data(1)] == ["T-1"]
    assert await bob.no_data(gateway) == []


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "subscriptions"),
    [
        ("/ws/system/health", ["system_health"]),
        ("/ws/trades/updates", ["trade_updates"]),
        (
            "/ws/messagebus",
            [
                "order_updates",
                "trade_updates",
                "position_updates",
                "performance_updates",
                "risk_alerts",
                "engine_status",
                "events",
            ],
        ),
        ("/api/v1/ws/market-data/AAPL", ["market_data.AAPL"]),
        ("/api/v1/ws/market-data/EUR%2FUSD", ["market_data.EUR/USD"]),
        ("/ws/realtime", []),
    ],
)
async def test_per_topic_paths_open_subscribed(
    gateway: Gateway, connect: Connect, path: str, subscriptions: list[str]
) -> None:
    client = await connect(gateway, path)
    confirmed = [
        (await client.recv_type("subscription_confirmed"))["subscription_id"] for _ in subscriptions
    ]
    # Streams with a snapshot confirm once it is fetched: in any order.
    assert sorted(confirmed) == sorted(subscriptions)
    listing = await client.request({"type": "list_subscriptions"}, "subscriptions")
    assert [s["subscription_id"] for s in listing["subscriptions"]] == subscriptions


async def test_the_market_data_path_delivers_its_symbol(gateway: Gateway, connect: Connect) -> None:
    await publish(gateway, quote("AAPL", bid=1.0))
    client = await connect(gateway, "/api/v1/ws/market-data/AAPL")
    [snapshot] = await client.data(1)
    assert snapshot["symbol"] == "AAPL"
    await publish(gateway, quote("MSFT"), quote("AAPL", bid=2.0))
    assert [m["data"]["bid_price"] for m in await client.data(1)] == [2.0]


async def test_trades_path_subscribes_after_auth(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    client = await connect(gateway, "/ws/trades/updates")
    assert client.welcome["auth_required"] is True
    await client.send({"type": "auth", "token": token("alice", portfolios=["PF-A"])})
    await client.recv_type("auth_ok")
    confirmed = await client.recv_type("subscription_confirmed")
    assert confirmed["subscription_id"] == "trade_updates"
    await publish(gateway, trade("PF-B", n=1), trade("PF-A", n=2))
    assert [m["data"]["trade_id"] for m in await client.data(1)] == ["T-2"]


@pytest.mark.parametrize(
    "path", ["/ws/trades", "/api/v1/ws/market-data/", "/api/v1/ws/market-data/A/B"]
)
async def test_other_paths_are_not_found(gateway: Gateway, path: str) -> None:
    with pytest.raises(Exception) as caught:
        await ws_connect(f"ws://127.0.0.1:{gateway.port}{path}", open_timeout=TIMEOUT)
    assert "404" in str(caught.value)


async def test_event_types_count_against_the_users_subscription_limit(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE, max_subscriptions_per_user=3)
    alice = await connect(gateway, token=token("alice", portfolios=["PF-A"]))
    reply = await alice.request(
        {"type": "subscribe", "event_types": ["trade_executed", "order_status"]}
        | {"subscription_id": "g1"},
        "subscription_confirmed",
    )
    assert reply["subscription_id"] == "g1.trade_updates"
    await alice.recv_type("subscription_confirmed")
    refused = await alice.request(
        {"type": "subscribe", "event_types": ["position_update", "pnl_update"]},
        "subscription_error",
    )
    assert refused["error_code"] == "too_many_subscriptions"
    listing = await alice.request({"type": "list_subscriptions"}, "subscriptions")
    assert len(listing["subscriptions"]) == 2


async def test_a_rest_refusal_names_the_request_item(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    gateway = await make_gateway(**SECURE)
    feed = token("feed", portfolios=["PF-A"], roles=["publisher"])
    old_metrics = {
        "type": "risk_metrics",
        "portfolio_id": "PF-A",
        "data": {"var_95": 1.0, "exposure": 2.0, "leverage": 3.0},
    }
    foreign = {**old_metrics, "portfolio_id": "PF-B"}
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        response = await http.post(
            "/api/publish", json=[old_metrics, foreign], headers=bearer(feed)
        )
    assert response.status_code == 403
    assert response.json()["details"]["index"] == 1  # the second item, not its fourth message
