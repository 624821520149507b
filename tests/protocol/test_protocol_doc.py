"""docs/protocol.md's stream table says what the code enforces."""

from __future__ import annotations

import re
from pathlib import Path

from tidewire.core.entitlements import portfolio_keyed
from tidewire.protocol.streams import STREAMS

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_stream_table_matches_the_catalogue() -> None:
    text = DOC.read_text()
    table = text.split("<!-- streams-table:start -->")[1].split("<!-- streams-table:end -->")[0]

    def names(cell: str) -> list[str]:
        return re.findall(r"`([^`]+)`", cell)

    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        documented[names(cells[0])[0]] = (
            names(cells[1])[0],
            cells[2],
            tuple(names(cells[3])),
            sorted(names(cells[4])),
        )
    expected = {
        spec.name: (
            spec.key_field,
            spec.stream_class.value,
            spec.message_types,
            sorted(spec.filters),
        )
        for spec in STREAMS.values()
    }
    assert documented == expected


def test_readers_table_covers_every_stream_and_its_key() -> None:
    text = DOC.read_text()
    table = text.split("<!-- readers-table:start -->")[1].split("<!-- readers-table:end -->")[0]
    rows = {
        re.findall(r"`([^`]+)`", line)[0]: line
        for line in table.splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == set(STREAMS)
    for name, row in rows.items():
        # Portfolio-keyed streams are exactly those whose subscriptions are narrowed.
        assert ("narrowed" in row) == portfolio_keyed(STREAMS[name]), name
