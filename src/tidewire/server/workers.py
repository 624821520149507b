"""`--workers N`: N gateway processes sharing the client port, each one a broker node.

The parent only supervises: it starts each worker as `tidewire serve` with SO_REUSEPORT on
the client port (the kernel spreads new connections over the workers) and its own control
plane port (`internal_port + index`), forwards SIGINT/SIGTERM, and restarts a worker that
died. The workers share state through the Redis broker, so a client connected to one worker
receives what was published through another.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("tidewire.workers")

RESTART_DELAY = 1.0
STOP_GRACE = 10.0


def worker_command(args: Sequence[str], index: int, internal_port: int) -> list[str]:
    """The command line of worker `index`: the parent's serve options, one worker each."""
    if index > 0:  # one simulator for the whole group
        args = [arg for arg in args if arg != "--demo"]
    return [
        sys.executable,
        "-m",
        "tidewire",
        "serve",
        *args,
        "--workers",
        "1",
        "--internal-port",
        str(internal_port + index),
    ]


def supervise(args: Sequence[str], workers: int, internal_port: int) -> int:
    """Run `workers` worker processes until SIGINT/SIGTERM; returns the exit code."""
    env = {**os.environ, "TIDEWIRE_REUSE_PORT": "true"}
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    processes = [
        subprocess.Popen(worker_command(args, i, internal_port), env=env) for i in range(workers)
    ]
    log.info("started %d workers: pids %s", workers, [p.pid for p in processes])
    while not stopping:
        for i, process in enumerate(processes):
            code = process.poll()
            if code is not None and not stopping:
                log.warning("worker %d (pid %d) exited with %s; restarting", i, process.pid, code)
                time.sleep(RESTART_DELAY)
                processes[i] = subprocess.Popen(worker_command(args, i, internal_port), env=env)
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return max((code for code in codes if code > 0), default=0)
