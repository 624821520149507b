"""Child processes of a checker run: started so that they die with the harness.

Each child gets PR_SET_PDEATHSIG (Linux): if the harness itself is killed, the kernel sends
the child SIGKILL, so no gateway or client outlives a run, even one that crashed. Signals
go to one process id at a time, never to a group or a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None
try:
    # Looked up here, not in the child: between fork and exec only the call itself runs.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL this child when the harness exits."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(
    args: list[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    python: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `python args...` from the repository, stdout and stderr into `log_path`.

    `python=False`: `args` is a whole command line (`args[0]` a program, e.g. redis-server).
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    # The child must import `checker` and `tidewire` exactly as the harness does.
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
    )
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args] if python else args,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            preexec_fn=_die_with_parent,
        )


def send(process: subprocess.Popen[bytes], sig: signal.Signals) -> bool:
    """Send `sig` to this one process if it still runs; True when sent."""
    if process.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)
        return True
    return False


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:  # noqa: ASYNC109
    """Wait up to `timeout` seconds for the process to exit; True when it did."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def terminate(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (a stopped process is continued first)."""
    if process.poll() is not None:
        return
    send(process, signal.SIGCONT)
    send(process, signal.SIGTERM)
    if not await wait_exit(process, grace):
        kill_now(process)


def kill_now(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap (works on a stopped process too)."""
    send(process, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
