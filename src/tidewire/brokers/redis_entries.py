"""Decoding what the Redis broker reads back, refusing what it did not write correctly.

Redis is shared: anything with write access can XADD to a log or HSET a last value. A
malformed entry (fields missing, a body msgspec cannot decode, a body of another stream or
of the wrong shape) or a foreign entry id (`XADD *`) raises `MalformedEntry`; the broker
counts it, logs it (`Warnings`, at most once per kind and key every `WARN_INTERVAL`) and
skips it, so one bad entry never stops the node's reader.
"""

from __future__ import annotations

import logging
import time

import msgspec

from tidewire.protocol.messages import DataMessage

__all__ = ["MalformedEntry", "Warnings", "decode_entry", "decode_last", "entry_seq"]

WARN_INTERVAL = 60.0
"""Seconds between two warnings of the same kind about the same key."""
MAX_SEQ = 2**53 - 1
"""The largest seq a JSON client can hold exactly (JavaScript's safe integers)."""

_decoder = msgspec.msgpack.Decoder(DataMessage)


class MalformedEntry(ValueError):
    """An entry or last value this gateway did not write (or not correctly)."""


def entry_seq(entry_id: bytes) -> int:
    """The seq of an entry id `<seq>-0`; MalformedEntry for any other id."""
    millis, _, counter = entry_id.partition(b"-")
    if counter != b"0" or not millis.isdigit() or not 0 < int(millis) <= MAX_SEQ:
        raise MalformedEntry(f"foreign entry id {entry_id!r}")
    return int(millis)


def decode_entry(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> DataMessage:
    """The sequenced message of one log entry, checked: MalformedEntry when it is not one."""
    seq = entry_seq(entry_id)
    body, epoch, millis = fields.get(b"m"), fields.get(b"e"), fields.get(b"t")
    if body is None or epoch is None or millis is None:
        raise MalformedEntry(f"entry {entry_id!r}: fields m, e or t missing")
    if not millis.isdigit():
        raise MalformedEntry(f"entry {entry_id!r}: time {millis[:40]!r} is not a number")
    try:
        message = _decoder.decode(body)
        text = epoch.decode()
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedEntry(f"entry {entry_id!r}: {exc}") from None
    if message.stream != stream:
        raise MalformedEntry(f"entry {entry_id!r}: a message of stream {message.stream!r}")
    return message.sequenced(seq, text)


def decode_last(stream: str, value: bytes, epoch: str) -> DataMessage:
    """A last value (`seq` + "\\n" + body) as a sequenced message; MalformedEntry if not one."""
    raw_seq, _, body = value.partition(b"\n")
    if not raw_seq.isdigit() or not 0 < int(raw_seq) <= MAX_SEQ:
        raise MalformedEntry(f"last value with seq {raw_seq[:40]!r}")
    try:
        message = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedEntry(f"last value: {exc}") from None
    if message.stream != stream:
        raise MalformedEntry(f"last value of stream {message.stream!r}")
    return message.sequenced(int(raw_seq), epoch)


class Warnings:
    """Rate-limited warnings with counters: garbage in Redis must not flood the log."""

    def __init__(self, log: logging.Logger, interval: float = WARN_INTERVAL) -> None:
        self.log = log
        self.interval = interval
        self.counters: dict[str, int] = {}
        self._last: dict[tuple[str, str], float] = {}

    def warn(self, kind: str, key: str, text: str, *args: object) -> None:
        """Count one `kind` about `key`; log it unless logged within `interval`."""
        self.counters[kind] = self.counters.get(kind, 0) + 1
        now = time.monotonic()
        last = self._last.get((kind, key))
        if last is not None and now - last < self.interval:
            return
        if len(self._last) > 10_000:  # keys come from Redis: keep the memory bounded
            self._last.clear()
        self._last[(kind, key)] = now
        self.log.warning(text + " (%s so far)", *args, self.counters[kind])
