// The dashboard's subscriptions: created through the client, fed into the store, with the
// per-subscription bookkeeping the subscription manager shows (keys seen, errors, health).

import { resolveStream } from "../tidewire-client.js";
import { RingBuffer } from "./ring.js";

const KEYS_SHOWN = 24;

export class SubscriptionRegistry {
  /**
   * @param {import("../tidewire-client.js").TidewireClient} client
   * @param {import("./store.js").Store} store
   */
  constructor(client, store) {
    this.client = client;
    this.store = store;
    /** @type {Map<string, {createdAt: number, stream: string, keys: Set<string>}>} */
    this.meta = new Map();
    /** Subscription errors (refusals), newest last. */
    this.errors = new RingBuffer(50);
    /** Bumped on every subscribe/unsubscribe, so the table rebuilds its rows. */
    this.version = 0;
    // A subscription the gateway ended (a refreshed token no longer grants it) or refused
    // on resubscription: the client has dropped it already; show why, forget its data.
    client.on("error", (error) => {
      if (error.name !== "SubscriptionError") return;
      this._error(error.subscriptionId, error);
      const meta = this.meta.get(error.subscriptionId);
      this.meta.delete(error.subscriptionId);
      if (meta && !this.list().some((s) => s.stream === meta.stream)) this.store.clear(meta.stream);
    });
  }

  /** Active subscriptions, in creation order. */
  list() {
    return [...this.client.subscriptions.values()];
  }

  /**
   * Subscribe and feed the store. Resolves with the subscription; a refusal is recorded
   * (shown in the panel) and rethrown.
   * @param {string} stream
   * @param {{filters?: object, rateLimit?: number | null, snapshot?: boolean | null, subscriptionId?: string}} [options]
   */
  async create(stream, options = {}) {
    const meta = { createdAt: Date.now(), stream: resolveStream(stream) ?? stream, keys: new Set() };
    try {
      const subscription = await this.client.subscribe(stream, {
        ...options,
        onMessage: (message) => this._deliver(meta, message),
      });
      this.meta.set(subscription.subscriptionId, meta);
      return subscription;
    } catch (error) {
      this._error(options.subscriptionId ?? stream, error);
      throw error;
    } finally {
      this.version += 1;
    }
  }

  /** Unsubscribe one or many in one command; clear the streams left without subscription. */
  async remove(ids) {
    const streams = new Set(ids.map((id) => this.client.subscriptions.get(id)?.stream).filter(Boolean));
    try {
      await this.client.unsubscribe(ids);
    } finally {
      for (const id of ids) this.meta.delete(id);
      const still = new Set(this.list().map((s) => s.stream));
      for (const stream of streams) if (!still.has(stream)) this.store.clear(stream);
      this.version += 1;
    }
  }

  /**
   * Change a subscription's filters and/or rate limit in place (`update_subscription`: the
   * same subscription goes on). New filters restart its "keys seen".
   * @param {string} id
   * @param {{filters?: object | null, rateLimit?: number | null}} change
   */
  async update(id, change) {
    try {
      const subscription = await this.client.updateSubscription(id, change);
      const meta = this.meta.get(id);
      if (meta && change.filters !== undefined) meta.keys.clear();
      return subscription;
    } catch (error) {
      this._error(id, error);
      throw error;
    } finally {
      this.version += 1;
    }
  }

  /** Change a subscription's rate limit (null: none). */
  setRateLimit(id, rateLimit) {
    return this.update(id, { rateLimit });
  }

  _deliver(meta, message) {
    this.store.ingest(message);
    const key = message.key;
    if (key !== undefined && meta.keys.size < KEYS_SHOWN) meta.keys.add(String(key));
  }

  _error(id, error) {
    this.errors.push({ time: Date.now(), id, code: error.errorCode ?? error.name, text: error.errorMessage ?? error.message });
    this.version += 1;
  }

  /**
   * Health of a subscription, 0 to 100: 0 once ended; 50 while waiting for its confirmation
   * (0 while disconnected); otherwise 100 minus 10 per resync (gap not recovered, at most
   * 30) and, on latest-value streams, which should tick continuously, minus 30 before the
   * first message and up to 50 for silence longer than 5 s (2 points per second). Reliable
   * streams (orders, alerts) are legitimately quiet, so silence costs them nothing.
   */
  health(subscription, now = performance.now()) {
    if (!subscription.active) return 0;
    if (!subscription.confirmed) return this.client.connected ? 50 : 0;
    let score = 100 - Math.min(30, subscription.resyncs * 10);
    if (!subscription.reliable) {
      const last = subscription.lastMessageAt;
      if (last === null) score -= 30;
      else if (now - last > 5000) score -= Math.min(50, ((now - last - 5000) / 1000) * 2);
    }
    return Math.max(0, Math.round(score));
  }
}
