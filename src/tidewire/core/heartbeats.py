"""Liveness both ways, and the stall limit of clients that stopped reading.

`sweep` runs about once a second over every connection of a hub. Pure apart from the
transport calls it makes through the hub.
"""

from __future__ import annotations

from tidewire.core.hub import Hub
from tidewire.protocol.errors import CloseCode
from tidewire.protocol.messages import ServerHeartbeat, now_iso


def sweep(hub: Hub, now: float, interval: float, timeout: float) -> None:
    """Heartbeats both ways, dead peers and stalled readers.

    * A connection silent inbound for `timeout` is closed with 4010; silent for `interval`,
      it gets a WebSocket ping (browsers answer pings without application code), and one
      more per further `interval` of silence, not one per sweep.
    * A connection we have not written to for `interval` gets a `heartbeat` message, so a
      silent stream stays distinguishable from a dead one.
    * A connection whose transport has been paused (the client is not reading) for longer
      than the hub's `stall_timeout` is closed with 4008.
    """
    counters = hub.counters
    for connection in list(hub.connections.values()):
        if connection.closed:
            continue
        if connection.write_paused and now - connection.paused_at >= hub.stall_timeout:
            hub.slow_consumer(connection)
            continue
        idle_in = now - connection.last_inbound
        if idle_in >= timeout:
            counters.heartbeat_timeouts += 1
            hub.close(connection, CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            continue
        # Silent for an interval since its last inbound frame and since our last ping.
        if now - max(connection.last_ping, connection.last_inbound) >= interval:
            connection.last_ping = now
            connection.transport.ping()
        if (
            now - connection.last_outbound >= interval
            and not connection.dirty
            and not connection.write_paused  # one heartbeat at a time, not one per sweep
        ):
            connection.heartbeat_counter += 1
            hub.send(
                connection,
                ServerHeartbeat(counter=connection.heartbeat_counter, server_timestamp=now_iso()),
            )
