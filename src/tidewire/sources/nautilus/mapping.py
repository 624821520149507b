"""Nautilus message-bus payloads to Tidewire producer messages. Pure (state, no I/O).

`NautilusMapper.map(entry)` returns the raw producer messages (dicts for
`tidewire.protocol.ingest.build_data_message`) that one decoded entry becomes, each in its
canonical shape with every required field (ingest renames and derives nothing):

* QuoteTick, TradeTick, Bar -> `market_data` (`data_type` quote / trade / bar);
* order events (`events.order.*`) -> `order_update`: the order's state after the event
  (see `orders`), `order_id` (the client order id), `symbol` and `order_status` at the top
  level;
* OrderFilled (on `events.order.*` or its copy on `events.fills.*`, once per event id) ->
  `trade_updates`, `data.status` the order's status after the fill, `trade_type` `fill`
  when it completed the order, else `partial_fill`;
* OrderDenied -> a `risk_alert` (severity high) besides its `order_update` (status denied);
* PositionOpened / PositionChanged / PositionClosed -> `position_update` (`position_side`);
* AccountState -> `performance_update`: `pnl`, `returns` and the balances (see `portfolio`);
* TradingStateChanged -> a `risk_alert` for every portfolio seen so far (see `risk`);
* ComponentStateChanged -> `engine_status`, engine id `{trader_id}/{component_id}`, with
  `state` and the observed `uptime` (see `status`; the Trader component itself is the
  trader's liveness, see `feed`);
* instruments (`data.instrument.*`) -> nothing; remembered for the asset class.

User: order updates and trades name the Nautilus `trader_id` as their `user_id` (the
original shapes name a user; a Nautilus node trades as one trader, and the trader is what
a desk knows it by). The portfolio (below) still decides who may read them.

Values: prices, quantities and money become `decimal.Decimal` (exact; the connection's codec
writes them as numbers or, with `decimals=string`, strings); `data.ts_event` keeps the
Nautilus nanosecond timestamp and the envelope's and `data`'s `timestamp` are its ISO form.
`message_id` is derived from the Nautilus `event_id` (or, for market data, from the Redis
entry id), so re-reading an entry yields the same ids and the broker's idempotency drops
the repeat.

Repeats: an event id seen before on the same kind of topic is dropped (Nautilus 1.221
writes some AccountState events twice); the `events.fills.*` copy of an OrderFilled only
makes the trade update, and only when `events.order.*` did not make it first.

Portfolio: the value of `portfolio_field` (default `account_id`, or `strategy_id`,
`trader_id`), looked up in `portfolios` (a rename table; unlisted values are used as they
are). Events without an account (OrderInitialized, OrderDenied) take the account seen for
their venue, an order keeps the portfolio of its first event, and events without the field
fall back to the account, then the trader.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tidewire.sources.nautilus.entries import Entry, entry_millis
from tidewire.sources.nautilus.market import ASSET_CLASS, MARKET_DATA, market_data
from tidewire.sources.nautilus.orders import (
    ORDER_EVENTS,
    OrderState,
    OrderTracker,
    trade_data,
    trade_state,
)
from tidewire.sources.nautilus.portfolio import POSITION_EVENTS, Balances, position_data
from tidewire.sources.nautilus.risk import PRIORITY_OF_SEVERITY, denial_data, trading_state_data
from tidewire.sources.nautilus.status import (
    SEVERITY_OF_STATUS,
    Uptimes,
    component_data,
    engine_id_of,
)
from tidewire.sources.nautilus.values import (
    data_message_id,
    event_message_id,
    instrument_parts,
    iso_of_ns,
    parse_ns,
    put,
    text,
    venue_of_account,
)

__all__ = ["MappingOptions", "NautilusMapper", "PortfolioField", "Raw"]

Raw = dict[str, Any]
PortfolioField = Literal["account_id", "strategy_id", "trader_id"]

_SEEN_KEPT = 20_000
"""Event ids remembered for dropping repeats."""


@dataclass(frozen=True, slots=True)
class MappingOptions:
    """How Nautilus events are attributed and named."""

    source: str = "nautilus"
    """`source` of every message."""
    portfolio_field: PortfolioField = "account_id"
    """Which event field names the portfolio."""
    portfolios: Mapping[str, str] = field(default_factory=dict)
    """Renames: value of `portfolio_field` -> portfolio id."""
    symbol_style: Literal["instrument_id", "symbol"] = "instrument_id"
    """`symbol` is the InstrumentId (`AUD/USD.SIM`, unique across venues) or its symbol
    (`AUD/USD`); `venue` is set either way."""


class NautilusMapper:
    """Maps decoded entries to raw Tidewire messages; keeps the state deltas need."""

    def __init__(self, options: MappingOptions | None = None) -> None:
        self.options = options or MappingOptions()
        self.orders = OrderTracker()
        self.balances = Balances()
        self.uptimes = Uptimes()
        self.instruments: dict[str, Raw] = {}
        """Instrument payloads by InstrumentId, from `data.instrument.*`."""
        self.venue_accounts: dict[str, str] = {}
        """Account id per venue, learned from events that carry both."""
        self.portfolios_seen: dict[str, None] = {}
        """Every portfolio a message went to, in order of appearance."""
        self.traders_seen: dict[str, None] = {}
        self.ignored: dict[str, int] = {}
        """Entries of payload types with no Tidewire mapping, per type."""
        self.duplicate_fills = 0
        """Second copies of an OrderFilled (`events.order.*` and `events.fills.*`) dropped."""
        self.duplicate_events = 0
        """Entries repeating an event id already seen on the same kind of topic (Nautilus
        1.221 writes some AccountState events twice)."""
        self._fills_seen: OrderedDict[str, None] = OrderedDict()
        self._events_seen: OrderedDict[tuple[bool, str], None] = OrderedDict()

    def map(self, entry: Entry) -> list[Raw]:
        """The messages `entry` becomes (often one, sometimes none or several)."""
        payload = entry.payload
        kind = entry.kind
        if payload is None or kind is None:
            return []
        trader = text(payload.get("trader_id"))
        if trader is not None:
            self.traders_seen.setdefault(trader)
        event_id = text(payload.get("event_id"))
        if event_id is not None and not self._first_time(entry.topic, event_id):
            return []
        if kind in MARKET_DATA:
            return self._market(entry, payload, kind)
        if kind in ASSET_CLASS or entry.topic.startswith("data.instrument"):
            instrument = text(payload.get("id"))
            if instrument is not None:
                self.instruments[instrument] = payload
            return []
        if event_id is None:
            self.ignored[kind] = self.ignored.get(kind, 0) + 1
            return []
        if kind in ORDER_EVENTS:
            return self._order_event(entry, payload, kind, event_id)
        if kind in POSITION_EVENTS:
            return self._position(entry, payload, kind, event_id)
        if kind == "AccountState":
            return self._account(entry, payload, event_id)
        if kind == "TradingStateChanged":
            return self._trading_state(entry, payload, event_id)
        if kind == "ComponentStateChanged":
            return self._component(entry, payload, event_id)
        self.ignored[kind] = self.ignored.get(kind, 0) + 1
        return []

    # ------------------------------------------------------------------ per payload type

    def _market(self, entry: Entry, payload: Raw, kind: str) -> list[Raw]:
        found = market_data(kind, payload)
        if found is None:
            return []
        instrument, data_type, data = found
        message = self._message(
            "market_data", data, entry, payload, data_message_id(entry.stream, entry.entry_id)
        )
        message["data_type"] = data_type
        message.update(self._where(instrument))
        return [message]

    def _order_event(self, entry: Entry, payload: Raw, kind: str, event_id: str) -> list[Raw]:
        self._learn_account(payload)
        out: list[Raw] = []
        # OrderFilled is published twice: on events.order.* (the order's history) and on
        # events.fills.* (a copy for fill listeners). Only the first makes a trade update.
        is_copy = entry.topic.startswith("events.fills")
        order = None if is_copy else self.orders.apply(payload)
        trader = text(payload.get("trader_id"))
        if order is not None:
            if order.portfolio_id is None:
                order.portfolio_id = self._portfolio(payload, order)
            data = order.data()
            data["event"] = kind
            data["last_update_time"] = iso_of_ns(self._ts(payload, entry))
            message = self._message("order_update", data, entry, payload, f"nt-{event_id}")
            out.append(self._owned(message, order.portfolio_id, order.strategy_id))
            message.update(self._where(order.instrument_id))
            message.update(order_id=order.order_id, order_status=order.status)
            _put_user(message, trader or order.trader_id)
        if kind == "OrderFilled" and self._first_fill(event_id):
            trade = trade_data(payload)
            if trade is not None:
                applied = order is not None  # this event was just applied to its order
                if order is None:
                    order = self.orders.orders.get(trade["order_id"])
                trade.update(trade_state(order, trade, applied))
                trade["execution_time"] = iso_of_ns(self._ts(payload, entry))
                portfolio = order.portfolio_id if order is not None else None
                message_id = event_message_id(event_id, "trade")
                message = self._message("trade_updates", trade, entry, payload, message_id)
                strategy = payload.get("strategy_id")
                out.append(self._owned(message, portfolio or self._portfolio(payload), strategy))
                message.update(self._where(trade["symbol"]))
                # The trade's own `symbol` follows `symbol_style` like the top level's.
                trade["symbol"] = message["symbol"]
                put(trade, "venue", message.get("venue"))
                complete = trade["status"] == "filled"
                message["trade_type"] = "fill" if complete else "partial_fill"
                _put_user(message, trader or (order.trader_id if order is not None else None))
        if kind == "OrderDenied" and not is_copy:
            quantity = order.quantity if order is not None else None
            data = denial_data(payload, quantity, self._ts(payload, entry))
            message_id = event_message_id(event_id, "alert")
            message = self._message("risk_alert", data, entry, payload, message_id)
            portfolio = order.portfolio_id if order is not None else None
            strategy = payload.get("strategy_id")
            out.append(self._owned(message, portfolio or self._portfolio(payload), strategy))
            message.update(severity="high", priority=PRIORITY_OF_SEVERITY["high"])
            message["risk_type"] = "order_denied"
            instrument = text(payload.get("instrument_id"))
            if instrument is not None:
                message.update(self._where(instrument))
        return out

    def _position(self, entry: Entry, payload: Raw, kind: str, event_id: str) -> list[Raw]:
        self._learn_account(payload)
        found = position_data(kind, payload)
        if found is None:
            return []
        instrument, position_side, data = found
        message = self._message("position_update", data, entry, payload, f"nt-{event_id}")
        message.update(self._where(instrument), position_side=position_side)
        return [self._owned(message, self._portfolio(payload), payload.get("strategy_id"))]

    def _account(self, entry: Entry, payload: Raw, event_id: str) -> list[Raw]:
        account_id = text(payload.get("account_id"))
        if account_id is not None:
            self.venue_accounts.setdefault(venue_of_account(account_id), account_id)
        data = self.balances.update(payload, self._ts(payload, entry))
        if data is None:
            return []
        message = self._message("performance_update", data, entry, payload, f"nt-{event_id}")
        return [self._owned(message, self._portfolio(payload), None)]

    def _trading_state(self, entry: Entry, payload: Raw, event_id: str) -> list[Raw]:
        """One risk alert per portfolio seen: the trading state halts all of them."""
        found = trading_state_data(payload, self._ts(payload, entry))
        if found is None:
            return []
        level, data = found
        trader = text(payload.get("trader_id"))
        portfolios = list(self.portfolios_seen) or [trader or self.options.source]
        out = []
        for portfolio in portfolios:
            message_id = event_message_id(event_id, portfolio)
            message = self._message("risk_alert", dict(data), entry, payload, message_id)
            message.update(
                portfolio_id=portfolio,
                severity=level.severity,
                priority=PRIORITY_OF_SEVERITY[level.severity],
                risk_type="trading_state",
            )
            out.append(message)
        return out

    def _component(self, entry: Entry, payload: Raw, event_id: str) -> list[Raw]:
        data = component_data(payload, self.uptimes, entry_millis(entry.entry_id))
        engine_id = engine_id_of(payload)
        if data is None or engine_id is None:
            return []
        message = self._message("engine_status", data, entry, payload, f"nt-{event_id}")
        message.update(engine_id=engine_id, severity=SEVERITY_OF_STATUS[data["state"]])
        return [message]

    # ------------------------------------------------------------------ envelope

    def _message(self, kind: str, data: Raw, entry: Entry, payload: Raw, message_id: str) -> Raw:
        """A raw message of type `kind` with the envelope fields every mapping shares."""
        ts_event = self._ts(payload, entry)
        data["ts_event"] = ts_event
        timestamp = iso_of_ns(ts_event)
        data.setdefault("timestamp", timestamp)
        return {
            "type": kind,
            "message_id": message_id,
            "timestamp": timestamp,
            "source": self.options.source,
            "data": data,
        }

    @staticmethod
    def _owned(message: Raw, portfolio: str, strategy: Any) -> Raw:
        """`message` with its portfolio and, when there is one, its strategy."""
        message["portfolio_id"] = portfolio
        if isinstance(strategy, str) and strategy:
            message["strategy_id"] = strategy
        return message

    def _where(self, instrument: str) -> Raw:
        """Top-level `symbol`, `venue` and (when the instrument is known) `asset_class`."""
        symbol, venue = instrument_parts(instrument)
        fields: Raw = {
            "symbol": instrument if self.options.symbol_style == "instrument_id" else symbol
        }
        if venue is not None:
            fields["venue"] = venue
        known = self.instruments.get(instrument)
        if known is not None:
            asset_class = ASSET_CLASS.get(str(known.get("type")))
            if asset_class is not None:
                fields["asset_class"] = asset_class
        return fields

    @staticmethod
    def _ts(payload: Raw, entry: Entry) -> int:
        """ts_event (else ts_closed, ts_init), in ns; the entry's time when all are 0."""
        for name in ("ts_event", "ts_closed", "ts_init"):
            value = parse_ns(payload.get(name))
            if value:
                return value
        return entry_millis(entry.entry_id) * 1_000_000

    # ------------------------------------------------------------------ attribution

    def _learn_account(self, payload: Raw) -> None:
        account = text(payload.get("account_id"))
        instrument = text(payload.get("instrument_id"))
        if account is not None and instrument is not None:
            venue = instrument_parts(instrument)[1]
            if venue is not None:
                self.venue_accounts.setdefault(venue, account)

    def _portfolio(self, payload: Raw, order: OrderState | None = None) -> str:
        """The portfolio of an event (see the module's docstring)."""
        options = self.options
        account = text(payload.get("account_id")) or (order.account_id if order else None)
        if account is None:
            instrument = text(payload.get("instrument_id"))
            venue = instrument_parts(instrument)[1] if instrument else None
            account = self.venue_accounts.get(venue) if venue else None
        value: str | None
        if options.portfolio_field == "account_id":
            value = account
        elif options.portfolio_field == "strategy_id":
            value = text(payload.get("strategy_id")) or (order.strategy_id if order else None)
        else:
            value = text(payload.get("trader_id"))
        if value is None:
            # Not attributable (e.g. an order denied before any event named its account):
            # the account, else the trader. Not remembered as a portfolio of the trader.
            value = account or text(payload.get("trader_id")) or options.source
            return options.portfolios.get(value, value)
        portfolio = options.portfolios.get(value, value)
        self.portfolios_seen.setdefault(portfolio)
        return portfolio

    # ------------------------------------------------------------------ repeats

    def _first_fill(self, event_id: str) -> bool:
        if event_id in self._fills_seen:
            self.duplicate_fills += 1
            return False
        _remember(self._fills_seen, event_id)
        return True

    def _first_time(self, topic: str, event_id: str) -> bool:
        # The fills copy of an OrderFilled shares the original's event id: keyed apart.
        key = (topic.startswith("events.fills"), event_id)
        if key in self._events_seen:
            self.duplicate_events += 1
            return False
        _remember(self._events_seen, key)
        return True


def _put_user(message: Raw, trader: str | None) -> None:
    """The trader as the message's `user_id` (see the module docstring)."""
    if trader is not None:
        message["user_id"] = trader


def _remember(seen: OrderedDict[Any, None], key: Any) -> None:
    seen[key] = None
    while len(seen) > _SEEN_KEPT:
        seen.popitem(last=False)
