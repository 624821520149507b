"""The JavaScript client's copy of the protocol's tables, generated from the Python ones.

`javascript_catalogue()` renders `client/catalogue.js` of the dashboard's static files (the
JavaScript client): the stream catalogue (key, key fallback, delivery class, snapshot unit,
filters), the original frontend's stream aliases, the key filters, the close codes and which
of them reconnect or back off, the error codes and which are retryable, and the reply types.
`client/streams.js`, `client/closecodes.js` and `client/dispatch.js` import it, so a stream
or a code added in Python reaches the JavaScript client by `make schema`, and
tests/protocol/test_javascript.py fails while the committed file is stale. Pure, except
`write_javascript`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from tidewire.protocol.errors import (
    BACKOFF_CLOSE_CODES,
    RECONNECT_CLOSE_CODES,
    RETRYABLE,
    CloseCode,
    ErrorCode,
)
from tidewire.protocol.messages import REPLY_TYPES
from tidewire.protocol.streams import KEY_FILTER_OF_FIELD, STREAM_ALIASES, STREAMS

CATALOGUE_PATH: Final = "src/tidewire/dashboard/static/client/catalogue.js"
REGENERATE_COMMAND: Final = f"tidewire schema --javascript > {CATALOGUE_PATH}"

_HEADER = f"""\
// @ts-check
// Generated from tidewire.protocol (streams.py, errors.py, messages.py) by
// `{REGENERATE_COMMAND}` (`make schema`): do not edit; tests/protocol/test_javascript.py
// fails while it is stale.
"""


def _frozen(value: Any, indent: str = "") -> str:
    """`value` as a JavaScript expression, objects and arrays frozen."""
    inner = indent + "  "
    if isinstance(value, dict):
        if not value:
            return "Object.freeze({})"
        items = ",\n".join(f"{inner}{_key(k)}: {_frozen(v, inner)}" for k, v in value.items())
        return f"Object.freeze({{\n{items},\n{indent}}})"
    if isinstance(value, list):
        return f"Object.freeze([{', '.join(_frozen(item, inner) for item in value)}])"
    return json.dumps(value)


def _key(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name)


def _export(name: str, doc: str, value: Any, type_doc: str | None = None) -> str:
    typed = f"\n/** @type {{{type_doc}}} */" if type_doc else ""
    return f"\n/** {doc} */{typed}\nexport const {name} = {_frozen(value)};\n"


def javascript_catalogue() -> str:
    """The text of `client/catalogue.js`."""
    streams = {
        name: {
            "keyField": spec.key_field,
            "keyFallback": spec.key_fallback,
            "reliable": spec.reliable,
            "keepsLastValues": spec.keeps_last_values,
            "snapshotFields": list(spec.snapshot_fields),
            "filters": sorted(spec.filters),
        }
        for name, spec in STREAMS.items()
    }
    parts = [
        _HEADER,
        '\n/** @import { StreamName } from "../tidewire-protocol.d.ts" */\n',
        "\n/**\n * @typedef {object} StreamSpec\n"
        " * @property {string} keyField field naming the message's key (its partition)\n"
        " * @property {string | null} keyFallback field that keys a message without `keyField`\n"
        " * @property {boolean} reliable reliable (history, no gaps) or latest-value (conflated)\n"
        " * @property {boolean} keepsLastValues whether the gateway keeps the newest message per\n"
        " *   snapshot unit (so a subscription starts with a snapshot)\n"
        " * @property {readonly string[]} snapshotFields fields that, with the key, make the\n"
        " *   snapshot and conflation unit\n"
        " * @property {readonly string[]} filters the filters a subscription may use\n */\n",
        _export(
            "STREAMS",
            "The stream catalogue (`tidewire.protocol.streams.STREAMS`).",
            streams,
            "Readonly<Record<StreamName, StreamSpec>>",
        ),
        _export(
            "STREAM_ALIASES",
            "The original frontend's singular names and aliases of streams.",
            STREAM_ALIASES,
            "Readonly<Record<string, StreamName>>",
        ),
        _export(
            "KEY_FILTER_OF_FIELD",
            "The filter that selects a stream's key (a topic's key suffix becomes it).",
            KEY_FILTER_OF_FIELD,
            "Readonly<Record<string, string>>",
        ),
        _export(
            "CLOSE_CODES",
            "Close codes the gateway sends, by name (`tidewire.protocol.errors.CloseCode`).",
            {code.name: code.value for code in CloseCode},
        ),
        _export(
            "RECONNECT_CLOSE_CODE_LIST",
            "Close codes after which a client reconnects by itself and recovers.",
            sorted(RECONNECT_CLOSE_CODES),
        ),
        _export(
            "BACKOFF_CLOSE_CODE_LIST",
            "Close codes after which a client waits longer before reconnecting.",
            sorted(BACKOFF_CLOSE_CODES),
        ),
        _export(
            "ERROR_CODES",
            "Every `error_code` of an `error` or `subscription_error` reply.",
            sorted(code.value for code in ErrorCode),
        ),
        _export(
            "RETRYABLE_ERROR_CODES",
            "Error codes whose request may succeed when sent again later.",
            sorted(code.value for code in RETRYABLE),
        ),
        _export(
            "REPLY_TYPE_LIST",
            "The `type` of every reply (not a data message): routed to the request, not by stream.",
            sorted(REPLY_TYPES),
        ),
    ]
    return "".join(parts)


def write_javascript(path: str | Path) -> None:
    Path(path).write_text(javascript_catalogue(), encoding="utf-8")
