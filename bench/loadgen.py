"""Load generator: N subscribed WebSocket connections in one process, counting deliveries.

Protocol, the same for every server: connect to the URL, send
`{"type":"subscribe","stream":"market_data"}`, wait for a frame containing
`subscription_confirmed` (anything before it, like Tidewire's `connection_established`, is
ignored), then count data frames. During the MEASURE phase, every `--sample-every`-th read
(raw client) or frame (picows client) is parsed for `"ts":<ns>` to sample latency.

Coordination is through the control block (bench.control): this process publishes its
received count every millisecond (the servers' flow control reads it) and exits on STOP,
printing one JSON object on stdout. It exits by itself after `--max-seconds` at the latest.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from bench.clients import picows_client, raw
from bench.clients.common import Outcome, Totals
from bench.control import ControlBlock
from bench.stats import percentiles


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--url", required=True)
    parser.add_argument("--control", required=True, help="control block file (bench.control)")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--first", type=int, default=0, help="open this many, then wait for PROCEED (idle)"
    )
    parser.add_argument("--client", choices=("raw", "picows"), default="raw")
    parser.add_argument(
        "--rcvlowat", type=int, default=0, help="raw client: SO_RCVLOWAT bytes (0 = off)"
    )
    parser.add_argument("--sample-every", type=int, default=16, help="power of two")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="lifetime bound")
    args = parser.parse_args()
    if args.rcvlowat and args.client != "raw":
        parser.error("--rcvlowat needs --client raw")
    if args.sample_every < 1 or args.sample_every & (args.sample_every - 1):
        parser.error("--sample-every must be a power of two")
    return args


def result(args: argparse.Namespace, totals: Totals, outcome: Outcome) -> dict[str, Any]:
    counts = outcome.per_connection or [0]
    frames = totals.bytes_frames or totals.received
    return {
        "client": args.client,
        "connections": args.connections,
        "subscribed": outcome.subscribed,
        "connect_seconds": round(outcome.connect_seconds, 3),
        "connect_errors": len(outcome.errors),
        "first_errors": outcome.errors[:3],
        "received": totals.received,
        "per_connection_min": min(counts),
        "per_connection_max": max(counts),
        "deliveries_per_read": round(totals.received / totals.reads, 2) if totals.reads else None,
        "bytes_per_delivery": round(totals.bytes / frames, 1) if frames else None,
        "latency_samples": len(totals.samples),
        "latency_ns": percentiles(totals.samples, (50, 99, 99.9, 100)),
    }


def _lifetime_expired(signum: int, frame: object) -> None:
    print("loadgen: lifetime bound reached, exiting", file=sys.stderr, flush=True)
    sys.exit(2)


def main() -> None:
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # 5000 idle connections need more than the usual 1024
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The raw client is a blocking loop: bound its life with an alarm, not a task timeout.
    signal.signal(signal.SIGALRM, _lifetime_expired)
    signal.alarm(max(1, int(args.max_seconds)))
    ctl = ControlBlock(Path(args.control))
    totals = Totals()
    try:
        common = (args.url, ctl, totals, args.connections, args.first, args.sample_every)
        if args.client == "raw":
            outcome = raw.run(*common, rcvlowat=args.rcvlowat)
        else:
            outcome = picows_client.run(*common)
    finally:
        signal.alarm(0)
        ctl.close()
    print(json.dumps(result(args, totals, outcome)), flush=True)


if __name__ == "__main__":
    main()
