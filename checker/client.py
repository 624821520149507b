"""A checker client process: an ordinary user of the Tidewire Python SDK that logs everything.

    python -m checker.client --url ws://... --spec '{...}' --log client-0-1.jsonl \
        --stop-file client-0-1.stop [--resume '{"c0-s0": ["ab12cd34", 41]}'] [--node 2]

It subscribes as `--spec` says, then writes one JSON line per event (see `checker.records`):
every data message its subscriptions' iterators return, every `subscription_confirmed`
(with `recovered` and the position), every resync the SDK signals (when the SDK has a
resync signal), every overflow of the SDK's queue, every connection and close code, and now
and then the SDK's position of a subscription whose messages were all consumed.

When the harness writes the stop file (the streams' final heads, as JSON), the client waits
until every subscription has reached those heads and consumed its queue (or a timeout),
writes its final record and exits. The harness may also SIGKILL, SIGSTOP and SIGCONT it at
any time: the log is flushed every few milliseconds, and a reader ignores a torn last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from checker.model import ClientSpec, matches_fields
from tidewire.client import ConnectionState, Subscription, TidewireClient, is_resync

FLUSH_INTERVAL = 0.02
CHECKPOINT_INTERVAL = 0.25
DRAIN_TIMEOUT = 12.0


class LogWriter:
    """JSON lines into a file, flushed by a timer (a killed client loses only a few ms)."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", buffering=1 << 16)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def event(self, record: dict[str, Any]) -> None:
        """A record that is not a data message: with the wall-clock time, for debugging."""
        record["t"] = round(time.time(), 3)
        self.write(record)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self._file.flush()

    def close(self) -> None:
        self._file.flush()
        self._file.close()


class Consumer:
    """Iterates one subscription and logs what it returns, numbered in routing order."""

    def __init__(self, subscription: Subscription, log: LogWriter) -> None:
        self.subscription = subscription
        self.log = log
        self.routed = 0
        """Messages of this subscription accounted for: logged, or dropped by the SDK."""
        self.markers = 0
        """Resync markers the iterator yielded."""

    @property
    def idle(self) -> bool:
        """Every message and resync marker the SDK queued for the subscription is consumed."""
        sub = self.subscription
        return (
            self.routed == sub.messages_received
            and sub.pending == 0
            and self.markers == sub.resyncs
        )

    async def run(self) -> None:
        sub = self.subscription
        sid = sub.subscription_id
        iterator = sub.__aiter__()
        while True:
            try:
                message = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                self.log.event({"k": "subend", "sid": sid, "n": self.routed, "error": repr(exc)})
                return
            if is_resync(message):
                self.markers += 1
                self.log.event(
                    {
                        "k": "resync",
                        "sid": sid,
                        "n": self.routed,
                        "reason": message.get("reason"),
                        "pos": _pair(message.get("position")),
                        "resume": _pair(message.get("resume_position")),
                        "dropped": message.get("dropped"),
                    }
                )
                # The messages an overflow dropped were routed (and counted) all the same.
                self.routed += message.get("dropped") or 0
                continue
            self.routed += 1
            data = message.get("data")
            self.log.write(
                {
                    "k": "msg",
                    "sid": sid,
                    "n": self.routed,
                    "st": message.get("stream"),
                    "e": message.get("epoch"),
                    "s": message.get("seq"),
                    "id": message.get("message_id"),
                    "pf": message.get("portfolio_id"),
                    "sev": message.get("severity"),
                    # Top level in the canonical shapes; trades also keep it in `data`.
                    "sym": message.get("symbol")
                    or (data.get("symbol") if isinstance(data, dict) else None),
                }
            )


def _read_stop_file(path: Path) -> dict[str, list[Any]] | None:
    try:
        heads: dict[str, list[Any]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or half written
    return heads


def _pair(position: Any) -> list[Any] | None:
    """`{epoch, seq}` as `[epoch, seq]` for the log."""
    if isinstance(position, dict):
        return [position.get("epoch"), position.get("seq")]
    return None


class CheckerClient:
    """The SDK client of one incarnation, its consumers and its log."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.spec = ClientSpec.from_json(json.loads(args.spec))
        self.resume: dict[str, list[Any]] = json.loads(args.resume) if args.resume else {}
        self.log = LogWriter(Path(args.log))
        self.client = TidewireClient(
            args.url,
            reconnect_interval=0.1,
            max_reconnect_interval=1.0,
            heartbeat_interval=1.0,
            heartbeat_timeout=6.0,
            subscription_queue_size=1_000_000,
            request_timeout=10.0,
            connect_timeout=5.0,
        )
        self.consumers: dict[str, Consumer] = {}
        self.tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ SDK callbacks

    def on_confirmed(self, message: dict[str, Any]) -> None:
        sid = message.get("subscription_id")
        sub = self.client.subscriptions.get(sid) if isinstance(sid, str) else None
        position = message.get("position") or {}
        self.log.event(
            {
                "k": "conf",
                "sid": sid,
                "n": sub.messages_received if sub is not None else 0,
                "recovered": message.get("recovered"),
                "pos": [position.get("epoch"), position.get("seq")],
            }
        )

    def on_resync(self, subscription: Subscription, info: dict[str, Any]) -> None:
        """The SDK's resync callback: logged to cross-check it against the iterator."""
        self.log.event(
            {
                "k": "resync_cb",
                "sid": subscription.subscription_id,
                "n": subscription.messages_received,
                "reason": info.get("reason"),
                "pos": _pair(info.get("position")),
                "resume": _pair(info.get("resume_position")),
            }
        )

    def on_any(self, message: dict[str, Any]) -> None:
        """Every message on the wire: a data message must match one of our subscriptions.

        The SDK routes by the same filters and would silently drop a message that matches
        none, hiding a gateway that does not enforce them; this sees it before that.
        """
        stream = message.get("stream")
        if not isinstance(stream, str) or "seq" not in message:
            return
        portfolio, severity = message.get("portfolio_id"), message.get("severity")
        if not any(
            spec.stream == stream and matches_fields(spec.filters, portfolio, severity)
            for spec in self.spec.subscriptions
        ):
            self.log.write(
                {
                    "k": "wire_foreign",
                    "st": stream,
                    "e": message.get("epoch"),
                    "s": message.get("seq"),
                    "id": message.get("message_id"),
                    "pf": portfolio,
                    "sev": severity,
                }
            )

    def on_established(self, message: dict[str, Any]) -> None:
        self.log.event({"k": "conn", "cid": message.get("connection_id")})

    def on_state(self, previous: ConnectionState, current: ConnectionState) -> None:
        # A lost connection (not our own close at the end): with the code it ended with.
        if previous is ConnectionState.CONNECTED and current is ConnectionState.RECONNECTING:
            self.log.event({"k": "closed", "code": self.client.close_code or 1006})

    # ------------------------------------------------------------------ life

    async def run(self) -> int:
        client = self.client
        resync_api = hasattr(client, "add_resync_handler")
        since_api = "since" in inspect.signature(client.subscribe).parameters
        self.log.event(
            {
                "k": "start",
                "slot": self.spec.slot,
                "inc": self.args.incarnation,
                "pid": os.getpid(),
                "resync_api": resync_api,
                "since_api": since_api,
                "node": self.args.node,
                "url": self.args.url,
            }
        )
        client.add_message_handler("subscription_confirmed", self.on_confirmed)
        client.add_message_handler("connection_established", self.on_established)
        client.add_message_handler("*", self.on_any)
        client.add_state_handler(self.on_state)
        if resync_api:
            client.add_resync_handler(self.on_resync)
        self.tasks.append(asyncio.create_task(self.log.flush_forever()))
        await client.connect(timeout=15.0)
        for spec in self.spec.subscriptions:
            since = self.resume.get(spec.subscription_id) if since_api else None
            self.log.event(
                {
                    "k": "sub",
                    "sid": spec.subscription_id,
                    "stream": spec.stream,
                    "filters": spec.filters,
                    "snapshot": spec.snapshot,
                    "since": since,
                }
            )
            options: dict[str, Any] = {}
            if since is not None:
                options["since"] = {"epoch": since[0], "seq": since[1]}
            sub = await client.subscribe(
                spec.stream,
                filters=spec.filters or None,
                subscription_id=spec.subscription_id,
                snapshot=spec.snapshot,
                timeout=15.0,
                **options,
            )
            consumer = Consumer(sub, self.log)
            self.consumers[spec.subscription_id] = consumer
            self.tasks.append(asyncio.create_task(consumer.run()))
        self.log.event({"k": "ready"})
        self.tasks.append(asyncio.create_task(self.checkpoints()))
        heads = await self.wait_for_stop()
        behind = await self.drain(heads)
        duplicates = {
            sid: getattr(consumer.subscription, "duplicates", 0)
            for sid, consumer in self.consumers.items()
        }
        self.log.event({"k": "end", "drained": not behind, "behind": behind, "dups": duplicates})
        return 0

    async def checkpoints(self) -> None:
        """Log the SDK's position of every subscription whose messages were all consumed."""
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            for sid, consumer in self.consumers.items():
                position = consumer.subscription.position
                if position is not None and consumer.idle:
                    self.log.write(
                        {
                            "k": "pos",
                            "sid": sid,
                            "n": consumer.routed,
                            "pos": [position.epoch, position.seq],
                            "dups": getattr(consumer.subscription, "duplicates", 0),
                        }
                    )

    async def wait_for_stop(self) -> dict[str, list[Any]]:
        """Wait for the harness's stop file; the stream heads it holds."""
        deadline = time.monotonic() + self.args.max_seconds
        while time.monotonic() < deadline:
            heads = await asyncio.to_thread(_read_stop_file, Path(self.args.stop_file))
            if heads is not None:
                return heads
            await asyncio.sleep(0.1)
        return {}

    async def drain(self, heads: dict[str, list[Any]]) -> list[str]:
        """Wait until every subscription reached its stream's head; the ids still behind."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            behind = [
                sid
                for sid, consumer in self.consumers.items()
                if not self._caught_up(consumer, heads.get(consumer.subscription.stream))
            ]
            if not behind or time.monotonic() >= deadline:
                return [
                    f"{sid} at {self.consumers[sid].subscription.position} "
                    f"(head {heads.get(self.consumers[sid].subscription.stream)})"
                    for sid in behind
                ]
            await asyncio.sleep(0.05)

    @staticmethod
    def _caught_up(consumer: Consumer, head: list[Any] | None) -> bool:
        position = consumer.subscription.position
        if head is None:
            return consumer.idle
        return (
            consumer.idle
            and position is not None
            and position.epoch == head[0]
            and position.seq >= head[1]
        )

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 5.0)
        self.log.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m checker.client")
    parser.add_argument("--url", required=True)
    parser.add_argument("--spec", required=True, help="ClientSpec as JSON")
    parser.add_argument("--log", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--incarnation", type=int, default=1)
    parser.add_argument("--node", type=int, help="index of the gateway node (multi-node runs)")
    parser.add_argument("--resume", default="", help="{subscription_id: [epoch, seq]} as JSON")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="lifetime bound")
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    checker_client = CheckerClient(args)
    try:
        async with asyncio.timeout(args.max_seconds + DRAIN_TIMEOUT + 10):
            return await checker_client.run()
    except Exception as exc:
        checker_client.log.event({"k": "error", "error": repr(exc)})
        print(f"checker client failed: {exc!r}", file=sys.stderr)
        return 1
    finally:
        await checker_client.close()


def main() -> None:
    sys.exit(asyncio.run(amain(parse_args())))


if __name__ == "__main__":
    main()
