"""Several gateway nodes on one Redis: delivery across nodes, readiness, Redis faults.

Each `Gateway(broker_url=redis://...)` is one node; the Redis is a private redis-server of
the test (tests/redisproc.py). Faults are real: Redis stopped and started again (empty),
Redis holding writes (`CLIENT PAUSE WRITE`: it answers PING, but a publish or a probe
never comes back), and one node cut off from Redis while the others go on (a TCP proxy
between that node and Redis drops every connection and refuses new ones).

Waits are for conditions, bounded by timeouts; the only wall-clock wait is the length of
the outage in the cut-off test, where time is the fault itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis

from messages import order, quote
from redisproc import INSTALL_HINT, RedisProcess
from support import TIMEOUT, WsClient, require_tool
from tidewire.brokers.redis import RedisBroker
from tidewire.client import (
    ConnectionState,
    Subscription,
    TidewireClient,
    is_resync,
)
from tidewire.server.app import Gateway
from tokens import SECURE, bearer, token

pytestmark = pytest.mark.redis

MakeGateway = Callable[..., Awaitable[Gateway]]
Connect = Callable[..., Awaitable[WsClient]]
OUTAGE_SECONDS = 1.5
"""How long the cut-off node cannot reach Redis (the issue's fault is 10 s; the behaviour
does not depend on the length, the test time does)."""
POLL = 0.01


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess(require_tool("redis-server", INSTALL_HINT)) as server:
        yield server


@pytest.fixture
async def admin(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def nodes(
    redis_server: RedisProcess, make_gateway: MakeGateway
) -> Callable[..., Awaitable[Gateway]]:
    """`await nodes(**settings)`: a gateway node on the test's Redis (Redis is set up
    first, so it is stopped after the gateways)."""

    async def make(**settings: Any) -> Gateway:
        settings.setdefault("broker_url", redis_server.url)
        return await make_gateway(**settings)

    return make


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT
) -> None:
    """Wait until the asynchronous `condition` holds, checking every 10 ms."""
    try:
        async with asyncio.timeout(timeout):
            while not await condition():  # noqa: ASYNC110 - state of other processes
                await asyncio.sleep(POLL)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting until {what}")


async def ready(gateway: Gateway) -> bool:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        return (await http.get("/readyz")).status_code == 200


async def post(gateway: Gateway, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=3 * TIMEOUT) as http:
        return await http.post("/api/publish", json=body)


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


# ------------------------------------------------------------------ across nodes


async def test_a_client_of_one_node_receives_what_another_node_published(
    nodes: MakeGateway, connect: Connect
) -> None:
    a, b = await nodes(), await nodes()
    on_b = await connect(b)
    confirmed = await on_b.subscribe("order_updates")
    await on_b.subscribe("market_data", snapshot=False)
    response = await post(a, [order("P1", n) for n in range(3)] + [quote("AAPL")])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["seq"] for r in results] == [1, 2, 3, 1]
    assert results[0]["epoch"] == confirmed["position"]["epoch"], "one history for all nodes"
    received = await on_b.data(4)
    assert [(m["stream"], m["seq"], m["message_id"]) for m in received] == [
        (r["stream"], r["seq"], r["message_id"]) for r in results
    ]
    assert await on_b.no_data(b) == []


async def test_disconnecting_a_user_closes_its_connections_on_every_node(
    nodes: MakeGateway, connect: Connect
) -> None:
    a, b = await nodes(**SECURE), await nodes(**SECURE)
    alice_a = await connect(a, token=token("alice"))
    alice_b = await connect(b, token=token("alice"))
    bob_b = await connect(b, token=token("bob"))
    async with httpx.AsyncClient(base_url=a.internal_url, timeout=TIMEOUT) as http:
        response = await http.post(
            "/api/users/alice/disconnect",
            headers={**bearer(token("ops", roles=["admin"])), "content-type": "application/json"},
        )
    assert response.status_code == 200 and response.json() == {"user_id": "alice", "closed_here": 1}
    for client in (alice_a, alice_b):
        async with asyncio.timeout(TIMEOUT):
            await client.ws.wait_closed()
        assert client.ws.close_code == 4003
    assert await bob_b.no_data(b) == []  # bob's connection still answers


async def test_a_client_resumes_on_another_node_where_it_left_off(
    nodes: MakeGateway, connect: Connect
) -> None:
    a, b = await nodes(), await nodes()
    on_a = await connect(a)
    await on_a.subscribe("order_updates")
    assert (await post(a, [order("P1", n) for n in range(3)])).status_code == 200
    seen = await on_a.data(3)
    await on_a.close()  # node A goes away for this client; it comes back on node B
    missed = (await post(b, [order("P1", n) for n in range(3, 5)])).json()["results"]
    on_b = await connect(b)
    since = {"epoch": seen[-1]["epoch"], "seq": seen[-1]["seq"]}
    confirmed = await on_b.subscribe("order_updates", since=since)
    assert confirmed["recovered"] is True
    assert seqs(await on_b.data(2)) == [r["seq"] for r in missed] == [4, 5]
    assert await on_b.no_data(b) == []


async def test_a_snapshot_on_another_node_is_never_followed_by_older_messages(
    nodes: MakeGateway, connect: Connect
) -> None:
    """Node B may be behind Redis when a client subscribes to it: the snapshot must not be
    newer than what B delivered, or older quotes would follow it and overwrite newer ones."""
    a, b = await nodes(), await nodes()
    for _ in range(3):
        batch = [quote(f"S{i % 10}", bid=float(i)) for i in range(1000)]
        assert (await post(a, batch)).status_code == 200
    client = await connect(b)
    confirmed = await client.subscribe("market_data")
    assert confirmed["position"]["seq"] == 3000
    snapshot = await client.data(10)
    assert max(seqs(snapshot)) <= 3000
    live = (await post(a, [quote("S1", bid=-1.0)])).json()["results"][0]
    assert seqs(await client.data(1)) == [live["seq"]] == [3001]
    assert await client.no_data(b) == []


# ------------------------------------------------------------------ readiness and stats


async def test_readyz_is_a_round_trip_through_redis_not_a_ping(
    nodes: MakeGateway, admin: aioredis.Redis
) -> None:
    gateway = await nodes(readiness_timeout=0.5)
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        assert (await http.get("/readyz")).json() == {"ready": True, "problems": []}
        # Redis holds every write without answering; reads and PING still work.
        await admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")  # type: ignore[no-untyped-call]
        try:
            assert await admin.ping() is True
            response = await http.get("/readyz")
            assert response.status_code == 503
            assert response.json()["problems"] == [
                "broker: a probe message did not come back within 0.5 s"
            ]
            assert (await http.get("/healthz")).status_code == 200, "alive, just not ready"
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        await until(lambda: ready(gateway), "ready again")


async def test_stats_show_the_broker_lag(nodes: MakeGateway, redis_server: RedisProcess) -> None:
    gateway = await nodes()
    async with httpx.AsyncClient(base_url=gateway.internal_url, timeout=TIMEOUT) as http:
        await post(gateway, [order("P1", n) for n in range(3)])
        await until(
            lambda: _delivered(gateway, "order_updates", 3), "the node delivered its messages"
        )
        stats = (await http.get("/api/stats")).json()
        assert stats["broker_lag"] == {stream: 0 for stream in stats["streams"]}
        assert stats["streams"]["order_updates"]["seq"] == 3
        redis_server.stop()
        stats = (await http.get("/api/stats")).json()
        assert stats["broker_lag"] is None, "unknown while Redis is down"
        problems = (await http.get("/readyz")).json()["problems"]
        assert len(problems) == 1 and problems[0].startswith("broker: Redis at redis://")


async def _delivered(gateway: Gateway, stream: str, seq: int) -> bool:
    return gateway.broker.position(stream).seq >= seq


# ------------------------------------------------------------------ publishing without Redis


async def test_publish_while_redis_is_down_is_503_and_publishes_nothing(
    nodes: MakeGateway, connect: Connect, redis_server: RedisProcess, admin: aioredis.Redis
) -> None:
    gateway = await nodes()
    redis_server.stop()
    batch = [order("P1", n) for n in range(3)]
    response = await post(gateway, batch)
    assert response.status_code == 503
    body = response.json()
    assert body["error_code"] == "unavailable"
    assert body["error_message"].startswith("broker unavailable: Redis at redis://")
    redis_server.start()  # empty
    await until(lambda: ready(gateway), "the node reconnected")
    assert await admin.keys("tw:id:*") == [], "no message of the request was recorded"
    client = await connect(gateway)
    await client.subscribe("order_updates")
    again = await post(gateway, batch)
    assert again.status_code == 200
    assert [(r["seq"], r.get("duplicate", False)) for r in again.json()["results"]] == [
        (1, False),
        (2, False),
        (3, False),
    ]
    assert seqs(await client.data(3)) == [1, 2, 3]


async def test_publish_that_redis_holds_is_503_and_nothing_of_it_is_written(
    nodes: MakeGateway, connect: Connect, admin: aioredis.Redis
) -> None:
    """Redis takes the connection but never answers (CLIENT PAUSE WRITE): the request
    fails after the broker's timeout, and when Redis resumes nothing of it appears: not in
    Redis, not at a subscriber of another node, not as a duplicate when it is sent again."""
    a, b = await nodes(), await nodes()
    client = await connect(b)
    await client.subscribe("order_updates")
    assert (await post(a, [order("P1", 0)])).status_code == 200
    assert seqs(await client.data(1)) == [1]
    await admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")  # type: ignore[no-untyped-call]
    try:
        response = await post(a, [order("P1", n) for n in range(1, 4)])
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
    assert response.status_code == 503 and response.json()["error_code"] == "unavailable"
    assert await admin.get("tw:order_updates:seq") == b"1"
    assert await admin.xlen("tw:order_updates:log") == 1
    assert await admin.keys("tw:id:P1-[123]") == []
    assert await client.no_data(b) == []
    again = await post(a, [order("P1", n) for n in range(1, 4)])
    assert [r["seq"] for r in again.json()["results"]] == [2, 3, 4]
    assert "duplicate" not in str(again.json())
    assert seqs(await client.data(3)) == [2, 3, 4]


# ------------------------------------------------------------------ outages during streaming


class CutOff:
    """A TCP proxy from a node to Redis that can cut the node off: `cut()` drops every
    connection through it and closes new ones at once, `restore()` lets them through again.
    Redis itself keeps running (and keeps its data) for everyone else."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.port = 0
        self.open = True
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.open = False
        for writer in list(self._links):
            writer.transport.abort()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            self._links -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def cut_off(redis_server: RedisProcess) -> AsyncIterator[CutOff]:
    proxy = CutOff(redis_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_a_node_cut_off_from_redis_resumes_from_its_last_id(
    nodes: MakeGateway, connect: Connect, cut_off: CutOff
) -> None:
    """Node B cannot reach Redis for a while; node A goes on publishing. When B is back, it
    reads on from the last entry it delivered: its client gets every message, in order,
    without a gap and without a resync. Meanwhile B is not ready, and a publish through B
    is refused with 503 (and not written)."""
    a = await nodes()
    b = await nodes(broker_url=cut_off.url, readiness_timeout=0.5)
    client = await connect(b)
    await client.subscribe("order_updates")
    await client.subscribe("market_data", snapshot=False)
    before = (await post(a, [order("P1", n) for n in range(5)])).json()["results"]
    assert seqs(await client.data(5)) == [1, 2, 3, 4, 5]
    reconnects = _redis(b).reconnects

    cut_off.cut()
    during = (await post(a, [order("P1", n) for n in range(5, 10)])).json()["results"]
    during += (await post(a, [quote("AAPL")])).json()["results"]
    refused = await post(b, [order("P1", 99)])
    assert refused.status_code == 503 and refused.json()["error_code"] == "unavailable"
    assert not await ready(b)
    await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself
    after = (await post(a, [order("P1", n) for n in range(10, 12)])).json()["results"]
    cut_off.restore()

    await until(lambda: ready(b), "node B is ready again")
    assert _redis(b).reconnects > reconnects
    received = await client.data(len(during) + len(after))
    expected = [r for r in before + during + after if r["stream"] == "order_updates"]
    orders = [m for m in received if m["stream"] == "order_updates"]
    assert [(m["seq"], m["message_id"]) for m in orders] == [
        (r["seq"], r["message_id"]) for r in expected[5:]
    ]
    assert seqs(orders) == list(range(6, 13))
    assert [m["symbol"] for m in received if m["stream"] == "market_data"] == ["AAPL"]
    assert await client.no_data(b) == []
    assert _redis(a).position("order_updates") == _redis(b).position("order_updates")


def _redis(gateway: Gateway) -> RedisBroker:
    broker = gateway.broker
    assert isinstance(broker, RedisBroker)
    return broker


class Watch:
    """A TidewireClient's states and resyncs, with a way to wait for them."""

    def __init__(self, client: TidewireClient) -> None:
        self.states: list[ConnectionState] = []
        self.resyncs: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        client.add_state_handler(self._on_state)
        client.add_resync_handler(self._on_resync)

    def _on_state(self, previous: ConnectionState, current: ConnectionState) -> None:
        self.states.append(current)
        self._changed.set()

    def _on_resync(self, subscription: Subscription, info: dict[str, Any]) -> None:
        self.resyncs.append(info)
        self._changed.set()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(f"timed out waiting until {what}")


async def take(subscription: Subscription, count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(anext(subscription), TIMEOUT) for _ in range(count)]


async def test_redis_restarting_empty_gives_the_sdk_a_resync_never_a_silent_gap(
    nodes: MakeGateway, redis_server: RedisProcess
) -> None:
    """Redis comes back empty: every node finds the new epochs and closes its live
    subscribers with 1012; the SDK resubscribes from its position in the old epoch, is told
    `recovered: false` and yields a resync marker, then the new epoch's messages."""
    a, b = await nodes(), await nodes()
    async with TidewireClient(
        b.url, heartbeat_interval=None, reconnect_interval=0.01, max_reconnect_interval=0.05
    ) as client:
        watch = Watch(client)
        orders = await client.subscribe("order_updates")
        old = (await post(a, [order("P1", n) for n in range(3)])).json()["results"]
        assert [(m["seq"], m["epoch"]) for m in await take(orders, 3)] == [
            (r["seq"], r["epoch"]) for r in old
        ]
        states = len(watch.states)
        redis_server.stop()
        redis_server.start()
        await watch.until(lambda: len(watch.resyncs) == 1, "the resync after the restart")
        assert client.close_code == 1012
        assert ConnectionState.RECONNECTING in watch.states[states:]
        new = (await post(a, [order("P1", n) for n in range(3, 5)])).json()["results"]
        assert new[0]["epoch"] != old[0]["epoch"]

        marker = await asyncio.wait_for(anext(orders), TIMEOUT)
        assert is_resync(marker)
        assert (marker["reason"], marker["loss"]) == ("not_recovered", True)
        assert marker["position"] == {"epoch": old[0]["epoch"], "seq": 3}
        assert marker["resume_position"]["epoch"] == new[0]["epoch"]
        live = await take(orders, 2)
        assert [(m["seq"], m["epoch"]) for m in live] == [(r["seq"], r["epoch"]) for r in new]
        assert orders.resyncs == 1 and orders.pending == 0


# ------------------------------------------------------------------ tidewire serve --workers


def _free_port_pair() -> tuple[int, int]:
    """A client port and a base control port whose next port is free as well."""
    for _ in range(50):
        ports = []
        sockets = []
        try:
            for _ in range(2):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
                ports.append(sock.getsockname()[1])
            base = ports[1]
            with socket.socket() as following:
                following.bind(("127.0.0.1", base + 1))
            return ports[0], base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free pair of neighbouring ports")


@dataclass
class Served:
    """A `tidewire serve` child process and its ports."""

    process: subprocess.Popen[bytes]
    port: int
    internal_port: int


@pytest.fixture
def workers(redis_server: RedisProcess) -> Iterator[Callable[[int], Served]]:
    """Start `tidewire serve --broker redis://... --workers N` as a child process."""
    started: list[subprocess.Popen[bytes]] = []
    logs = tempfile.TemporaryFile()  # noqa: SIM115 - closed below

    def start(count: int) -> Served:
        port, internal = _free_port_pair()
        command = [
            sys.executable,
            *("-m", "tidewire", "serve", "--broker", redis_server.url),
            *("--workers", str(count), "--port", str(port), "--internal-port", str(internal)),
            *("--log-level", "warning"),
        ]
        process = subprocess.Popen(command, stdout=logs, stderr=logs, start_new_session=True)
        started.append(process)
        return Served(process, port, internal)

    yield start
    for process in started:
        if process.poll() is None:
            # The whole session: the supervisor and its workers (started_new_session above).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    logs.seek(0)
    output = logs.read().decode(errors="replace")
    logs.close()
    if output.strip():
        print(output[-4000:])


async def test_serve_with_two_workers_shares_the_port_and_the_streams(
    workers: Callable[[int], Served], connect: Connect
) -> None:
    served = workers(2)
    process, port, internal = served.process, served.port, served.internal_port
    planes = [f"http://127.0.0.1:{internal + i}" for i in range(2)]
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:

        async def all_ready() -> bool:
            assert process.poll() is None, f"tidewire serve exited with {process.returncode}"
            for plane in planes:
                try:
                    if (await http.get(f"{plane}/readyz")).status_code != 200:
                        return False
                except httpx.TransportError:
                    return False
            return True

        await until(all_ready, "both workers are ready", timeout=30.0)

        # Clients of the shared port land on either worker (the kernel spreads them).
        class Endpoint:  # all that `connect` needs of a gateway: its client port
            def __init__(self, port: int) -> None:
                self.port = port

        shared_port = cast(Gateway, Endpoint(port))
        clients: list[WsClient] = []
        homes: dict[str, int] = {}
        for _ in range(24):
            client = await connect(shared_port)
            await client.subscribe("order_updates")
            clients.append(client)
            for index, plane in enumerate(planes):
                rows = (await http.get(f"{plane}/api/connections")).json()
                homes.update({row["connection_id"]: index for row in rows})
            if len(set(homes.values())) == 2 and len(clients) >= 4:
                break
        assert {homes[c.welcome["connection_id"]] for c in clients} == {0, 1}

        # Published through one worker's REST API, received by the clients of both.
        for n, plane in enumerate(planes):
            response = await http.post(f"{plane}/api/publish", json=order("P1", n))
            assert response.status_code == 200
        for client in clients:
            assert [(m["seq"], m["message_id"]) for m in await client.data(2)] == [
                (1, "P1-0"),
                (2, "P1-1"),
            ]

        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 20)
        assert code == 0
        for client in clients:  # every worker closed its clients on the way out
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.ws.wait_closed(), TIMEOUT)
            assert client.ws.close_code == 1001
