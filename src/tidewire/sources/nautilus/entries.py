"""Redis Stream entries written by NautilusTrader's message bus, decoded. Pure.

Two entry layouts exist (see the reference notes on the Nautilus message bus):
* 1.221: fields `topic` and `payload`;
* 1.231: `topic`, `type` (always empty), `payload` and `encoding`, where `encoding` may say
  `Json` for a msgpack payload.
So the layout is read by field name and the payload's encoding is sniffed from its first
byte, never taken from `encoding`: `{` is JSON, a msgpack map starts with 0x80-0x8f, 0xde or
0xdf, anything else is bare text (the `health:heartbeat` payload is an RFC 3339 timestamp).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "HEARTBEAT_TOPIC",
    "Entry",
    "EntryError",
    "decode_entry",
    "entry_id_key",
    "entry_millis",
    "merge_by_id",
    "sniff",
    "trader_of_key",
]

HEARTBEAT_TOPIC = "health:heartbeat"

_json = msgspec.json.Decoder()
_msgpack = msgspec.msgpack.Decoder()


class EntryError(ValueError):
    """An entry that is not a Nautilus message-bus entry (missing fields, bad payload)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded entry of a Nautilus stream."""

    stream: str
    """Redis key of the stream it was read from."""
    entry_id: str
    """Redis entry id, `<milliseconds>-<n>`: the time Redis appended it (wall clock)."""
    topic: str
    """Message-bus topic, e.g. `data.quotes.SIM.AUD/USD` or `events.order.EMACross-000`."""
    payload: dict[str, Any] | None
    """The serialised object (JSON or msgpack map); None for text payloads."""
    text: str | None = None
    """A payload that is plain text (the heartbeat's timestamp); None otherwise."""

    @property
    def kind(self) -> str | None:
        """The payload's class name (`QuoteTick`, `OrderFilled`, ...), if it has one."""
        if self.payload is None:
            return None
        kind = self.payload.get("type")
        return kind if isinstance(kind, str) else None


def sniff(payload: bytes) -> str:
    """`json`, `msgpack` or `text`, from the payload's first byte."""
    if not payload:
        return "text"
    first = payload[0]
    if first == 0x7B:  # "{"
        return "json"
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        return "msgpack"
    return "text"


def decode_entry(stream: str, entry_id: str, fields: Mapping[Any, Any]) -> Entry:
    """Decode an entry's fields (bytes or str keys and values, as redis-py returns them).

    Raises EntryError when `topic` or `payload` is missing or the payload does not decode.
    """
    topic = _text(fields.get(b"topic", fields.get("topic")))
    raw = fields.get(b"payload", fields.get("payload"))
    if topic is None or raw is None:
        raise EntryError(f"entry {entry_id} of {stream} has no topic or payload")
    payload = raw.encode() if isinstance(raw, str) else bytes(raw)
    kind = sniff(payload)
    if kind == "text":
        try:
            return Entry(stream, entry_id, topic, None, payload.decode().strip())
        except UnicodeDecodeError:
            raise EntryError(f"entry {entry_id} of {stream}: undecodable payload") from None
    try:
        decoded = _json.decode(payload) if kind == "json" else _msgpack.decode(payload)
    except msgspec.DecodeError as exc:
        raise EntryError(f"entry {entry_id} of {stream}: bad {kind} payload: {exc}") from None
    if not isinstance(decoded, dict):
        raise EntryError(f"entry {entry_id} of {stream}: payload is not an object")
    return Entry(stream, entry_id, topic, decoded)


def entry_id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of an entry id: `1795704431817-3` -> (1795704431817, 3)."""
    millis, _, counter = entry_id.partition("-")
    return int(millis), int(counter or 0)


def entry_millis(entry_id: str) -> int:
    """Milliseconds since the epoch (Redis's clock) at which the entry was appended."""
    return entry_id_key(entry_id)[0]


def merge_by_id(
    batches: Iterable[tuple[str, Sequence[tuple[str, Any]]]],
) -> list[tuple[str, str, Any]]:
    """Entries of several streams as one list in entry-id order: (stream, id, fields).

    Each stream's entries are already in order; ids come from one Redis clock, so merging
    by id restores the order in which the message bus wrote them across streams (ties keep
    the order of the batches).
    """
    lists = [
        [(entry_id_key(i), n, s, i, f) for i, f in entries]
        for n, (s, entries) in enumerate(batches)
    ]
    return [(stream, entry_id, fields) for _, _, stream, entry_id, fields in heapq.merge(*lists)]


def trader_of_key(key: str) -> str | None:
    """The trader id in a stream key, when the key has one.

    Keys are `[trader-]{trader_id}[:{instance_id}]:{streams_prefix}[:{topic}]` with
    `use_trader_id=True`, else `{streams_prefix}[:{topic}]`. A Nautilus TraderId always
    holds a hyphen (`GATEWAY-001`), so a first segment without one is a streams prefix:
    `trader-GW-001:stream` and `GW-001:gw` -> `GW-001`; `gw:health:heartbeat` -> None.
    """
    first = key.split(":", 1)[0]
    if first.startswith("trader-"):
        first = first[len("trader-") :]
    return first if "-" in first.strip("-") else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None
