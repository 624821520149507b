// A fixed-capacity ring buffer: every buffer of the dashboard is bounded.

export class RingBuffer {
  /** @param {number} capacity */
  constructor(capacity) {
    this.capacity = Math.max(1, capacity | 0);
    this._items = new Array(this.capacity);
    this._start = 0;
    this.size = 0;
    /** Items pushed out because the buffer was full, since the last clear. */
    this.evicted = 0;
  }

  push(item) {
    const end = (this._start + this.size) % this.capacity;
    this._items[end] = item;
    if (this.size < this.capacity) this.size += 1;
    else {
      this._start = (this._start + 1) % this.capacity;
      this.evicted += 1;
    }
  }

  /** The i-th item from the oldest (0) to the newest (size - 1). */
  at(i) {
    return this._items[(this._start + i) % this.capacity];
  }

  last() {
    return this.size ? this.at(this.size - 1) : undefined;
  }

  /** Oldest first. */
  toArray() {
    const out = new Array(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.at(i);
    return out;
  }

  /** Up to `count` newest items, newest first, that pass `keep`. */
  newest(count, keep = null) {
    const out = [];
    for (let i = this.size - 1; i >= 0 && out.length < count; i--) {
      const item = this.at(i);
      if (keep === null || keep(item)) out.push(item);
    }
    return out;
  }

  /** Change the capacity, keeping the newest items. */
  resize(capacity) {
    const items = this.toArray().slice(-capacity);
    this.capacity = Math.max(1, capacity | 0);
    this._items = new Array(this.capacity);
    this._start = 0;
    this.size = 0;
    for (const item of items) this.push(item);
  }

  clear() {
    this._items = new Array(this.capacity);
    this._start = 0;
    this.size = 0;
    this.evicted = 0;
  }
}
