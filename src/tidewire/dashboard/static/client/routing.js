// @ts-check
/**
 * Client-side routing of data messages to local subscriptions (`tidewire.client.routing`).
 *
 * Data messages carry no subscription id (docs/protocol.md section 1, "encode once"): the client
 * decides which of its subscriptions a message belongs to from its `stream` and each
 * subscription's filters. The gateway has enforced the filters already, so this only has to
 * separate several subscriptions of one stream, with the same rules (section 3):
 *
 * - a filter matches a message that carries the field, at the top level or in `data`, with an
 *   allowed value; a message without the field does not match;
 * - an empty list or an empty string is no filter (the original forms send `portfolio_ids: []`
 *   for a blank field);
 * - `severity` is a minimum: low < medium < high < critical;
 * - the price for `min_price`/`max_price` is `data.price` when present, else
 *   `data.last_trade_price`, else the mid of `data.bid_price` and `data.ask_price`, compared
 *   exactly as decimals (`tidewire.protocol.prices`): a JSON number is read by its shortest
 *   representation, a decimal string (`decimals=string`) as written, so bid 1.1 / ask 1.3 has
 *   the mid 1.2. tests/vectors/filters.json holds the cases both clients and the gateway run.
 */

/** @import { Filters } from "../tidewire-protocol.d.ts" */

/** Field a filter reads on a message. */
const FILTER_FIELDS = /** @type {const} */ ({
  symbols: "symbol",
  portfolio_ids: "portfolio_id",
  strategy_ids: "strategy_id",
  user_id: "user_id",
  venue: "venue",
  asset_class: "asset_class",
});
const LIST_FILTERS = /** @type {const} */ (["symbols", "portfolio_ids", "strategy_ids"]);
const EQUALITY_FILTERS = /** @type {const} */ (["user_id", "venue", "asset_class"]);

/** @type {Readonly<Record<string, number>>} */
export const SEVERITY_RANK = Object.freeze({ low: 0, medium: 1, high: 2, critical: 3 });
/** Nautilus and many engines say "info"/"warning"/"error"; mapped onto the four levels. */
/** @type {Readonly<Record<string, string>>} */
export const SEVERITY_ALIASES = Object.freeze({
  info: "low",
  warning: "medium",
  warn: "medium",
  error: "high",
  fatal: "critical",
});

/**
 * The message's `name` field: at the top level when set there, else in `data`.
 * @param {Record<string, any>} message
 * @param {string} name
 * @returns {any}
 */
export function fieldValue(message, name) {
  const value = message[name];
  if (value !== undefined && value !== null) return value;
  const data = message.data;
  return data !== null && typeof data === "object" ? data[name] : undefined;
}

/** Significant digits and exponent a price may have (`tidewire.protocol.prices`). */
const MAX_DIGITS = 100;
const MAX_EXPONENT = 400;
const DECIMAL = /^([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$/;

/**
 * An exact decimal: `mantissa` x 10^`exponent`.
 * @typedef {{ mantissa: bigint, exponent: number }} Decimal
 */

/**
 * `value` as the decimal it was written as; null for what is not a finite number of at most
 * MAX_DIGITS digits and an exponent within MAX_EXPONENT (as the gateway reads it).
 * @param {unknown} value
 * @returns {Decimal | null}
 */
export function toDecimal(value) {
  let text;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return null;
    text = String(value); // the shortest representation, like Python's repr
  } else if (typeof value === "string") {
    text = value.trim();
    if (text.length > 2 * MAX_DIGITS) return null;
  } else {
    return null;
  }
  const match = DECIMAL.exec(text);
  if (match === null) return null;
  const [, sign, whole, fraction = "", power = "0"] = match;
  if (whole === "" && fraction === "") return null;
  const digits = (whole + fraction).replace(/^0+/, "");
  if (digits.length > MAX_DIGITS) return null;
  const exponent = Number(power) - fraction.length;
  // Python's Decimal.adjusted(): the exponent of the most significant digit.
  const adjusted = exponent + Math.max(digits.length, 1) - 1;
  if (Math.abs(adjusted) > MAX_EXPONENT) return null;
  const mantissa = BigInt(digits === "" ? "0" : digits);
  return { mantissa: sign === "-" ? -mantissa : mantissa, exponent };
}

/** @param {Decimal} a @param {Decimal} b @returns {[bigint, bigint, number]} */
function aligned(a, b) {
  const exponent = Math.min(a.exponent, b.exponent);
  return [
    a.mantissa * 10n ** BigInt(a.exponent - exponent),
    b.mantissa * 10n ** BigInt(b.exponent - exponent),
    exponent,
  ];
}

/** -1, 0 or 1 as `a` is below, equal to or above `b`. @param {Decimal} a @param {Decimal} b */
export function compareDecimals(a, b) {
  const [x, y] = aligned(a, b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** `(bid + ask) / 2`, exact. @param {Decimal} bid @param {Decimal} ask @returns {Decimal} */
function exactMid(bid, ask) {
  const [x, y, exponent] = aligned(bid, ask);
  return { mantissa: (x + y) * 5n, exponent: exponent - 1 };
}

/**
 * The price `min_price`/`max_price` compare, as the gateway reads it (only in `data`): the
 * first of `price` and `last_trade_price` that is present, else the exact bid/ask mid; null
 * when the message carries no price.
 * @param {Record<string, any>} message
 * @returns {Decimal | null}
 */
export function messagePrice(message) {
  const data = message.data;
  if (data === null || typeof data !== "object") return null;
  for (const name of ["price", "last_trade_price"]) {
    const value = data[name];
    if (value !== undefined && value !== null) return toDecimal(value);
  }
  const bid = toDecimal(data.bid_price);
  const ask = toDecimal(data.ask_price);
  return bid !== null && ask !== null ? exactMid(bid, ask) : null;
}

/**
 * Rank of a severity (0 low .. 3 critical), accepting the aliases; null when unknown.
 * @param {unknown} value
 */
export function severityRank(value) {
  if (typeof value !== "string") return null;
  const level = value.toLowerCase();
  const rank = SEVERITY_RANK[SEVERITY_ALIASES[level] ?? level];
  return rank ?? null;
}

/**
 * Whether `message` passes every filter (an empty filter set passes all).
 *
 * A filter the client does not know never excludes a message: the gateway refuses unknown
 * filters at subscribe time, so one reaching here is from a newer protocol and was applied.
 * @param {Filters} filters
 * @param {Record<string, any>} message
 */
export function matches(filters, message) {
  for (const name of LIST_FILTERS) {
    const allowed = filters[name];
    if (allowed != null && allowed.length > 0 && !allowed.includes(fieldValue(message, FILTER_FIELDS[name]))) {
      return false;
    }
  }
  for (const name of EQUALITY_FILTERS) {
    const wanted = filters[name];
    if (wanted != null && wanted !== "" && fieldValue(message, FILTER_FIELDS[name]) !== wanted) return false;
  }
  // Typed as a level, but an application may pass the blank of a form.
  const severity = /** @type {unknown} */ (filters.severity);
  if (severity != null && severity !== "") {
    const wanted = severityRank(severity);
    const rank = severityRank(fieldValue(message, "severity"));
    if (wanted === null || rank === null || rank < wanted) return false;
  }
  const low = toDecimal(filters.min_price);
  const high = toDecimal(filters.max_price);
  if (low !== null || high !== null) {
    const price = messagePrice(message);
    if (price === null) return false;
    if (low !== null && compareDecimals(price, low) < 0) return false;
    if (high !== null && compareDecimals(price, high) > 0) return false;
  }
  return true;
}

/**
 * Which local subscriptions (targets) a data message belongs to; registration order is kept.
 * @template T
 */
export class Router {
  constructor() {
    /** @type {Map<string, Map<string, {filters: Filters, target: T}>>} */
    this._byStream = new Map();
    /** @type {Map<string, string>} */
    this._streamOf = new Map();
  }

  /**
   * Register `target` (an id registered before is replaced).
   * @param {string} id
   * @param {string} stream
   * @param {Filters} filters
   * @param {T} target
   */
  add(id, stream, filters, target) {
    this.remove(id);
    let targets = this._byStream.get(stream);
    if (targets === undefined) {
      targets = new Map();
      this._byStream.set(stream, targets);
    }
    targets.set(id, { filters, target });
    this._streamOf.set(id, stream);
  }

  /** @param {string} id */
  remove(id) {
    const stream = this._streamOf.get(id);
    if (stream === undefined) return;
    this._streamOf.delete(id);
    const targets = this._byStream.get(stream);
    if (targets === undefined) return;
    targets.delete(id);
    if (targets.size === 0) this._byStream.delete(stream);
  }

  /**
   * The targets `message` belongs to (empty when none).
   * @param {Record<string, any>} message
   * @returns {T[]}
   */
  targets(message) {
    const stream = message.stream;
    const candidates = typeof stream === "string" ? this._byStream.get(stream) : undefined;
    if (candidates === undefined) return [];
    /** @type {T[]} */
    const out = [];
    for (const { filters, target } of candidates.values()) {
      if (matches(filters, message)) out.push(target);
    }
    return out;
  }

  get size() {
    return this._streamOf.size;
  }
}
