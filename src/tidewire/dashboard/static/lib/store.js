// What the streaming panel shows, per stream, fed by every subscription's messages.
//
// Plain data, bounded everywhere: keyed tables keep at most `MAX_ROWS` rows (the oldest
// updated goes first), feeds are ring buffers, price series are bucketed in time. Several
// subscriptions of one stream may deliver the same message (each subscription dedupes its
// own, not across subscriptions), so the store drops a message id it has just seen, and a
// keyed row never goes back to an older seq of the same epoch.

import { conflationKey } from "../tidewire-client.js";
import { RingBuffer } from "./ring.js";

const MAX_ROWS = 500;
const FEED_SIZE = 300;
const BUCKET_MS = 250; // price series: one point per symbol per quarter second
export const SERIES_POINTS = 480; // two minutes of buckets
// Envelope fields: every other top-level field (symbol, order_status, metric_type, ...) goes
// into the row beside `data`'s.
const ENVELOPE = new Set(["version", "timestamp", "message_id", "stream", "key", "seq", "epoch", "data", "correlation_id", "priority", "sequence", "broadcast"]);

/**
 * One row of a table or feed: `data`, then the message's top-level fields over it (they are
 * the canonical place of symbol, order_status, position_side, ...), `_t` the event's time.
 */
export function rowOf(message) {
  const d = message.data ?? {};
  const row = { ...d };
  for (const name in message) {
    const value = message[name];
    if (!ENVELOPE.has(name) && value !== null && value !== undefined) row[name] = value;
  }
  row._t = d.timestamp ?? message.timestamp;
  row.seq = message.seq;
  row.epoch = message.epoch;
  return row;
}

class SeenIds {
  constructor(capacity) {
    this._set = new Set();
    this._ring = new RingBuffer(capacity);
  }

  /** True when `id` was seen recently; remembers it otherwise. */
  check(id) {
    if (this._set.has(id)) return true;
    if (this._ring.size === this._ring.capacity) this._set.delete(this._ring.at(0));
    this._ring.push(id);
    this._set.add(id);
    return false;
  }

  clear() {
    this._set.clear();
    this._ring.clear();
  }
}

/** A bounded keyed table: newest update last; rows carry their seq to refuse older ones. */
class KeyedTable {
  constructor(limit = MAX_ROWS) {
    this.rows = new Map();
    this.limit = limit;
  }

  /** Store `row` under `key` unless the stored row is newer (same epoch, higher seq). */
  put(key, row) {
    const old = this.rows.get(key);
    if (old !== undefined) {
      if (old.epoch === row.epoch && old.seq !== undefined && row.seq !== undefined && row.seq < old.seq) return false;
      this.rows.delete(key); // re-insert: Map order is update order
    }
    this.rows.set(key, row);
    if (this.rows.size > this.limit) this.rows.delete(this.rows.keys().next().value);
    return true;
  }

  /** Rows, most recently updated first. */
  newest(count = this.limit) {
    const all = [...this.rows.values()];
    return all.slice(-count).reverse();
  }

  clear() {
    this.rows.clear();
  }
}

/** Per-stream counters for tabs and freshness indicators. */
class StreamState {
  constructor(name) {
    this.name = name;
    this.count = 0;
    this.lastAt = null; // epoch ms of the last message
    this.version = 0; // bumped on every change, so views redraw only what changed
    this.gaps = 0;
  }
}

export class Store {
  constructor(streamNames) {
    /** @type {Map<string, StreamState>} */
    this.streams = new Map(streamNames.map((name) => [name, new StreamState(name)]));
    this._seen = new SeenIds(8192);
    /** Market data per symbol: last quote/trade and a bucketed mid-price series. */
    this.symbols = new Map();
    this.orders = new KeyedTable();
    this.positions = new KeyedTable();
    this.performance = new KeyedTable();
    this.strategies = new KeyedTable();
    /** Risk metrics per portfolio and metric_type (one message per metric). */
    this.riskMetrics = new KeyedTable();
    this.engines = new KeyedTable();
    this.health = new KeyedTable();
    this.trades = new RingBuffer(FEED_SIZE);
    this.alerts = new RingBuffer(FEED_SIZE);
    this.events = new RingBuffer(FEED_SIZE);
    this.executions = new RingBuffer(FEED_SIZE);
  }

  /** A message (or resync marker) delivered by a subscription of `stream`. */
  ingest(message) {
    if (message.type === "resync") {
      this._resync(message);
      return;
    }
    const state = this.streams.get(message.stream);
    if (state === undefined || this._seen.check(message.message_id)) return;
    state.count += 1;
    state.lastAt = Date.now();
    if (message.stream === "market_data") {
      this._market(message, message.data ?? {});
      state.version += 1;
      return;
    }
    const row = rowOf(message);
    // Keyed tables hold the gateway's snapshot unit: a position per portfolio, strategy and
    // symbol, a risk metric per portfolio and metric_type, otherwise the key.
    const unit = conflationKey(message.stream, message) ?? message.message_id;
    let changed = true;
    switch (message.stream) {
      case "order_updates":
        changed = this.orders.put(`${message.key}|${message.order_id ?? message.message_id}`, row);
        break;
      case "position_updates":
        changed = this.positions.put(unit, row);
        break;
      case "performance_updates":
        changed = this.performance.put(unit, row);
        break;
      case "strategy_performance":
        changed = this.strategies.put(unit, row);
        break;
      case "risk_metrics":
        changed = this.riskMetrics.put(unit, row);
        break;
      case "engine_status":
        changed = this.engines.put(unit, { ...row, engine_id: message.engine_id ?? message.key });
        break;
      case "system_health":
        changed = this.health.put(unit, { ...row, component: message.component ?? message.key });
        break;
      case "trade_updates":
        this.trades.push(row);
        break;
      case "risk_alerts":
        this.alerts.push(row);
        break;
      case "events":
        this.events.push(row);
        break;
      case "execution_analytics":
        this.executions.push(row);
        break;
      default:
        break;
    }
    if (changed) state.version += 1;
  }

  _market(message, d) {
    const symbol = message.symbol ?? message.key;
    let entry = this.symbols.get(symbol);
    if (entry === undefined) {
      entry = { symbol, venue: message.venue, assetClass: message.asset_class, bid: null, ask: null, last: null, lastSize: null, changePercent: null, first: null, mid: null, t: [], p: [], version: 0, seqs: new Map(), epoch: null };
      this.symbols.set(symbol, entry);
    }
    // Keep only the newest state per symbol (another subscription's snapshot may be older).
    // Per data_type: the gateway's conflation unit (a bar is not replaced by a quote).
    if (entry.epoch !== message.epoch) entry.seqs.clear();
    const newest = entry.seqs.get(message.data_type);
    if (newest !== undefined && message.seq < newest) return;
    entry.epoch = message.epoch;
    entry.seqs.set(message.data_type, message.seq ?? 0);
    let price = null;
    const hasQuote = d.bid_price != null && d.ask_price != null;
    if (message.data_type === "bar" || (!hasQuote && d.close != null)) {
      price = Number(d.close);
    } else if (hasQuote) {
      entry.bid = d.bid_price;
      entry.ask = d.ask_price;
      price = (Number(d.bid_price) + Number(d.ask_price)) / 2;
      if (d.last_trade_price != null) entry.last = Number(d.last_trade_price);
    } else {
      // A trade (price or last_trade_price, with last_trade_size) or a tick (price).
      const last = d.price ?? d.last_trade_price;
      if (last != null) {
        entry.last = Number(last);
        price = entry.last;
      }
      if (d.last_trade_size != null) entry.lastSize = Number(d.last_trade_size);
    }
    if (d.change_percent != null) entry.changePercent = Number(d.change_percent);
    if (price === null || !Number.isFinite(price)) return;
    entry.mid = price;
    if (entry.first === null) entry.first = price;
    const now = Date.now();
    const bucket = Math.floor(now / BUCKET_MS) * BUCKET_MS;
    const last = entry.t.length - 1;
    if (last >= 0 && entry.t[last] === bucket / 1000) entry.p[last] = price;
    else {
      entry.t.push(bucket / 1000);
      entry.p.push(price);
      if (entry.t.length > SERIES_POINTS * 1.1) {
        const extra = entry.t.length - SERIES_POINTS;
        entry.t.splice(0, extra);
        entry.p.splice(0, extra);
      }
    }
    entry.version += 1;
  }

  /** A gap the gateway could not replay: say so in the feeds, reset what a snapshot rebuilds. */
  _resync(marker) {
    const state = this.streams.get(marker.stream);
    // A latest-value stream loses nothing its snapshot does not replace: no gap to show.
    if (state === undefined || !marker.loss) return;
    state.gaps += 1;
    state.version += 1;
    const gap = { _gap: true, _t: new Date().toISOString(), message: `gap: ${marker.reason.replace("_", " ")}${marker.snapshot ? ", snapshot follows" : ""}` };
    if (marker.stream === "position_updates" && marker.snapshot) this.positions.clear();
    else if (marker.stream === "trade_updates") this.trades.push(gap);
    else if (marker.stream === "risk_alerts") this.alerts.push(gap);
    else if (marker.stream === "events") this.events.push(gap);
    else if (marker.stream === "execution_analytics") this.executions.push(gap);
  }

  /** Forget a stream's state (its last subscription ended). */
  clear(stream) {
    const state = this.streams.get(stream);
    if (state === undefined) return;
    state.count = 0;
    state.lastAt = null;
    state.version += 1;
    const byStream = {
      market_data: () => this.symbols.clear(),
      order_updates: () => this.orders.clear(),
      position_updates: () => this.positions.clear(),
      performance_updates: () => this.performance.clear(),
      strategy_performance: () => this.strategies.clear(),
      risk_metrics: () => this.riskMetrics.clear(),
      engine_status: () => this.engines.clear(),
      system_health: () => this.health.clear(),
      trade_updates: () => this.trades.clear(),
      risk_alerts: () => this.alerts.clear(),
      events: () => this.events.clear(),
      execution_analytics: () => this.executions.clear(),
    };
    byStream[stream]?.();
    // The same message may come again through a new subscription: forget what was seen.
    this._seen.clear();
  }
}
