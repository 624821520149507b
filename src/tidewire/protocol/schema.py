"""JSON Schema and TypeScript declarations of the wire protocol, generated from the msgspec types.

One source of truth: the structs of `protocol.messages` and `protocol.payloads`, the stream
catalogue of `protocol.streams` and the codes of `protocol.errors`. `json_schema()` renders them
as one JSON Schema (Draft 2020-12) document, `typescript_declarations()` as a `.d.ts` file that
`clients/typescript/tidewire-protocol.d.ts` keeps a copy of (a test checks it is current).

Two fields are typed more precisely than their Python annotation, in both outputs, because
the Python type is deliberately loose for validation reasons (see `_REFINEMENTS`):
`Subscribe.filters` (a dict, validated separately into `Filters` so that a bad filter is
`invalid_filter`) and `Batch.messages` (pre-encoded `Raw` messages).

Pure functions; nothing here does I/O except `write_typescript`.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import re
import textwrap
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
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
from tidewire.protocol.payloads import MARKET_DATA_PAYLOADS, PAYLOAD_OF_TYPE, Payload
from tidewire.protocol.streams import (
    SEVERITIES,
    SEVERITY_ALIASES,
    STREAM_ALIASES,
    STREAM_OF_TYPE,
    STREAMS,
    StreamClass,
)

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID: Final = f"urn:tidewire:protocol:{messages.PROTOCOL_VERSION}"
REF_TEMPLATE: Final = "#/$defs/{name}"
TYPESCRIPT_PATH: Final = "clients/typescript/tidewire-protocol.d.ts"
"""Where the generated declarations live, relative to the repository root."""
REGENERATE_COMMAND: Final = f"tidewire schema --typescript > {TYPESCRIPT_PATH}"
REGENERATE_PYTHON_COMMAND: Final = (
    'python -c "from tidewire.protocol.schema import write_typescript; '
    f"write_typescript('{TYPESCRIPT_PATH}')\""
)

_MARKET_DATA = "market_data"
_DEFAULT_FACTORIES_OMITTED = (list, dict, set)
"""Factories whose empty result `omit_defaults` leaves out (msgspec omits no other factory)."""


def _ref(name: str) -> str:
    return REF_TEMPLATE.format(name=name)


# Fields typed more precisely than their Python annotation: (struct, field) ->
# (TypeScript type, JSON Schema). Both say what the server accepts or sends on the wire.
_REFINEMENTS: Final[dict[tuple[str, str], tuple[str, dict[str, Any]]]] = {
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
    unique = {*PAYLOAD_OF_TYPE.values(), *MARKET_DATA_PAYLOADS.values()}
    return sorted(unique, key=lambda cls: cls.__name__)


def _union_members(union: Any) -> tuple[type[msgspec.Struct], ...]:
    return typing.get_args(union)


def _root_types() -> tuple[Any, ...]:
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


def _command_struct_names() -> frozenset[str]:
    """Structs a client sends: every field with a default may be left out."""
    return frozenset(cls.__name__ for cls in _union_members(messages.ClientCommand))


def _message_types() -> list[str]:
    return sorted(STREAM_OF_TYPE)


def _payloads_of_type(message_type: str) -> list[type[Payload]]:
    if message_type == _MARKET_DATA:
        return list(MARKET_DATA_PAYLOADS.values())
    return [PAYLOAD_OF_TYPE[message_type]]


def _collect_structs(infos: Iterable[mi.Type]) -> dict[str, mi.StructType]:
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


def _class_doc(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return None
    return inspect.cleandoc(doc)


@functools.cache
def _attribute_docs(cls: type) -> dict[str, str]:
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
    roots = _root_types()
    schemas, components = msgspec.json.schema_components(roots, ref_template=REF_TEMPLATE)
    structs = _collect_structs(mi.multi_type_info(roots))
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
        "MarketDataPayload": {
            "title": "MarketDataPayload",
            "description": "`data` of a `market_data` message; its top-level `data_type` says "
            "which (" + ", ".join(MARKET_DATA_PAYLOADS) + ").",
            "anyOf": [{"$ref": _ref(cls.__name__)} for cls in MARKET_DATA_PAYLOADS.values()],
        },
        "StreamName": {
            "title": "StreamName",
            "description": "Canonical stream names (section 4).",
            "enum": list(STREAMS),
        },
        "MessageType": {
            "title": "MessageType",
            "description": "`type` of a data message.",
            "enum": _message_types(),
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
    """Clean the class description, add field docstrings and apply `_REFINEMENTS`."""
    doc = _class_doc(info.cls)
    if doc is None:
        component.pop("description", None)
    else:
        component["description"] = doc
    properties = dict(component.get("properties", {}))
    field_docs = _attribute_docs(info.cls)
    for field in info.fields:
        prop = properties.get(field.encode_name)
        if prop is None:
            continue
        refinement = _REFINEMENTS.get((name, field.name))
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
            if message_type == _MARKET_DATA:
                payloads[message_type] = {
                    data_type: _ref(cls.__name__) for data_type, cls in MARKET_DATA_PAYLOADS.items()
                }
            else:
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


# --------------------------------------------------------------------------- TypeScript

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")

_HEADER = """\
// Tidewire wire protocol {version}: TypeScript declarations.
//
// Generated by `tidewire schema --typescript` from the msgspec types of tidewire.protocol.
// DO NOT EDIT: change the Python types, then regenerate with
//   {command}
//
// Conventions:
// - A property marked `?` may be absent. On client commands that is every field with a default;
//   on what the server sends, the fields its encoder leaves out when they hold their default.
// - Payload interfaces (the `data` of each message type) list the fields the protocol knows;
//   a producer may add others, which reach subscribers unchanged.
// - Numbers are JSON numbers. On a connection opened with `decimals=string`, decimal values
//   arrive as strings instead: see `WithDecimalStrings`.
// - Declarations only, no runtime values: `ErrorCodes` and `CloseCodes` map names to values
//   as types.
"""


def typescript_declarations() -> str:
    """A TypeScript declaration file (`.d.ts`) for every message of the protocol.

    Generated from the same msgspec types as `json_schema()`: an interface per struct, the
    discriminated unions `ClientCommand` and `ServerReply`, the literal unions `StreamName`,
    `MessageType`, `ErrorCode` and `CloseCode` (with `ErrorCodes`/`CloseCodes` name maps),
    the stream catalogue `Streams`, `PayloadByType` and the helper `TypedDataMessage`.
    The output is deterministic.
    """
    roots = _root_types()
    infos = mi.multi_type_info(roots)
    structs = _collect_structs(infos)
    commands = _command_struct_names()
    command_info, reply_info = infos[0], infos[1]
    out: list[str] = [
        _HEADER.format(version=messages.PROTOCOL_VERSION, command=REGENERATE_COMMAND),
        *_ts_section("Versions and transport"),
        f"export type ProtocolVersion = {_ts_literal(messages.PROTOCOL_VERSION)};\n",
        _ts_alias(
            "AcceptedVersion",
            [_ts_literal(v) for v in messages.ACCEPTED_VERSIONS],
            "Versions a client may put in `version`.",
        ),
        _ts_alias("Subprotocol", [_ts_literal(s) for s in SUBPROTOCOLS], None),
        *_ts_section("Streams"),
        _ts_alias("StreamName", [_ts_literal(name) for name in STREAMS], "Canonical names."),
        _ts_alias("MessageType", [_ts_literal(t) for t in _message_types()], None),
        _ts_alias("StreamClass", [_ts_literal(c.value) for c in StreamClass], "Delivery class."),
        _ts_alias("Severity", [_ts_literal(s) for s in SEVERITIES], "Lowest first."),
        _ts_map(
            "StreamOfType",
            [(t, _ts_literal(STREAM_OF_TYPE[t])) for t in _message_types()],
            "The stream each message type is published on.",
        ),
        _ts_streams(),
        "/** The filters a subscription to stream `S` may use. */\n"
        'export type StreamFilters<S extends StreamName> = Pick<Filters, Streams[S]["filters"]>;\n',
        *_ts_section("Errors and close codes"),
        _ts_alias("ErrorCode", [_ts_literal(code.value) for code in ErrorCode], None),
        _ts_map(
            "ErrorCodes",
            [(code.name, _ts_literal(code.value)) for code in ErrorCode],
            "Name of each error code.",
            readonly=True,
        ),
        _ts_alias(
            "RetryableErrorCode",
            [_ts_literal(code.value) for code in ErrorCode if code in RETRYABLE],
            "Errors worth retrying unchanged, after a while.",
        ),
        _ts_alias("CloseCode", [str(int(code)) for code in CloseCode], None),
        _ts_map(
            "CloseCodes",
            [(code.name, str(int(code))) for code in CloseCode],
            "Name of each close code.",
            readonly=True,
        ),
        _ts_alias(
            "ReconnectCloseCode",
            [str(code) for code in sorted(RECONNECT_CLOSE_CODES)],
            "Close codes after which a client reconnects by itself and recovers.",
        ),
        _ts_alias(
            "BackoffCloseCode",
            [str(code) for code in sorted(BACKOFF_CLOSE_CODES)],
            "Close codes after which a client waits longer before reconnecting.",
        ),
        *_ts_section("Messages"),
    ]
    for name in sorted(structs):
        out.append(_ts_interface(structs[name], client_sent=name in commands))
    out += [
        *_ts_section("Unions"),
        _ts_alias(
            "ClientCommand",
            _ts_union_members(command_info),
            "Any command a client sends; discriminated by `type`.",
        ),
        _ts_alias(
            "ServerReply",
            _ts_union_members(reply_info),
            "Any reply or notice the server sends; discriminated by `type`.",
        ),
        _ts_alias(
            "ServerMessage",
            ["ServerReply", "DataMessage", "Batch"],
            "Any frame the server sends.",
        ),
        _ts_alias(
            "MarketDataPayload",
            [cls.__name__ for cls in MARKET_DATA_PAYLOADS.values()],
            "`data` of a `market_data` message; its `data_type` says which.",
        ),
        *_ts_section("Payloads by message type"),
        _ts_map(
            "PayloadByType",
            [
                (t, "MarketDataPayload" if t == _MARKET_DATA else PAYLOAD_OF_TYPE[t].__name__)
                for t in _message_types()
            ],
            "`data` of each message type.",
        ),
        _ts_alias(
            "MarketDataType",
            [_ts_literal(data_type) for data_type in MARKET_DATA_PAYLOADS],
            "`data_type` of a `market_data` message.",
        ),
        _ts_map(
            "MarketDataPayloadByDataType",
            [(k, cls.__name__) for k, cls in MARKET_DATA_PAYLOADS.items()],
            "`data` of a `market_data` message by its `data_type`.",
        ),
        _TYPED_HELPERS,
    ]
    return "\n".join(out)


_TYPED_HELPERS = """\
/**
 * A `market_data` message narrowed by its `data_type` (which market data always carries);
 * without an argument, the union over all data types (narrow it by testing `data_type`).
 */
export type MarketDataMessage<D extends MarketDataType = MarketDataType> = D extends MarketDataType
  ? Omit<DataMessage, "type" | "stream" | "data" | "data_type"> & {
      type: "market_data";
      stream: "market_data";
      data_type: D;
      data: MarketDataPayloadByDataType[D];
    }
  : never;

/**
 * A data message with `type`, `stream` and `data` narrowed to one message type; without an
 * argument, the union over all message types (narrow it by testing `type`).
 */
export type TypedDataMessage<T extends MessageType = MessageType> = T extends "market_data"
  ? MarketDataMessage
  : T extends MessageType
    ? Omit<DataMessage, "type" | "stream" | "data"> & {
        type: T;
        stream: StreamOfType[T];
        data: PayloadByType[T];
      }
    : never;

/** `T` as received on a connection opened with `decimals=string`. */
export type WithDecimalStrings<T> = {
  [K in keyof T]: number extends T[K] ? T[K] | string : T[K];
};
"""


def write_typescript(path: str | Path) -> None:
    """Write `typescript_declarations()` to `path` (UTF-8, `\\n` line endings)."""
    Path(path).write_text(typescript_declarations(), encoding="utf-8", newline="\n")


def _ts_section(title: str) -> Iterator[str]:
    yield f"// {'-' * 75} {title}\n"


def _ts_doc(text: str | None, indent: str = "") -> str:
    if not text:
        return ""
    lines = text.replace("*/", "*\\/").splitlines()
    if len(lines) == 1:
        return f"{indent}/** {lines[0]} */\n"
    body = "".join(f"{indent} *{' ' + line if line else ''}\n" for line in lines)
    return f"{indent}/**\n{body}{indent} */\n"


def _ts_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no TypeScript literal for {value!r}")


def _ts_alias(name: str, members: list[str], doc: str | None) -> str:
    if len(members) <= 1 or sum(len(m) + 3 for m in members) + len(name) < 80:
        return f"{_ts_doc(doc)}export type {name} = {' | '.join(members) or 'never'};\n"
    lines = "".join(f"\n  | {member}" for member in members)
    return f"{_ts_doc(doc)}export type {name} ={lines};\n"


def _ts_map(
    name: str, entries: list[tuple[str, str]], doc: str | None, readonly: bool = False
) -> str:
    prefix = "readonly " if readonly else ""
    body = "".join(f"  {prefix}{_ts_key(key)}: {value};\n" for key, value in entries)
    return f"{_ts_doc(doc)}export interface {name} {{\n{body}}}\n"


def _ts_streams() -> str:
    lines = []
    for spec in STREAMS.values():
        filters = " | ".join(_ts_literal(f) for f in sorted(spec.filters)) or "never"
        types = ", ".join(_ts_literal(t) for t in spec.message_types)
        lines.append(
            f"  {_ts_key(spec.name)}: {{\n"
            f"    key_field: {_ts_literal(spec.key_field)};\n"
            f"    class: {_ts_literal(spec.stream_class.value)};\n"
            f"    message_types: [{types}];\n"
            f"    filters: {filters};\n"
            f"  }};\n"
        )
    doc = "The stream catalogue: key field, delivery class, message types, allowed filters."
    return f"{_ts_doc(doc)}export interface Streams {{\n{''.join(lines)}}}\n"


def _ts_key(name: str) -> str:
    return name if _IDENTIFIER.match(name) else json.dumps(name)


def _ts_union_members(info: mi.Type) -> list[str]:
    if isinstance(info, mi.UnionType):
        return [_ts_type(member) for member in info.types]
    return [_ts_type(info)]


def _ts_interface(info: mi.StructType, client_sent: bool) -> str:
    """One struct as an interface; `client_sent` selects which fields are optional."""
    if info.array_like:
        raise TypeError(f"{info.cls.__name__}: array-like structs are not supported")
    name = info.cls.__name__
    field_docs = _attribute_docs(info.cls)
    omit_defaults = info.cls.__struct_config__.omit_defaults
    lines: list[str] = []
    if info.tag_field is not None:
        lines.append(f"  {_ts_key(info.tag_field)}: {_ts_literal(info.tag)};\n")
    for field in info.fields:
        refinement = _REFINEMENTS.get((name, field.name))
        ts_type = refinement[0] if refinement is not None else _ts_type(field.type)
        optional = "?" if _optional(field, client_sent, omit_defaults) else ""
        lines.append(_ts_doc(field_docs.get(field.name), "  "))
        lines.append(f"  {_ts_key(field.encode_name)}{optional}: {ts_type};\n")
    return f"{_ts_doc(_class_doc(info.cls))}export interface {name} {{\n{''.join(lines)}}}\n"


def _optional(field: mi.Field, client_sent: bool, omit_defaults: bool) -> bool:
    """Whether a field may be absent from a message on the wire."""
    if field.required:
        return False
    if client_sent:
        return True  # the client may leave out any field that has a default
    if field.default is msgspec.NODEFAULT and field.default_factory is msgspec.NODEFAULT:
        return True  # `UNSET`: never encoded while unset
    if field.default_factory is not msgspec.NODEFAULT:
        # omit_defaults leaves out only empty builtin collections, never other factories.
        return omit_defaults and field.default_factory in _DEFAULT_FACTORIES_OMITTED
    return omit_defaults


def _ts_type(info: mi.Type) -> str:
    """The TypeScript type of one msgspec type (raises TypeError for unsupported ones)."""
    if isinstance(info, mi.AnyType | mi.RawType):
        return "unknown"
    if isinstance(info, mi.NoneType):
        return "null"
    if isinstance(info, mi.BoolType):
        return "boolean"
    if isinstance(info, mi.IntType | mi.FloatType):
        return "number"
    if isinstance(info, mi.DecimalType):
        return "number | string"
    if isinstance(info, mi.StrType | mi.DateTimeType | mi.DateType | mi.TimeType | mi.UUIDType):
        return "string"
    if isinstance(info, mi.LiteralType):
        return " | ".join(_ts_literal(value) for value in info.values)
    if isinstance(info, mi.EnumType):
        return " | ".join(_ts_literal(member.value) for member in info.cls)
    if isinstance(info, mi.StructType):
        return info.cls.__name__
    if isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        item = _ts_type(info.item_type)
        return f"{item}[]" if re.fullmatch(r"[\w$]+", item) else f"Array<{item}>"
    if isinstance(info, mi.TupleType):
        return "[" + ", ".join(_ts_type(item) for item in info.item_types) + "]"
    if isinstance(info, mi.DictType):
        return f"Record<string, {_ts_type(info.value_type)}>"
    if isinstance(info, mi.UnionType):
        members: list[str] = []
        for member in info.types:
            rendered = _ts_type(member)
            if rendered not in members:
                members.append(rendered)
        return " | ".join(members)
    raise TypeError(f"no TypeScript mapping for {info!r}")
