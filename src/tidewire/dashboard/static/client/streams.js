// @ts-check
/**
 * The stream catalogue as the client needs it (`tidewire.protocol.streams`): how messages are
 * keyed, which streams are reliable, which keep last values (and per which unit), and the
 * names the original frontend used for them.
 *
 * Copied from the gateway's catalogue because the generated declarations carry it as types
 * only; `tests/dashboard/test_client_js.py` checks this copy against the Python one.
 */

/** @import { StreamName } from "../tidewire-protocol.d.ts" */

/**
 * @typedef {object} StreamSpec
 * @property {string} keyField field naming the message's key (its partition in the stream)
 * @property {string | null} keyFallback field that keys a message without `keyField`
 * @property {boolean} reliable reliable (history, no gaps) or latest-value (conflated)
 * @property {boolean} keepsLastValues whether the gateway keeps the newest message per
 *   snapshot unit (so a subscription starts with a snapshot)
 * @property {readonly string[]} snapshotFields fields that, with the key, make the snapshot
 *   and conflation unit
 * @property {readonly string[]} filters the filters a subscription to the stream may use
 */

const PORTFOLIO = ["portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"];
const PRICED = ["max_price", "min_price"];

/**
 * @param {string} keyField
 * @param {boolean} reliable
 * @param {readonly string[]} filters
 * @param {{keyFallback?: string, snapshotFields?: string[], keepsLastValues?: boolean}} [extra]
 * @returns {StreamSpec}
 */
function spec(keyField, reliable, filters, extra = {}) {
  return Object.freeze({
    keyField,
    keyFallback: extra.keyFallback ?? null,
    reliable,
    keepsLastValues: extra.keepsLastValues ?? !reliable,
    snapshotFields: Object.freeze([...(extra.snapshotFields ?? [])]),
    filters: Object.freeze([...filters].sort()),
  });
}

/** @type {Readonly<Record<StreamName, StreamSpec>>} */
export const STREAMS = Object.freeze({
  // A bar must not be replaced by a quote.
  market_data: spec("symbol", false, ["asset_class", "symbols", "venue", ...PRICED], { snapshotFields: ["data_type"] }),
  // The original shapes of trades and orders name a user, not a portfolio.
  trade_updates: spec("portfolio_id", true, [...PORTFOLIO, ...PRICED, "asset_class"], { keyFallback: "user_id" }),
  order_updates: spec("portfolio_id", true, [...PORTFOLIO, ...PRICED, "asset_class"], { keyFallback: "user_id" }),
  // A position per symbol, and per strategy where several trade one symbol in one account.
  position_updates: spec("portfolio_id", true, [...PORTFOLIO, "asset_class"], {
    snapshotFields: ["strategy_id", "symbol"],
    keepsLastValues: true,
  }),
  risk_alerts: spec("portfolio_id", true, [...PORTFOLIO, "severity"]),
  performance_updates: spec("portfolio_id", false, ["portfolio_ids", "user_id"]),
  strategy_performance: spec("strategy_id", false, ["portfolio_ids", "strategy_ids", "user_id"]),
  execution_analytics: spec("symbol", true, ["portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"]),
  // One message per portfolio and metric: VaR must not replace leverage.
  risk_metrics: spec("portfolio_id", false, ["portfolio_ids", "user_id"], { snapshotFields: ["metric_type"] }),
  engine_status: spec("engine_id", false, ["severity"], { keyFallback: "source" }),
  system_health: spec("component", false, ["severity"], { keyFallback: "source" }),
  events: spec("source", true, ["portfolio_ids", "severity", "user_id"]),
});

/** The original frontend's singular names and aliases (PROTOCOL.md section 3, compatibility). */
export const STREAM_ALIASES = Object.freeze({
  trade_update: "trade_updates",
  trades: "trade_updates",
  order_update: "order_updates",
  orders: "order_updates",
  position_update: "position_updates",
  positions: "position_updates",
  risk_alert: "risk_alerts",
  breach_alert: "risk_alerts",
  performance_update: "performance_updates",
  performance: "performance_updates",
  strategy_performances: "strategy_performance",
  execution_analytic: "execution_analytics",
  risk_metric: "risk_metrics",
  engine_statuses: "engine_status",
  system_healths: "system_health",
  event: "events",
  market_datas: "market_data",
  quotes: "market_data",
});

/** The filter that selects a stream's key (a topic's key suffix becomes this filter). */
export const KEY_FILTER_OF_FIELD = Object.freeze({
  symbol: "symbols",
  portfolio_id: "portfolio_ids",
  strategy_id: "strategy_ids",
});

/** @type {readonly StreamName[]} */
export const STREAM_NAMES = /** @type {StreamName[]} */ (Object.keys(STREAMS));

/**
 * The canonical name of `name` (canonical, singular or alias), or null for an unknown stream.
 * @param {string} name
 * @returns {StreamName | null}
 */
export function resolveStream(name) {
  if (Object.hasOwn(STREAMS, name)) return /** @type {StreamName} */ (name);
  const alias = /** @type {Record<string, StreamName>} */ (STREAM_ALIASES)[name];
  return alias ?? null;
}

/**
 * The spec of `name` (canonical, singular or alias), or null for an unknown stream.
 * @param {string} name
 * @returns {StreamSpec | null}
 */
export function streamSpec(name) {
  const canonical = resolveStream(name);
  return canonical === null ? null : STREAMS[canonical];
}

/**
 * A topic as the gateway splits it: `market_data.AAPL` -> ["market_data", "AAPL"]; a name
 * without a key suffix (or one that is itself a stream name) -> [name, null]. Stream names
 * hold no dot; keys may (`AAPL.NASDAQ`), so the first dot splits.
 * @param {string} name
 * @returns {[string, string | null]}
 */
export function splitTopic(name) {
  if (resolveStream(name) !== null || !name.includes(".")) return [name, null];
  const dot = name.indexOf(".");
  const stream = name.slice(0, dot);
  const key = name.slice(dot + 1);
  if (resolveStream(stream) === null || key === "") return [name, null];
  return [stream, key];
}

/**
 * Whether the stream keeps the newest message per snapshot unit, so that a subscription to it
 * starts with a snapshot (latest-value streams and position_updates).
 * @param {string} name
 */
export function keepsLastValues(name) {
  return streamSpec(name)?.keepsLastValues ?? false;
}

/**
 * Whether `name` is a reliable stream (unknown streams are treated as reliable: no
 * conflation is the safe side).
 * @param {string} name
 */
export function isReliable(name) {
  return streamSpec(name)?.reliable ?? true;
}
