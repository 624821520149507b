"""The client processes of a run: one slot per client, a new incarnation after each kill.

Each slot runs `python -m checker.client` with the slot's subscriptions. A killed client is
replaced by a new process (incarnation + 1) that resumes every subscription from the last
position its predecessor logged, as an application restarting from a saved position does.
At the end the harness hands every live client the stream heads through its stop file and
waits for it to catch up and exit.

In a multi-node run each slot is connected to one node (slot i starts on node i mod N; the
SDK reconnects to that node's URL), and a successor may be started on another node.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from checker import procs
from checker.model import ClientSpec
from checker.records import Checkpoint, Delivered, IncarnationLog, Position, read_log

READY_TIMEOUT = 20.0
FINISH_TIMEOUT = 25.0


class FleetError(RuntimeError):
    pass


@dataclass
class Slot:
    """One client: its spec, its current process and its incarnations so far."""

    spec: ClientSpec
    workdir: Path
    urls: list[str]
    """WebSocket URL of every gateway node (one in a single-gateway run)."""
    max_seconds: float
    node: int = 0
    """The node the current incarnation connects to."""
    multi: bool = False
    """Tell the client its node (logged, for counting cross-node deliveries)."""
    incarnation: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.urls[self.node]

    def log_path(self, incarnation: int | None = None) -> Path:
        return self.workdir / f"client-{self.spec.slot}-{incarnation or self.incarnation}.jsonl"

    def stop_path(self, incarnation: int | None = None) -> Path:
        return self.workdir / f"client-{self.spec.slot}-{incarnation or self.incarnation}.stop"

    def start(self, resume: dict[str, Position] | None = None, node: int | None = None) -> None:
        """Start the next incarnation (on `node`, default: the slot's current node)."""
        if node is not None:
            self.node = node
        self.incarnation += 1
        args = [
            "-m",
            "checker.client",
            "--url",
            self.url,
            "--spec",
            json.dumps(self.spec.to_json()),
            "--log",
            str(self.log_path()),
            "--stop-file",
            str(self.stop_path()),
            "--incarnation",
            str(self.incarnation),
            "--max-seconds",
            str(self.max_seconds),
        ]
        if self.multi:
            args += ["--node", str(self.node)]
        if resume:
            args += ["--resume", json.dumps({sid: list(pos) for sid, pos in resume.items()})]
        self.process = procs.spawn(
            args, log_path=self.workdir / f"client-{self.spec.slot}-{self.incarnation}.err"
        )

    def read(self, incarnation: int | None = None) -> IncarnationLog:
        number = incarnation or self.incarnation
        return read_log(self.log_path(number), self.spec.slot, number)

    def log_text(self) -> str:
        try:
            return self.log_path().read_text(errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"k":"ready"' in await asyncio.to_thread(self.log_text):
                return
            if self.process is not None and self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise FleetError(f"client {self.spec.slot}.{self.incarnation} not ready: {self.err_tail()}")

    async def connection_ids(self) -> list[str]:
        """connection_id of every connection of the current incarnation, in order."""
        return (await asyncio.to_thread(self.read)).connections

    def err_tail(self, limit: int = 1500) -> str:
        path = self.workdir / f"client-{self.spec.slot}-{self.incarnation}.err"
        try:
            return path.read_text(errors="replace")[-limit:] or "(no output)"
        except OSError:
            return "(no output)"

    def signal(self, sig: signal.Signals) -> bool:
        return self.process is not None and procs.send(self.process, sig)


def resume_positions(log: IncarnationLog) -> dict[str, Position]:
    """Per subscription, the furthest position the log shows it had consumed up to.

    The latest epoch wins; within it the highest seq of a delivered message or of a
    checkpoint (the SDK's own position while nothing was left to consume).
    """
    positions: dict[str, Position] = {}
    for sid, events in log.events.items():
        best: Position | None = None
        for event in events:
            if not isinstance(event, Delivered | Checkpoint):
                continue
            epoch, seq = event.position
            if best is None or epoch != best[0] or seq > best[1]:
                best = (epoch, seq)
        if best is not None:
            positions[sid] = best
    return positions


class Fleet:
    """Every client slot of a run."""

    def __init__(
        self,
        specs: list[ClientSpec],
        workdir: Path,
        urls: list[str],
        max_seconds: float,
        multi: bool = False,
    ):
        self.slots = [
            Slot(spec, workdir, urls, max_seconds, node=index % len(urls), multi=multi)
            for index, spec in enumerate(specs)
        ]

    async def start(self) -> None:
        for slot in self.slots:
            slot.start()
        await asyncio.gather(*(slot.wait_ready() for slot in self.slots))

    async def kill_and_resume(
        self, slot: Slot, pause: float, node: int | None = None
    ) -> tuple[int | None, int]:
        """SIGKILL the slot's process, start its successor (on `node`) after `pause` seconds.

        Returns the killed process's return code (-9 when the kill took) and how many
        subscriptions the successor resumes with `since`.
        """
        code = await self.kill(slot)
        await asyncio.sleep(pause)
        return code, await self.resume(slot, node)

    @staticmethod
    async def kill(slot: Slot) -> int | None:
        """SIGKILL the slot's process; its return code (-9 when the kill took)."""
        assert slot.process is not None
        slot.signal(signal.SIGKILL)
        await procs.wait_exit(slot.process, 5.0)
        return slot.process.returncode

    @staticmethod
    async def resume(slot: Slot, node: int | None = None) -> int:
        """Start the successor of a killed slot (on `node`) from its predecessor's last
        positions; how many subscriptions it resumes with `since`."""
        resume = resume_positions(await asyncio.to_thread(slot.read))
        slot.start(resume, node)
        await slot.wait_ready()
        return len(resume)

    async def finish(self, heads: dict[str, Position]) -> list[str]:
        """Give every live client the heads, wait for them to exit; the problems seen."""
        problems: list[str] = []
        text = json.dumps({stream: list(head) for stream, head in heads.items()})
        for slot in self.slots:
            slot.signal(signal.SIGCONT)
            slot.stop_path().write_text(text)
        deadline = time.monotonic() + FINISH_TIMEOUT
        for slot in self.slots:
            assert slot.process is not None
            if not await procs.wait_exit(slot.process, max(0.1, deadline - time.monotonic())):
                problems.append(f"client {slot.spec.slot}.{slot.incarnation} did not exit")
                procs.kill_now(slot.process)
            elif slot.process.returncode != 0:
                problems.append(
                    f"client {slot.spec.slot}.{slot.incarnation} exited with "
                    f"{slot.process.returncode}: {slot.err_tail(500)}"
                )
        return problems

    def logs(self) -> list[IncarnationLog]:
        return [
            slot.read(incarnation)
            for slot in self.slots
            for incarnation in range(1, slot.incarnation + 1)
        ]

    def kill_all(self) -> None:
        """Cleanup: SIGKILL every client process that still runs."""
        for slot in self.slots:
            if slot.process is not None:
                procs.kill_now(slot.process)
