"""Reference (opt-in, `--servers ...,picows`): bare picows, one `send` per delivery.

Not a peer to beat but the floor under Tidewire's one-write-per-delivery case: the same
transport Tidewire uses, with no hub, no subscriptions and no outboxes. The difference to
Tidewire at `--burst 1` is what Tidewire's own Python costs per delivery.
"""

from __future__ import annotations

import asyncio
import json

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from bench.peers import harness
from bench.quotes import envelope_json

CONFIRMED = json.dumps({"type": "subscription_confirmed", "stream": "market_data"}).encode()


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    subscribers: set[WSTransport] = set()
    server: asyncio.Server | None = None

    class Subscriber(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.TEXT:  # the subscribe command
                transport.send(WSMsgType.TEXT, CONFIRMED)
                subscribers.add(transport)
            elif frame.msg_type is WSMsgType.CLOSE:
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            subscribers.discard(transport)

    async def start() -> None:
        nonlocal server
        server = await ws_create_server(
            lambda request: Subscriber(), "127.0.0.1", args.port, backlog=1024
        )

    def publish(n: int) -> None:
        frame = envelope_json(n, args.symbols).encode()
        for transport in subscribers:
            transport.send(WSMsgType.TEXT, frame)

    async def stop() -> None:
        if server is not None:
            server.close()

    harness.run(start, publish, stop, args)


if __name__ == "__main__":
    main()
