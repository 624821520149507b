// @ts-check
/**
 * The stream catalogue as the client needs it (`tidewire.protocol.streams`): which streams are
 * reliable, which keep a snapshot, and the names the original frontend used for them.
 *
 * Copied from the gateway's catalogue because the generated declarations carry it as types
 * only; `tests/dashboard/test_client_js.py` checks this copy against the Python one.
 */

/** @import { StreamName } from "../tidewire-protocol.d.ts" */

/**
 * @typedef {object} StreamSpec
 * @property {string} keyField field naming the message's key (its partition in the stream)
 * @property {boolean} reliable reliable (history, no gaps) or latest-value (conflated)
 * @property {readonly string[]} filters the filters a subscription to the stream may use
 */

const ALL = ["asset_class", "max_price", "min_price", "portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"];

/** @type {Readonly<Record<StreamName, StreamSpec>>} */
export const STREAMS = Object.freeze({
  market_data: { keyField: "symbol", reliable: false, filters: ["asset_class", "max_price", "min_price", "symbols", "venue"] },
  trade_updates: { keyField: "portfolio_id", reliable: true, filters: ALL },
  order_updates: { keyField: "portfolio_id", reliable: true, filters: ALL },
  position_updates: {
    keyField: "portfolio_id",
    reliable: true,
    filters: ["asset_class", "portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"],
  },
  risk_alerts: {
    keyField: "portfolio_id",
    reliable: true,
    filters: ["portfolio_ids", "severity", "strategy_ids", "symbols", "user_id", "venue"],
  },
  performance_updates: { keyField: "portfolio_id", reliable: false, filters: ["portfolio_ids", "user_id"] },
  strategy_performance: { keyField: "strategy_id", reliable: false, filters: ["portfolio_ids", "strategy_ids", "user_id"] },
  execution_analytics: {
    keyField: "symbol",
    reliable: true,
    filters: ["portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"],
  },
  risk_metrics: { keyField: "portfolio_id", reliable: false, filters: ["portfolio_ids", "user_id"] },
  engine_status: { keyField: "engine_id", reliable: false, filters: ["severity"] },
  system_health: { keyField: "component", reliable: false, filters: ["severity"] },
  events: { keyField: "source", reliable: true, filters: ["portfolio_ids", "severity", "user_id"] },
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
 * Whether the stream keeps the newest message per key, so that a subscription to it starts
 * with a snapshot (latest-value streams and position_updates).
 * @param {string} name
 */
export function keepsLastValues(name) {
  const canonical = resolveStream(name);
  if (canonical === null) return false;
  return !STREAMS[canonical].reliable || canonical === "position_updates";
}

/**
 * Whether `name` is a reliable stream (unknown streams are treated as reliable: no
 * conflation is the safe side).
 * @param {string} name
 */
export function isReliable(name) {
  const canonical = resolveStream(name);
  return canonical === null ? true : STREAMS[canonical].reliable;
}
