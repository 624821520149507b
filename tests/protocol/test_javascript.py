"""The JavaScript client's generated tables (protocol/javascript.py) are current: a stream,
close code, error code or reply type added in Python reaches the client by `make schema`."""

from __future__ import annotations

from pathlib import Path

from tidewire.protocol.javascript import CATALOGUE_PATH, REGENERATE_COMMAND, javascript_catalogue

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_catalogue_is_what_the_generator_produces() -> None:
    committed = (REPO / CATALOGUE_PATH).read_text(encoding="utf-8")
    assert committed == javascript_catalogue(), f"stale: run `{REGENERATE_COMMAND}`"


def test_the_catalogue_has_every_table_the_client_imports() -> None:
    text = javascript_catalogue()
    for name in (
        "STREAMS",
        "STREAM_ALIASES",
        "KEY_FILTER_OF_FIELD",
        "CLOSE_CODES",
        "RECONNECT_CLOSE_CODE_LIST",
        "BACKOFF_CLOSE_CODE_LIST",
        "ERROR_CODES",
        "RETRYABLE_ERROR_CODES",
        "REPLY_TYPE_LIST",
    ):
        assert f"export const {name} = " in text
