"""The JavaScript client's duplicate filter decides like the Python client's
(`tidewire.client.dedupe`) on the same sequence of confirmations, filter updates and
messages."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from support import require_tool
from tidewire.client.dedupe import DuplicateFilter, conflation_key
from tidewire.client.routing import matches
from tidewire.dashboard import STATIC_DIR

REPO = Path(__file__).resolve().parents[2]
EPOCH = "e1"


def node() -> str:
    return str(require_tool("node", "apt-get install -y nodejs"))


def _position(symbol: str, seq: int) -> dict[str, Any]:
    return {
        "type": "position_update", "stream": "position_updates", "key": "PF-A", "seq": seq,
        "epoch": EPOCH, "portfolio_id": "PF-A", "symbol": symbol, "position_side": "long",
        "data": {"quantity": seq, "avg_price": 10, "unrealized_pnl": 0, "timestamp": "t"},
    }  # fmt: skip


# subscribe position_updates AAPL (snapshot: no floor), update adding MSFT, MSFT:6 admitted,
# update adding IBM, another subscription's snapshot replays MSFT:6 (and IBM:7).
Step = tuple[Any, ...]

SEQUENCES: dict[str, list[Step]] = {
    "position_updates": [
        ("restart", EPOCH, None),
        ("accept", _position("AAPL", 5)),
        ("accept", _position("AAPL", 8)),
        ("admit", {"symbols": ["AAPL"]}),
        ("accept", _position("MSFT", 6)),
        ("accept", _position("AAPL", 5)),
        ("admit", {"symbols": ["AAPL", "MSFT"]}),
        ("accept", _position("IBM", 7)),
        ("accept", _position("MSFT", 6)),
        ("accept", _position("IBM", 7)),
        ("accept", _position("MSFT", 9)),
        ("accept", _position("MSFT", 7)),
        ("accept", _position("AAPL", 8)),
        ("accept", _position("AAPL", 10)),
        ("admit", {"symbols": ["AAPL", "MSFT", "IBM"]}),
        ("accept", _position("MSFT", 6)),
        ("accept", _position("GOOG", 4)),
        ("accept", _position("GOOG", 4)),
        ("accept", _position("IBM", 11)),
    ],
}

_JS = """
const { DuplicateFilter, conflationKey } = await import(process.argv[1]);
const { matches } = await import(process.argv[2]);
const [stream, reliable, steps] = JSON.parse(process.argv[3]);
const unit = (m) => conflationKey(stream, m);
const filter = new DuplicateFilter(reliable ? null : unit);
const out = [];
for (const [op, a, b] of steps) {
  if (op === "restart") filter.restart(a, b);
  else if (op === "admit") filter.admit(unit, (m) => matches(a, m));
  else out.push(filter.accept(a));
}
console.log(JSON.stringify(out));
"""


def _python(stream: str, reliable: bool, steps: list[Step]) -> list[bool]:
    unit = functools.partial(conflation_key, stream)
    dedupe = DuplicateFilter(None if reliable else unit)
    out = []
    for step in steps:
        if step[0] == "restart":
            dedupe.restart(step[1], step[2])
        elif step[0] == "admit":
            dedupe.admit(unit, functools.partial(matches, step[1]))
        else:
            out.append(dedupe.accept(step[1]))
    return out


def _js(stream: str, reliable: bool, steps: list[Step]) -> list[bool]:
    result = subprocess.run(
        [
            node(),
            "--input-type=module",
            "-e",
            _JS,
            (STATIC_DIR / "client" / "dedupe.js").as_uri(),
            (STATIC_DIR / "client" / "routing.js").as_uri(),
            json.dumps([stream, reliable, steps]),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    decisions: list[bool] = json.loads(result.stdout)
    return decisions


def test_two_filter_updates_decide_alike_in_python_and_javascript() -> None:
    steps = SEQUENCES["position_updates"]
    python = _python("position_updates", True, steps)
    assert _js("position_updates", True, steps) == python
    messages = [step[1] for step in steps if step[0] == "accept"]
    accepted = [f"{m['symbol']}:{m['seq']}" for m, ok in zip(messages, python, strict=True) if ok]
    # MSFT:6 once, though replayed after the second update.
    assert accepted == [
        "AAPL:5", "AAPL:8", "MSFT:6", "IBM:7", "MSFT:9", "AAPL:10", "GOOG:4", "IBM:11",
    ]  # fmt: skip


def _as_quote(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "type": "market_data", "stream": "market_data", "key": message["symbol"],
            "data_type": "quote"}  # fmt: skip


def test_latest_value_updates_decide_alike_in_python_and_javascript() -> None:
    steps = [
        (step[0], _as_quote(step[1])) if step[0] == "accept" else step
        for step in SEQUENCES["position_updates"]
    ]
    assert _js("market_data", False, steps) == _python("market_data", False, steps)
