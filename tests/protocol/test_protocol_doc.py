"""docs/protocol.md says what the code enforces: the stream and readers tables, and the
generated "Message types" tables (fields, required marks, extensions, 0.1 names, and the
derived fields, each checked against what ingest does)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tidewire.core.entitlements import portfolio_keyed
from tidewire.protocol import legacy, reference
from tidewire.protocol.ingest import build_data_message
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE
from tidewire.protocol.shapes import SHAPES, TOP_LEVEL_FIELDS
from tidewire.protocol.streams import STREAMS

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_stream_table_matches_the_catalogue() -> None:
    text = DOC.read_text()
    table = text.split("<!-- streams-table:start -->")[1].split("<!-- streams-table:end -->")[0]

    def names(cell: str) -> list[str]:
        return re.findall(r"`([^`]+)`", cell)

    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        documented[names(cells[0])[0]] = (
            names(cells[1])[0],
            cells[2],
            tuple(names(cells[3])),
            sorted(names(cells[4])),
        )
    expected = {
        spec.name: (
            spec.key_field,
            spec.stream_class.value,
            spec.message_types,
            sorted(spec.filters),
        )
        for spec in STREAMS.values()
    }
    assert documented == expected


def test_readers_table_covers_every_stream_and_its_key() -> None:
    text = DOC.read_text()
    table = text.split("<!-- readers-table:start -->")[1].split("<!-- readers-table:end -->")[0]
    rows = {
        re.findall(r"`([^`]+)`", line)[0]: line
        for line in table.splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == set(STREAMS)
    for name, row in rows.items():
        # Portfolio-keyed streams are exactly those whose subscriptions are narrowed.
        assert ("narrowed" in row) == portfolio_keyed(STREAMS[name]), name


# --------------------------------------------------------------------------- message types


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split(reference.START)[1].split(reference.END)[0]


def test_message_types_section_is_generated_from_the_code() -> None:
    assert _section() == "\n" + reference.message_types_markdown(), (
        "docs/protocol.md's Message types tables are out of date; regenerate them from the "
        f"repository root with\n    .venv/bin/{reference.REGENERATE_DOC_COMMAND}"
    )


def test_update_doc_rewrites_only_the_generated_part(tmp_path: Path) -> None:
    page = tmp_path / "protocol.md"
    page.write_text(f"# T\n\nbefore\n{reference.START}\nold\n{reference.END}\nafter\n")
    reference.update_doc(page)
    assert page.read_text() == (
        f"# T\n\nbefore\n{reference.START}\n{reference.message_types_markdown()}"
        f"{reference.END}\nafter\n"
    )


def _tables() -> dict[str, dict[tuple[str, str], list[str]]]:
    """`{heading: {(field, place): cells}}` of the generated tables."""
    tables: dict[str, dict[tuple[str, str], list[str]]] = {}
    heading = ""
    for line in _section().splitlines():
        if line.startswith("### "):
            heading = line.removeprefix("### ").strip("`")
            tables[heading] = {}
        elif line.startswith("| `") and heading:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            name = re.findall(r"`([^`]+)`", cells[0])[0]
            place = cells[1] if heading not in ("Envelope", "Derived fields") else ""
            tables[heading][(name, place)] = cells
    return tables


def test_every_field_of_every_type_is_documented_with_a_meaning() -> None:
    tables = _tables()
    assert list(tables) == ["Envelope", *PAYLOAD_OF_TYPE, "Derived fields"]
    for message_type, payload in PAYLOAD_OF_TYPE.items():
        shape = SHAPES[message_type]
        rows = tables[message_type]
        documented_data = [name for name, place in rows if place == "`data`"]
        assert documented_data == list(payload.__struct_fields__), message_type
        top = {name for name, place in rows if place == "top level"}
        assert set(shape.fields) | set(shape.any_of) <= top, message_type
        for (name, _), cells in rows.items():
            assert cells[4].strip(), (message_type, name)  # a meaning
    envelope = {name for name, _ in tables["Envelope"]}
    assert envelope == set(DataMessage.__struct_fields__) - set(TOP_LEVEL_FIELDS)


def test_required_marks_follow_shapes_and_payloads() -> None:
    tables = _tables()
    assert tables["order_update"][("order_id", "top level")][2] == "yes"
    assert tables["order_update"][("user_id", "top level")][2] == (
        "one of `user_id`, `portfolio_id`"
    )
    assert tables["order_update"][("remaining_quantity", "`data`")][2] == "yes (derived)"
    assert tables["order_update"][("price", "`data`")][2] == "no"
    assert tables["position_update"][("position_side", "top level")][2] == "yes (derived)"
    assert tables["Envelope"][("seq", "")][1] == "yes"
    assert tables["Envelope"][("priority", "")][1] == "no"


def test_extensions_are_marked() -> None:
    tables = _tables()
    for name in ("stream", "key", "seq", "epoch", "broadcast"):
        assert tables["Envelope"][(name, "")][0] == f"`{name}` (extension)"
    for name in ("type", "timestamp", "message_id", "source", "sequence"):
        assert tables["Envelope"][(name, "")][0] == f"`{name}`"
    order_status = tables["order_update"][("order_status", "top level")][3]
    assert order_status.endswith("; extensions `denied`, `expired`")
    state = tables["engine_status"][("state", "`data`")][3]
    assert state.endswith("; extensions `degraded`, `stale`, `down`")
    health = tables["system_health"][("status", "`data`")][3]
    assert "extensions" not in health  # degraded is original there
    assert tables["market_data"][("asset_class", "top level")][0].endswith("(extension)")
    assert tables["order_update"][("strategy_id", "top level")][0].endswith("(extension)")
    assert tables["order_update"][("portfolio_id", "top level")][0].endswith("(extension)")
    assert tables["performance_update"][("strategy_id", "top level")][0] == "`strategy_id`"
    assert tables["notification"][("message", "`data`")][0].endswith("(extension)")


def test_legacy_names_come_from_the_ingest_mapping() -> None:
    tables = _tables()
    for message_type, renames in legacy.DATA_RENAMES.items():
        for old, new in renames:
            assert f"`data.{old}`" in tables[message_type][(new, "`data`")][5], (message_type, new)
    for message_type, renames in legacy.TOP_RENAMES.items():
        for old, new in renames:
            assert f"`{old}`" in tables[message_type][(new, "top level")][5], (message_type, new)
    assert tables["order_update"][("order_id", "top level")][5] == "`data.order_id`"
    assert "`data.reason`" in tables["order_update"][("reject_reason", "`data`")][5]
    assert tables["alert"][("alert_level", "top level")][5] == "`severity`"
    assert "`unhealthy`" in tables["system_health"][("status", "`data`")][5]


# ----- the derived-fields table says what ingest does

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "original_shapes.json"


def _vector(message_type: str) -> dict[str, Any]:
    messages: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))["messages"]
    return copy.deepcopy(messages[message_type])


# Inputs a derivation needs beyond the vector (`data.x` names a field of `data`).
NEEDS: dict[tuple[str, str], dict[str, Any]] = {
    ("performance_update", "data.returns"): {"data.total_value": 101250.5},
    ("alert", "alert_level"): {"severity": "warning"},
}
# Values the table promises for the vectors.
EXPECTED: dict[tuple[str, str], Any] = {
    ("market_data", "data_type"): "quote",
    ("trade_updates", "data.status"): "filled",
    ("order_update", "data.remaining_quantity"): 200,
    ("position_update", "position_side"): "long",
    ("performance_update", "data.returns"): 0.012505,  # 1250.5 / (101250.5 - 1250.5)
    ("risk_alert", "risk_type"): "var_95",
    ("risk_alert", "data.message"): "var_95 at 52000 crossed its threshold 50000",
    ("breach_alert", "data.breach_percentage"): 10,
    ("strategy_performance", "strategy_name"): "ema-cross",
    ("execution_analytics", "data.slippage"): 0.01,
    ("alert", "alert_level"): "medium",
    ("alert", "severity"): "medium",
}


def _get(where: dict[str, Any], path: str) -> Any:
    if path.startswith("data."):
        return where["data"].get(path.removeprefix("data."))
    return where.get(path)


def _pop(where: dict[str, Any], path: str) -> None:
    if path.startswith("data."):
        where["data"].pop(path.removeprefix("data."), None)
    else:
        where.pop(path, None)


@pytest.mark.parametrize(
    ("message_type", "field"),
    [(t, f) for t, f, _ in reference.DERIVED if t != "*"],
)
def test_each_derived_field_is_filled(message_type: str, field: str) -> None:
    raw = _vector(message_type)
    _pop(raw, field)
    for path, value in NEEDS.get((message_type, field), {}).items():
        if path.startswith("data."):
            raw["data"][path.removeprefix("data.")] = value
        else:
            raw[path] = value
    wire = msgspec.to_builtins(build_data_message(raw))
    value = _get(wire, field)
    assert value is not None
    if (message_type, field) in EXPECTED:
        expected = EXPECTED[(message_type, field)]
        assert value == (pytest.approx(expected) if isinstance(expected, float) else expected)
    if field == "event_id":
        assert value == wire["message_id"]


def test_the_derivations_of_every_type() -> None:
    assert {f for t, f, _ in reference.DERIVED if t == "*"} == {
        "data.timestamp",
        "sequence",
        "key",
        "routing fields",
    }
    raw = _vector("position_update")
    del raw["data"]["timestamp"]
    raw["data"]["strategy_id"] = "S1"
    message = build_data_message(raw)
    assert message.data["timestamp"] == raw["timestamp"]
    assert message.strategy_id == "S1"  # a routing field copied to the top level
    assert message.sequenced(5, "e").sequence == 5
    assert build_data_message(_vector("trade_updates")).key == "trader-7"  # key_fallback
    engine = _vector("engine_status")
    del engine["engine_id"]
    assert build_data_message(engine, default_source="nautilus").key == "nautilus"


def test_every_command_and_reply_is_documented() -> None:
    import typing

    from tidewire.protocol.messages import ClientCommand, ServerReply

    text = DOC.read_text(encoding="utf-8")
    for union in (ClientCommand, ServerReply):
        for cls in typing.get_args(union):
            assert f"`{cls.__struct_config__.tag}" in text, cls.__struct_config__.tag
