"""`tidewire status`: a running gateway at a glance, from its control plane.

Reads `/readyz` (open) and `/api/stats` (the admin role when authentication is on: pass a
token with `--token` or `TIDEWIRE_TOKEN`) twice, `--interval` seconds apart, and prints one
small table: readiness and its problems, connections and subscriptions, deliveries and bytes
per second over the interval, slow-consumer closes, broker lag per stream (the streams that
lag), and the counts of rejected input. `--json` prints the figures as one JSON object.
Exit status 0 when the gateway is ready, 1 when it is not (or cannot be reached), 2 when it
refused the token.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

DEFAULT_CONTROL_URL = "http://127.0.0.1:8766"


def gather(url: str, token: str | None, interval: float) -> dict[str, Any]:
    """The figures `status` shows, measured over `interval` seconds. Raises httpx.HTTPError
    (unreachable) or PermissionError (the token was refused)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=10.0) as http:

        def stats() -> dict[str, Any]:
            answer = http.get("/api/stats")
            if answer.status_code in (401, 403):
                raise PermissionError(answer.json().get("error_message", answer.text))
            answer.raise_for_status()
            body: dict[str, Any] = answer.json()
            return body

        first, started = stats(), time.monotonic()
        time.sleep(interval)  # the measuring window of the rates, not a synchronisation
        second = stats()
        seconds = max(time.monotonic() - started, 1e-6)
        ready = http.get("/readyz").json()
    lag = second.get("broker_lag") or {}
    return {
        "ready": bool(ready.get("ready")),
        "problems": ready.get("problems", []),
        "version": second.get("version"),
        "uptime_seconds": second.get("uptime_seconds"),
        "connections": second.get("connections"),
        "subscriptions": second.get("subscriptions"),
        "deliveries_per_second": round((second["deliveries"] - first["deliveries"]) / seconds, 1),
        "bytes_per_second": round((second["bytes_written"] - first["bytes_written"]) / seconds),
        "messages_per_second": round(
            (second["messages_dispatched"] - first["messages_dispatched"]) / seconds, 1
        ),
        "slow_consumer_closes": second.get("slow_consumer_closes"),
        "heartbeat_timeouts": second.get("heartbeat_timeouts"),
        "broker_lag": {stream: behind for stream, behind in lag.items() if behind},
        "broker_reachable": second.get("broker_lag") is not None,
        "inbound_violations": sum((second.get("inbound_violations") or {}).values()),
        "broker_skipped": sum((second.get("broker_skipped") or {}).values()),
    }


def render(figures: dict[str, Any], console: Console) -> None:
    table = Table(title="Tidewire gateway", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    ready = "[green]ready[/]" if figures["ready"] else "[red]not ready[/]"
    table.add_row("readiness", ready)
    for problem in figures["problems"]:
        table.add_row("", f"[red]{problem}[/]")
    table.add_row("version, uptime", f"{figures['version']}, {figures['uptime_seconds']} s")
    table.add_row("connections", str(figures["connections"]))
    table.add_row("subscriptions", str(figures["subscriptions"]))
    table.add_row("messages/s in", str(figures["messages_per_second"]))
    table.add_row("deliveries/s", str(figures["deliveries_per_second"]))
    table.add_row("bytes/s out", str(figures["bytes_per_second"]))
    table.add_row("slow-consumer closes", str(figures["slow_consumer_closes"]))
    table.add_row("heartbeat timeouts", str(figures["heartbeat_timeouts"]))
    if not figures["broker_reachable"]:
        table.add_row("broker lag", "[red]broker unreachable[/]")
    elif figures["broker_lag"]:
        lagging = ", ".join(f"{s} {n}" for s, n in sorted(figures["broker_lag"].items()))
        table.add_row("broker lag", f"[yellow]{lagging}[/]")
    else:
        table.add_row("broker lag", "0")
    table.add_row("rejected input", f"{figures['inbound_violations']} closes by inbound rules")
    table.add_row("skipped broker data", str(figures["broker_skipped"]))
    console.print(table)


def status(
    url: Annotated[str, typer.Option(help="Gateway control-plane URL.")] = DEFAULT_CONTROL_URL,
    token: Annotated[
        str | None, typer.Option(envvar="TIDEWIRE_TOKEN", help="Admin JWT (or TIDEWIRE_TOKEN).")
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, max=60.0, help="Seconds over which rates are measured.")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Readiness, connections, rates and broker lag of a running gateway."""
    try:
        figures = gather(url, token, interval)
    except PermissionError as exc:
        typer.echo(f"error: the gateway refused the token: {exc}", err=True)
        raise typer.Exit(2) from None
    except (httpx.HTTPError, ValueError) as exc:
        typer.echo(f"error: cannot read the gateway at {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        render(figures, Console())
    raise typer.Exit(0 if figures["ready"] else 1)
