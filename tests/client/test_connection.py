"""TidewireClient against the real gateway (`gateway` / `make_gateway` of tests/conftest.py).

Every wait is bounded by TIMEOUT and waits for an event (a state change, a reply, a message),
never for time to pass.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from messages import order
from tidewire.client import (
    AuthenticationError,
    ConnectionClosedError,
    ConnectionState,
    QueueFull,
    SubscriptionError,
    TidewireClient,
)
from tidewire.server.app import Gateway

TIMEOUT = 5.0
MakeGateway = Callable[..., Awaitable[Gateway]]
FAST: dict[str, Any] = {"reconnect_interval": 0.01, "max_reconnect_interval": 0.05}


def quote(symbol: str, bid: float = 100.0, ask: float = 100.1) -> dict[str, Any]:
    return {
        "type": "market_data",
        "symbol": symbol,
        "data_type": "quote",
        "data": {"bid_price": bid, "ask_price": ask},
    }


class StateLog:
    """Every state a client goes through, with a way to wait for one."""

    def __init__(self, client: TidewireClient) -> None:
        self.states: list[ConnectionState] = []
        self._changed = asyncio.Event()
        client.add_state_handler(self._on_change)

    def _on_change(self, previous: ConnectionState, current: ConnectionState) -> None:
        self.states.append(current)
        self._changed.set()

    async def reach(self, state: ConnectionState, *, after: int = 0) -> int:
        """Wait until `state` appears at or after index `after`; return its index."""
        async with asyncio.timeout(TIMEOUT):
            while state not in self.states[after:]:
                self._changed.clear()
                await self._changed.wait()
        return self.states.index(state, after)


class Inbox:
    """Messages of some types seen by a message handler, with a way to wait for them."""

    def __init__(self, client: TidewireClient, *types: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        for message_type in types:
            client.add_message_handler(message_type, self._on_message)

    def _on_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self._changed.set()

    async def wait(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[TidewireClient]:
    async with TidewireClient(gateway.url, heartbeat_interval=None, **FAST) as client:
        yield client


async def next_message(subscription: Any) -> dict[str, Any]:
    message: dict[str, Any] = await asyncio.wait_for(anext(subscription), TIMEOUT)
    return message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- connecting


async def test_connect_receives_connection_established(gateway: Gateway) -> None:
    client = TidewireClient(gateway.url, heartbeat_interval=None)
    log = StateLog(client)
    assert log.states == []
    assert not client.connected
    await client.connect(timeout=TIMEOUT)
    try:
        assert client.connection_state is ConnectionState.CONNECTED
        assert client.connected
        assert client.connection_id
        assert client.server_limits is not None
        assert client.server_limits["max_subscriptions"] == gateway.settings.max_subscriptions
        assert client.server_heartbeat_interval == gateway.settings.heartbeat_interval
        assert client.messages_received >= 1
        assert log.states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    finally:
        await client.close()
    assert client.connection_state is ConnectionState.CLOSED
    assert client.last_error is None
    assert log.states[-1] is ConnectionState.CLOSED


def test_a_new_client_is_disconnected() -> None:
    client = TidewireClient("ws://127.0.0.1:1/ws")
    assert client.connection_state is ConnectionState.DISCONNECTED
    assert client.message_latency is None
    assert client.connection_id is None
    assert client.reconnect_attempts == 0


async def test_subscribe_before_connect_is_sent_on_connect(gateway: Gateway) -> None:
    client = TidewireClient(gateway.url, heartbeat_interval=None)
    pending = asyncio.create_task(client.subscribe("market_data", subscription_id="early"))
    await client.connect(TIMEOUT)
    try:
        early = await asyncio.wait_for(pending, TIMEOUT)
        await gateway.publish(quote("AAPL"))
        assert (await next_message(early))["symbol"] == "AAPL"
    finally:
        await client.close()


async def test_async_with_connects_and_closes(gateway: Gateway) -> None:
    async with TidewireClient(gateway.url) as client:
        assert client.connected
        await client.wait_connected(TIMEOUT)
    assert client.connection_state is ConnectionState.CLOSED
    with pytest.raises(ConnectionClosedError):
        await client.send_message({"type": "list_subscriptions"})


async def test_message_handlers_are_called(gateway: Gateway) -> None:
    client = TidewireClient(gateway.url, heartbeat_interval=None)
    welcomes: list[dict[str, Any]] = []
    everything: list[str] = []
    done = asyncio.Event()

    async def on_any(message: dict[str, Any]) -> None:
        everything.append(message["type"])
        if message["type"] == "subscriptions":
            done.set()

    client.add_message_handler("connection_established", welcomes.append)
    client.add_message_handler("*", on_any)
    async with client:
        assert welcomes[0]["connection_id"] == client.connection_id
        client.remove_message_handler("connection_established", welcomes.append)
        await client.send_message({"type": "list_subscriptions", "message_id": "l1"})
        await asyncio.wait_for(done.wait(), TIMEOUT)
    assert everything[0] == "connection_established"
    assert "subscriptions" in everything
    assert len(welcomes) == 1


async def test_debug_logs_every_frame(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tidewire.client")
    async with TidewireClient(gateway.url, debug=True, heartbeat_interval=None) as client:
        await client.list_subscriptions()
    lines = [r.getMessage() for r in caplog.records if r.name == "tidewire.client"]
    assert any(line.startswith("recv {'type': 'connection_established'") for line in lines)
    assert any(line.startswith("send {'type': 'list_subscriptions'") for line in lines)
    assert any(line.startswith("recv {'type': 'subscriptions'") for line in lines)


# --------------------------------------------------------------------------- subscriptions


async def test_subscription_yields_only_its_symbols_in_seq_order(
    gateway: Gateway, client: TidewireClient
) -> None:
    quotes = await client.subscribe("market_data", filters={"symbols": ["AAPL", "MSFT"]})
    assert quotes.stream == "market_data"
    assert quotes.filters == {"symbols": ["AAPL", "MSFT"]}
    assert quotes.position is not None
    for n in range(3):
        for symbol in ("AAPL", "MSFT", "TSLA"):
            await gateway.publish(quote(symbol, bid=100.0 + n))
    # TSLA is published between the others: had it been delivered, it would be among these.
    received = [await next_message(quotes) for _ in range(6)]
    assert [m["symbol"] for m in received] == ["AAPL", "MSFT"] * 3
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert received[-1]["data"]["bid_price"] == 102.0
    assert quotes.messages_received == 6
    assert quotes.position is not None
    assert (quotes.position.epoch, quotes.position.seq) == (received[-1]["epoch"], seqs[-1])


async def test_subscriptions_of_one_stream_are_routed_by_their_filters(
    gateway: Gateway, client: TidewireClient
) -> None:
    aapl = await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
    cheap = await client.subscribe("market_data", filters={"max_price": 50})
    everything = await client.subscribe("quotes")  # an alias of market_data
    await gateway.publish(quote("AAPL", bid=10.0, ask=10.2))
    await gateway.publish(quote("MSFT", bid=300.0, ask=300.2))
    await gateway.publish(quote("AAPL", bid=200.0, ask=200.2))
    assert [m["data"]["bid_price"] for m in [await next_message(aapl) for _ in range(2)]] == [
        10,
        200,
    ]
    assert (await next_message(cheap))["symbol"] == "AAPL"
    all_three = [await next_message(everything) for _ in range(3)]
    assert [m["symbol"] for m in all_three] == ["AAPL", "MSFT", "AAPL"]
    assert cheap.pending == 0 and aapl.pending == 0


@pytest.mark.parametrize(
    ("stream", "filters", "code"),
    [
        ("no_such_stream", None, "unknown_stream"),
        ("market_data", {"severity": "high"}, "invalid_filter"),
        ("market_data", {"min_price": 10, "max_price": 1}, "invalid_filter"),
    ],
)
async def test_refused_subscribe_raises_subscription_error(
    client: TidewireClient, stream: str, filters: dict[str, Any] | None, code: str
) -> None:
    with pytest.raises(SubscriptionError) as caught:
        await client.subscribe(stream, filters=filters, subscription_id="bad")
    assert caught.value.error_code == code
    assert caught.value.error_message
    assert caught.value.subscription_id == "bad"
    assert client.subscriptions == {}
    assert await client.list_subscriptions() == []


async def test_rate_limit_on_a_reliable_stream_is_refused(client: TidewireClient) -> None:
    with pytest.raises(SubscriptionError) as caught:
        await client.subscribe("trade_updates", rate_limit=5)
    assert caught.value.error_code == "invalid_rate_limit"


async def test_unsubscribe_ends_the_iteration(gateway: Gateway, client: TidewireClient) -> None:
    routed = Inbox(client, "market_data")  # handlers run after routing to subscriptions
    quotes = await client.subscribe("market_data", subscription_id="q")
    assert [s["subscription_id"] for s in await client.list_subscriptions()] == ["q"]
    await gateway.publish(quote("AAPL"))
    await routed.wait(lambda m: True)

    async def consume() -> list[str]:
        return [message["symbol"] async for message in quotes]

    consumer = asyncio.create_task(consume())
    await quotes.unsubscribe()
    assert await asyncio.wait_for(consumer, TIMEOUT) == ["AAPL"]
    assert not quotes.active
    assert client.subscriptions == {}
    assert await client.list_subscriptions() == []
    with pytest.raises(KeyError):
        await client.unsubscribe("q")


async def test_close_ends_every_iteration(gateway: Gateway) -> None:
    client = TidewireClient(gateway.url, heartbeat_interval=None)
    await client.connect(TIMEOUT)
    quotes = await client.subscribe("market_data")
    consumer = asyncio.create_task(anext(quotes))
    await client.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(consumer, TIMEOUT)


# --------------------------------------------------------------------------- heartbeats


async def test_heartbeat_round_trip_sets_message_latency(gateway: Gateway) -> None:
    client = TidewireClient(gateway.url, heartbeat_interval=0.05)
    responses = Inbox(client, "heartbeat_response")
    async with client:
        assert client.message_latency is None or client.message_latency >= 0
        response = await responses.wait(lambda m: True)
        assert isinstance(response["client_timestamp"], int | float)
        assert client.message_latency is not None
        assert client.message_latency >= 0
        assert await client.ping() >= 0


async def test_heartbeat_positions_advance_the_subscription(
    gateway: Gateway, client: TidewireClient
) -> None:
    alerts = await client.subscribe("risk_alerts", filters={"portfolio_ids": ["P1"]})
    published = await gateway.publish(
        {
            "type": "risk_alert",
            "portfolio_id": "P2",  # does not match: only the position tells of it
            "severity": "high",
            "data": {"metric": "var", "current_value": 2, "threshold": 1, "timestamp": "t"},
        }
    )
    await client.ping()
    assert alerts.position is not None
    assert alerts.position.seq == published.message.seq
    assert alerts.pending == 0


# --------------------------------------------------------------------------- queueing


async def test_commands_sent_before_connecting_are_flushed_in_order(gateway: Gateway) -> None:
    client = TidewireClient(gateway.url, heartbeat_interval=None)
    replies = Inbox(client, "subscriptions", "heartbeat_response")
    await client.send_message({"type": "list_subscriptions", "message_id": "q1"})
    await client.send_message({"type": "heartbeat", "client_timestamp": 1, "message_id": "q2"})
    await client.send_message({"type": "list_subscriptions", "message_id": "q3"})
    assert client.queued_messages == 3
    async with client:
        await replies.wait(lambda m: m.get("correlation_id") == "q3")
        assert client.queued_messages == 0
    assert [m["correlation_id"] for m in replies.messages] == ["q1", "q2", "q3"]


async def test_full_queue_refuses_commands() -> None:
    client = TidewireClient(f"ws://127.0.0.1:{free_port()}/ws", message_queue_size=2)
    await client.send_message({"type": "list_subscriptions"})
    await client.send_message({"type": "list_subscriptions"})
    with pytest.raises(QueueFull):
        await client.send_message({"type": "list_subscriptions"})
    assert client.queued_messages == 2
    await client.close()


async def test_request_while_disconnected_times_out_and_leaves_the_queue() -> None:
    client = TidewireClient(f"ws://127.0.0.1:{free_port()}/ws")
    with pytest.raises(TimeoutError):
        await client.request({"type": "list_subscriptions"}, timeout=0.01)
    assert client.queued_messages == 0


# --------------------------------------------------------------------------- reconnecting


async def test_reconnects_after_a_gateway_restart_and_resumes_the_subscription(
    make_gateway: MakeGateway,
) -> None:
    first = await make_gateway()
    port = first.port
    client = TidewireClient(first.url, heartbeat_interval=None, **FAST)
    log = StateLog(client)
    confirmations = Inbox(client, "subscription_confirmed")
    replies = Inbox(client, "subscriptions")
    await client.connect(TIMEOUT)
    quotes = await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
    await first.publish(quote("AAPL", bid=1.0))
    before = await next_message(quotes)
    old_connection = client.connection_id

    await first.stop()  # closes every client with 1001 (going away)
    lost = await log.reach(ConnectionState.RECONNECTING)
    # Subscribed and queued while the gateway is down: sent with the resubscriptions, then
    # the queue is flushed.
    late = asyncio.create_task(client.subscribe("risk_alerts", subscription_id="late"))
    await client.send_message({"type": "list_subscriptions", "message_id": "after"})
    assert client.queued_messages == 1
    second = await make_gateway(port=port)
    back = await log.reach(ConnectionState.CONNECTED, after=lost)
    assert log.states[lost : back + 1] == [ConnectionState.RECONNECTING, ConnectionState.CONNECTED]
    assert client.close_code == 1001
    assert client.connection_id != old_connection
    assert client.reconnect_attempts == 0

    alerts = await asyncio.wait_for(late, TIMEOUT)
    assert alerts.stream == "risk_alerts"
    await confirmations.wait(lambda m: len(confirmations.messages) == 3)
    listed = await replies.wait(lambda m: m.get("correlation_id") == "after")
    listed_ids = [s["subscription_id"] for s in listed["subscriptions"]]
    assert listed_ids == [quotes.subscription_id, "late"]

    await second.publish(quote("MSFT", bid=3.0))
    await second.publish(quote("AAPL", bid=2.0))
    # The same iterator, across the reconnection: a new in-memory broker has a new epoch,
    # so the gateway could not recover; it says so at the place of the gap.
    resync = await next_message(quotes)
    assert (resync["type"], resync["reason"]) == ("resync", "not_recovered")
    assert resync["position"] == {"epoch": before["epoch"], "seq": before["seq"]}
    after = await next_message(quotes)
    assert (after["symbol"], after["data"]["bid_price"]) == ("AAPL", 2.0)
    assert after["epoch"] != before["epoch"]  # a new in-memory broker: a new history
    assert quotes.position is not None and quotes.position.epoch == after["epoch"]
    await client.close()


async def test_max_reconnect_attempts_then_closed() -> None:
    client = TidewireClient(f"ws://127.0.0.1:{free_port()}/ws", max_reconnect_attempts=3, **FAST)
    log = StateLog(client)
    with pytest.raises(ConnectionClosedError, match="3 reconnection attempt"):
        await client.connect(TIMEOUT)
    assert client.connection_state is ConnectionState.CLOSED
    assert client.reconnect_attempts == 3
    assert isinstance(client.last_error, ConnectionClosedError)
    assert client.last_error.code == 1006
    assert client.close_code is None  # no connection was ever established
    assert log.states == [
        ConnectionState.CONNECTING,
        ConnectionState.RECONNECTING,
        ConnectionState.CLOSED,
    ]


async def test_without_auto_reconnect_the_first_failure_closes() -> None:
    client = TidewireClient(f"ws://127.0.0.1:{free_port()}/ws", auto_reconnect=False)
    with pytest.raises(ConnectionClosedError, match="auto_reconnect"):
        await client.connect(TIMEOUT)
    assert client.reconnect_attempts == 0
    assert client.connection_state is ConnectionState.CLOSED


async def test_inbound_flood_4029_reconnects(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(max_inbound_per_second=1.0, inbound_burst=2)
    client = TidewireClient(gateway.url, heartbeat_interval=None, **FAST)
    log = StateLog(client)
    await client.connect(TIMEOUT)
    for n in range(5):
        await client.send_message({"type": "list_subscriptions", "message_id": f"f{n}"})
    lost = await log.reach(ConnectionState.RECONNECTING)
    await log.reach(ConnectionState.CONNECTED, after=lost)
    assert client.close_code == 4029
    await client.close()


async def test_too_big_1009_does_not_reconnect(make_gateway: MakeGateway) -> None:
    gateway = await make_gateway(max_frame_bytes=1024)
    client = TidewireClient(gateway.url, heartbeat_interval=None, **FAST)
    log = StateLog(client)
    await client.connect(TIMEOUT)
    await client.send_message({"type": "list_subscriptions", "padding": "x" * 4096})
    await log.reach(ConnectionState.CLOSED)
    assert client.close_code == 1009
    assert client.last_error is not None and client.last_error.code == 1009
    assert ConnectionState.RECONNECTING not in log.states


# --------------------------------------------------------------------------- close codes the
# gateway cannot produce yet (auth lands later): a stub that welcomes, then closes.


@pytest.fixture
async def closing_stub() -> AsyncIterator[Callable[[int], Awaitable[tuple[str, list[int]]]]]:
    servers: list[Any] = []

    async def start(code: int) -> tuple[str, list[int]]:
        connections: list[int] = []

        async def handler(ws: ServerConnection) -> None:
            connections.append(code)
            await ws.send('{"type":"connection_established","connection_id":"stub"}')
            await ws.close(code, "stub")

        server = await serve(handler, "127.0.0.1", 0, subprotocols=["tidewire.v3.json"])  # type: ignore[list-item]
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws", connections

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("code", "error"), [(4001, AuthenticationError), (4003, ConnectionClosedError)]
)
async def test_final_close_codes_close_the_client(
    closing_stub: Callable[[int], Awaitable[tuple[str, list[int]]]],
    code: int,
    error: type[Exception],
) -> None:
    url, connections = await closing_stub(code)
    client = TidewireClient(url, heartbeat_interval=None, **FAST)
    log = StateLog(client)
    await client.connect(TIMEOUT)
    await log.reach(ConnectionState.CLOSED)
    assert type(client.last_error) is error
    assert client.close_code == code
    assert connections == [code]  # never reconnected
    with pytest.raises(error):
        await client.wait_connected(TIMEOUT)


async def test_4008_slow_consumer_reconnects(
    closing_stub: Callable[[int], Awaitable[tuple[str, list[int]]]],
) -> None:
    url, connections = await closing_stub(4008)
    client = TidewireClient(url, heartbeat_interval=None, max_reconnect_attempts=1, **FAST)
    log = StateLog(client)
    await client.connect(TIMEOUT)
    # Every successful connection restarts the attempt count, so a limit of one attempt
    # lets the client come back after each 4008.
    index = 0
    for _ in range(2):
        index = await log.reach(ConnectionState.RECONNECTING, after=index)
        index = await log.reach(ConnectionState.CONNECTED, after=index)
    assert len(connections) >= 3
    assert client.close_code == 4008
    await client.close()
    assert client.last_error is None


# --------------------------------------------------------------------------- options


async def test_msgpack_subprotocol(gateway: Gateway) -> None:
    async with TidewireClient(
        gateway.url, subprotocol="tidewire.v3.msgpack", heartbeat_interval=0.05
    ) as client:
        quotes = await client.subscribe("market_data", filters={"symbols": ["AAPL"]})
        await gateway.publish(quote("AAPL", bid=7.5))
        message = await next_message(quotes)
        assert message["data"]["bid_price"] == 7.5
        assert await client.ping() >= 0


async def test_batch_and_decimal_options(gateway: Gateway) -> None:
    async with TidewireClient(
        gateway.url, batch_ms=5, decimals_as_strings=True, heartbeat_interval=None
    ) as client:
        quotes = await client.subscribe("market_data")
        for n in range(5):
            await gateway.publish(quote("AAPL", bid=float(n)))
        # With batch_ms the gateway sends every message, replies included, inside batch
        # frames, so getting here at all shows they are unpacked.
        received = [await next_message(quotes) for _ in range(5)]
        # float(): prices published as JSON numbers may still arrive as numbers.
        assert [float(m["data"]["bid_price"]) for m in received] == [0, 1, 2, 3, 4]


async def test_an_operator_close_reconnects_and_recovers(gateway: Gateway) -> None:
    """DELETE /api/connections/{id} closes with 4000: the SDK comes back and recovers; before,
    the gateway sent 1000, which the SDK took for the application's own close (final)."""
    client = TidewireClient(gateway.url, heartbeat_interval=None, **FAST)
    log = StateLog(client)
    await client.connect(TIMEOUT)
    orders = await client.subscribe("order_updates")
    await gateway.publish(order("PF-1", 1))
    first = await next_message(orders)
    old_connection = client.connection_id
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        response = await http.delete(f"/api/connections/{old_connection}")
    assert response.status_code == 204
    lost = await log.reach(ConnectionState.RECONNECTING)
    await log.reach(ConnectionState.CONNECTED, after=lost)
    assert client.close_code == 4000
    assert client.connection_id != old_connection
    await gateway.publish(order("PF-1", 2))
    second = await next_message(orders)
    assert second["seq"] == first["seq"] + 1, "recovered: nothing lost, nothing twice"
    await client.close()
