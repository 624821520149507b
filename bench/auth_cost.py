"""What authentication costs: token verification per handshake, and fan-out with entitlements.

Two measurements in one process (no sockets: the hub writes to a null transport, so the
numbers are the gateway's own work, not the kernel's):

1. verification: CPU per `JwtAuthenticator.authenticate` for HS256, RS256 and ES256 tokens
   (what every handshake or `auth` costs), with percentiles of single verifications;
2. fan-out: `Hub.dispatch` + flush of one message to N connections, authentication off
   (open access) against restricted tokens: on `order_updates` (portfolio-keyed, the index
   narrows each subscription) and on `events` (not keyed by portfolio: each message is
   checked against each subscriber's token). CPU per delivery, deliveries per CPU-second,
   per-message latency percentiles, peak memory.

    python -m bench.auth_cost --connections 1000 --messages 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bench.stats import percentiles
from tidewire.core.auth import Principal
from tidewire.core.connection import Connection
from tidewire.core.entitlements import authorize_subscribe, message_check
from tidewire.core.hub import Hub
from tidewire.core.ratelimit import TokenBucket
from tidewire.core.subscription import Subscription
from tidewire.protocol.codec import WireFormat
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage, Filters, now_iso
from tidewire.protocol.streams import STREAMS
from tidewire.security.minting import mint_token
from tidewire.security.tokens import JwtAuthenticator
from tidewire.settings import GatewaySettings

SECRET = "bench-secret-of-at-least-thirty-two-bytes!"
PORTFOLIOS = [f"PF-{n}" for n in range(10)]


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def write_buffer_size(self) -> int:
        return 0

    def ping(self) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        pass


class ManualScheduler:
    """Runs the hub's flush when told to: one flush per dispatched message."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], object]] = []

    def call_soon(self, callback: Callable[[], object]) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        pass

    def run(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ verification


def verification(count: int) -> list[dict[str, Any]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for alg, signer in (("HS256", SECRET), ("RS256", rsa_key), ("ES256", ec_key)):
            options: dict[str, Any] = {"jwt_secret": SECRET}
            if alg != "HS256":
                assert not isinstance(signer, str)
                pem = Path(folder) / f"{alg}.pem"
                pem.write_bytes(
                    signer.public_key().public_bytes(
                        serialization.Encoding.PEM,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    )
                )
                options = {"jwt_public_key_file": pem}
            authenticator = JwtAuthenticator(GatewaySettings(**options))
            token = mint_token("alice", key=signer, algorithm=alg, portfolio_ids=PORTFOLIOS[:3])
            samples = []
            start = cpu()
            for _ in range(count):
                t0 = time.perf_counter_ns()
                authenticator.authenticate(token)
                samples.append(time.perf_counter_ns() - t0)
            spent = cpu() - start
            rows.append(
                {
                    "alg": alg,
                    "us_per_verify": spent / count * 1e6,
                    "verifies_per_cpu_s": count / spent,
                    **{k: v / 1000 for k, v in percentiles(samples, (50, 99)).items()},
                }
            )
    return rows


# ------------------------------------------------------------------ fan-out


def principal(n: int, restricted: bool) -> Principal:
    if not restricted:
        return Principal(
            user_id=None, roles=frozenset({"subscriber"}), portfolios=None, open_access=True
        )
    mine = frozenset({PORTFOLIOS[n % 10], PORTFOLIOS[(n + 1) % 10]})
    return Principal(
        user_id=f"u{n}", roles=frozenset({"subscriber"}), portfolios=mine, authenticated=True
    )


def messages(stream: str, count: int) -> list[DataMessage]:
    out = []
    for n in range(count):
        portfolio = PORTFOLIOS[n % 10]
        if stream == "order_updates":
            raw: dict[str, Any] = {
                "type": "order_update",
                "portfolio_id": portfolio,
                "order_id": f"O-{n}",
                "symbol": "AAPL",
                "order_status": "open",
                "data": {
                    "side": "buy",
                    "order_type": "limit",
                    "quantity": 1,
                    "filled_quantity": 0,
                    "remaining_quantity": 1,
                    "price": 1.0,
                },
            }
        else:
            raw = {
                "type": "event",
                "event_type": "bench",
                "event_id": f"E-{n}",
                "portfolio_id": portfolio,
                "severity": "low",
                "data": {"description": f"event {n}"},
            }
        message = build_data_message(raw)
        out.append(DataMessage(**{**_fields(message), "seq": n + 1, "epoch": "bench"}))
    return out


def _fields(message: DataMessage) -> dict[str, Any]:
    return {name: getattr(message, name) for name in message.__struct_fields__}


def fanout(stream: str, restricted: bool, connections: int, count: int) -> dict[str, Any]:
    scheduler = ManualScheduler()
    hub = Hub(scheduler, 64 * 1024 * 1024)
    spec = STREAMS[stream]
    for n in range(connections):
        who = principal(n, restricted)
        connection = Connection(
            f"c{n}",
            NullTransport(),
            WireFormat.JSON,
            who,
            TokenBucket(50, 200, 0.0),
            0.0,
            now_iso(),
        )
        hub.add_connection(connection)
        filters = authorize_subscribe(who, spec, Filters())
        hub.add_subscription(
            Subscription(connection, "s", spec, filters, now_iso(), reader=message_check(who, spec))
        )
    batch = messages(stream, count)
    samples = []
    before = hub.counters.deliveries
    start = cpu()
    for message in batch:
        t0 = time.perf_counter_ns()
        hub.dispatch(message)
        scheduler.run()
        samples.append(time.perf_counter_ns() - t0)
    spent = cpu() - start
    deliveries = hub.counters.deliveries - before
    return {
        "stream": stream,
        "auth": "restricted tokens" if restricted else "off",
        "deliveries": deliveries,
        "us_per_delivery": spent / deliveries * 1e6,
        "deliveries_per_cpu_s": deliveries / spent,
        **{k: v / 1000 for k, v in percentiles(samples, (50, 99)).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--verifications", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(opts.repeat):
        for row in verification(opts.verifications):
            runs.setdefault(("verify", row["alg"]), []).append(row)
        for stream in ("order_updates", "events"):
            for restricted in (False, True):
                row = fanout(stream, restricted, opts.connections, opts.messages)
                runs.setdefault((stream, row["auth"]), []).append(row)

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"token verification ({opts.verifications} per run, medians of {opts.repeat} runs)")
    print("| alg | µs CPU / verify | verifies / CPU-s | p50 µs | p99 µs |")
    print("|---|---|---|---|---|")
    for (kind, alg), rows in runs.items():
        if kind == "verify":
            print(
                f"| {alg} | {med(rows, 'us_per_verify'):.1f} | "
                f"{med(rows, 'verifies_per_cpu_s'):,.0f} | {med(rows, 'p50'):.1f} | "
                f"{med(rows, 'p99'):.1f} |"
            )
    print(
        f"\nfan-out to {opts.connections} connections, {opts.messages} messages "
        "(dispatch + flush, null transport)"
    )
    print(
        "| stream | auth | µs CPU / delivery | deliveries / CPU-s | ratio | "
        "p50 µs / message | p99 µs / message |"
    )
    print("|---|---|---|---|---|---|---|")
    for stream in ("order_updates", "events"):
        base = med(runs[(stream, "off")], "us_per_delivery")
        for auth in ("off", "restricted tokens"):
            rows = runs[(stream, auth)]
            cost = med(rows, "us_per_delivery")
            print(
                f"| {stream} | {auth} | {cost:.3f} | {med(rows, 'deliveries_per_cpu_s'):,.0f} "
                f"| {cost / base:.2f}x | {med(rows, 'p50'):.0f} | {med(rows, 'p99'):.0f} |"
            )
    print(f"\npeak memory: {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
