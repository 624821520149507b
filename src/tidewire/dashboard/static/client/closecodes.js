// @ts-check
/**
 * Whether to reconnect after a connection ended (docs/protocol.md section 6;
 * `tidewire.client.reconnect`). Pure.
 */

import { BACKOFF_CLOSE_CODE_LIST, CLOSE_CODES, RECONNECT_CLOSE_CODE_LIST } from "./catalogue.js";
import { AuthenticationError, ConnectionClosedError } from "./errors.js";

/** @import { CloseCodes, ReconnectCloseCode, BackoffCloseCode } from "../tidewire-protocol.d.ts" */

/** The gateway's close codes by name (generated: `client/catalogue.js`). */
export const CloseCode = /** @type {CloseCodes} */ (CLOSE_CODES);

/** The close code of a connection that just went away (or never opened). */
export const ABNORMAL_CLOSURE = 1006;

/** @type {ReadonlySet<ReconnectCloseCode>} */
export const RECONNECT_CLOSE_CODES = new Set(/** @type {ReconnectCloseCode[]} */ (RECONNECT_CLOSE_CODE_LIST));

/** @type {ReadonlySet<BackoffCloseCode>} */
export const BACKOFF_CLOSE_CODES = new Set(/** @type {BackoffCloseCode[]} */ (BACKOFF_CLOSE_CODE_LIST));

/**
 * Why not to reconnect after a connection closed with `code`, or null to reconnect.
 *
 * 4001 means the credentials are bad or expired: retrying with them cannot succeed, so it
 * is an `AuthenticationError`, unless the client has a token provider (`renewableToken`)
 * that the next attempt asks for a new token; then it reconnects like after 1006, within
 * the same attempt limit (and gives up with an `AuthenticationError`). 4000 (an operator
 * closed this connection) reconnects; 1000 is the application's own close. Codes outside
 * `RECONNECT_CLOSE_CODES` (1000 normal, 1008 policy, 1009 too big, 4003 forbidden, ...)
 * say that reconnecting would be refused or repeat the same mistake.
 * @param {number} code
 * @param {string} reason
 * @param {{autoReconnect: boolean, attempts: number, maxAttempts: number | null,
 *   renewableToken?: boolean}} options
 * @returns {ConnectionClosedError | null}
 */
export function reconnectRefusal(code, reason, { autoReconnect, attempts, maxAttempts, renewableToken = false }) {
  const auth = code === CloseCode.AUTH_FAILED;
  const failure = `authentication failed (4001) ${reason}`.trim();
  if (auth && !(renewableToken && autoReconnect)) {
    return new AuthenticationError(failure, { code, reason });
  }
  if (!auth && !RECONNECT_CLOSE_CODES.has(/** @type {ReconnectCloseCode} */ (code))) {
    return new ConnectionClosedError(`the gateway closed the connection with ${code} ${reason}`.trim(), {
      code,
      reason,
    });
  }
  if (!autoReconnect) {
    return new ConnectionClosedError(`connection lost (${code}) and autoReconnect is off`, { code, reason });
  }
  if (maxAttempts !== null && attempts >= maxAttempts) {
    const message = `gave up after ${attempts} reconnection attempt(s)`;
    if (auth) return new AuthenticationError(`${message}: ${failure}`, { code, reason });
    return new ConnectionClosedError(`${message} (last close code ${code})`, { code, reason });
  }
  return null;
}

/**
 * True when `code` asks the client to back off harder (4009, 4029).
 * @param {number} code
 */
export function throttled(code) {
  return BACKOFF_CLOSE_CODES.has(/** @type {BackoffCloseCode} */ (code));
}
