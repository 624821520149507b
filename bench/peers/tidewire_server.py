"""Contender: the real Tidewire gateway, started in-process, fed by the in-process broker.

The publisher calls `broker.publish_now(build_data_message(raw))`, the path of an in-process
producer: validation, sequencing, then the hub's fan-out (frame built once, appended to every
subscriber's outbox, one write per connection per loop iteration). The gateway runs with
heartbeats and the inbound rate limit effectively off, like the peers.
"""

from __future__ import annotations

from typing import cast

from bench.peers import harness
from bench.quotes import raw_quote
from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.ingest import build_data_message
from tidewire.server.app import Gateway
from tidewire.settings import GatewaySettings


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    gateway = Gateway(
        GatewaySettings(
            port=args.port,
            internal_port=0,
            heartbeat_interval=3600,
            heartbeat_timeout=7200,
            max_inbound_per_second=1e6,
            inbound_burst=10**6,
        )
    )

    async def start() -> None:
        await gateway.start()

    def publish(n: int) -> None:
        # The default broker is the in-memory one; publish_now is its synchronous entry.
        broker = cast(MemoryBroker, gateway.broker)
        broker.publish_now(build_data_message(raw_quote(n, args.symbols), default_source="bench"))

    async def stop() -> None:
        await gateway.stop()

    harness.run(start, publish, stop, args)


if __name__ == "__main__":
    main()
