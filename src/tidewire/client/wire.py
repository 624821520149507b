"""What subscriptions read from and write to the wire: positions, filters, topics.

Pure functions, no I/O. A *topic* is a stream with a key suffix (`market_data.AAPL`): the
original protocol's way of naming one key of a stream, which the gateway reads as the
stream with its key filter (`symbols: ["AAPL"]`, `protocol.compat`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from tidewire.protocol.compat import split_topic
from tidewire.protocol.messages import Filters, StreamPosition
from tidewire.protocol.streams import KEY_FILTER_OF_FIELD, StreamSpec, resolve_stream


def position_of(value: Any) -> StreamPosition | None:
    """A `{epoch, seq}` object from the wire as a StreamPosition; None when malformed."""
    if not isinstance(value, Mapping):
        return None
    epoch, seq = value.get("epoch"), value.get("seq")
    if not isinstance(epoch, str) or not epoch or isinstance(seq, bool) or not isinstance(seq, int):
        return None
    return StreamPosition(epoch, seq)


def normalize_filters(filters: Mapping[str, Any] | Filters | None) -> dict[str, Any]:
    """Filters as the plain dict sent on the wire; unset (None) filters are left out."""
    if filters is None:
        return {}
    if isinstance(filters, Filters):
        raw: dict[str, Any] = msgspec.to_builtins(filters)
        return raw
    return {name: value for name, value in filters.items() if value is not None}


def topic_key_filter(topic: str) -> tuple[StreamSpec | None, str | None, str | None]:
    """The stream a name means, and for a topic its key filter's name and the key.

    `market_data.AAPL` -> (market_data, "symbols", "AAPL"); `market_data` -> (market_data,
    None, None); a topic of a stream whose key no filter selects -> (spec, None, key);
    an unknown name -> (None, None, None).
    """
    name, key = split_topic(topic)
    spec = resolve_stream(name)
    if spec is None or key is None:
        return spec, None, key
    return spec, KEY_FILTER_OF_FIELD.get(spec.key_field), key


def with_topic_filter(
    stream: str, filters: Mapping[str, Any] | Filters | None
) -> tuple[StreamSpec | None, dict[str, Any], str | None]:
    """A subscribe's stream (or topic) and filters as the gateway will read them.

    Returns the stream, the filters with the topic's key filter added, and the topic (None
    when `stream` names no key). When the filters already select other keys, or no filter
    selects the stream's key, they are left as given: the gateway refuses such a topic and
    says why.
    """
    spec, key_filter, key = topic_key_filter(stream)
    wanted = normalize_filters(filters)
    if key is None:
        return spec, wanted, None
    if key_filter is not None and wanted.get(key_filter) in (None, [], [key]):
        wanted[key_filter] = [key]
    return spec, wanted, stream


def topic_applies(topic: str, filters: Mapping[str, Any]) -> bool:
    """Whether `filters` still select exactly the key of `topic` (after an update)."""
    _, key_filter, key = topic_key_filter(topic)
    return key_filter is not None and filters.get(key_filter) == [key]
