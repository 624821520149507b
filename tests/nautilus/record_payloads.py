"""Record the fixtures of tests/nautilus/data/ from a real NautilusTrader backtest.

    .venv/bin/python tests/nautilus/record_payloads.py

Needs `nautilus_trader` (the `nautilus` extra) and `redis-server`. For each recording it
starts a private Redis, runs `examples/nautilus_backtest.py` against it, and saves every
stream entry exactly as Redis returns it (field values as UTF-8 text, or base64 when they
are binary: msgpack payloads) together with what the engine's cache held after the run.
The unit tests read these files only; they need neither nautilus_trader nor Redis.

To keep the files small, market data (quotes, trade ticks, bars) is thinned out: the first
`MARKET_DATA_KEPT` entries of each kind stay, later ones are dropped; every other entry
(orders, fills, positions, accounts, risk, components, heartbeats) is kept.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from redisproc import RedisProcess  # noqa: E402

BACKTEST = ROOT / "examples" / "nautilus_backtest.py"
MARKET_DATA_KEPT = 25
MARKET_DATA_TOPICS = ("data.quotes.", "data.trades.", "data.bars.")
RECORDINGS: dict[str, list[str]] = {
    # One stream per topic, JSON payloads, nanosecond timestamps.
    "backtest_json_per_topic": ["--encoding", "json", "--quotes", "300"],
    # One stream for all topics, msgpack payloads.
    "backtest_msgpack_one_stream": ["--encoding", "msgpack", "--one-stream", "--quotes", "300"],
    # Custom prefixes (no trader prefix, streams_prefix "gw"), ISO 8601 timestamps.
    "backtest_iso_custom_prefix": [
        "--encoding",
        "json",
        "--one-stream",
        "--no-trader-prefix",
        "--streams-prefix",
        "gw",
        "--iso-timestamps",
        "--quotes",
        "70",
    ],
}


def field_value(value: bytes) -> Any:
    """Text when the bytes are UTF-8 (JSON payloads, topics), else {"base64": ...}."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}


def thin_out(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    kept = []
    for entry in entries:
        topic = entry["fields"]["topic"]
        kind = next((prefix for prefix in MARKET_DATA_TOPICS if topic.startswith(prefix)), None)
        if kind is not None:
            seen[kind] = seen.get(kind, 0) + 1
            if seen[kind] > MARKET_DATA_KEPT:
                continue
        kept.append(entry)
    return kept


def record(name: str, args: list[str]) -> None:
    with RedisProcess() as server, tempfile.TemporaryDirectory() as tmp:
        expect = Path(tmp) / "expect.json"
        subprocess.run(
            [sys.executable, str(BACKTEST), "--redis", server.url, "--expect", str(expect), *args],
            check=True,
        )
        client = redis.Redis(port=server.port)
        entries = []
        for key in sorted(k.decode() for k in client.scan_iter(_type="stream")):
            for entry_id, fields in client.xrange(key):  # type: ignore[union-attr]
                entries.append(
                    {
                        "stream": key,
                        "id": entry_id.decode(),  # type: ignore[union-attr]
                        "fields": {k.decode(): field_value(v) for k, v in fields.items()},  # type: ignore[union-attr, arg-type]
                    }
                )
        entries.sort(key=lambda e: tuple(int(part) for part in e["id"].split("-")))
        entries = thin_out(entries)
        produced = json.loads(expect.read_text())
        produced["quotes"] = produced["quotes"][:MARKET_DATA_KEPT]
        document = {
            "recorded_with": "nautilus_trader 1.221.0, examples/nautilus_backtest.py "
            + " ".join(args),
            "entries": entries,
            "produced": produced,
        }
        path = HERE / "data" / f"{name}.json"
        # One entry (or produced record) per line: readable, diffable, not bloated.
        lines = [
            "{",
            f' "recorded_with": {json.dumps(document["recorded_with"])},',
            ' "entries": [',
            ",\n".join("  " + json.dumps(entry) for entry in entries),
            " ],",
            ' "produced": {',
            ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in produced.items()),
            " }",
            "}",
        ]
        path.write_text("\n".join(lines) + "\n")
        print(f"{path.relative_to(ROOT)}: {len(entries)} entries")


def main() -> None:
    (HERE / "data").mkdir(exist_ok=True)
    for name, args in RECORDINGS.items():
        record(name, args)


if __name__ == "__main__":
    main()
