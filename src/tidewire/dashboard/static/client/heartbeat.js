// @ts-check
/**
 * Round trips of application heartbeats (docs/protocol.md section 3; `tidewire.client.heartbeat`).
 *
 * The client sends `{type: "heartbeat", client_timestamp: <epoch ms>}` and the gateway echoes
 * `client_timestamp` unchanged. Epoch milliseconds are what the protocol puts on the wire, but
 * wall clocks jump, so the round trip is measured with the monotonic clock of the send, found
 * again by the echoed value.
 */

export class HeartbeatTracker {
  /**
   * @param {{keep?: number, wallClock?: () => number, monotonic?: () => number}} [options]
   *   clocks in milliseconds
   */
  constructor(options = {}) {
    this._keep = options.keep ?? 32;
    this._wallClock = options.wallClock ?? Date.now;
    this._monotonic = options.monotonic ?? (() => performance.now());
    /** @type {Map<number, number>} client_timestamp -> monotonic time of the send */
    this._sent = new Map();
    this._lastTimestamp = 0;
  }

  /** A new heartbeat command, remembered until its response (or until too old). */
  start() {
    // Keys must be unique so two heartbeats of one millisecond get their own round trip.
    const timestamp = Math.max(Math.floor(this._wallClock()), this._lastTimestamp + 1);
    this._lastTimestamp = timestamp;
    this._sent.set(timestamp, this._monotonic());
    while (this._sent.size > this._keep) {
      const oldest = this._sent.keys().next().value;
      if (oldest === undefined) break;
      this._sent.delete(oldest);
    }
    return { type: /** @type {const} */ ("heartbeat"), client_timestamp: timestamp };
  }

  /**
   * Round trip in milliseconds for an echoed `client_timestamp`, null if unusable. A heartbeat
   * this tracker did not send is measured against the wall clock, the best that can be done.
   * @param {unknown} echoed
   */
  finish(echoed) {
    let value = echoed;
    if (typeof value === "string") value = Number(value);
    if (typeof value !== "number" || !Number.isFinite(value)) return null;
    const sent = Number.isInteger(value) ? this._sent.get(value) : undefined;
    if (sent !== undefined) {
      this._sent.delete(value);
      return Math.max(0, this._monotonic() - sent);
    }
    return Math.max(0, this._wallClock() - value);
  }

  /** Forget every outstanding heartbeat (the connection they were sent on is gone). */
  clear() {
    this._sent.clear();
  }
}
