// @ts-check
/**
 * Reconnection delays: exponential backoff with full jitter (`tidewire.client.backoff`).
 *
 * "Full jitter" (a delay drawn uniformly between zero and the exponential ceiling) spreads the
 * reconnections of every screen that lost the same gateway at the same instant, so a restarted
 * gateway is not hit by a synchronised stampede. After a close that means "you are too many"
 * or "too fast" (4009, 4029) the client must really slow down: a throttled delay starts from a
 * larger ceiling and never drops below half of it.
 */

// 2**62 times any sane base already exceeds every cap; stop growing the exponent there.
const MAX_EXPONENT = 62;

export class Backoff {
  /**
   * @param {number} base ceiling of the first delay, in milliseconds
   * @param {number} cap largest delay ever returned, in milliseconds
   * @param {{throttleFactor?: number, random?: () => number}} [options]
   */
  constructor(base, cap, options = {}) {
    const throttleFactor = options.throttleFactor ?? 4;
    if (!(base > 0)) throw new RangeError("base must be positive");
    if (!(cap >= base)) throw new RangeError("cap must be at least base");
    if (!(throttleFactor >= 1)) throw new RangeError("throttleFactor must be at least 1");
    this.base = base;
    this.cap = cap;
    this.throttleFactor = throttleFactor;
    /** Delays handed out since the last `reset()`. */
    this.attempts = 0;
    this._random = options.random ?? Math.random;
  }

  /**
   * The largest delay of attempt number `attempt` (0 for the first).
   * @param {number} attempt
   * @param {boolean} [throttled]
   */
  ceiling(attempt, throttled = false) {
    const factor = throttled ? this.throttleFactor : 1;
    return Math.min(this.cap, this.base * factor * 2 ** Math.min(attempt, MAX_EXPONENT));
  }

  /**
   * The delay before the next attempt, in milliseconds; counts the attempt.
   * @param {boolean} [throttled] after 4009/4029: a larger ceiling, at least half of it
   */
  nextDelay(throttled = false) {
    const ceiling = this.ceiling(this.attempts, throttled);
    this.attempts += 1;
    const low = throttled ? ceiling / 2 : 0;
    return low + (ceiling - low) * this._random();
  }

  /** Start over from the smallest ceiling (after a successful connection). */
  reset() {
    this.attempts = 0;
  }
}
