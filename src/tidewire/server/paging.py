"""Pages of the operator listings (`/api/connections`, `/api/subscriptions`).

A listing of every connection or subscription of a busy node is megabytes: each answer is
one page of at most `max_api_page` rows, from `offset`; the `X-Total-Count` header says
how many there are and `X-Next-Offset` where the next page starts (absent on the last).
Pure: rows in, a page and its headers out.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import TypeVar

from tidewire.protocol.errors import ErrorCode, ProtocolError

T = TypeVar("T")


def page(
    rows: Iterable[T], total: int, offset: int, limit: int | None, max_page: int
) -> tuple[list[T], dict[str, str]]:
    """The rows of one page and its headers; raises ProtocolError(invalid_message) for an
    offset below 0 or a limit below 1."""
    if offset < 0:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "offset must be 0 or more")
    if limit is not None and limit < 1:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "limit must be 1 or more")
    size = min(limit or max_page, max_page)
    chosen = list(islice(rows, offset, offset + size))
    headers = {"X-Total-Count": str(total)}
    if offset + size < total:
        headers["X-Next-Offset"] = str(offset + size)
    return chosen, headers
