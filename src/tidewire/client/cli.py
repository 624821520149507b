"""The `tidewire` commands of a client of the gateway: tail, snapshot, trades, publish.

Plain functions with typer annotations; `tidewire.cli` registers them on the command line.
Each prints JSON, one object per line on stdout, and errors on stderr (exit code 2 for a
request the gateway refused, 1 for a gateway that cannot be reached or a refused publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from tidewire.client.connection import TidewireClient
from tidewire.client.errors import ConnectionClosedError, ServerError, SubscriptionError
from tidewire.client.resync import is_resync

# Options of the commands that read from a gateway (tail, snapshot, trades).
UrlOption = Annotated[str, typer.Option(help="Gateway WebSocket URL.")]
SymbolsOption = Annotated[list[str] | None, typer.Option("--symbols", help="Symbol filter.")]
PortfoliosOption = Annotated[
    list[str] | None, typer.Option("--portfolio-ids", help="Portfolio filter.")
]
StrategiesOption = Annotated[
    list[str] | None, typer.Option("--strategy-ids", help="Strategy filter.")
]
SeverityOption = Annotated[str | None, typer.Option(help="Minimum severity.")]
VenueOption = Annotated[str | None, typer.Option(help="Venue filter.")]
UserOption = Annotated[str | None, typer.Option(help="User filter.")]
AssetClassOption = Annotated[str | None, typer.Option(help="Asset class filter.")]
MinPriceOption = Annotated[
    float | None, typer.Option(help="Lowest price (price, last trade or bid/ask mid).")
]
MaxPriceOption = Annotated[float | None, typer.Option(help="Highest price.")]
TokenOption = Annotated[
    str | None, typer.Option(envvar="TIDEWIRE_TOKEN", help="JWT (or TIDEWIRE_TOKEN).")
]
CaFileOption = Annotated[
    str | None, typer.Option(help="PEM CA file to trust for wss:// (self-signed gateways).")
]
LimitOption = Annotated[int | None, typer.Option(min=1, help="At most this many messages.")]
DEFAULT_WS_URL = "ws://127.0.0.1:8765/ws"


def _filters(**values: Any) -> dict[str, Any]:
    """The given filter options as a subscription's filters (list options split on commas)."""
    filters: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, list):
            value = _split(value)
        if value is not None and value != [] and value != "":
            filters[name] = value
    return filters


def _print_json(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


Query = Callable[[TidewireClient], Awaitable[list[dict[str, Any]]]]


def _query(url: str, token: str | None, ca_file: str | None, query: Query) -> None:
    """Connect, print every message `await query(client)` returns, one per line; exit 2 when
    the gateway refuses the request."""

    async def run() -> int:
        # One question, one answer: a gateway that cannot be reached is an error at once.
        options: dict[str, Any] = {"auto_reconnect": False, "heartbeat_interval": None}
        async with TidewireClient(url, token=token, ca_file=ca_file, **options) as client:
            try:
                messages = await query(client)
            except ServerError as exc:
                typer.echo(f"error: {exc.error_code}: {exc.error_message}", err=True)
                return 2
        for message in messages:
            _print_json(message)
        return 0

    raise typer.Exit(_run(run, url))


def _run(main: Callable[[], Coroutine[Any, Any, int]], url: str) -> int:
    """`main()`'s exit code; 1 with a message when the gateway cannot be reached."""
    try:
        return asyncio.run(main())
    except (ConnectionClosedError, OSError, TimeoutError) as exc:
        typer.echo(f"error: {url}: {exc or type(exc).__name__}", err=True)
        return 1


def tail(
    stream: Annotated[str, typer.Argument(help="Stream (or topic) to follow, e.g. market_data.")],
    url: UrlOption = DEFAULT_WS_URL,
    symbols: SymbolsOption = None,
    portfolio_ids: PortfoliosOption = None,
    strategy_ids: StrategiesOption = None,
    severity: SeverityOption = None,
    venue: VenueOption = None,
    user_id: UserOption = None,
    asset_class: AssetClassOption = None,
    min_price: MinPriceOption = None,
    max_price: MaxPriceOption = None,
    count: Annotated[
        int | None, typer.Option(help="Exit after this many messages (default: run until ^C).")
    ] = None,
    snapshot: Annotated[
        bool, typer.Option(help="Start with the latest value per key (snapshot streams).")
    ] = True,
    token: TokenOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Print live messages of STREAM, one JSON object per line."""
    filters = _filters(
        symbols=symbols,
        portfolio_ids=portfolio_ids,
        strategy_ids=strategy_ids,
        severity=severity,
        venue=venue,
        user_id=user_id,
        asset_class=asset_class,
        min_price=min_price,
        max_price=max_price,
    )

    async def run() -> int:
        async with TidewireClient(url, token=token, ca_file=ca_file) as client:
            try:
                subscription = await client.subscribe(
                    stream, filters=filters or None, snapshot=None if snapshot else False
                )
            except SubscriptionError as exc:
                typer.echo(f"error: {exc.error_code}: {exc.error_message}", err=True)
                return 2
            seen = 0
            async for message in subscription:
                if is_resync(message):
                    # A gap the gateway could not replay: say so, on stderr, and go on.
                    typer.echo(f"resync: {message['reason']} ({message['stream']})", err=True)
                    continue
                _print_json(message)
                seen += 1
                if count is not None and seen >= count:
                    break
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        raise typer.Exit(_run(run, url))


def snapshot(
    stream: Annotated[str, typer.Argument(help="Stream (or topic), e.g. market_data.AAPL.")],
    url: UrlOption = DEFAULT_WS_URL,
    symbols: SymbolsOption = None,
    portfolio_ids: PortfoliosOption = None,
    strategy_ids: StrategiesOption = None,
    severity: SeverityOption = None,
    venue: VenueOption = None,
    user_id: UserOption = None,
    asset_class: AssetClassOption = None,
    min_price: MinPriceOption = None,
    max_price: MaxPriceOption = None,
    limit: LimitOption = None,
    token: TokenOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Print the latest message per key of STREAM (get_snapshot), one JSON object per line."""
    filters = _filters(
        symbols=symbols,
        portfolio_ids=portfolio_ids,
        strategy_ids=strategy_ids,
        severity=severity,
        venue=venue,
        user_id=user_id,
        asset_class=asset_class,
        min_price=min_price,
        max_price=max_price,
    )
    _query(url, token, ca_file, lambda client: client.get_snapshot(stream, filters, limit))


def trades(
    url: UrlOption = DEFAULT_WS_URL,
    symbols: SymbolsOption = None,
    portfolio_ids: PortfoliosOption = None,
    strategy_ids: StrategiesOption = None,
    venue: VenueOption = None,
    user_id: UserOption = None,
    limit: LimitOption = None,
    token: TokenOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Print recent trades (get_trade_history), oldest first, one JSON object per line."""
    filters = _filters(
        symbols=symbols,
        portfolio_ids=portfolio_ids,
        strategy_ids=strategy_ids,
        venue=venue,
        user_id=user_id,
    )
    _query(url, token, ca_file, lambda client: client.trade_history(filters, limit))


def publish(
    file: Annotated[
        str, typer.Argument(help="JSON file (one message, a list, or JSON lines); - for stdin.")
    ],
    url: Annotated[
        str, typer.Option(help="Control-plane URL of the gateway.")
    ] = "http://127.0.0.1:8766",
    token: Annotated[
        str | None,
        typer.Option(envvar="TIDEWIRE_TOKEN", help="JWT with the publisher role (or env)."),
    ] = None,
    ca_file: Annotated[
        str | None, typer.Option(help="PEM CA file to trust for https:// (self-signed).")
    ] = None,
) -> None:
    """Publish messages through POST /api/publish and print the gateway's answer."""
    import ssl

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
        response = httpx.post(
            f"{url.rstrip('/')}/api/publish",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
        )
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(response.text)
    if response.status_code != 200:
        raise typer.Exit(1)


def _split(values: list[str] | None) -> list[str]:
    """Accept both `--symbols A --symbols B` and `--symbols A,B`."""
    return [part for value in values or [] for part in value.split(",") if part]
