"""JSON Schema of the wire protocol, generated from the msgspec types.

One source of truth: the structs of `protocol.messages` and `protocol.payloads`, the
top-level shapes of `protocol.shapes`, the stream catalogue of `protocol.streams` and the
codes of `protocol.errors`. `json_schema()` renders them as one JSON Schema (Draft 2020-12)
document; `protocol.typescript` renders the same types as a `.d.ts` file, using the type walk
defined here. Field descriptions come from docstrings and `protocol.meanings`.

Besides one component per struct, every message type has its own component (`$defs/
OrderUpdateMessage`, ...): the `DataMessage` envelope as subscribers receive it (sequenced),
with `type` and `stream` fixed, the type's top-level fields (required ones, enums, "at least
one of") and `data` referencing its payload struct. `AnyDataMessage` is their union.

A few fields are typed more precisely than their Python annotation, in both outputs, because
the Python type is deliberately loose (see `REFINEMENTS`): `Subscribe.filters` (a dict,
validated separately into `Filters` so that a bad filter is `invalid_filter`),
`Batch.messages` (pre-encoded `Raw` messages), the messages of `Snapshot` and `TradeHistory`
(`DataMessage`s whose type is known) and `DataMessage.severity` (normalised on ingest).

Pure functions; nothing here does I/O.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from tidewire.protocol import messages
from tidewire.protocol.codec import SUBPROTOCOLS
from tidewire.protocol.errors import (
    BACKOFF_CLOSE_CODES,
    RECONNECT_CLOSE_CODES,
    RETRYABLE,
    CloseCode,
    ErrorCode,
)
from tidewire.protocol.meanings import attribute_docs, class_doc, meaning
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE, Payload
from tidewire.protocol.reference import WIRE_REQUIRED, message_name
from tidewire.protocol.shapes import ROUTING_FIELDS, SHAPES, TOP_LEVEL_FIELDS
from tidewire.protocol.streams import (
    SEVERITIES,
    SEVERITY_ALIASES,
    STREAM_ALIASES,
    STREAM_OF_TYPE,
    STREAMS,
)

__all__ = [
    "REFINEMENTS",
    "attribute_docs",
    "class_doc",
    "json_schema",
    "message_name",
    "message_types",
]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID: Final = f"urn:tidewire:protocol:{messages.PROTOCOL_VERSION}"
REF_TEMPLATE: Final = "#/$defs/{name}"
TYPESCRIPT_PATH: Final = "clients/typescript/tidewire-protocol.d.ts"
"""Where the generated declarations live, relative to the repository root."""
REGENERATE_COMMAND: Final = f"tidewire schema --typescript > {TYPESCRIPT_PATH}"
REGENERATE_PYTHON_COMMAND: Final = (
    'python -c "from tidewire.protocol.typescript import write_typescript; '
    f"write_typescript('{TYPESCRIPT_PATH}')\""
)

DEFAULT_FACTORIES_OMITTED = (list, dict, set)
"""Factories whose empty result `omit_defaults` leaves out (msgspec omits no other factory)."""
ANY_DATA_MESSAGE: Final = "AnyDataMessage"


def _ref(name: str) -> str:
    return REF_TEMPLATE.format(name=name)


def _array_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


# Fields typed more precisely than their Python annotation: (struct, field) ->
# (TypeScript type, JSON Schema). Both say what the server accepts or sends on the wire.
REFINEMENTS: Final[dict[tuple[str, str], tuple[str, dict[str, Any]]]] = {
    ("Subscribe", "filters"): (
        "Filters | null",
        {"anyOf": [{"$ref": _ref("Filters")}, {"type": "null"}], "default": None},
    ),
    ("Batch", "messages"): (
        f"Array<{ANY_DATA_MESSAGE} | ServerReply>",
        _array_of({"anyOf": [{"$ref": _ref(ANY_DATA_MESSAGE)}, {"$ref": _ref("ServerReply")}]}),
    ),
    ("Snapshot", "messages"): (
        f"{ANY_DATA_MESSAGE}[]",
        _array_of({"$ref": _ref(ANY_DATA_MESSAGE)}),
    ),
    ("TradeHistory", "trades"): (
        f"{message_name('trade_updates')}[]",
        _array_of({"$ref": _ref(message_name("trade_updates"))}),
    ),
    ("DataMessage", "severity"): (
        "Severity | null",
        {"anyOf": [{"$ref": _ref("Severity")}, {"type": "null"}], "default": None},
    ),
}


# --------------------------------------------------------------------------- the types


def payload_types() -> list[type[Payload]]:
    """Every payload struct (the `data` of some message type), sorted by name."""
    unique = set(PAYLOAD_OF_TYPE.values())
    return sorted(unique, key=lambda cls: cls.__name__)


def _union_members(union: Any) -> tuple[type[msgspec.Struct], ...]:
    return typing.get_args(union)


def root_types() -> tuple[Any, ...]:
    return (
        messages.ClientCommand,
        messages.ServerReply,
        messages.DataMessage,
        messages.Batch,
        messages.Filters,
        messages.StreamPosition,
        messages.PublishResponse,
        messages.ErrorBody,
        *payload_types(),
    )


def command_struct_names() -> frozenset[str]:
    """Structs a client sends: every field with a default may be left out."""
    return frozenset(cls.__name__ for cls in _union_members(messages.ClientCommand))


def message_types() -> list[str]:
    return sorted(STREAM_OF_TYPE)


def collect_structs(infos: Iterable[mi.Type]) -> dict[str, mi.StructType]:
    """Every struct reachable from `infos`, by class name (two classes may not share one)."""
    found: dict[str, mi.StructType] = {}

    def visit(info: mi.Type) -> None:
        if isinstance(info, mi.StructType):
            name = info.cls.__name__
            seen = found.get(name)
            if seen is not None:
                if seen.cls is not info.cls:
                    raise ValueError(
                        f"two protocol structs are called {name}: "
                        f"{seen.cls.__module__} and {info.cls.__module__}"
                    )
                return
            found[name] = info
            for field in info.fields:
                visit(field.type)
        elif isinstance(info, mi.UnionType):
            for member in info.types:
                visit(member)
        elif isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            visit(info.item_type)
        elif isinstance(info, mi.TupleType):
            for item in info.item_types:
                visit(item)
        elif isinstance(info, mi.DictType):
            visit(info.key_type)
            visit(info.value_type)

    for info in infos:
        visit(info)
    return found


# --------------------------------------------------------------------------- JSON Schema


def json_schema() -> dict[str, Any]:
    """One JSON Schema (Draft 2020-12) document for every message of the protocol.

    `$defs` holds a component per struct (client commands, server replies, `DataMessage`,
    `Batch`, `Filters`, `StreamPosition`, the REST `PublishResponse` and `ErrorBody`, and every
    payload struct), one per message type (`OrderUpdateMessage`, ...), the unions
    `ClientCommand`, `ServerReply` and `AnyDataMessage`, and the enumerations `StreamName`,
    `MessageType`, `Severity`, `ErrorCode` and `CloseCode`. The root schema accepts any single
    frame. `x-tidewire` describes the stream catalogue (key field and fallback, delivery class,
    snapshot unit, message types, allowed filters), the shape of each message type, the error
    codes and the close codes.
    """
    roots = root_types()
    schemas, components = msgspec.json.schema_components(roots, ref_template=REF_TEMPLATE)
    structs = collect_structs(mi.multi_type_info(roots))
    defs: dict[str, Any] = {}
    for name, component in components.items():
        component = dict(component)
        info = structs.get(name)
        if info is not None:
            _describe_struct(name, info, component)
        defs[name] = component

    command_schema, reply_schema = schemas[0], schemas[1]
    extra: dict[str, dict[str, Any]] = {
        "ClientCommand": {
            "title": "ClientCommand",
            "description": "Any command a client sends, tagged by `type`.",
            **command_schema,
        },
        "ServerReply": {
            "title": "ServerReply",
            "description": "Any reply or notice the server sends, tagged by `type`.",
            **reply_schema,
        },
        ANY_DATA_MESSAGE: {
            "title": ANY_DATA_MESSAGE,
            "description": "Any data message as subscribers receive it, tagged by `type`.",
            "anyOf": [{"$ref": _ref(message_name(t))} for t in message_types()],
            "discriminator": {
                "propertyName": "type",
                "mapping": {t: _ref(message_name(t)) for t in message_types()},
            },
        },
        "StreamName": {
            "title": "StreamName",
            "description": "Canonical stream names.",
            "enum": list(STREAMS),
        },
        "MessageType": {
            "title": "MessageType",
            "description": "`type` of a data message.",
            "enum": message_types(),
        },
        "Severity": {
            "title": "Severity",
            "description": "Severity levels, lowest first.",
            "enum": list(SEVERITIES),
        },
        "ErrorCode": {
            "title": "ErrorCode",
            "description": "`error_code` of `error`, `subscription_error` and REST error bodies.",
            "enum": [code.value for code in ErrorCode],
        },
        "CloseCode": {
            "title": "CloseCode",
            "description": "WebSocket close codes the server uses.",
            "enum": [int(code) for code in CloseCode],
        },
    }
    extra |= {message_name(t): message_schema(t) for t in message_types()}
    for name, schema in extra.items():
        if name in defs:
            raise ValueError(f"a protocol struct is called {name}, which the schema reserves")
        defs[name] = schema

    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": f"Tidewire wire protocol {messages.PROTOCOL_VERSION}",
        "description": "Any single frame of the protocol: a client command, a server reply, "
        "a data message or a batch of them.",
        "anyOf": [
            {"$ref": _ref("ClientCommand")},
            {"$ref": _ref("ServerReply")},
            {"$ref": _ref(ANY_DATA_MESSAGE)},
            {"$ref": _ref("Batch")},
        ],
        "$defs": {name: defs[name] for name in sorted(defs)},
        "x-tidewire": _catalogue(),
    }


def message_description(message_type: str) -> str:
    """What a message type's schema (and TypeScript interface) says about it."""
    shape = SHAPES[message_type]
    summary = " ".join((class_doc(shape.payload) or "").split("\n\n")[0].split())
    text = f"{summary} Stream `{STREAM_OF_TYPE[message_type]}`."
    if shape.any_of:
        text += f" At least one of {', '.join(f'`{n}`' for n in shape.any_of)} is present."
    return text


def message_schema(message_type: str) -> dict[str, Any]:
    """The component of one message type: the envelope as delivered, its top level, `data`."""
    shape = SHAPES[message_type]
    properties: dict[str, Any] = {
        "type": {"const": message_type},
        "stream": {"const": STREAM_OF_TYPE[message_type]},
        "seq": {"type": "integer", "minimum": 1},
        "sequence": {"type": "integer", "minimum": 1},
    }
    for name in shape_fields(message_type):
        values = shape.enums.get(name)
        prop: dict[str, Any] = (
            {"enum": list(values)} if values else {"type": "string", "minLength": 1}
        )
        description = top_level_description(message_type, name)
        properties[name] = prop if description is None else {**prop, "description": description}
    properties["data"] = {"$ref": _ref(shape.payload.__name__)}
    schema: dict[str, Any] = {
        "title": message_name(message_type),
        "description": message_description(message_type),
        "allOf": [{"$ref": _ref("DataMessage")}],
        "type": "object",
        "properties": properties,
        "required": list(dict.fromkeys((*WIRE_REQUIRED, *shape.required))),
    }
    if shape.any_of:
        schema["anyOf"] = [{"required": [name]} for name in shape.any_of]
    return schema


def shape_fields(message_type: str) -> tuple[str, ...]:
    """The top-level fields of a type's original shape, then those of its "at least one of"."""
    shape = SHAPES[message_type]
    return tuple(dict.fromkeys((*shape.fields, *shape.any_of)))


_TYPE_OF_PAYLOAD: Final = {cls: t for t, cls in PAYLOAD_OF_TYPE.items()}


def top_level_description(message_type: str, name: str) -> str | None:
    """What a top-level field means in messages of one type (None: undescribed, which the
    docs test reports)."""
    try:
        return meaning(message_type, "top", name)
    except KeyError:
        return None


def field_description(cls: type, name: str) -> str | None:
    """What a field means: a payload field's docstring, else its `protocol.meanings` entry;
    for `DataMessage` the meaning first (its docstrings speak to maintainers); for any other
    struct its docstring."""
    doc = attribute_docs(cls).get(name)
    try:
        if cls is messages.DataMessage:
            return meaning(None, "top", name)
        if doc is None and cls in _TYPE_OF_PAYLOAD:
            return meaning(_TYPE_OF_PAYLOAD[cls], "data", name)
    except KeyError:  # undescribed: the docs test names it
        pass
    return doc


def _describe_struct(name: str, info: mi.StructType, component: dict[str, Any]) -> None:
    """Clean the class description, add field descriptions and apply `REFINEMENTS`."""
    doc = class_doc(info.cls)
    if doc is None:
        component.pop("description", None)
    else:
        component["description"] = doc
    properties = dict(component.get("properties", {}))
    for field in info.fields:
        prop = properties.get(field.encode_name)
        if prop is None:
            continue
        refinement = REFINEMENTS.get((name, field.name))
        prop = dict(refinement[1]) if refinement is not None else dict(prop)
        description = field_description(info.cls, field.name)
        if description is not None:
            prop["description"] = description
        properties[field.encode_name] = prop
    if properties:
        component["properties"] = properties


def _catalogue() -> dict[str, Any]:
    """The `x-tidewire` annotation: streams, shapes, error and close codes."""
    streams: dict[str, Any] = {}
    for spec in STREAMS.values():
        streams[spec.name] = {
            "key_field": spec.key_field,
            "key_fallback": spec.key_fallback,
            "class": spec.stream_class.value,
            "message_types": list(spec.message_types),
            "filters": sorted(spec.filters),
            "snapshot_fields": list(spec.snapshot_fields),
            "keeps_last_values": spec.keeps_last_values,
            "payloads": {t: _ref(PAYLOAD_OF_TYPE[t].__name__) for t in spec.message_types},
            "messages": {t: _ref(message_name(t)) for t in spec.message_types},
        }
    shapes: dict[str, Any] = {}
    for message_type in message_types():
        shape = SHAPES[message_type]
        shapes[message_type] = {
            "stream": STREAM_OF_TYPE[message_type],
            "message": _ref(message_name(message_type)),
            "payload": _ref(shape.payload.__name__),
            "required": list(shape.required),
            "optional": list(shape.optional),
            "any_of": list(shape.any_of),
            "enums": {name: list(values) for name, values in shape.enums.items()},
        }
    return {
        "protocol_version": messages.PROTOCOL_VERSION,
        "accepted_versions": list(messages.ACCEPTED_VERSIONS),
        "subprotocols": list(SUBPROTOCOLS),
        "streams": streams,
        "shapes": shapes,
        "envelope_required": list(WIRE_REQUIRED),
        "routing_fields": list(ROUTING_FIELDS),
        "top_level_fields": list(TOP_LEVEL_FIELDS),
        "stream_aliases": dict(sorted(STREAM_ALIASES.items())),
        "stream_of_type": dict(sorted(STREAM_OF_TYPE.items())),
        "severities": list(SEVERITIES),
        "severity_aliases": dict(sorted(SEVERITY_ALIASES.items())),
        "error_codes": [
            {"name": code.name, "code": code.value, "retryable": code in RETRYABLE}
            for code in ErrorCode
        ],
        "close_codes": [
            {
                "name": code.name,
                "code": int(code),
                "reconnect": code in RECONNECT_CLOSE_CODES,
                "backoff": code in BACKOFF_CLOSE_CODES,
            }
            for code in CloseCode
        ],
    }
