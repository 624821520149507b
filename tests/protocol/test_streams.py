"""protocol.streams: the stream catalogue is complete and consistent with the rest of protocol."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from tidewire.protocol import compat
from tidewire.protocol.messages import DataMessage, Filters
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE
from tidewire.protocol.shapes import SHAPES, TOP_LEVEL_FIELDS
from tidewire.protocol.streams import (
    FILTER_FIELDS,
    KEY_FILTER_OF_FIELD,
    SEVERITIES,
    SEVERITY_ALIASES,
    SEVERITY_RANK,
    STREAM_ALIASES,
    STREAM_OF_TYPE,
    STREAMS,
    StreamClass,
    resolve_stream,
)

LATEST, RELIABLE = StreamClass.LATEST_VALUE, StreamClass.RELIABLE

# docs/protocol.md section 4: stream, key, class, message types (the main one first).
TABLE: list[tuple[str, str, StreamClass, tuple[str, ...]]] = [
    ("market_data", "symbol", LATEST, ("market_data",)),
    ("trade_updates", "portfolio_id", RELIABLE, ("trade_updates",)),
    ("order_updates", "portfolio_id", RELIABLE, ("order_update",)),
    ("position_updates", "portfolio_id", RELIABLE, ("position_update",)),
    ("risk_alerts", "portfolio_id", RELIABLE, ("risk_alert", "breach_alert")),
    ("performance_updates", "portfolio_id", LATEST, ("performance_update",)),
    ("strategy_performance", "strategy_id", LATEST, ("strategy_performance",)),
    ("execution_analytics", "symbol", RELIABLE, ("execution_analytics",)),
    ("risk_metrics", "portfolio_id", LATEST, ("risk_metrics",)),
    ("engine_status", "engine_id", LATEST, ("engine_status",)),
    ("system_health", "component", LATEST, ("system_health",)),
    (
        "events",
        "source",
        RELIABLE,
        ("event", "alert", "system_alert", "notification", "command_response"),
    ),
]


def test_catalogue_is_the_documented_table() -> None:
    assert list(STREAMS) == [row[0] for row in TABLE]


@pytest.mark.parametrize(("name", "key_field", "stream_class", "types"), TABLE)
def test_stream_spec(
    name: str, key_field: str, stream_class: StreamClass, types: tuple[str, ...]
) -> None:
    spec = STREAMS[name]
    assert spec.name == name
    assert spec.key_field == key_field
    assert spec.stream_class is stream_class
    assert spec.reliable is (stream_class is RELIABLE)
    assert spec.message_types == types


@pytest.mark.parametrize("name", list(STREAMS))
def test_key_field_is_resolvable(name: str) -> None:
    """The key is read from a top-level field of the message (or its `source`)."""
    key_field = STREAMS[name].key_field
    assert key_field in TOP_LEVEL_FIELDS or key_field == "source"
    assert key_field in DataMessage.__struct_fields__


@pytest.mark.parametrize(
    ("name", "message_type"),
    [(spec.name, t) for spec in STREAMS.values() for t in spec.message_types],
)
def test_message_types_map_back_to_their_stream(name: str, message_type: str) -> None:
    assert STREAM_OF_TYPE[message_type] == name
    assert resolve_stream(STREAM_OF_TYPE[message_type]) is STREAMS[name]


def test_no_message_type_is_on_two_streams() -> None:
    all_types = [t for spec in STREAMS.values() for t in spec.message_types]
    assert len(all_types) == len(set(all_types)) == len(STREAM_OF_TYPE)


def test_every_message_type_has_a_payload_and_a_shape() -> None:
    assert set(STREAM_OF_TYPE) == set(PAYLOAD_OF_TYPE) == set(SHAPES)


@pytest.mark.parametrize(
    ("name", "fallback", "snapshot_fields", "keeps"),
    [
        ("market_data", None, ("data_type",), True),
        ("trade_updates", "user_id", (), False),
        ("order_updates", "user_id", (), False),
        ("position_updates", None, ("strategy_id", "symbol"), True),
        ("risk_metrics", None, ("metric_type",), True),
        ("engine_status", "source", (), True),
        ("system_health", "source", (), True),
        ("events", None, (), False),
    ],
)
def test_keys_and_snapshot_units(
    name: str, fallback: str | None, snapshot_fields: tuple[str, ...], keeps: bool
) -> None:
    spec = STREAMS[name]
    assert spec.key_fallback == fallback
    assert spec.snapshot_fields == snapshot_fields
    assert spec.keeps_last_values is keeps


def test_one_risk_metric_never_replaces_another() -> None:
    from tidewire.protocol.ingest import build_data_message
    from tidewire.protocol.streams import snapshot_key

    spec = STREAMS["risk_metrics"]
    keys = {
        snapshot_key(
            spec,
            build_data_message(
                {
                    "type": "risk_metrics",
                    "portfolio_id": "P",
                    "metric_type": m,
                    "data": {"value": 1},
                }
            ),
        )
        for m in ("var_95", "leverage")
    }
    assert len(keys) == 2


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", list(STREAMS))
def test_canonical_names_resolve_to_themselves(name: str) -> None:
    assert resolve_stream(name) is STREAMS[name]


@pytest.mark.parametrize(("alias", "canonical"), sorted(STREAM_ALIASES.items()))
def test_aliases_resolve(alias: str, canonical: str) -> None:
    assert canonical in STREAMS
    assert alias not in STREAMS  # an alias never shadows a real stream
    spec = resolve_stream(alias)
    assert spec is not None and spec.name == canonical


PLURAL = [name for name in STREAMS if name.endswith("s") and name != "engine_status"]


@pytest.mark.parametrize("name", PLURAL)
def test_singular_of_every_plural_stream_resolves(name: str) -> None:
    spec = resolve_stream(name[:-1])
    assert spec is not None and spec.name == name


@pytest.mark.parametrize("name", ["", "nope", "MARKET_DATA", "market-data", "market_data "])
def test_unknown_names(name: str) -> None:
    assert resolve_stream(name) is None


# --------------------------------------------------------------------------- filters


FILTER_NAMES = set(Filters.__struct_fields__)


@pytest.mark.parametrize("name", list(STREAMS))
def test_stream_filters_are_real_filters(name: str) -> None:
    assert STREAMS[name].filters
    assert STREAMS[name].filters <= FILTER_NAMES


def test_compat_moves_exactly_the_filter_fields() -> None:
    assert compat._FILTER_NAMES == FILTER_NAMES


def test_single_field_filters_read_top_level_fields() -> None:
    assert set(FILTER_FIELDS) == FILTER_NAMES - {"min_price", "max_price"}
    for field in FILTER_FIELDS.values():
        assert field in TOP_LEVEL_FIELDS


@pytest.mark.parametrize("name", list(STREAMS))
def test_key_filter_is_allowed_on_its_stream(name: str) -> None:
    """A stream keyed by symbol/portfolio/strategy can be filtered by that key."""
    spec = STREAMS[name]
    key_filter = KEY_FILTER_OF_FIELD.get(spec.key_field)
    if key_filter is not None:
        assert key_filter in spec.filters
        assert FILTER_FIELDS[key_filter] == spec.key_field


def test_price_filters_come_in_pairs() -> None:
    for spec in STREAMS.values():
        assert ("min_price" in spec.filters) is ("max_price" in spec.filters), spec.name


# --------------------------------------------------------------------------- severity


def test_severity_order() -> None:
    assert SEVERITIES == ("low", "medium", "high", "critical")
    assert [SEVERITY_RANK[s] for s in SEVERITIES] == [0, 1, 2, 3]


def test_severity_filter_accepts_exactly_the_levels() -> None:
    literal = typing.get_args(typing.get_type_hints(Filters)["severity"])[0]
    assert set(typing.get_args(literal)) == set(SEVERITIES)


@pytest.mark.parametrize(("alias", "level"), sorted(SEVERITY_ALIASES.items()))
def test_severity_aliases_map_onto_levels(alias: str, level: str) -> None:
    assert level in SEVERITIES
    assert alias not in SEVERITIES
    assert alias == alias.lower()


def test_specs_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        STREAMS["market_data"].key_field = "venue"  # type: ignore[misc]
