"""Wire protocol 3.0: message types, codecs, errors, compatibility mapping, schema export.

Pure functions and value types only; nothing here does I/O.
"""

from tidewire.protocol.errors import CloseCode, ErrorCode, ProtocolError
from tidewire.protocol.messages import PROTOCOL_VERSION, DataMessage, Filters, StreamPosition
from tidewire.protocol.streams import STREAMS, StreamClass, StreamSpec, resolve_stream

__all__ = [
    "PROTOCOL_VERSION",
    "STREAMS",
    "CloseCode",
    "DataMessage",
    "ErrorCode",
    "Filters",
    "ProtocolError",
    "StreamClass",
    "StreamPosition",
    "StreamSpec",
    "resolve_stream",
]
