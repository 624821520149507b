"""The resilience suite, short form: each attack of bench/attacks/ against a live gateway
while a healthy client beside it receives a steady published flow.

Every test asserts the same four things (`Arena.verify`): the healthy client received every
message of the flow in order, without a gap in `seq` or in the producer's counter, and was
never closed; `/healthz` answered throughout; plus the attacker's documented outcome
(docs/protocol.md) and, for attacks on memory, a bound on the RSS growth of this process
(the gateway runs in it). Settings are small so that each limit is passed quickly; the long
form with realistic sizes and latency figures is `python -m bench.resilience`.

Waits are bounded: conditions are awaited (or polled with a timeout), never slept for.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from bench.attacks import (
    FRAMING_CASES,
    AttackResult,
    HealthMonitor,
    HealthyProbe,
    Producer,
    RssSampler,
    Target,
    big_snapshot,
    byte_flood,
    continuation_flood,
    filter_values,
    framing_rules,
    latest_keys,
    long_absence,
    message_flood,
    ping_flood,
    publish_instruments,
    reassembly_hold,
    redis_garbage,
    stalled_snapshot,
    stats,
    until,
)

from redisproc import INSTALL_HINT, RedisProcess
from support import require_tool
from tidewire.server.app import Gateway

MakeGateway = Callable[..., Awaitable[Gateway]]

TIMEOUT = 15.0
MiB = 1024 * 1024
RATE = 100.0
"""Messages per second of the healthy flow."""

# Publishing tens of thousands of set-up messages must not meet the publish rate limit.
FAST_PUBLISH: dict[str, Any] = {"max_publish_rate": 1e6, "publish_burst": 1_000_000}


@dataclass
class Arena:
    """A live gateway, a healthy client on it and the flow that client must receive."""

    gateway: Gateway
    target: Target
    probe: HealthyProbe
    producer: Producer
    monitor: HealthMonitor

    async def flowing(self) -> None:
        """Wait until the healthy client has received a first message."""
        await asyncio.wait_for(self.probe.arrived.wait(), TIMEOUT)

    async def verify(self) -> None:
        """The healthy client got all of the flow, in order; /healthz stayed up."""
        await self.monitor.check()
        await self.producer.stop()
        published = self.producer.published
        assert self.producer.errors == []
        assert published > 0
        async with asyncio.timeout(TIMEOUT):
            while not self.probe.has(published - 1):  # noqa: ASYNC110 - the reader task's state
                await asyncio.sleep(0.01)
        report = self.probe.report()
        assert report.closed is None, f"the healthy client was closed with {report.closed}"
        assert (report.gaps, report.out_of_order) == (0, 0)
        assert report.received == published
        assert self.monitor.failures == 0 and self.monitor.checks > 0


def assert_grew_less(memory: RssSampler, mib: int) -> None:
    """The sampled RSS grew by less than `mib` MiB."""
    assert memory.growth < mib * MiB, f"RSS grew by {memory.growth / MiB:.1f} MiB"


@pytest.fixture
async def arena(make_gateway: MakeGateway) -> AsyncIterator[Callable[..., Awaitable[Arena]]]:
    made: list[Arena] = []

    async def make(**settings: Any) -> Arena:
        gateway = await make_gateway(**{**FAST_PUBLISH, **settings})
        target = Target(
            f"ws://127.0.0.1:{gateway.port}",
            gateway.internal_url,
            settings.get("broker_url") if "redis" in str(settings.get("broker_url")) else None,
            str(settings.get("redis_prefix", "tw")),
        )
        probe = await HealthyProbe.open(target)
        producer = Producer(target, RATE)
        monitor = HealthMonitor(target)
        producer.start()
        monitor.start()
        made.append(each := Arena(gateway, target, probe, producer, monitor))
        await each.flowing()
        return each

    yield make
    for each in made:
        await each.producer.stop()
        await each.monitor.stop()
        await each.probe.close()


# ------------------------------------------------------------------ a. floods


FLOOD_LIMITS: dict[str, Any] = {
    "max_inbound_frames_per_second": 100.0,
    "inbound_frame_burst": 300,
    "max_inbound_per_second": 50.0,
    "inbound_burst": 100,
}


@pytest.mark.parametrize(
    "attack",
    [ping_flood, continuation_flood, message_flood],
    ids=["ping-flood", "continuation-flood", "small-message-flood"],
)
async def test_attack_a_floods_are_closed_4029(
    attack: Callable[..., Awaitable[AttackResult]], arena: Callable[..., Awaitable[Arena]]
) -> None:
    """Attack a: one connection floods PINGs, 1-byte continuations or small messages."""
    each = await arena(**FLOOD_LIMITS)
    result = await attack(each.target, max_seconds=TIMEOUT)
    assert result.close_code == 4029, result
    assert each.gateway.data_plane.reassembly.used == 0
    await each.verify()


async def test_attack_a_byte_flood_is_closed_4029(arena: Callable[..., Awaitable[Arena]]) -> None:
    """Attack a: big PING-free data messages past the byte budget."""
    each = await arena(max_inbound_bytes_per_second=64 * 1024, inbound_bytes_burst=256 * 1024)
    result = await byte_flood(each.target, 30_000, max_seconds=TIMEOUT)
    assert result.close_code == 4029, result
    assert each.gateway.stats()["inbound_violations"].get("byte_rate") == 1
    await each.verify()


# ------------------------------------------------------------------ b. Redis garbage


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess(require_tool("redis-server", INSTALL_HINT)) as server:
        yield server


@pytest.mark.redis
async def test_attack_b_redis_garbage_is_skipped_counted_and_resynced(
    redis_server: RedisProcess, arena: Callable[..., Awaitable[Arena]]
) -> None:
    """Attack b: malformed log entries, an XADD * entry and a garbage latest value written
    straight into the gateway's Redis keys."""
    prefix = f"rz{uuid.uuid4().hex[:8]}"
    each = await arena(broker_url=redis_server.url, redis_prefix=prefix)
    result = await redis_garbage(each.target)
    counts = result.counts
    assert result.close_code == 1012, result  # the victim of the poisoned reliable stream
    assert (counts["victim_resubscribe"], counts["victim_recovered"]) == (
        "subscription_confirmed",
        False,
    )
    assert counts["publish_after"] > 0
    assert counts["auto_id_publish_seq"] > 0, counts  # publishing past a foreign id
    assert counts["snapshot_confirmed"] == "subscription_confirmed"
    assert counts["snapshot_symbols"] == ["GOOD"]
    skipped = counts["broker_skipped"]
    assert skipped.get("malformed_entries", 0) >= 2, skipped
    assert skipped.get("malformed_last_values", 0) >= 1, skipped
    # A negative since is refused on the Redis broker too.
    framing = await framing_rules(each.target)
    assert framing.counts["negative_since"] == "invalid_position"
    await each.verify()


# ------------------------------------------------------------------ c. big snapshots


async def test_attack_c_big_snapshot_arrives_whole(
    arena: Callable[..., Awaitable[Arena]],
) -> None:
    """Attack c: an unfiltered subscriber to a stream whose snapshot is several times
    max_outbox_bytes gets all of it (delivered in chunks under flow control), never 4008."""
    each = await arena(max_outbox_bytes=256 * 1024)
    instruments = 5000  # about 1.7 MB of snapshot
    result = await big_snapshot(each.target, instruments)
    assert result.close_code is None, result
    assert result.counts["snapshot_messages"] == instruments
    await each.verify()


async def test_attack_c_stalled_snapshot_readers_are_cut_4008_memory_bounded(
    arena: Callable[..., Awaitable[Arena]],
) -> None:
    """Attack c: 10 subscribers that never read, on a 20,000-key snapshot: cut with 4008
    (stall_timeout), the process's memory bounded far below 10 whole snapshots (about
    70 MB), a reader of the same snapshot served."""
    each = await arena(max_outbox_bytes=256 * 1024, stall_timeout=1.0, socket_send_buffer=16 * 1024)
    result = await stallers_are_cut(each)
    assert result.counts["reader_close_codes"] == [None], result
    await each.verify()


@pytest.mark.redis
async def test_attack_c_stalled_snapshot_on_redis_default_buffers_cut_4008_memory_bounded(
    redis_server: RedisProcess, arena: Callable[..., Awaitable[Arena]]
) -> None:
    """Attack c on the Redis broker with the default max_outbox_bytes and
    socket_send_buffer: 10 non-readers of a 20,000-key snapshot are cut with 4008 after
    stall_timeout, memory bounded (10 whole snapshots would be about 70 MB encoded)."""
    prefix = f"rz{uuid.uuid4().hex[:8]}"
    each = await arena(broker_url=redis_server.url, redis_prefix=prefix, stall_timeout=2.0)
    # The node seeds its own copy of the latest values once (about 22 MB for 20,000 keys,
    # and the read of the hash it decodes them from): shared by every subscriber after.
    await stallers_are_cut(each, cut_timeout=40.0, bound_mib=70)
    await each.verify()


async def stallers_are_cut(
    each: Arena, keys: int = 20_000, bound_mib: int = 40, **options: Any
) -> AttackResult:
    """10 non-readers and a reader of a `keys`-key snapshot: the reader gets all of it, the
    10 are cut with 4008, the process's RSS grows by less than `bound_mib` meanwhile (ten
    snapshots of their own would be about 10 x 22 MB decoded, 70 MB encoded)."""
    await publish_instruments(each.target, keys)
    memory = RssSampler().start()
    result = await stalled_snapshot(each.target, keys, stallers=10, publish=False, **options)
    await memory.stop()
    assert result.counts["reader_snapshot_messages"] == [keys], result
    assert result.counts["slow_consumer_closes"] == 10, result
    assert set(result.counts["staller_close_codes"]) == {4008}, result
    assert_grew_less(memory, bound_mib)
    return result


async def test_attack_c_long_absence_recovers_exactly(
    arena: Callable[..., Awaitable[Arena]],
) -> None:
    """Attack c: a client away for a replay several times max_outbox_bytes (delivered in
    chunks under flow control) recovers with recovered: true and every seq exactly once."""
    each = await arena(max_outbox_bytes=256 * 1024, history_max_messages=10_000)
    result = await long_absence(each.target, 3000)
    assert result.close_code is None, result
    assert (result.counts["confirmed"], result.counts["recovered"]) == (
        "subscription_confirmed",
        True,
    )
    assert result.counts["exact"], result
    await each.verify()


# ------------------------------------------------------------------ d. filter values


async def test_attack_d_filter_values_are_refused_past_the_bound_and_listings_paged(
    arena: Callable[..., Awaitable[Arena]],
) -> None:
    """Attack d: 4 connections x 100 subscriptions x 1,000 symbols; with the default bound
    of 10,000 filter values per connection, 10 subscriptions each are confirmed and the
    rest refused with invalid_filter; listings answer in pages."""
    each = await arena(max_list_page=3, max_api_page=16)
    memory = RssSampler().start()
    result, sessions = await filter_values(each.target, 4, 100, 1000)
    counts = result.counts
    assert counts["confirmed"] == [10, 10, 10, 10], counts
    assert counts["refused"] == [90, 90, 90, 90]
    assert counts["error_codes"] == ["invalid_filter"]
    assert counts["list_pages"] == [3, 3, 3, 1]
    subscriptions = counts["/api/subscriptions"]
    assert subscriptions["total"] == "41" and subscriptions["pages"] == [16, 16, 9]
    assert counts["/api/connections"]["total"] == "5"  # the healthy client and the 4
    held = each.gateway.stats()["subscriptions"]
    for session in sessions:
        await session.close()

    async def released() -> bool:
        return int((await stats(each.target))["subscriptions"]) == 1

    await until(released, "the attackers' subscriptions are gone", TIMEOUT)
    await memory.stop()
    assert held == 41
    assert_grew_less(memory, 100)
    await each.verify()


# ------------------------------------------------------------------ e. reassembly


async def test_attack_e_unfinished_fragments_bounded_per_process_1009(
    arena: Callable[..., Awaitable[Arena]],
) -> None:
    """Attack e: 200 connections each hold 64 KiB of an unfinished message (below
    max_frame_bytes); the process holds at most max_reassembly_bytes (1 MiB): the
    fragments past it are closed with 1009."""
    budget = 1 * MiB
    each = await arena(max_reassembly_bytes=budget, max_frame_bytes=128 * 1024)
    memory = RssSampler().start()
    result, holders = await reassembly_hold(each.target, 200, 64 * 1024)
    held_bytes = each.gateway.data_plane.reassembly.used
    await memory.stop()
    assert result.counts["held"] == 16 and result.counts["refused"] == 184, result
    assert result.counts["refused_codes"] == [1009]
    assert held_bytes <= budget
    assert each.gateway.stats()["inbound_violations"].get("reassembly_budget") == 184
    # 200 x 64 KiB would be 12.5 MiB held; bounded it is the budget plus what sockets cost.
    assert_grew_less(memory, 12)
    for holder in holders:
        holder.abort()
    async with asyncio.timeout(TIMEOUT):
        while each.gateway.data_plane.reassembly.used:  # noqa: ASYNC110 - server state
            await asyncio.sleep(0.01)
    await each.verify()


# ------------------------------------------------------------------ f. latest values


async def test_attack_f_latest_values_bounded_by_max_latest_keys_lru(
    arena: Callable[..., Awaitable[Arena]],
) -> None:
    """Attack f: 2,000 distinct symbols published once each: the stream keeps
    max_latest_keys (100) latest values, the least recently updated evicted first."""
    each = await arena(max_latest_keys=100)
    result = await latest_keys(each.target, 2000, 100)
    assert result.counts.get("kept") == 100, result
    assert result.counts["lru_ok"], result
    await each.verify()


# ------------------------------------------------------------------ g. framing and parsing


async def test_attack_g_framing_and_parsing_violations(
    arena: Callable[..., Awaitable[Arena]], caplog: pytest.LogCaptureFixture
) -> None:
    """Attack g: invalid UTF-8, deep JSON, RSV bits, interleaved and lone continuations,
    forbidden close codes, version 8, negative since; on WebSocket and on REST."""
    caplog.set_level(logging.WARNING, logger="tidewire")
    each = await arena()
    result = await framing_rules(each.target)
    counts = result.counts
    expected = {name: code for name, (_frames, code) in FRAMING_CASES.items()}
    assert counts["close_codes"] == expected
    assert counts["deep_json"] == ("error", "invalid_json")
    assert counts["deep_json_connection_kept"]
    assert counts["version_8_status"] == 426 and counts["version_8_header"]
    assert counts["negative_since"] == "invalid_position"
    assert counts["negative_since_connection_kept"]
    for name, answer in counts["rest"].items():
        assert 400 <= answer["status"] < 500, (name, answer)
        assert isinstance(answer["body"], dict), (name, answer)
        assert {"error_code", "error_message"} <= answer["body"].keys(), (name, answer)
    # At most one warning per connection per kind, never a traceback.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= len(FRAMING_CASES) + 2, [r.getMessage() for r in warnings]
    assert all(r.exc_info is None for r in caplog.records)
    await each.verify()
