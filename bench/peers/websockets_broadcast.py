"""Peer: the `websockets` asyncio server fanning out with `broadcast()`.

This is the library's documented way to send one message to many connections: it frames
the message once per connection and writes it synchronously, without a coroutine per send.
"""

from __future__ import annotations

import json

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from bench.peers import harness
from bench.quotes import envelope_json

CONFIRMED = json.dumps({"type": "subscription_confirmed", "stream": "market_data"})


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    subscribers: set[ServerConnection] = set()
    server: Server | None = None

    async def handler(ws: ServerConnection) -> None:
        # The same minimal protocol as Tidewire: one subscribe command, one confirmation.
        await ws.recv()
        await ws.send(CONFIRMED)
        subscribers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

    async def start() -> None:
        nonlocal server
        # No pings and no compression: Tidewire runs with heartbeats off and the client
        # offers no extension, so every server does the same work per delivery.
        server = await serve(
            handler, "127.0.0.1", args.port, ping_interval=None, compression=None, backlog=1024
        )

    def publish(n: int) -> None:
        broadcast(subscribers, envelope_json(n, args.symbols))

    async def stop() -> None:
        if server is not None:
            server.close()
            await server.wait_closed()

    harness.run(start, publish, stop, args)


if __name__ == "__main__":
    main()
