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
 */

/** @typedef {(message: Record<string, any>) => string | null} Unit */

/**
 * The unit in which a newer message of `stream` replaces an older one (the gateway's snapshot
 * key): positions per portfolio and symbol, market data per symbol and data_type (a bar is not
 * replaced by a quote), otherwise the message's `key`. Null for a message without a key.
 * @param {string} stream
 * @param {Record<string, any>} message
 * @returns {string | null}
 */
export function conflationKey(stream, message) {
  const key = message.key;
  if (typeof key !== "string" && typeof key !== "number") return null;
  if (stream === "position_updates") {
    let symbol = message.symbol;
    if (symbol == null && message.data !== null && typeof message.data === "object") symbol = message.data.symbol;
    return `${key}\u0000${symbol ?? ""}`;
  }
  const dataType = message.data_type;
  return typeof dataType === "string" ? `${key}\u0000${dataType}` : String(key);
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
}
