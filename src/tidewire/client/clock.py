"""Clock synchronisation with the gateway (`sync` / `sync_response`), without I/O.

The client sends `sync` with its clock in epoch milliseconds; the gateway answers at once
with `server_time`, its own clock in epoch milliseconds. Assuming the answer was made half
way through the round trip, the gateway's clock then read `server_time` while this machine's
read `sent_at + round_trip / 2`. The round trip is measured with the monotonic clock: wall
clocks jump (NTP), which is what makes synchronising them worthwhile in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockSync:
    """The result of `TidewireClient.sync()`."""

    offset: float
    """Milliseconds to add to this machine's clock to read the gateway's (gateway - local)."""
    round_trip: float
    """Milliseconds from sending `sync` to receiving `sync_response`."""
    server_time: float
    """The gateway's clock when it answered, epoch milliseconds (`sync_response.server_time`)."""

    def server_now(self, local_time: float) -> float:
        """The gateway's clock (epoch ms) when this machine's reads `local_time` (epoch ms)."""
        return local_time + self.offset


def clock_sync(sent_at: float, round_trip: float, server_time: float) -> ClockSync:
    """`sent_at`: this machine's clock (epoch ms) when `sync` went out; `round_trip` (ms)
    until `sync_response` came back; `server_time`: the gateway's clock in the reply."""
    round_trip = max(0.0, round_trip)
    return ClockSync(
        offset=server_time - (sent_at + round_trip / 2.0),
        round_trip=round_trip,
        server_time=server_time,
    )
