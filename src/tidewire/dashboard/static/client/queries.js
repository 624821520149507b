// @ts-check
/**
 * The commands of the original hooks that ask the gateway something, without subscribing:
 * their command objects and what their replies say (`update_subscription`, `get_snapshot`,
 * `get_trade_history`, `sync`). Pure: the client sends them with `request` (correlated by
 * `message_id`) and hands the replies here.
 */

import { SubscriptionError, TidewireError } from "./errors.js";
import { positionOf } from "./dedupe.js";
import { resolveStream } from "./streams.js";
import { normalizeFilters } from "./subscription.js";

/** @import { Filters, StreamPosition } from "../tidewire-protocol.d.ts" */
/** @import { Subscription } from "./subscription.js" */

/**
 * @typedef {object} SubscriptionChange what `updateSubscription` changes (absent: kept)
 * @property {Filters | Record<string, unknown> | null} [filters] the new filters, replacing
 *   the old ones; `{}` or null removes every filter
 * @property {number | null} [rateLimit] messages per second; null or 0 removes the limit
 */

/**
 * @typedef {object} SnapshotResult the answer to `getSnapshot`
 * @property {string} stream the canonical stream
 * @property {string} topic the stream, or the topic with its key suffix as asked for
 * @property {StreamPosition | null} position the stream's position the snapshot is as of
 * @property {Record<string, any>[]} messages the newest message per snapshot unit, in seq order
 * @property {boolean} truncated more messages matched than the limit allowed
 */

/**
 * @typedef {object} TradeHistoryResult the answer to `getTradeHistory`
 * @property {StreamPosition | null} position the position of `trade_updates` it is as of
 * @property {Record<string, any>[]} trades `trade_updates` messages, oldest first
 */

/**
 * @typedef {object} ClockSync the answer to `sync`
 * @property {number} offsetMs the gateway's clock minus this one (add it to `Date.now()`
 *   for the gateway's time), estimated at the middle of the round trip
 * @property {number} rttMs the round trip of the `sync` command
 */

/**
 * A positive whole number of messages, or undefined.
 * @param {number | null | undefined} limit
 */
function checkLimit(limit) {
  if (limit === undefined || limit === null) return undefined;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError("limit must be a positive integer");
  return limit;
}

/**
 * The `update_subscription` command for `change` of `subscription`, or null when it changes
 * nothing the gateway would apply (no rate limit to remove on a reliable stream). Throws
 * `TypeError` for an empty change, `SubscriptionError` (invalid_rate_limit) for a rate limit
 * on a reliable stream, checked before anything is sent.
 * @param {Subscription} subscription
 * @param {SubscriptionChange} change
 * @returns {Record<string, any> | null}
 */
export function updateCommand(subscription, change) {
  const { filters, rateLimit } = change;
  if (filters === undefined && rateLimit === undefined) {
    throw new TypeError("updateSubscription needs filters or rateLimit");
  }
  /** @type {Record<string, any>} */
  const command = { type: "update_subscription", subscription_id: subscription.subscriptionId };
  if (filters !== undefined) command.filters = normalizeFilters(filters);
  if (rateLimit !== undefined) {
    if (rateLimit !== null && !(rateLimit >= 0)) throw new RangeError("rateLimit must not be negative");
    const limited = rateLimit !== null && rateLimit > 0;
    if (limited && subscription.reliable) {
      const error = new SubscriptionError(
        "invalid_rate_limit",
        `${subscription.stream} is a reliable stream: it cannot be rate limited`,
      );
      error.subscriptionId = subscription.subscriptionId;
      throw error;
    }
    // `rate_limit: 0` is the gateway's "no limit"; a reliable stream has none to remove.
    if (!subscription.reliable) command.rate_limit = limited ? rateLimit : 0;
  }
  return "filters" in command || "rate_limit" in command ? command : null;
}

/**
 * The `get_snapshot` command.
 * @param {string} stream a stream (canonical, singular or alias) or a topic (`market_data.AAPL`)
 * @param {Filters | Record<string, unknown> | null | undefined} filters
 * @param {{limit?: number | null}} options
 */
export function snapshotCommand(stream, filters, options) {
  /** @type {Record<string, any>} */
  const command = { type: "get_snapshot", stream: resolveStream(stream) ?? stream };
  const wire = normalizeFilters(filters);
  if (Object.keys(wire).length > 0) command.filters = wire;
  const limit = checkLimit(options.limit);
  if (limit !== undefined) command.limit = limit;
  return command;
}

/**
 * The `get_trade_history` command.
 * @param {Filters | Record<string, unknown> | null | undefined} filters
 * @param {{limit?: number | null}} options
 */
export function tradeHistoryCommand(filters, options) {
  /** @type {Record<string, any>} */
  const command = { type: "get_trade_history" };
  const wire = normalizeFilters(filters);
  if (Object.keys(wire).length > 0) command.filters = wire;
  const limit = checkLimit(options.limit);
  if (limit !== undefined) command.limit = limit;
  return command;
}

/** @param {unknown} value @returns {Record<string, any>[]} */
function messages(value) {
  return Array.isArray(value) ? value.filter((m) => m !== null && typeof m === "object") : [];
}

/**
 * @param {Record<string, any>} reply a `snapshot` reply
 * @returns {SnapshotResult}
 */
export function snapshotResult(reply) {
  const stream = typeof reply.stream === "string" ? reply.stream : "";
  return {
    stream,
    topic: typeof reply.topic === "string" ? reply.topic : stream,
    position: positionOf(reply.position),
    messages: messages(reply.messages),
    truncated: reply.truncated === true,
  };
}

/**
 * @param {Record<string, any>} reply a `trade_history` reply
 * @returns {TradeHistoryResult}
 */
export function tradeHistoryResult(reply) {
  return { position: positionOf(reply.position), trades: messages(reply.trades) };
}

/**
 * The clock offset a `sync_response` gives: `server_time` (epoch ms) against the middle of
 * the round trip on this clock.
 * @param {Record<string, any>} reply
 * @param {number} sentAt `Date.now()` when the command went out
 * @param {number} rttMs the round trip, measured on the monotonic clock
 * @returns {ClockSync}
 */
export function clockSync(reply, sentAt, rttMs) {
  const serverTime = reply.server_time;
  if (typeof serverTime !== "number" || !Number.isFinite(serverTime)) {
    throw new TidewireError("sync_response without a numeric server_time");
  }
  const rtt = Math.max(0, rttMs);
  return { offsetMs: serverTime - (sentAt + rtt / 2), rttMs: rtt };
}
