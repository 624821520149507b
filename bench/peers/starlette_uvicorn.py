"""Peer: Starlette's WebSocketRoute on uvicorn, fanning out with `await ws.send_text()`.

Fan-out is the idiomatic loop over the connected set, one awaited `send_text` each (what the
Starlette docs and `broadcaster` do). `asyncio.gather` over the set was not chosen: it
creates one task per connection per message, which costs more than the sequential awaits,
which do not suspend unless a connection's buffer is full (uvicorn's backpressure).
uvicorn picks its protocol implementations: h11 (httptools is not installed) and the
websockets sans-I/O WebSocket protocol; the loop is plain asyncio, as for the other servers.
"""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.control import poll
from bench.peers import harness
from bench.quotes import envelope_json

CONFIRMED = {"type": "subscription_confirmed", "stream": "market_data"}


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    subscribers: set[WebSocket] = set()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()  # the subscribe command
        await ws.send_json(CONFIRMED)
        subscribers.add(ws)
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            subscribers.discard(ws)

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="none",  # run inside harness's asyncio.run
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws_ping_interval=None,  # no pings, as for the other servers
        ws_per_message_deflate=False,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    serving: asyncio.Task[None] | None = None

    async def start() -> None:
        nonlocal serving
        serving = asyncio.create_task(server.serve())
        await poll(lambda: server.started)

    async def publish(n: int) -> None:
        text = envelope_json(n, args.symbols)
        for ws in list(subscribers):  # a copy: the set changes when a client leaves
            try:
                await ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                subscribers.discard(ws)

    async def stop() -> None:
        server.should_exit = True
        if serving is not None:
            await serving

    harness.run(start, publish, stop, args)


if __name__ == "__main__":
    main()
