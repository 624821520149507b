"""docs/grafana/tidewire.json: importable as it is, and every metric it queries is served."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from promscrape import Connect, scrape, serve_traffic
from tidewire.server.app import Gateway
from tidewire.server.metrics import AWAITING_COUNTERS

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "tidewire.json"
METRIC = re.compile(r"\btidewire_[a-z0-9_]+\b")
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")
ON_EVENT = frozenset(
    {
        "tidewire_inbound_violations_total",
        "tidewire_broker_skipped_total",
        "tidewire_inbound_errors_total",
        "tidewire_connections_closed_by_code_total",
    }
)
"""Labelled by a kind known only when one happens: no sample before the first."""


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: the panels' targets and the template variables' queries."""
    out = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            out.append(variable["definition"])
    return out


def queried_metrics(dashboard: dict[str, Any]) -> set[str]:
    return {name for expr in queries(dashboard) for name in METRIC.findall(expr)}


def test_dashboard_is_importable_as_it_is() -> None:
    dashboard = load()
    assert dashboard["uid"] == "tidewire" and dashboard["title"]
    assert dashboard["id"] is None  # Grafana assigns it on import
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["type"] == "prometheus"
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
    names = {variable["name"] for variable in dashboard["templating"]["list"]}
    # Every datasource reference resolves to the dashboard's own variable (no __inputs).
    assert "datasource" in names and "__inputs" not in dashboard
    used = set(re.findall(r"\$\{?(\w+)", json.dumps(dashboard["panels"])))
    assert used - {"__rate_interval"} <= names


def test_it_shows_what_the_issue_asks_for() -> None:
    names = queried_metrics(load())
    for wanted in (
        "tidewire_connections",
        "tidewire_deliveries_total",
        "tidewire_publish_to_write_seconds_bucket",
        "tidewire_slow_consumer_closes_total",
        "tidewire_recovery_requests_total",
        "tidewire_broker_lag_messages",
    ):
        assert wanted in names


async def test_every_queried_metric_is_served(gateway: Gateway, connect: Connect) -> None:
    await serve_traffic(gateway, connect)
    result = await scrape(gateway)
    names = queried_metrics(load())
    missing = names - result.declared
    assert not missing, f"queried but not at /metrics: {sorted(missing)}"
    for name in names:
        family = HISTOGRAM_SERIES.sub("", name) if name not in AWAITING_COUNTERS else name
        if family in AWAITING_COUNTERS | ON_EVENT or name.endswith(("_gsum", "_gcount")):
            continue  # declared; samples once the core counts it
        assert name in result.samples, f"{name} has no sample after some traffic"
