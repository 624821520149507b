// @ts-check
// Generated from tidewire.protocol (streams.py, errors.py, messages.py) by
// `tidewire schema --javascript > src/tidewire/dashboard/static/client/catalogue.js` (`make schema`): do not edit; tests/protocol/test_javascript.py
// fails while it is stale.

/** @import { StreamName } from "../tidewire-protocol.d.ts" */

/**
 * @typedef {object} StreamSpec
 * @property {string} keyField field naming the message's key (its partition)
 * @property {string | null} keyFallback field that keys a message without `keyField`
 * @property {boolean} reliable reliable (history, no gaps) or latest-value (conflated)
 * @property {boolean} keepsLastValues whether the gateway keeps the newest message per
 *   snapshot unit (so a subscription starts with a snapshot)
 * @property {readonly string[]} snapshotFields fields that, with the key, make the
 *   snapshot and conflation unit
 * @property {readonly string[]} filters the filters a subscription may use
 */

/** The stream catalogue (`tidewire.protocol.streams.STREAMS`). */
/** @type {Readonly<Record<StreamName, StreamSpec>>} */
export const STREAMS = Object.freeze({
  market_data: Object.freeze({
    keyField: "symbol",
    keyFallback: null,
    reliable: false,
    keepsLastValues: true,
    snapshotFields: Object.freeze(["data_type"]),
    filters: Object.freeze(["asset_class", "max_price", "min_price", "symbols", "venue"]),
  }),
  trade_updates: Object.freeze({
    keyField: "portfolio_id",
    keyFallback: "user_id",
    reliable: true,
    keepsLastValues: false,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["asset_class", "max_price", "min_price", "portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"]),
  }),
  order_updates: Object.freeze({
    keyField: "portfolio_id",
    keyFallback: "user_id",
    reliable: true,
    keepsLastValues: false,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["asset_class", "max_price", "min_price", "portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"]),
  }),
  position_updates: Object.freeze({
    keyField: "portfolio_id",
    keyFallback: null,
    reliable: true,
    keepsLastValues: true,
    snapshotFields: Object.freeze(["strategy_id", "symbol"]),
    filters: Object.freeze(["asset_class", "portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"]),
  }),
  risk_alerts: Object.freeze({
    keyField: "portfolio_id",
    keyFallback: null,
    reliable: true,
    keepsLastValues: false,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["portfolio_ids", "severity", "strategy_ids", "symbols", "user_id", "venue"]),
  }),
  performance_updates: Object.freeze({
    keyField: "portfolio_id",
    keyFallback: null,
    reliable: false,
    keepsLastValues: true,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["portfolio_ids", "user_id"]),
  }),
  strategy_performance: Object.freeze({
    keyField: "strategy_id",
    keyFallback: null,
    reliable: false,
    keepsLastValues: true,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["portfolio_ids", "strategy_ids", "user_id"]),
  }),
  execution_analytics: Object.freeze({
    keyField: "symbol",
    keyFallback: null,
    reliable: true,
    keepsLastValues: false,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["portfolio_ids", "strategy_ids", "symbols", "user_id", "venue"]),
  }),
  risk_metrics: Object.freeze({
    keyField: "portfolio_id",
    keyFallback: null,
    reliable: false,
    keepsLastValues: true,
    snapshotFields: Object.freeze(["metric_type"]),
    filters: Object.freeze(["portfolio_ids", "user_id"]),
  }),
  engine_status: Object.freeze({
    keyField: "engine_id",
    keyFallback: "source",
    reliable: false,
    keepsLastValues: true,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["severity"]),
  }),
  system_health: Object.freeze({
    keyField: "component",
    keyFallback: "source",
    reliable: false,
    keepsLastValues: true,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["severity"]),
  }),
  events: Object.freeze({
    keyField: "source",
    keyFallback: null,
    reliable: true,
    keepsLastValues: false,
    snapshotFields: Object.freeze([]),
    filters: Object.freeze(["portfolio_ids", "severity", "user_id"]),
  }),
});

/** The original frontend's singular names and aliases of streams. */
/** @type {Readonly<Record<string, StreamName>>} */
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

/** The filter that selects a stream's key (a topic's key suffix becomes it). */
/** @type {Readonly<Record<string, string>>} */
export const KEY_FILTER_OF_FIELD = Object.freeze({
  symbol: "symbols",
  portfolio_id: "portfolio_ids",
  strategy_id: "strategy_ids",
});

/** Close codes the gateway sends, by name (`tidewire.protocol.errors.CloseCode`). */
export const CLOSE_CODES = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  OPERATOR_CLOSE: 4000,
  AUTH_FAILED: 4001,
  FORBIDDEN: 4003,
  SLOW_CONSUMER: 4008,
  TOO_MANY_CONNECTIONS: 4009,
  HEARTBEAT_TIMEOUT: 4010,
  INBOUND_RATE_EXCEEDED: 4029,
});

/** Close codes after which a client reconnects by itself and recovers. */
export const RECONNECT_CLOSE_CODE_LIST = Object.freeze([1001, 1006, 1011, 1012, 1013, 4000, 4008, 4009, 4010, 4029]);

/** Close codes after which a client waits longer before reconnecting. */
export const BACKOFF_CLOSE_CODE_LIST = Object.freeze([4009, 4029]);

/** Every `error_code` of an `error` or `subscription_error` reply. */
export const ERROR_CODES = Object.freeze(["duplicate_subscription", "forbidden", "internal_error", "invalid_filter", "invalid_json", "invalid_message", "invalid_position", "invalid_rate_limit", "message_too_large", "not_found", "rate_limited", "token_expired", "too_many_subscriptions", "unauthorized", "unavailable", "unknown_stream", "unknown_type", "unsupported_version"]);

/** Error codes whose request may succeed when sent again later. */
export const RETRYABLE_ERROR_CODES = Object.freeze(["internal_error", "rate_limited", "unavailable"]);

/** The `type` of every reply (not a data message): routed to the request, not by stream. */
export const REPLY_TYPE_LIST = Object.freeze(["ack", "auth_ok", "connection_established", "error", "heartbeat", "heartbeat_response", "pong", "snapshot", "subscription_confirmed", "subscription_error", "subscriptions", "sync_response", "trade_history", "unsubscription_confirmed"]);
