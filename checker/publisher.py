"""Publishers: numbered messages over POST /api/publish, and the ledger of their acks.

Each publisher sends batches of messages, one request at a time, and records for every
message the (stream, epoch, seq) the gateway answered, when (wall clock), and through which
node (multi-node runs: requests go to the nodes in turn, a retry to the next one). A request
that fails (the gateway is restarting, Redis is away: 503, a timeout) is retried with the same
messages and message ids until it succeeds or the retry deadline passes: the publish is
idempotent on message_id, so a retry of a request the gateway did take is acknowledged with
the original seq (a restarted in-memory gateway, or a Redis restarted empty, has forgotten it
and sequences it again, in its new epoch, which is just as right). Only acknowledged
publishes enter the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from checker.model import Published, draw_message, to_wire
from checker.verify import Ledger, Placement

RETRY_DEADLINE = 30.0
"""Seconds a request is retried before its messages are given up (never acked)."""
RETRY_PAUSE = 0.05


class PublishRefused(RuntimeError):
    """The gateway refused a request as invalid (4xx): a bug of the checker or the gateway."""


@dataclass
class LedgerBook:
    """The ledger being written during a run (see `checker.verify.Ledger`)."""

    messages: dict[str, Published] = field(default_factory=dict)
    placements: dict[Placement, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    """requests, answered, retries, acked, duplicates, given_up; failed requests by cause
    (`unavailable`: 503, `http_error`: no answer, `status_other`: another status)."""
    problems: list[str] = field(default_factory=list)
    """Acks that contradict earlier ones."""
    via: dict[str, int] = field(default_factory=dict)
    """The node whose answer first acknowledged each message."""
    acked_at: dict[Placement, float] = field(default_factory=dict)
    """Wall-clock time each placement was first acknowledged."""
    slowest: float = 0.0
    """Seconds the slowest publish request took (answered or not)."""

    def ledger(self) -> Ledger:
        return Ledger(
            dict(self.messages), dict(self.placements), dict(self.via), dict(self.acked_at)
        )

    def failures(self) -> int:
        """Publish requests that failed so far (and were retried or given up)."""
        return self.counts["requests"] - self.counts["answered"]

    def record_ack(self, result: dict[str, object], node: int = 0) -> None:
        message_id = str(result["message_id"])
        placement = (str(result["stream"]), str(result["epoch"]), int(str(result["seq"])))
        known = self.placements.setdefault(placement, message_id)
        if known != message_id:
            self.problems.append(f"{placement}: acked for {known} and for {message_id}")
        self.acked_at.setdefault(placement, time.time())
        self.via.setdefault(message_id, node)
        self.counts["duplicates" if result.get("duplicate") else "acked"] += 1


class Publisher:
    """Publishes through one HTTP client; `name` prefixes its message ids and numbers."""

    def __init__(
        self,
        name: str,
        run_id: str,
        internal_urls: Sequence[str],
        book: LedgerBook,
        rng: random.Random,
        streams: tuple[str, ...],
        portfolios: tuple[str, ...],
    ) -> None:
        self.name = name
        self.run_id = run_id
        self.book = book
        self.rng = rng
        self.streams = streams
        self.portfolios = portfolios
        self.number = 0
        self.https = [httpx.AsyncClient(base_url=url, timeout=5.0) for url in internal_urls]
        self.turn = 0
        """Requests sent so far: request i goes to node i mod N."""

    def draw(
        self,
        streams: tuple[str, ...] | None = None,
        portfolios: tuple[str, ...] | None = None,
        severity: str | None = None,
    ) -> Published:
        """The next numbered message (random stream and portfolio among those given)."""
        self.number += 1
        message = draw_message(
            self.rng,
            f"{self.run_id}-{self.name}-{self.number}",
            self.name,
            self.number,
            streams or self.streams,
            portfolios or self.portfolios,
            severity,
        )
        self.book.messages[message.message_id] = message
        return message

    async def publish(self, messages: list[Published], pad: int = 0) -> bool:
        """POST `messages` as one request, retrying until acked; False when given up."""
        body = [to_wire(message, pad) for message in messages]
        deadline = time.monotonic() + RETRY_DEADLINE
        book = self.book
        while True:
            book.counts["requests"] += 1
            node = self.turn % len(self.https)
            self.turn += 1
            began = time.monotonic()
            try:
                response = await self.https[node].post("/api/publish", json=body)
            except httpx.HTTPError:
                response = None
                book.counts["http_error"] += 1
            book.slowest = max(book.slowest, time.monotonic() - began)
            if response is not None and response.status_code == 200:
                book.counts["answered"] += 1
                for result in response.json()["results"]:
                    book.record_ack(result, node)
                return True
            if response is not None and 400 <= response.status_code < 500:
                raise PublishRefused(f"{response.status_code}: {response.text[:500]}")
            if response is not None:
                book.counts["unavailable" if response.status_code == 503 else "status_other"] += 1
            if time.monotonic() >= deadline:
                book.counts["given_up"] += len(messages)
                return False
            book.counts["retries"] += 1
            await asyncio.sleep(RETRY_PAUSE)

    async def run(self, stop: asyncio.Event, batch: int, interval: float) -> None:
        """Publish `batch` messages every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            await self.publish([self.draw() for _ in range(batch)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def burst(
        self,
        count: int,
        streams: tuple[str, ...],
        portfolios: tuple[str, ...],
        pad: int,
        chunk: int = 100,
        severity: str | None = None,
    ) -> None:
        """Publish `count` padded messages for the given streams and portfolios at once."""
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            batch = [self.draw(streams, portfolios, severity) for _ in range(size)]
            await self.publish(batch, pad)

    async def close(self) -> None:
        for http in self.https:
            await http.aclose()
