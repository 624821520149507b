// Connection statistics collected from the client's events: counters, per-second series,
// heartbeat round trips, errors, and the quality score. No DOM here.

import { RingBuffer } from "./ring.js";

const SERIES_SECONDS = 300; // five minutes of per-second samples

export class Telemetry {
  /** @param {import("../tidewire-client.js").TidewireClient} client */
  constructor(client) {
    this.client = client;
    this.startedAt = Date.now();
    this.framesIn = 0;
    this.framesOut = 0;
    this.messagesIn = 0;
    this.messagesOut = 0;
    this.bytesIn = 0;
    this.bytesOut = 0;
    /** @type {Map<string, number>} error_code (or close code) -> count */
    this.errors = new Map();
    this.errorTotal = 0;
    this.reconnects = 0;
    /** Per-second samples: {t (epoch s), msgsIn, bytesIn, msgsOut, bytesOut}. */
    this.perSecond = new RingBuffer(SERIES_SECONDS);
    /** Heartbeat round trips: {t (epoch s), ms}. */
    this.latency = new RingBuffer(SERIES_SECONDS);
    /** Recent times (epoch ms) of errors and reconnections, for the quality score. */
    this._recentErrors = new RingBuffer(100);
    this._recentReconnects = new RingBuffer(50);
    this._second = { msgsIn: 0, bytesIn: 0, msgsOut: 0, bytesOut: 0 };
    this.rates = { msgsIn: 0, bytesIn: 0, msgsOut: 0, bytesOut: 0 };
    this.lastMessageAt = null;
    /** Bumped whenever a series gets a point, so charts know to redraw. */
    this.version = 0;

    client.on("frame", (frame) => this._onFrame(frame));
    client.on("message", (message) => this._onMessage(message));
    client.on("state", (previous, current) => {
      if (current === "reconnecting" && previous === "connected") {
        this.reconnects += 1;
        this._recentReconnects.push(Date.now());
      }
    });
    client.on("error", (error) => this._countError(error.errorCode ?? error.name ?? "error"));
    setInterval(() => this._tick(), 1000);
  }

  _onFrame(frame) {
    const count = frame.message?.type === "batch" ? frame.message.messages.length : 1;
    if (frame.direction === "in") {
      this.framesIn += 1;
      this.messagesIn += count;
      this.bytesIn += frame.size;
      this._second.msgsIn += count;
      this._second.bytesIn += frame.size;
      this.lastMessageAt = frame.time;
    } else {
      this.framesOut += 1;
      this.messagesOut += count;
      this.bytesOut += frame.size;
      this._second.msgsOut += count;
      this._second.bytesOut += frame.size;
    }
  }

  _onMessage(message) {
    const type = message.type;
    if (type === "heartbeat_response") {
      const ms = this.client.messageLatency;
      if (ms !== null) {
        this.latency.push({ t: Date.now() / 1000, ms });
        this.version += 1;
      }
    } else if (type === "subscription_error" || (type === "error" && message.correlation_id)) {
      // Uncorrelated errors arrive through the client's "error" event (counted there).
      this._countError(message.error_code ?? type);
    }
  }

  _countError(code) {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
    this.errorTotal += 1;
    this._recentErrors.push(Date.now());
  }

  /**
   * A lost connection counts as an error unless the gateway closed it on purpose (1000
   * normal, 1001 going away, 1012 restart): those cost the quality score as a reconnection.
   */
  countClose(code) {
    if (![1000, 1001, 1012].includes(code)) this._countError(`close ${code}`);
  }

  _tick() {
    const s = this._second;
    this.rates = { ...s };
    this.perSecond.push({ t: Date.now() / 1000, ...s });
    this._second = { msgsIn: 0, bytesIn: 0, msgsOut: 0, bytesOut: 0 };
    this.version += 1;
  }

  /** Average round trip over the last `n` heartbeats (ms), null before the first. */
  averageLatency(n = 10) {
    const recent = this.latency.newest(n);
    return recent.length ? recent.reduce((sum, p) => sum + p.ms, 0) / recent.length : null;
  }

  /**
   * Connection quality, 0 (unusable) to 100. 0 when not connected; otherwise 100 minus:
   * up to 40 for latency (1 point per 5 ms above 20 ms), 10 per error in the last minute
   * (at most 30), 10 per reconnection in the last five minutes (at most 20), and 10 when no
   * frame arrived for longer than three heartbeat intervals (a silent connection).
   */
  quality(now = Date.now()) {
    if (!this.client.connected) return 0;
    let score = 100;
    const latency = this.averageLatency(5);
    if (latency !== null) score -= Math.min(40, Math.max(0, (latency - 20) / 5));
    const errors = this._recentErrors.newest(100, (t) => now - t < 60_000).length;
    score -= Math.min(30, errors * 10);
    const reconnects = this._recentReconnects.newest(50, (t) => now - t < 300_000).length;
    score -= Math.min(20, reconnects * 10);
    const interval = (this.client.serverHeartbeatInterval ?? 15) * 1000;
    if (this.lastMessageAt !== null && now - this.lastMessageAt > 3 * interval) score -= 10;
    return Math.max(0, Math.round(score));
  }
}
