"""Command line: `tidewire serve | config | token | status | tail | snapshot | trades |
publish | schema`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tidewire.client.cli import publish, snapshot, tail, trades
from tidewire.client.status_cli import status
from tidewire.protocol.errors import CloseCode

app = typer.Typer(
    name="tidewire",
    help="Tidewire: real-time streaming gateway for trading platforms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


SERVER_EXTRA_HINT = 'the gateway is not installed here: pip install "tidewire[server]"'


def _require_server() -> None:
    """Exit with a clear message when the gateway's dependencies (the `server` extra) are
    missing: the base install is the Python SDK only."""
    try:
        import jwt  # noqa: F401
        import litestar  # noqa: F401
        import picows  # noqa: F401
        import pydantic_settings  # noqa: F401
    except ImportError as exc:
        typer.echo(f"error: {SERVER_EXTRA_HINT} ({exc.name} is missing)", err=True)
        raise typer.Exit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # picows logs every accepted connection at INFO: too chatty for thousands of clients.
    logging.getLogger("picows").setLevel(max(logging.WARNING, logging.getLogger().level))


@app.command()
def serve(
    demo: Annotated[bool, typer.Option(help="Run the market simulator (demo data).")] = False,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML settings file (under TIDEWIRE_* variables and these flags)."),
    ] = None,
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
    jwt_secret: Annotated[
        str | None,
        typer.Option(help="HMAC key of HS256 tokens (prefer TIDEWIRE_JWT_SECRET: not in ps)."),
    ] = None,
    jwt_public_key_file: Annotated[
        str | None, typer.Option(help="PEM public key of RS256/ES256 tokens.")
    ] = None,
    jwt_jwks_file: Annotated[
        str | None, typer.Option(help="JWKS file; the token's kid picks the key.")
    ] = None,
    jwt_algorithms: Annotated[
        str | None, typer.Option(help="Accepted algorithms, comma-separated (e.g. RS256).")
    ] = None,
    jwt_audience: Annotated[str | None, typer.Option(help="Required aud claim.")] = None,
    jwt_issuer: Annotated[str | None, typer.Option(help="Required iss claim.")] = None,
    jwt_leeway: Annotated[
        float | None, typer.Option(help="Seconds of clock skew on exp/nbf/iat.")
    ] = None,
    jwt_denylist_file: Annotated[
        str | None, typer.Option(help="File of revoked jti values, one per line.")
    ] = None,
    auth_timeout: Annotated[
        float | None, typer.Option(help="Seconds a connection has to send auth.")
    ] = None,
    auth_query_token: Annotated[
        bool | None, typer.Option(help="Accept ?token= on the WebSocket URL.")
    ] = None,
    allowed_origins: Annotated[
        str | None, typer.Option(help="Origins allowed to connect, comma-separated ('*': any).")
    ] = None,
    allowed_hosts: Annotated[
        str | None, typer.Option(help="Host values the control plane serves, comma-separated.")
    ] = None,
    cors_origins: Annotated[
        str | None, typer.Option(help="Origins allowed to call the control plane (CORS).")
    ] = None,
    tls_cert_file: Annotated[
        str | None, typer.Option(help="PEM certificate chain: TLS on both ports.")
    ] = None,
    tls_key_file: Annotated[str | None, typer.Option(help="PEM key of --tls-cert-file.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the gateway. Settings: these flags over TIDEWIRE_* environment variables over
    the --config file over the defaults (docs/settings.md)."""
    _require_server()
    from tidewire.config import ConfigError, load_settings
    from tidewire.server.app import Gateway

    _configure_logging(log_level)
    if workers > 1 and nautilus:
        typer.echo(
            "error: --nautilus reads in one process: run it with --workers 1 (it can publish "
            "into the same --broker redis://... the workers share)",
            err=True,
        )
        raise typer.Exit(2)
    security: dict[str, Any] = {
        "jwt_secret": jwt_secret,
        "jwt_public_key_file": jwt_public_key_file,
        "jwt_jwks_file": jwt_jwks_file,
        "jwt_algorithms": _split([jwt_algorithms]) if jwt_algorithms else None,
        "jwt_audience": jwt_audience,
        "jwt_issuer": jwt_issuer,
        "jwt_leeway": jwt_leeway,
        "jwt_denylist_file": jwt_denylist_file,
        "auth_timeout": auth_timeout,
        "auth_query_token": auth_query_token,
        "allowed_origins": _split([allowed_origins]) if allowed_origins else None,
        "allowed_hosts": _split([allowed_hosts]) if allowed_hosts else None,
        "cors_origins": _split([cors_origins]) if cors_origins else None,
        "tls_cert_file": tls_cert_file,
        "tls_key_file": tls_key_file,
    }
    security = {name: value for name, value in security.items() if value is not None}
    if workers > 1:
        _serve_workers(
            workers,
            demo,
            host,
            port,
            internal_host,
            internal_port,
            rate,
            broker,
            log_level,
            [
                *(["--config", str(config)] if config is not None else []),
                *_forwarded_flags(security),
            ],
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
    overrides.update(security)
    if demo:
        overrides["simulator"] = True
    try:
        settings = load_settings(config, **overrides)
        gateway = Gateway(settings)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> None:
        await gateway.start()
        typer.echo(f"Tidewire is serving WebSocket clients at {gateway.url}", err=True)
        typer.echo(f"Control plane: {gateway.internal_url}  (API docs at /docs)", err=True)
        if not settings.auth_enabled:
            typer.echo(
                "Authentication is OFF: whoever reaches these ports reads every portfolio. "
                "Turn it on with TIDEWIRE_JWT_SECRET=<32+ bytes> (README: Securing a "
                "deployment) and mint tokens with `tidewire token`.",
                err=True,
            )
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
    forwarded: list[str],
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
    args += [*forwarded, "--log-level", log_level]
    base = internal_port if internal_port is not None else settings.internal_port
    typer.echo(
        f"Starting {workers} workers on port {settings.port}; control planes on ports "
        f"{base}..{base + workers - 1}",
        err=True,
    )
    raise typer.Exit(supervise(args, workers, base))


def _forwarded_flags(security: dict[str, Any]) -> list[str]:
    """The security options as flags for worker processes (a secret travels through the
    environment instead, where `ps` does not show it)."""
    flags: list[str] = []
    for name, value in security.items():
        flag = "--" + name.replace("_", "-")
        if name == "jwt_secret":
            os.environ["TIDEWIRE_JWT_SECRET"] = value  # inherited by the workers
            continue
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            flags += [flag, ",".join(value)]
        else:
            flags += [flag, str(value)]
    return flags


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="The user (sub claim).")],
    portfolios: Annotated[
        str | None, typer.Option(help="Portfolios it may read, comma-separated ('*': all).")
    ] = None,
    roles: Annotated[
        str, typer.Option(help="subscriber, publisher, admin (comma-separated).")
    ] = "subscriber",
    streams: Annotated[
        str | None, typer.Option(help="Streams it may read, comma-separated (default: all).")
    ] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 15m, 1h, 7d.")] = "1h",
    private_key: Annotated[
        str | None, typer.Option(help="PEM private key for RS256/ES256 (else jwt_secret).")
    ] = None,
    algorithm: Annotated[
        str | None, typer.Option(help="HS256 (default with a secret), RS256, ES256, ...")
    ] = None,
    kid: Annotated[str | None, typer.Option(help="Key id header (JWKS).")] = None,
) -> None:
    """Mint a token from the configured key (TIDEWIRE_JWT_SECRET, or --private-key)."""
    _require_server()
    from tidewire.security.minting import load_private_key, mint_token, parse_ttl
    from tidewire.settings import GatewaySettings

    key: Any
    try:
        settings = GatewaySettings()
        lifetime = parse_ttl(ttl)
        if private_key is not None:
            key = load_private_key(Path(private_key))
            default_algorithm = "RS256" if "RSA" in type(key).__name__ else "ES256"
        elif settings.jwt_secret is not None:
            key = settings.jwt_secret.get_secret_value()
            default_algorithm = "HS256"
        else:
            raise ValueError("no key: set TIDEWIRE_JWT_SECRET or pass --private-key FILE")
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    sys.stdout.write(
        mint_token(
            sub,
            key=key,
            algorithm=algorithm or default_algorithm,
            ttl=lifetime,
            portfolio_ids=_split([portfolios]) if portfolios is not None else None,
            roles=_split([roles]),
            streams=_split([streams]) if streams is not None else None,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            kid=kid,
        )
        + "\n"
    )


# The commands of a client of the gateway live with the SDK.
for _command in (tail, snapshot, trades, publish, status):
    app.command()(_command)


def _split(values: list[str] | None) -> list[str]:
    """Accept both `--symbols A --symbols B` and `--symbols A,B`."""
    return [part for value in values or [] for part in value.split(",") if part]


@app.command(name="config")
def show_config(
    config: Annotated[Path | None, typer.Option(help="TOML settings file, as for serve.")] = None,
    reference: Annotated[
        bool, typer.Option("--reference", help="Print docs/settings.md (every setting) instead.")
    ] = False,
) -> None:
    """Print the effective settings (flags aside) as TOML: the environment over the --config
    file over the defaults; secrets masked."""
    _require_server()
    from tidewire.config import ConfigError, effective_settings, load_settings, settings_reference

    if reference:
        sys.stdout.write(settings_reference())
        return
    try:
        settings = load_settings(config)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for name, value in effective_settings(settings).items():
        if value is not None:
            typer.echo(f"{name} = {json.dumps(value)}")


@app.command()
def schema(
    typescript: Annotated[
        bool, typer.Option("--typescript", help="Print the TypeScript declarations instead.")
    ] = False,
    javascript: Annotated[
        bool,
        typer.Option("--javascript", help="Print the JavaScript client's catalogue instead."),
    ] = False,
) -> None:
    """Print the protocol's JSON Schema (or TypeScript declarations, or the JavaScript
    client's generated tables)."""
    from tidewire.protocol.javascript import javascript_catalogue
    from tidewire.protocol.schema import json_schema
    from tidewire.protocol.typescript import typescript_declarations

    if typescript:
        sys.stdout.write(typescript_declarations())
    elif javascript:
        sys.stdout.write(javascript_catalogue())
    else:
        sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
