"""The "Message types" section of docs/protocol.md, generated from the protocol's code.

Per message type, every field: where it sits (top level or `data`), whether it is required,
its type, what it means (`protocol.meanings`), its Tidewire 0.1 name or place
(`protocol.legacy`), and whether it is a Tidewire extension of the original shapes. Then
the fields the gateway fills (`protocol.derived`, `protocol.ingest`). The JSON Schema and
TypeScript export read the same facts. A test keeps the committed section equal to
`message_types_markdown()`; `update_doc` rewrites it. Pure functions except `update_doc`.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec
import msgspec.inspect as mi

from tidewire.protocol import legacy, payloads
from tidewire.protocol.meanings import Place, attribute_docs, meaning
from tidewire.protocol.messages import DataMessage
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE
from tidewire.protocol.shapes import ROUTING_FIELDS, SHAPES, TOP_LEVEL_FIELDS
from tidewire.protocol.streams import FILTER_FIELDS, SEVERITIES, STREAM_OF_TYPE, STREAMS

START: Final = "<!-- message-types:start -->"
END: Final = "<!-- message-types:end -->"
REGENERATE_DOC_COMMAND: Final = (
    'python -c "from tidewire.protocol.reference import update_doc; '
    "update_doc('docs/protocol.md')\""
)

WIRE_REQUIRED: Final = (
    "type",
    "version",
    "timestamp",
    "message_id",
    "stream",
    "key",
    "seq",
    "epoch",
    "source",
    "sequence",
    "data",
)
"""Envelope fields every data message a subscriber receives carries (it is sequenced)."""
ENVELOPE_EXTENSIONS: Final = frozenset({"stream", "key", "seq", "epoch", "broadcast"})
"""Envelope fields the original frontend did not declare."""


def _values(literal: object) -> tuple[str, ...]:
    return tuple(typing.get_args(literal))


EXTENSION_VALUES: Final[dict[frozenset[str], tuple[str, ...]]] = {
    frozenset(_values(payloads.OrderStatus)): ("denied", "expired"),
    frozenset(_values(payloads.EngineState)): ("degraded", "stale", "down"),
}
"""Per enumeration (by its values): the values Tidewire added to the original ones."""
# msgspec sorts a Literal's values; the declarations of protocol.payloads give their order.
_DECLARED_ORDER: Final = {
    frozenset(_values(value)): _values(value)
    for value in vars(payloads).values()
    if typing.get_origin(value) is typing.Literal
}
EXTENSION_DATA_FIELDS: Final = frozenset({("notification", "title"), ("notification", "message")})
"""`data` fields of no original shape (the original declared `notification` without one)."""

DERIVED: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "*",
        "data.timestamp",
        "the envelope's `timestamp` (which, when absent, is taken from "
        "`data.timestamp`, else the gateway's clock)",
    ),
    ("*", "sequence", "`seq`, when the broker sequences the message"),
    (
        "*",
        "key",
        "the stream's key field, else its fallback (`user_id` for trades and "
        "orders, the envelope's `source` for engine status and system health)",
    ),
    (
        "*",
        "routing fields",
        "copied from `data` when only there (`symbol`, `venue`, "
        "`portfolio_id`, `strategy_id`, `user_id`, `severity`, ...)",
    ),
    (
        "market_data",
        "data_type",
        "`quote` when `data` has `bid_price` and `ask_price`, `bar` "
        "with `open` and `close`, `trade` with `last_trade_price` or `last_trade_size`, else "
        "`tick`",
    ),
    (
        "trade_updates",
        "data.status",
        "`partial` when `data.remaining_quantity` is above 0 or "
        "`trade_type` is `partial_fill`, else `filled`",
    ),
    ("order_update", "data.remaining_quantity", "`quantity - filled_quantity`"),
    (
        "position_update",
        "position_side",
        "the sign of `data.quantity`: `long`, `short`, `flat` at 0",
    ),
    (
        "performance_update",
        "data.returns",
        "`pnl / (total_value - pnl)` when `data` has `total_value`",
    ),
    ("risk_alert", "risk_type", "`data.metric`"),
    (
        "risk_alert",
        "data.message",
        '"`<metric>` at `<current_value>` crossed its threshold `<threshold>`"',
    ),
    (
        "breach_alert",
        "data.breach_percentage",
        "`100 * (current_value - limit_value) / abs(limit_value)`",
    ),
    ("strategy_performance", "strategy_name", "`strategy_id`"),
    ("execution_analytics", "data.slippage", "`fill_price - benchmark_price`"),
    ("execution_analytics", "data.slippage_bps", "`slippage / benchmark_price * 10000`"),
    ("event", "event_id", "the envelope's `message_id`"),
    ("alert", "alert_level", "`severity`"),
    ("alert", "severity", "`alert_level`"),
)
"""(message type or `*`, field, how it is filled when the producer leaves it out)."""


def message_name(message_type: str) -> str:
    """The schema (and TypeScript interface) of one message type: `order_update` ->
    `OrderUpdateMessage`."""
    return "".join(part.capitalize() for part in message_type.split("_")) + "Message"


@dataclass(frozen=True, slots=True)
class Row:
    """One field of one message type, as the reference table shows it."""

    name: str
    place: Place
    required: str
    type: str
    meaning: str
    legacy: str
    extension: bool


# --------------------------------------------------------------------------- cells


def _code(name: str) -> str:
    return f"`{name}`" if " " not in name else name


def _cell(text: str) -> str:
    """Text as one table cell: one line, pipes escaped (also inside code spans, per GFM)."""
    return " ".join(text.split()).replace("|", "\\|")


def enum_text(values: tuple[str, ...]) -> str:
    """An enumeration's values, Tidewire's extensions named apart (a table cell)."""
    values = _DECLARED_ORDER.get(frozenset(values), values)
    added = EXTENSION_VALUES.get(frozenset(values), ())
    original = " \\| ".join(_code(v) for v in values if v not in added)
    if not added:
        return original
    return f"{original}; extensions {', '.join(_code(v) for v in added)}"


def type_text(info: mi.Type) -> str:
    """A msgspec type as a table cell (`null` of an optional field left out)."""
    if isinstance(info, mi.UnionType):
        members = [type_text(t) for t in info.types if not isinstance(t, mi.NoneType)]
        return " \\| ".join(members)
    if isinstance(info, mi.LiteralType):
        return enum_text(tuple(str(v) for v in info.values))
    if isinstance(info, mi.ListType):
        return f"{type_text(info.item_type)}[]"
    simple: dict[type[mi.Type], str] = {
        mi.StrType: "string",
        mi.FloatType: "number",
        mi.IntType: "integer",
        mi.BoolType: "boolean",
        mi.AnyType: "any JSON",
        mi.DictType: "object",
    }
    return simple[type(info)]


def _derived(message_type: str, field: str) -> bool:
    return any(t in (message_type, "*") and f == field for t, f, _ in DERIVED)


def _required(message_type: str, field: str, required: bool, any_of: tuple[str, ...]) -> str:
    name = field.removeprefix("data.")
    if name in any_of and field == name:
        text = f"one of {', '.join(_code(n) for n in any_of)}"
    else:
        text = "yes" if required else "no"
    return f"{text} (derived)" if _derived(message_type, field) else text


def legacy_name(message_type: str, place: Place, name: str) -> str:
    """Where Tidewire 0.1 had this field, when under another name or place (a table cell)."""
    shape = SHAPES[message_type]
    notes: list[str] = []
    if place == "data":
        renames = legacy.DATA_RENAMES.get(message_type, ())
        notes += [f"`data.{old}`" for old, new in renames if new == name]
        if message_type == "order_update" and name in ("reject_reason", "cancel_reason"):
            when = "rejected, denied" if name == "reject_reason" else "cancelled, expired"
            notes.append(f"`data.reason` (when {when})")
        if message_type == "risk_metrics" and name == "value":
            notes.append("the value of the metric's own field")
    else:
        renames = legacy.TOP_RENAMES.get(message_type, ())
        notes += [f"`{old}` or `data.{old}`" for old, new in renames if new == name]
        if message_type == "alert" and name == "alert_level":
            notes.append("`severity`")
        if message_type == "risk_metrics" and name == "metric_type":
            metrics = ", ".join(f"`data.{m}`" for m in legacy.LEGACY_RISK_METRICS)
            notes.append(f"the name of a metric field ({metrics}; one message per metric now)")
        if not notes and name in shape.fields and name not in shape.payload.__struct_fields__:
            # legacy.upgrade moves such a field found inside `data`, where 0.1 kept most.
            notes.append(f"`data.{name}`")
    for (renamed_type, field), values in legacy.VALUE_RENAMES.items():
        if renamed_type == message_type and field == name:
            notes += [f"value `{old}` for `{new}`" for old, new in values.items()]
    return "; ".join(notes)


# --------------------------------------------------------------------------- rows


def top_level_fields(message_type: str) -> tuple[str, ...]:
    """The top-level fields of a type's table: its shape's, then the routing fields its
    stream's key and filters read (Tidewire's extensions where the shape has none)."""
    shape = SHAPES[message_type]
    spec = STREAMS[STREAM_OF_TYPE[message_type]]
    read = {spec.key_field, spec.key_fallback} | {
        FILTER_FIELDS[f] for f in spec.filters if f in FILTER_FIELDS
    }
    if message_type == "alert":
        read.add("severity")  # kept beside alert_level (legacy.upgrade)
    names = list(shape.fields)
    names += [n for n in shape.any_of if n not in names]
    names += [n for n in ROUTING_FIELDS if n in read and n not in names]
    return tuple(names)


def _top_type(message_type: str, name: str) -> str:
    shape = SHAPES[message_type]
    if name in shape.enums:
        return enum_text(shape.enums[name])
    if name == "severity":
        return enum_text(SEVERITIES)
    if name == "data_type":
        return enum_text(_values(payloads.DataType))
    return "string"


def rows(message_type: str) -> list[Row]:
    """Every field of a message type beside the envelope: top level, then `data`."""
    shape = SHAPES[message_type]
    out = [
        Row(
            name=name,
            place="top",
            required=_required(message_type, name, name in shape.required, shape.any_of),
            type=_top_type(message_type, name),
            meaning=_cell(meaning(message_type, "top", name)),
            legacy=legacy_name(message_type, "top", name),
            extension=name not in shape.fields,
        )
        for name in top_level_fields(message_type)
    ]
    info = mi.type_info(PAYLOAD_OF_TYPE[message_type])
    assert isinstance(info, mi.StructType)
    docs = _payload_docs(PAYLOAD_OF_TYPE[message_type])
    for field in info.fields:
        out.append(
            Row(
                name=field.encode_name,
                place="data",
                required=_required(message_type, f"data.{field.name}", field.required, ()),
                type=type_text(field.type),
                meaning=_cell(docs.get(field.name) or meaning(message_type, "data", field.name)),
                legacy=legacy_name(message_type, "data", field.name),
                extension=(message_type, field.name) in EXTENSION_DATA_FIELDS,
            )
        )
    return out


def _payload_docs(cls: type[msgspec.Struct]) -> dict[str, str]:
    """Field docstrings of a struct, joined to one line."""
    return {name: " ".join(doc.split()) for name, doc in attribute_docs(cls).items()}


def envelope_rows() -> list[Row]:
    info = mi.type_info(DataMessage)
    assert isinstance(info, mi.StructType)
    return [
        Row(
            name=field.encode_name,
            place="top",
            required="yes" if field.encode_name in WIRE_REQUIRED else "no",
            type=type_text(field.type),
            # The struct's docstrings speak to maintainers; the tables to client authors.
            meaning=_cell(meaning(None, "top", field.name)),
            legacy="",
            extension=field.encode_name in ENVELOPE_EXTENSIONS,
        )
        for field in info.fields
        if field.encode_name not in TOP_LEVEL_FIELDS
    ]


# --------------------------------------------------------------------------- markdown


def _name_cell(row: Row) -> str:
    name = _code(row.name)
    return f"{name} (extension)" if row.extension else name


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    out += [f"| {' | '.join(cells)} |" for cells in lines]
    return out


def message_types_markdown() -> str:
    """The generated part of docs/protocol.md's "Message types" (between the markers)."""
    out: list[str] = ["### Envelope", ""]
    out += _table(
        ["field", "required", "type", "meaning"],
        [[_name_cell(r), r.required, r.type, r.meaning] for r in envelope_rows()],
    )
    for message_type in PAYLOAD_OF_TYPE:
        stream = STREAM_OF_TYPE[message_type]
        payload = PAYLOAD_OF_TYPE[message_type]
        summary = inspect.cleandoc(payload.__doc__ or "").split("\n\n")[0]
        out += [
            "",
            f"### `{message_type}`",
            "",
            f"{' '.join(summary.split())} Stream `{stream}`; schema `{message_name(message_type)}`"
            f" with `data` `{payload.__name__}`.",
            "",
        ]
        out += _table(
            ["field", "place", "required", "type", "meaning", "0.1 name"],
            [
                [
                    _name_cell(r),
                    "top level" if r.place == "top" else "`data`",
                    r.required,
                    r.type,
                    r.meaning,
                    r.legacy,
                ]
                for r in rows(message_type)
            ],
        )
    out += ["", "### Derived fields", ""]
    out += _table(
        ["message type", "field", "filled when absent with"],
        [["every type" if t == "*" else _code(t), _code(f), rule] for t, f, rule in DERIVED],
    )
    return "\n".join(out) + "\n"


def with_message_types(text: str) -> str:
    """`text` (docs/protocol.md) with the generated part between the markers replaced."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{message_types_markdown()}{END}{tail}"


def update_doc(path: str | Path) -> None:
    """Regenerate the "Message types" tables of the docs page at `path` in place."""
    doc = Path(path)
    doc.write_text(with_message_types(doc.read_text(encoding="utf-8")), encoding="utf-8")
