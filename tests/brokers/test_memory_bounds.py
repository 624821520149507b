"""What publishers can make the memory broker hold (bench/broker_memory.py measures it)."""

from __future__ import annotations

from bench.broker_memory import SHAPES, measure

from tidewire.brokers.memory import MemoryBroker
from tidewire.protocol.ingest import build_data_message


def test_the_idempotency_window_keeps_a_position_per_id_not_the_message() -> None:
    # Quotes of one symbol, each with an id: one latest value, 5,000 ids in the window.
    # Keeping each message alive costs about 900 bytes per id; a position about 270.
    assert measure(SHAPES["ids (one symbol, an id each)"], 5_000) < 500


async def test_latest_values_past_the_limit_are_forgotten_oldest_update_first() -> None:
    broker = MemoryBroker(max_latest_keys=1_000)
    quote = SHAPES["latest values (distinct symbols)"]
    for n in range(5_000):
        broker.publish_now(build_data_message(quote(n)))
    broker.publish_now(build_data_message(quote(3_000)))  # updated again: kept
    symbols = [m.symbol for m in (await broker.snapshot("market_data")).messages]
    assert len(symbols) == 1_000
    assert symbols[0] == "S4001" and symbols[-1] == "S3000"
    assert "S4000" not in symbols, "the least recently updated one made room"
