"""tests/vectors/filters.json on the gateway and in the Python SDK (the JavaScript client
runs the same file in tests/dashboard/js/filters.test.mjs): one set of rules, three
implementations that cannot drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from tidewire.client.routing import matches
from tidewire.core.connection import Connection
from tidewire.core.subscription import Subscription
from tidewire.protocol.codec import ENCODE, WireFormat
from tidewire.protocol.filters import validate_filters
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.streams import STREAMS

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "filters.json").read_text())
CASES = [pytest.param(case, id=case["name"]) for case in VECTORS["cases"]]


def as_decimal_strings(value: Any) -> Any:
    """`value` with every number of its `data` written as a decimal string."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return {key: as_decimal_strings(item) for key, item in value.items()}
    return value


@pytest.mark.parametrize("case", CASES)
def test_the_gateway_matches_as_the_vectors_say(case: dict[str, Any]) -> None:
    spec = STREAMS[case["stream"]]
    message = build_data_message(case["message"]).sequenced(1, "ep")
    filters = validate_filters(case["filters"], spec)
    subscription = Subscription(
        cast(Connection, None), "s", spec, filters, "2026-01-01T00:00:00.000000Z"
    )
    assert subscription.matches_all(message) is case["match"]


@pytest.mark.parametrize("case", CASES)
def test_the_python_sdk_matches_as_the_vectors_say(case: dict[str, Any]) -> None:
    # What the client receives: the gateway's encoding of the published message.
    delivered = build_data_message(case["message"]).sequenced(1, "ep")
    received = msgspec.json.decode(ENCODE[WireFormat.JSON](delivered))
    assert matches(case["filters"], received) is case["match"]
    strings = {**received, "data": as_decimal_strings(received["data"])}
    assert matches(case["filters"], strings) is case["match"], "with decimals=string"
