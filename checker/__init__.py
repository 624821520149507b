"""Delivery-guarantee checker: faults against a real gateway, then a per-client verdict.

`python -m checker` runs a small, CI-sized scenario; `python -m checker --long` a longer one;
`python -m checker --multi` (or `--nodes N`) runs three (N) gateway nodes on one private
Redis, with Redis restarts and pauses and node kills among the faults.
Publishers send numbered messages on the reliable streams while the harness kills clients
(SIGKILL), stalls them (SIGSTOP; a raw socket that never reads), restarts the gateway
(SIGTERM and SIGKILL) and overflows outboxes. Every client process logs what its SDK
subscriptions delivered, and `checker.verify` checks docs/protocol.md section 5 on those logs:
no loss without a `recovered: false` signal, no duplicate, order kept, no foreign message.

Modules, one concern each:

- `model`: the portfolios, streams and message shapes of a run; filter matching
- `records`: the JSON-lines records clients write, and reading them back
- `verify`: the pure verdict over published messages and client logs
- `procs`: child processes that die with the harness
- `gateway`: the gateway subprocess (start, stop, kill, restart on the same ports)
- `redisserver`: the private redis-server of a multi-node run (restart empty, pause)
- `publisher`: numbered publishes over POST /api/publish, with their acks (the ledger)
- `client`: the client process (`python -m checker.client`), a Tidewire SDK user
- `fleet`: the client processes of a run (start, kill, stop, resume, finish)
- `rawclient`: a WebSocket client that never reads
- `faults`: the deterministic fault schedule and how each fault is injected
- `scenario`: sizes and gateway settings of the small and long modes
- `harness`: one run from start to verdict; `report`: the printed report
"""
