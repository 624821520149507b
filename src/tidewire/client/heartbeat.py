"""Round-trip measurement of application heartbeats (docs/protocol.md section 3).

The client sends `{"type": "heartbeat", "client_timestamp": <epoch ms>}` and the gateway
echoes `client_timestamp` unchanged in `heartbeat_response`. Epoch milliseconds are what the
protocol (and the original browser client) put on the wire, but wall clocks jump (NTP), so the
round trip is measured with the monotonic clock of the send, found again by the echoed value.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class HeartbeatTracker:
    """Remembers when recent heartbeats were sent; turns their echoes into round trips."""

    def __init__(
        self,
        *,
        keep: int = 32,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep = keep
        """Heartbeats remembered at most; older unanswered ones are forgotten."""
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._sent: OrderedDict[int, float] = OrderedDict()
        self._last_timestamp = 0

    def start(self) -> dict[str, Any]:
        """A new heartbeat command, remembered until its response (or until too old)."""
        timestamp = int(self._wall_clock() * 1000)
        # Keys must be unique so two heartbeats of one millisecond get their own round trip.
        timestamp = max(timestamp, self._last_timestamp + 1)
        self._last_timestamp = timestamp
        self._sent[timestamp] = self._monotonic()
        while len(self._sent) > self._keep:
            self._sent.popitem(last=False)
        return {"type": "heartbeat", "client_timestamp": timestamp}

    def finish(self, echoed: Any) -> float | None:
        """Round trip in milliseconds for an echoed `client_timestamp`, None if unusable.

        A heartbeat this tracker did not send (a raw one, or one forgotten) is measured
        against the wall clock, which is the best that can be done.
        """
        if isinstance(echoed, bool):
            return None
        if isinstance(echoed, str):
            try:
                echoed = float(echoed)
            except ValueError:
                return None
        if not isinstance(echoed, int | float):
            return None
        key = int(echoed) if float(echoed).is_integer() else None
        sent = self._sent.pop(key, None) if key is not None else None
        if sent is not None:
            return max(0.0, (self._monotonic() - sent) * 1000.0)
        return max(0.0, self._wall_clock() * 1000.0 - float(echoed))

    def clear(self) -> None:
        """Forget every outstanding heartbeat (the connection they were sent on is gone)."""
        self._sent.clear()
