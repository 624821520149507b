"""Fixtures of the Nautilus source tests: recorded entries, a private Redis, nautilus_trader.

* `recording(name)`: the entries of `data/{name}.json` (recorded from a real
  NautilusTrader 1.221 backtest by `record_payloads.py`) as Redis returns them, plus what
  the engine's cache held after the run.
* `redis_server`: a private `redis-server` on a free port (never the machine's own Redis);
  in CI a missing binary fails the test, locally it skips with the apt-get hint.
* `nautilus_trader`: the same rule for the `nautilus_trader` package (a fixture to request).
"""

from __future__ import annotations

import base64
import importlib.util
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from redisproc import INSTALL_HINT, RedisProcess
from support import IN_CI, require_tool

DATA = Path(__file__).resolve().parent / "data"
NAUTILUS_HINT = 'pip install -e ".[nautilus]" (nautilus_trader==1.221.0)'


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nautilus: runs a real NautilusTrader engine")


@dataclass(frozen=True)
class Recording:
    """One recorded backtest: its stream entries in entry-id order, and what it produced."""

    name: str
    entries: list[tuple[str, str, dict[bytes, bytes]]]
    """(stream key, entry id, fields) exactly as redis-py returns them (bytes)."""
    produced: dict[str, Any]
    """The engine's cache after the run: orders, fills, positions, account balance."""


def _field(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return str(value).encode()


def load_recording(name: str) -> Recording:
    document = json.loads((DATA / f"{name}.json").read_text())
    entries = [
        (
            entry["stream"],
            entry["id"],
            {key.encode(): _field(value) for key, value in entry["fields"].items()},
        )
        for entry in document["entries"]
    ]
    return Recording(name, entries, document["produced"])


RECORDINGS = (
    "backtest_json_per_topic",
    "backtest_msgpack_one_stream",
    "backtest_iso_custom_prefix",
)


@pytest.fixture(scope="session")
def recording() -> Callable[[str], Recording]:
    cache: dict[str, Recording] = {}

    def get(name: str) -> Recording:
        if name not in cache:
            cache[name] = load_recording(name)
        return cache[name]

    return get


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    binary = require_tool("redis-server", INSTALL_HINT)
    with RedisProcess(binary) as server:
        yield server


@pytest.fixture
def nautilus_trader() -> None:
    """nautilus_trader must be importable: in CI its absence fails, locally it skips."""
    if importlib.util.find_spec("nautilus_trader") is None:
        message = f"nautilus_trader is not installed ({NAUTILUS_HINT})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
