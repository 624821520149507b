"""Command line: `tidewire serve | tail | publish | schema`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from tidewire.protocol.errors import CloseCode

app = typer.Typer(
    name="tidewire",
    help="Tidewire: real-time streaming gateway for trading platforms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # picows logs every accepted connection at INFO: too chatty for thousands of clients.
    logging.getLogger("picows").setLevel(max(logging.WARNING, logging.getLogger().level))


@app.command()
def serve(
    demo: Annotated[bool, typer.Option(help="Run the market simulator (demo data).")] = False,
    host: Annotated[str | None, typer.Option(help="Client (WebSocket) interface.")] = None,
    port: Annotated[int | None, typer.Option(help="Client (WebSocket) port.")] = None,
    internal_host: Annotated[str | None, typer.Option(help="Control-plane interface.")] = None,
    internal_port: Annotated[int | None, typer.Option(help="Control-plane (HTTP) port.")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Simulator quotes per second per symbol.")
    ] = None,
    broker: Annotated[
        str | None, typer.Option(help="memory:// (default) or redis://host:port/db.")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes sharing the client port (needs --broker redis).")
    ] = 1,
    nautilus: Annotated[
        str | None,
        typer.Option(
            "--nautilus",
            help="Read NautilusTrader's message bus from this Redis (redis://host:port).",
        ),
    ] = None,
    nautilus_stream: Annotated[
        list[str] | None,
        typer.Option(
            "--nautilus-stream",
            help="Nautilus stream key or glob pattern (repeatable; default: trader-*).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the gateway. Settings also come from TIDEWIRE_* environment variables."""
    from tidewire.server.app import Gateway
    from tidewire.settings import GatewaySettings

    _configure_logging(log_level)
    if workers > 1 and nautilus:
        typer.echo(
            "error: --nautilus reads in one process: run it with --workers 1 (it can publish "
            "into the same --broker redis://... the workers share)",
            err=True,
        )
        raise typer.Exit(2)
    if workers > 1:
        _serve_workers(
            workers, demo, host, port, internal_host, internal_port, rate, broker, log_level
        )
        return
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "host": host,
            "port": port,
            "internal_host": internal_host,
            "internal_port": internal_port,
            "simulator_rate": rate,
            "broker_url": broker,
            "nautilus_url": nautilus,
            "nautilus_streams": nautilus_stream or None,
        }.items()
        if value is not None
    }
    if demo:
        overrides["simulator"] = True
    settings = GatewaySettings(**overrides)

    async def run() -> None:
        gateway = Gateway(settings)
        await gateway.start()
        typer.echo(f"Tidewire is serving WebSocket clients at {gateway.url}", err=True)
        typer.echo(f"Control plane: {gateway.internal_url}  (API docs at /docs)", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        typer.echo("Shutting down: closing client connections (1001)", err=True)
        await gateway.stop(CloseCode.GOING_AWAY)

    asyncio.run(run())


def _serve_workers(
    workers: int,
    demo: bool,
    host: str | None,
    port: int | None,
    internal_host: str | None,
    internal_port: int | None,
    rate: float | None,
    broker: str | None,
    log_level: str,
) -> None:
    from tidewire.server.workers import supervise
    from tidewire.settings import GatewaySettings

    given: dict[str, Any] = {"port": port, "broker_url": broker}
    settings = GatewaySettings(**{k: v for k, v in given.items() if v is not None})
    if not settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        typer.echo(
            "error: --workers needs a shared broker: --broker redis://host:port/db", err=True
        )
        raise typer.Exit(2)
    if settings.port == 0:
        typer.echo("error: --workers needs a fixed --port to share", err=True)
        raise typer.Exit(2)
    args = ["--port", str(settings.port), "--broker", settings.broker_url]
    for flag, value in (("--host", host), ("--internal-host", internal_host), ("--rate", rate)):
        if value is not None:
            args += [flag, str(value)]
    if demo:
        args.append("--demo")
    args += ["--log-level", log_level]
    base = internal_port if internal_port is not None else settings.internal_port
    typer.echo(
        f"Starting {workers} workers on port {settings.port}; control planes on ports "
        f"{base}..{base + workers - 1}",
        err=True,
    )
    raise typer.Exit(supervise(args, workers, base))


@app.command()
def tail(
    stream: Annotated[str, typer.Argument(help="Stream to follow, e.g. market_data.")],
    url: Annotated[str, typer.Option(help="Gateway WebSocket URL.")] = "ws://127.0.0.1:8765/ws",
    symbols: Annotated[list[str] | None, typer.Option("--symbols", help="Symbol filter.")] = None,
    portfolio_ids: Annotated[
        list[str] | None, typer.Option("--portfolio-ids", help="Portfolio filter.")
    ] = None,
    strategy_ids: Annotated[
        list[str] | None, typer.Option("--strategy-ids", help="Strategy filter.")
    ] = None,
    severity: Annotated[str | None, typer.Option(help="Minimum severity.")] = None,
    venue: Annotated[str | None, typer.Option(help="Venue filter.")] = None,
    count: Annotated[
        int | None, typer.Option(help="Exit after this many messages (default: run until ^C).")
    ] = None,
) -> None:
    """Print live messages of STREAM, one JSON object per line."""
    from tidewire.client import SubscriptionError, TidewireClient, is_resync

    filters: dict[str, Any] = {}
    for name, value in (
        ("symbols", _split(symbols)),
        ("portfolio_ids", _split(portfolio_ids)),
        ("strategy_ids", _split(strategy_ids)),
        ("severity", severity),
        ("venue", venue),
    ):
        if value:
            filters[name] = value

    async def run() -> int:
        async with TidewireClient(url) as client:
            try:
                subscription = await client.subscribe(stream, filters=filters or None)
            except SubscriptionError as exc:
                typer.echo(f"error: {exc.error_code}: {exc.error_message}", err=True)
                return 2
            seen = 0
            async for message in subscription:
                if is_resync(message):
                    # A gap the gateway could not replay: say so, on stderr, and go on.
                    typer.echo(f"resync: {message['reason']} ({message['stream']})", err=True)
                    continue
                sys.stdout.write(json.dumps(message, separators=(",", ":"), default=str) + "\n")
                sys.stdout.flush()
                seen += 1
                if count is not None and seen >= count:
                    break
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        raise typer.Exit(asyncio.run(run()))


def _split(values: list[str] | None) -> list[str]:
    """Accept both `--symbols A --symbols B` and `--symbols A,B`."""
    return [part for value in values or [] for part in value.split(",") if part]


@app.command()
def publish(
    file: Annotated[
        str, typer.Argument(help="JSON file (one message, a list, or JSON lines); - for stdin.")
    ],
    url: Annotated[
        str, typer.Option(help="Control-plane URL of the gateway.")
    ] = "http://127.0.0.1:8766",
) -> None:
    """Publish messages through POST /api/publish and print the gateway's answer."""
    import httpx

    text = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        body: Any = msgspec.json.decode(text)
    except msgspec.DecodeError:
        # JSON lines: one message per line.
        try:
            body = [msgspec.json.decode(line) for line in text.splitlines() if line.strip()]
        except msgspec.DecodeError as exc:
            typer.echo(f"error: {file} is neither JSON nor JSON lines: {exc}", err=True)
            raise typer.Exit(2) from None
    try:
        response = httpx.post(f"{url.rstrip('/')}/api/publish", json=body, timeout=30)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(response.text)
    if response.status_code != 200:
        raise typer.Exit(1)


@app.command()
def schema(
    typescript: Annotated[
        bool, typer.Option("--typescript", help="Print the TypeScript declarations instead.")
    ] = False,
) -> None:
    """Print the protocol's JSON Schema (or TypeScript declarations)."""
    from tidewire.protocol.schema import json_schema
    from tidewire.protocol.typescript import typescript_declarations

    if typescript:
        sys.stdout.write(typescript_declarations())
    else:
        sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
