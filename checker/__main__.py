"""`python -m checker [--multi | --nodes N] [--long] [--seed N] [--duration S] [--clients N]`.

Exit status 0 when every client got what docs/protocol.md section 5 promises and every fault had
its effect, 1 otherwise, 2 when the run itself broke down (or, for a multi-node run, when
redis-server is not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from checker.harness import FAULTS_OVERRUN, RunResult, run
from checker.redisserver import RedisUnavailable
from checker.report import render
from checker.scenario import LONG, MULTI, MULTI_LONG, SMALL, Scenario

STARTUP_AND_SHUTDOWN = 90.0
"""Seconds a run may take beyond its publishing and its faults' overrun."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m checker",
        description="Check Tidewire's delivery guarantees under client and gateway faults.",
    )
    parser.add_argument("--long", action="store_true", help="the long mode (minutes)")
    parser.add_argument(
        "--multi",
        action="store_true",
        help="multi-node mode: 3 gateway nodes on one private Redis (CI-sized unless --long)",
    )
    parser.add_argument(
        "--nodes", type=int, help="multi-node mode with this many gateway nodes (implies --multi)"
    )
    parser.add_argument("--seed", type=int, default=1, help="fault schedule and traffic seed")
    parser.add_argument("--duration", type=float, help="seconds of publishing (faults scale)")
    parser.add_argument("--clients", type=int, help="client processes")
    parser.add_argument(
        "--workdir", type=Path, help="where logs go (default: a temporary directory)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary logs even when the run passes"
    )
    return parser.parse_args(argv)


def scenario_of(args: argparse.Namespace) -> Scenario:
    multi = args.multi or args.nodes is not None
    modes = {(False, False): SMALL, (False, True): LONG, (True, False): MULTI}
    base = modes.get((multi, args.long), MULTI_LONG)
    scenario = base.scaled(args.duration, args.clients, args.nodes)
    if scenario.clients < 1:
        raise SystemExit("--clients must be at least 1")
    if multi and scenario.nodes < 1:
        raise SystemExit("--nodes must be at least 1")
    return scenario


async def _run_bounded(args: argparse.Namespace, workdir: Path) -> RunResult:
    scenario = scenario_of(args)
    limit = scenario.duration + FAULTS_OVERRUN + STARTUP_AND_SHUTDOWN
    async with asyncio.timeout(limit):
        return await run(scenario, args.seed, workdir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    temporary = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tidewire-checker-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(_run_bounded(args, workdir))
    except RedisUnavailable as exc:
        print(f"checker run failed: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"checker run failed: {exc!r} (logs in {workdir})", file=sys.stderr)
        return 2
    print(render(result), flush=True)
    if temporary and result.ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
