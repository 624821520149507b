// @ts-check
/**
 * Which data messages a subscription delivers: each once, never one older than its place
 * (`tidewire.client.dedupe`). Pure.
 *
 * Data messages carry no subscription id, so the client hands every message to each of its
 * subscriptions whose filters match, and the same message can reach a subscription twice, or
 * reach it although it belongs to another subscription's snapshot or replay.
 *
 * At each confirmation the filter restarts with a *floor*: the `since.seq` of a recovered
 * replay, the confirmed position when live messages follow directly, or none when a snapshot
 * follows. A message is delivered only when its seq is above the floor and above the last seq
 * delivered since the confirmation: per subscription on reliable streams (the gateway sends
 * them in seq order), per conflation unit on latest-value streams (there replies and critical
 * messages may overtake the market lane, so different keys may arrive out of seq order). A
 * message of another epoch starts afresh: the stream's history was reset. A message without a
 * valid `{epoch, seq}` is delivered: there is nothing to judge it by.
 *
 * After an update of the subscription's filters (`update_subscription`) nothing restarts: the
 * subscription goes on. On streams with last values the gateway then sends the latest values
 * of the keys the old filters did not cover, older than what was delivered (perhaps older
 * than the floor), then the live messages it held back: `admit` has such newly covered units
 * judged per unit, without the floor, until the next confirmation; on a reliable stream the
 * units new at an earlier update keep their per-unit last seq at the later ones (the rule of
 * the Python client, `tidewire.client.dedupe`).
 */

import { matches } from "./routing.js";
import { streamSpec } from "./streams.js";

/** @import { Filters } from "../tidewire-protocol.d.ts" */

/** @typedef {(message: Record<string, any>) => string | null} Unit */

/** Joins the parts of a snapshot unit (the gateway's separator). */
export const UNIT_SEPARATOR = "\u001f";

/**
 * The field `name` of a message: at the top level when set there, else in `data`.
 * @param {Record<string, any>} message
 * @param {string} name
 * @returns {any}
 */
function field(message, name) {
  const value = message[name];
  if (value !== undefined && value !== null) return value;
  const data = message.data;
  return data !== null && typeof data === "object" ? data[name] : undefined;
}

/**
 * The key of a message of `stream`: its `key`, else what the gateway keys it by (the stream's
 * key field, else its fallback: `user_id` for trades and orders, `source` for engines and
 * components). Null when there is none.
 * @param {string} stream
 * @param {Record<string, any>} message
 * @returns {string | null}
 */
export function messageKey(stream, message) {
  const key = message.key;
  if (typeof key === "string" || typeof key === "number") return String(key);
  const spec = streamSpec(stream);
  if (spec === null) return null;
  for (const name of [spec.keyField, spec.keyFallback]) {
    if (name === null) continue;
    const value = name === "source" ? message.source : field(message, name);
    if (typeof value === "string" || typeof value === "number") return String(value);
  }
  return null;
}

/**
 * The unit in which a newer message of `stream` replaces an older one: the gateway's
 * `snapshot_key`, the key then the stream's `snapshotFields` (top level first, then `data`;
 * "" when absent) joined by U+001F. Market data per symbol and data_type (a bar is not
 * replaced by a quote), positions per portfolio, strategy and symbol, risk metrics per
 * portfolio and metric_type, otherwise the key. Null for a message without a key.
 * @param {string} stream
 * @param {Record<string, any>} message
 * @returns {string | null}
 */
export function conflationKey(stream, message) {
  const key = messageKey(stream, message);
  if (key === null) return null;
  const fields = streamSpec(stream)?.snapshotFields ?? [];
  if (fields.length === 0) return key;
  const parts = [key];
  for (const name of fields) {
    const value = field(message, name);
    parts.push(value === undefined || value === null ? "" : String(value));
  }
  return parts.join(UNIT_SEPARATOR);
}

/**
 * After a filter update: the unit of a message the old filters did not cover (the latest
 * values of such keys follow the update), null for one they covered.
 * @param {string} stream
 * @param {Filters} oldFilters
 * @returns {Unit}
 */
export function newlyCovered(stream, oldFilters) {
  return (message) => (matches(oldFilters, message) ? null : conflationKey(stream, message));
}

/**
 * The `{epoch, seq}` of a message, or null when it has none (or a malformed one).
 * @param {Record<string, any>} message
 * @returns {{epoch: string, seq: number} | null}
 */
export function positionOf(message) {
  if (message === null || typeof message !== "object") return null;
  const { epoch, seq } = message;
  if (typeof epoch !== "string" || epoch === "" || !Number.isInteger(seq)) return null;
  return { epoch, seq };
}

export class DuplicateFilter {
  /** @param {Unit | null} [unit] null: one sequence per subscription (reliable streams) */
  constructor(unit = null) {
    this._unit = unit;
    /** @type {string | null} */
    this._epoch = null;
    /** @type {number | null} */
    this._floor = null;
    /** @type {number | null} */
    this._last = null;
    /** @type {Map<string, number>} */
    this._lastOfUnit = new Map();
    // After filter updates: whether the filters before the latest one covered a message,
    // the unit of a message, and the last seq of each newly covered unit on a reliable
    // stream (latest-value streams keep theirs in _lastOfUnit). Like the Python client's
    // `_covered_before`, `_window_unit` and `_new_last`: a unit newly covered at one update
    // stays judged by its own last seq at the later ones, until the next restart.
    /** @type {((message: Record<string, any>) => boolean) | null} */
    this._coveredBefore = null;
    /** @type {Unit | null} */
    this._windowUnit = null;
    /** @type {Map<string, number>} */
    this._newLast = new Map();
  }

  /** The epoch messages are judged in; null before the first restart or message. */
  get epoch() {
    return this._epoch;
  }

  /**
   * A confirmation: forget what was delivered; deliver only seq > `floor` from now on.
   * @param {string | null} epoch null lets the next message set it
   * @param {number | null} floor
   */
  restart(epoch, floor) {
    this._epoch = epoch;
    this._floor = floor;
    this._last = null;
    this._lastOfUnit.clear();
    this._coveredBefore = this._windowUnit = null;
    this._newLast.clear();
  }

  /**
   * The subscription's filters changed (and the latest values of newly covered keys follow):
   * from now on a message `coveredBefore` says the old filters did not cover is judged in
   * its `unit`, ignoring the floor; so are, on a reliable stream, the units that were new at
   * an earlier update. Until the next `restart`.
   * @param {Unit} unit
   * @param {(message: Record<string, any>) => boolean} coveredBefore
   */
  admit(unit, coveredBefore) {
    this._windowUnit = unit;
    this._coveredBefore = coveredBefore;
  }

  /**
   * Whether to deliver `message`; records it as delivered when it is.
   * @param {Record<string, any>} message
   */
  accept(message) {
    const position = positionOf(message);
    if (position === null) return true;
    const { epoch, seq } = position;
    if (epoch !== this._epoch) this.restart(epoch, null);
    if (this._coveredBefore !== null) {
      const verdict = this._newlyCovered(message, seq);
      if (verdict !== null) return verdict;
    }
    if (this._floor !== null && seq <= this._floor) return false;
    if (this._unit === null) {
      if (this._last !== null && seq <= this._last) return false;
      this._last = seq;
      return true;
    }
    const unit = this._unit(message);
    if (unit === null) return true;
    const last = this._lastOfUnit.get(unit);
    if (last !== undefined && seq <= last) return false;
    this._lastOfUnit.set(unit, seq);
    return true;
  }

  /**
   * The verdict on a message of a newly covered unit; null: the usual rules decide.
   * @param {Record<string, any>} message
   * @param {number} seq
   * @returns {boolean | null}
   */
  _newlyCovered(message, seq) {
    const unit = /** @type {Unit} */ (this._windowUnit)(message);
    if (unit === null) return null;
    const store = this._unit === null ? this._newLast : this._lastOfUnit;
    const coveredBefore = /** @type {(message: Record<string, any>) => boolean} */ (this._coveredBefore);
    if ((this._unit !== null || !store.has(unit)) && coveredBefore(message)) return null;
    const last = store.get(unit);
    if (last !== undefined && seq <= last) return false;
    store.set(unit, seq);
    return true;
  }
}
