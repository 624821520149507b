// @ts-check
/**
 * Commands waiting for a connection: a bounded FIFO that refuses rather than drops
 * (`tidewire.client.outbound`). Dropping the oldest would lose a command the caller believes
 * was sent, and only the caller knows which commands can be given up.
 */

import { QueueFull } from "./errors.js";

/** @typedef {Record<string, any>} Command */

export class OutboundQueue {
  /** @param {number} maxsize 0 refuses every command sent while disconnected */
  constructor(maxsize) {
    if (!(maxsize >= 0)) throw new RangeError("maxsize must not be negative");
    this.maxsize = maxsize;
    /** @type {Command[]} */
    this._items = [];
  }

  get size() {
    return this._items.length;
  }

  /** @param {Command} message queued last; throws QueueFull when `maxsize` wait already */
  put(message) {
    if (this._items.length >= this.maxsize) {
      throw new QueueFull(
        `${this._items.length} commands are already waiting for a connection ` +
          `(messageQueueSize=${this.maxsize}); command refused`,
      );
    }
    this._items.push(message);
  }

  /** @returns {Command | undefined} the oldest waiting command */
  shift() {
    return this._items.shift();
  }

  /** @param {Command} message put back first (its sending failed); not bounded */
  requeue(message) {
    this._items.unshift(message);
  }

  /** @param {Command} message withdrawn by identity; false when no longer queued */
  remove(message) {
    const index = this._items.indexOf(message);
    if (index < 0) return false;
    this._items.splice(index, 1);
    return true;
  }

  clear() {
    this._items.length = 0;
  }
}
