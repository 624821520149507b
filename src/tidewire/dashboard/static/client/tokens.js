// @ts-check
/**
 * Tokens in the JavaScript client: a fixed token or a provider, where it travels, when to
 * refresh it, and how it is kept out of logs (`tidewire.client.tokens`).
 *
 * A browser cannot set `Authorization` on a WebSocket, so the token goes as a
 * `Sec-WebSocket-Protocol` entry `tidewire.token.<jwt>` offered beside `tidewire.v3.json`;
 * the gateway answers with the protocol entry only. The refresh schedule is the rule of
 * `tests/vectors/token_refresh.json`, shared with the Python SDK.
 */

import { TokenError } from "./errors.js";

/** @typedef {() => string | PromiseLike<string>} TokenProvider */
/** @typedef {string | TokenProvider} TokenSource */

export const TOKEN_SUBPROTOCOL_PREFIX = "tidewire.token.";

/** A token is refreshed at most this long before it expires, in seconds. */
export const MAX_REFRESH_LEAD = 60;
/** ... and at least this long. */
export const MIN_REFRESH_LEAD = 1;
/** After a failed refresh the next try comes this much later (or sooner, near expiry), ms. */
export const REFRESH_RETRY_MS = 5000;
/** ... but never sooner than this, so a broken provider is not called in a tight loop. */
export const MIN_REFRESH_RETRY_MS = 1000;
/** setTimeout fires at once for longer delays (a 32-bit millisecond count). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

// A subprotocol entry must be an HTTP token (RFC 9110 tchar). JWTs (base64url and dots)
// always are; anything else would make `new WebSocket` throw a SyntaxError quoting it.
const TCHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Seconds to wait before refreshing a token that expires in `secondsLeft`: a fifth of the
 * time left, at least 1 s and at most 60 s before expiry; at once when less is left.
 * @param {number} secondsLeft
 */
export function refreshDelay(secondsLeft) {
  const lead = Math.min(MAX_REFRESH_LEAD, Math.max(MIN_REFRESH_LEAD, secondsLeft / 5));
  return Math.max(0, secondsLeft - lead);
}

/**
 * Milliseconds before the next try after a failed refresh, `leftMs` before expiry: soon
 * enough to get another chance before the gateway closes the connection (the `retries` of
 * tests/vectors/token_refresh.json, shared with the Python SDK).
 * @param {number} leftMs
 */
export function refreshRetryDelay(leftMs) {
  return Math.min(REFRESH_RETRY_MS, Math.max(MIN_REFRESH_RETRY_MS, leftMs / 2));
}

/**
 * Epoch milliseconds of an ISO-8601 `expires_at`; null when absent or unreadable.
 * @param {unknown} expiresAt
 */
export function parseExpiry(expiresAt) {
  if (typeof expiresAt !== "string" || expiresAt === "") return null;
  const ms = Date.parse(expiresAt);
  return Number.isFinite(ms) ? ms : null;
}

/**
 * Throws a TypeError unless `token` can travel as a subprotocol entry. The message never
 * quotes the token.
 * @param {unknown} token
 * @returns {string}
 */
export function checkToken(token) {
  if (typeof token !== "string" || token === "") throw new TypeError("a token must be a non-empty string");
  if (!TCHARS.test(token)) {
    throw new TypeError("the token has characters a WebSocket subprotocol entry cannot carry (is it a JWT?)");
  }
  return token;
}

/**
 * Throws a TypeError unless `source` is a usable `token` option (null: no token).
 * @param {unknown} source
 * @returns {TokenSource | null}
 */
export function checkTokenSource(source) {
  if (source === null || source === undefined) return null;
  if (typeof source === "function") return /** @type {TokenProvider} */ (source);
  return checkToken(source);
}

/**
 * The token to use now: the fixed one, or the provider's answer (checked).
 * @param {TokenSource} source
 * @returns {Promise<string>}
 */
export async function resolveToken(source) {
  if (typeof source === "string") return source;
  let value;
  try {
    value = await source();
  } catch (error) {
    throw new TokenError(`the token provider failed: ${error instanceof Error ? error.message : String(error)}`, error);
  }
  try {
    return checkToken(value);
  } catch (error) {
    throw new TokenError(`the token provider returned no usable token: ${/** @type {Error} */ (error).message}`);
  }
}

/**
 * The subprotocols of a handshake: the protocol entry, and the token entry beside it.
 * @param {string} protocol
 * @param {string | null} token
 * @returns {string | string[]}
 */
export function subprotocols(protocol, token) {
  return token === null ? protocol : [protocol, TOKEN_SUBPROTOCOL_PREFIX + token];
}

/**
 * `message` as it may be shown or logged: a `token` field becomes "***" (a copy; the
 * message itself is returned when it has none).
 * @template {Record<string, any>} M
 * @param {M} message
 * @returns {M}
 */
export function redactToken(message) {
  return typeof message.token === "string" ? { ...message, token: "***" } : message;
}

/**
 * One pending refresh: a timer that can wait longer than setTimeout can (it re-arms itself
 * until the due time), replaced by every `arm` and dropped by `cancel`.
 */
export class RefreshTimer {
  /**
   * @param {() => void} run called once the due time is reached
   * @param {() => number} [now] epoch milliseconds
   */
  constructor(run, now = Date.now) {
    this._run = run;
    this._now = now;
    /** @type {number | null} epoch milliseconds of the pending refresh */
    this.dueAt = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._timer = null;
  }

  /** @param {number} delayMs from now; replaces any pending refresh (never runs at once) */
  arm(delayMs) {
    this.cancel();
    const due = this._now() + Math.max(0, delayMs);
    this.dueAt = due;
    this._timer = setTimeout(() => this._fire(due), Math.min(Math.max(0, delayMs), MAX_TIMER_MS));
  }

  cancel() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
    this.dueAt = null;
  }

  /** @param {number} due */
  _fire(due) {
    const wait = due - this._now();
    if (wait > 0) {
      this._timer = setTimeout(() => this._fire(due), Math.min(wait, MAX_TIMER_MS));
      return;
    }
    this._timer = null;
    this.dueAt = null;
    this._run();
  }
}
