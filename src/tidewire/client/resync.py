"""Resync signals: how a subscription tells the application that its stream has a gap.

A subscription's messages can have a gap for two reasons (`reason`):

* `"not_recovered"`: after a reconnection the gateway could not replay what the connection
  missed (`subscription_confirmed` with `recovered: false`, docs/protocol.md section 5): the
  stream's epoch changed (the gateway restarted, its broker lost history) or its history no
  longer covers the gap. Where the stream keeps a snapshot (latest-value streams and
  `position_updates`) the snapshot follows: the newest message per key, as ordinary
  messages. On a latest-value stream that is not a loss (the snapshot replaces the state and
  intermediate values are conflated anyway), but it is still signalled.
* `"overflow"`: the consumer fell behind on a reliable stream and the subscription's own
  queue dropped messages (see `Subscription`).

Both are signalled in the same two ways, so one piece of application code handles every gap:

1. **In the iterator**, as a *resync marker* yielded like a message at exactly the place of
   the gap: after every message from before it, before the first message after it (for
   `not_recovered`, before the snapshot). Iteration is never interrupted: nothing is raised,
   `async for` simply continues with the messages after the gap. A marker is a new dict::

       {"type": "resync", "reason": "not_recovered" | "overflow",
        "subscription_id": ..., "stream": ...,
        "position": {"epoch", "seq"} | None,  # the subscription's position before the gap
        "resume_position": {"epoch", "seq"} | None,  # where the stream resumes, if known
        "snapshot": bool,  # the messages right after the marker are a snapshot
        "loss": bool,  # messages that matched the subscription may be missing for good
        "dropped": int | None}  # overflow: how many messages are missing here (None otherwise)

   It has no `seq`, `epoch`, `key` or `data`; test for it with `is_resync(message)` (or
   `message["type"] == "resync"`: no data message has that type).
2. **By a callback**: `TidewireClient.add_resync_handler(fn)` and the `on_resync` option of
   `subscribe()`, called as `fn(subscription, info)` with a copy of the marker as soon as the
   reader detects the gap, which is before the application's iterator reaches the marker
   (for an overflow that is at its first lost message, so `info["dropped"]` is 1; the
   iterator's marker has the final count).
   A coroutine function is awaited by the reader before it hands on any later message, so a
   handler can reset state before the snapshot reaches message handlers (and must not await
   a reply of the gateway itself: the reader is busy awaiting the handler).

Typical consumer::

    async for message in subscription:
        if is_resync(message):
            if message["snapshot"]:
                book.clear()          # the snapshot that follows rebuilds it
            elif message["loss"]:
                await reconcile_from_the_database()
            continue
        book.apply(message)
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tidewire.protocol.messages import StreamPosition

if TYPE_CHECKING:
    from tidewire.client.subscription import Subscription

logger = logging.getLogger("tidewire.client")

RESYNC = "resync"
"""`type` of a resync marker."""
NOT_RECOVERED = "not_recovered"
"""`reason`: a reconnection could not replay what was missed (`recovered: false`)."""
OVERFLOW = "overflow"
"""`reason`: the subscription's queue was full and dropped messages (reliable streams)."""

ResyncHandler = Callable[["Subscription", dict[str, Any]], Awaitable[None] | None]
"""`fn(subscription, info)` for resync signals; `info` is a copy of the resync marker."""


def is_resync(message: Mapping[str, Any]) -> bool:
    """True for a resync marker yielded by a subscription's iterator."""
    return message.get("type") == RESYNC


def _wire(position: StreamPosition | None) -> dict[str, Any] | None:
    return None if position is None else {"epoch": position.epoch, "seq": position.seq}


def resync_marker(
    reason: str,
    *,
    subscription_id: str,
    stream: str,
    position: StreamPosition | None,
    resume_position: StreamPosition | None = None,
    snapshot: bool = False,
    loss: bool = True,
    dropped: int | None = None,
) -> dict[str, Any]:
    """A resync marker (see the module docstring for the fields)."""
    return {
        "type": RESYNC,
        "reason": reason,
        "subscription_id": subscription_id,
        "stream": stream,
        "position": _wire(position),
        "resume_position": _wire(resume_position),
        "snapshot": snapshot,
        "loss": loss,
        "dropped": dropped,
    }


async def call_resync_handlers(
    handlers: Iterable[ResyncHandler], subscription: Subscription, marker: Mapping[str, Any]
) -> None:
    """Call each handler with its own copy of `marker`; await coroutines, log exceptions."""
    for handler in handlers:
        try:
            result = handler(subscription, copy.deepcopy(dict(marker)))
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("resync handler %r failed", handler)
