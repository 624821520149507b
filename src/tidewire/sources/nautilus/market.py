"""Market data payloads (QuoteTick, TradeTick, Bar) as `market_data` data. Pure.

Canonical names: a quote's `bid_price` / `ask_price` / `bid_size` / `ask_size` (Nautilus's
own), a trade tick's `price` and `last_trade_size`, a bar's open / high / low / close /
volume.
"""

from __future__ import annotations

from typing import Any

from tidewire.sources.nautilus.values import number, put, side, text

__all__ = ["ASSET_CLASS", "MARKET_DATA", "market_data"]

Raw = dict[str, Any]

MARKET_DATA = {"QuoteTick": "quote", "TradeTick": "trade", "Bar": "bar"}
"""Nautilus data class -> Tidewire `data_type`."""
ASSET_CLASS = {
    "CurrencyPair": "fx",
    "Equity": "equity",
    "FuturesContract": "future",
    "FuturesSpread": "future",
    "OptionContract": "option",
    "OptionSpread": "option",
    "BinaryOption": "option",
    "CryptoPerpetual": "crypto",
    "CryptoFuture": "crypto",
    "CryptoOption": "crypto",
    "Cfd": "cfd",
    "Commodity": "commodity",
    "IndexInstrument": "index",
    "BettingInstrument": "betting",
}
"""Nautilus instrument class -> Tidewire `asset_class` (the simulator's vocabulary)."""


def market_data(kind: str, payload: Raw) -> tuple[str, str, Raw] | None:
    """(instrument id, data_type, data) of a quote, trade tick or bar; None if incomplete.

    Prices and sizes are exact Decimals of Nautilus's strings.
    """
    if kind == "QuoteTick":
        bid, ask = number(payload.get("bid_price")), number(payload.get("ask_price"))
        instrument = text(payload.get("instrument_id"))
        if bid is None or ask is None or instrument is None:
            return None
        data: Raw = {"bid_price": bid, "ask_price": ask}
        put(data, "bid_size", number(payload.get("bid_size")))
        put(data, "ask_size", number(payload.get("ask_size")))
        return instrument, "quote", data
    if kind == "TradeTick":
        price, size = number(payload.get("price")), number(payload.get("size"))
        instrument = text(payload.get("instrument_id"))
        if price is None or size is None or instrument is None:
            return None
        data = {"price": price, "last_trade_size": size}
        put(data, "aggressor_side", side(payload.get("aggressor_side")))
        put(data, "trade_id", text(payload.get("trade_id")))
        return instrument, "trade", data
    if kind == "Bar":
        bar_type = text(payload.get("bar_type"))
        values = {name: number(payload.get(name)) for name in ("open", "high", "low", "close")}
        volume = number(payload.get("volume"))
        if bar_type is None or volume is None or None in values.values():
            return None
        # "AUD/USD.SIM-5-SECOND-BID-INTERNAL" (composite: "...@..."): the InstrumentId, then
        # step, aggregation, price type and source.
        instrument = bar_type.split("@", 1)[0].rsplit("-", 4)[0]
        return instrument, "bar", {**values, "volume": volume, "bar_type": bar_type}
    return None
