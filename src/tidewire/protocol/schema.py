"""JSON Schema of the wire protocol, generated from the msgspec types.

One source of truth: the structs of `protocol.messages` and `protocol.payloads`, the stream
catalogue of `protocol.streams` and the codes of `protocol.errors`. `json_schema()` renders them
as one JSON Schema (Draft 2020-12) document; `protocol.typescript` renders the same types as a
`.d.ts` file, using the type walk and docstring helpers defined here.

Two fields are typed more precisely than their Python annotation, in both outputs, because
the Python type is deliberately loose for validation reasons (see `REFINEMENTS`):
`Subscribe.filters` (a dict, validated separately into `Filters` so that a bad filter is
`invalid_filter`) and `Batch.messages` (pre-encoded `Raw` messages).

Pure functions; nothing here does I/O.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
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
from tidewire.protocol.payloads import PAYLOAD_OF_TYPE, Payload
from tidewire.protocol.streams import (
    SEVERITIES,
    SEVERITY_ALIASES,
    STREAM_ALIASES,
    STREAM_OF_TYPE,
    STREAMS,
)

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

MARKET_DATA = "market_data"
DEFAULT_FACTORIES_OMITTED = (list, dict, set)
"""Factories whose empty result `omit_defaults` leaves out (msgspec omits no other factory)."""


def _ref(name: str) -> str:
    return REF_TEMPLATE.format(name=name)


# Fields typed more precisely than their Python annotation: (struct, field) ->
# (TypeScript type, JSON Schema). Both say what the server accepts or sends on the wire.
REFINEMENTS: Final[dict[tuple[str, str], tuple[str, dict[str, Any]]]] = {
    ("Subscribe", "filters"): (
        "Filters | null",
        {"anyOf": [{"$ref": _ref("Filters")}, {"type": "null"}], "default": None},
    ),
    ("Batch", "messages"): (
        "Array<DataMessage | ServerReply>",
        {
            "type": "array",
            "items": {"anyOf": [{"$ref": _ref("DataMessage")}, {"$ref": _ref("ServerReply")}]},
        },
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


def _payloads_of_type(message_type: str) -> list[type[Payload]]:
    return [PAYLOAD_OF_TYPE[message_type]]


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


# --------------------------------------------------------------------------- docstrings


def class_doc(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return None
    return inspect.cleandoc(doc)


@functools.cache
def attribute_docs(cls: type) -> dict[str, str]:
    """Docstrings written under a struct's fields (`seq: int = 0` then `\"\"\"...\"\"\"`).

    Python keeps no trace of them at run time, so they are read from the source; a class whose
    source is unavailable simply has none.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is msgspec.Struct or not issubclass(klass, msgspec.Struct):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        node = tree.body[0] if tree.body else None
        if not isinstance(node, ast.ClassDef):
            continue
        for statement, following in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


# --------------------------------------------------------------------------- JSON Schema


def json_schema() -> dict[str, Any]:
    """One JSON Schema (Draft 2020-12) document for every message of the protocol.

    `$defs` holds a component per struct (client commands, server replies, `DataMessage`,
    `Batch`, `Filters`, `StreamPosition`, the REST `PublishResponse` and `ErrorBody`, and every
    payload struct), the unions `ClientCommand`, `ServerReply` and `MarketDataPayload`, and the
    enumerations `StreamName`, `MessageType`, `Severity`, `ErrorCode` and `CloseCode`. The root
    schema accepts any single frame. `x-tidewire` describes the stream catalogue (key field,
    delivery class, message types, allowed filters, payload of each type), the error codes and
    the close codes.
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
        "StreamName": {
            "title": "StreamName",
            "description": "Canonical stream names (section 4).",
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
            "description": "WebSocket close codes the server uses (section 6).",
            "enum": [int(code) for code in CloseCode],
        },
    }
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
            {"$ref": _ref("DataMessage")},
            {"$ref": _ref("Batch")},
        ],
        "$defs": {name: defs[name] for name in sorted(defs)},
        "x-tidewire": _catalogue(),
    }


def _describe_struct(name: str, info: mi.StructType, component: dict[str, Any]) -> None:
    """Clean the class description, add field docstrings and apply `REFINEMENTS`."""
    doc = class_doc(info.cls)
    if doc is None:
        component.pop("description", None)
    else:
        component["description"] = doc
    properties = dict(component.get("properties", {}))
    field_docs = attribute_docs(info.cls)
    for field in info.fields:
        prop = properties.get(field.encode_name)
        if prop is None:
            continue
        refinement = REFINEMENTS.get((name, field.name))
        prop = dict(refinement[1]) if refinement is not None else dict(prop)
        if field.name in field_docs:
            prop["description"] = field_docs[field.name]
        properties[field.encode_name] = prop
    if properties:
        component["properties"] = properties


def _catalogue() -> dict[str, Any]:
    """The `x-tidewire` annotation: streams, payloads, error and close codes."""
    streams: dict[str, Any] = {}
    for spec in STREAMS.values():
        payloads: dict[str, Any] = {}
        for message_type in spec.message_types:
            payloads[message_type] = _ref(PAYLOAD_OF_TYPE[message_type].__name__)
        streams[spec.name] = {
            "key_field": spec.key_field,
            "class": spec.stream_class.value,
            "message_types": list(spec.message_types),
            "filters": sorted(spec.filters),
            "payloads": payloads,
        }
    return {
        "protocol_version": messages.PROTOCOL_VERSION,
        "accepted_versions": list(messages.ACCEPTED_VERSIONS),
        "subprotocols": list(SUBPROTOCOLS),
        "streams": streams,
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
