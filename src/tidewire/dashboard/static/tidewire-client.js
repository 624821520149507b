// @ts-check
/**
 * Tidewire JavaScript client: one WebSocket to the gateway, kept alive with heartbeats,
 * re-established with backoff, with every subscription resumed where it stopped.
 *
 * The browser counterpart of the Python SDK (`tidewire.client.TidewireClient`), with the same
 * behaviour: exponential backoff with full jitter after the close codes that call for it
 * (docs/protocol.md section 6), heartbeats that measure the round trip and detect a dead
 * connection, resubscription with `since` after every reconnection (the gateway replays what
 * was missed), per-subscription duplicate filtering, resync markers and callbacks when the
 * gateway could not recover (`recovered: false`), a bounded queue of commands sent while
 * disconnected, and batch frames (`batchMs`) unpacked transparently.
 *
 * Plain ES module without dependencies: import it from any page (the dashboard serves it at
 * `/tidewire-client.js`), or from Node >= 22 (global WebSocket) or with `options.WebSocket`.
 * Types: JSDoc checked by `tsc --checkJs` against the generated `tidewire-protocol.d.ts`.
 *
 *     import { TidewireClient, isResync } from "./tidewire-client.js";
 *     const client = new TidewireClient("ws://127.0.0.1:8765/ws", { batchMs: 50 });
 *     client.on("state", (previous, current) => console.log(previous, "->", current));
 *     await client.connect();
 *     await client.subscribe("market_data", {
 *       filters: { symbols: ["AAPL", "MSFT"] },
 *       onMessage(message) {
 *         if (isResync(message)) return; // a gap: the snapshot that follows rebuilds the state
 *         console.log(message.symbol, message.data.bid_price, message.seq);
 *       },
 *     });
 *
 * Only JSON frames (`tidewire.v3.json`) are spoken: a browser has no msgpack built in.
 *
 * Authentication (`token`): a JWT, or a provider function returning one (or a Promise of
 * one). It travels as the subprotocol entry `tidewire.token.<jwt>` beside `tidewire.v3.json`
 * (browsers cannot set headers). A provider is asked before every connection attempt and
 * again before the token expires (`refresh`); see `client/tokens.js`.
 *
 *     const client = new TidewireClient(url, {
 *       token: async () => (await fetch("/my-app/token")).text(),
 *     });
 */

import { Backoff } from "./client/backoff.js";
import { ABNORMAL_CLOSURE, CloseCode, reconnectRefusal, throttled } from "./client/closecodes.js";
import { Dispatcher, safeCall } from "./client/dispatch.js";
import { ConnectionClosedError, RequestTimeout, ServerError, SubscriptionError, TokenError } from "./client/errors.js";
import { OutboundQueue } from "./client/outbound.js";
import {
  clockSync,
  snapshotCommand,
  snapshotResult,
  tradeHistoryCommand,
  tradeHistoryResult,
  updateCommand,
} from "./client/queries.js";
import { Subscription, normalizeFilters } from "./client/subscription.js";
import {
  RefreshTimer,
  checkTokenSource,
  redactToken,
  refreshDelay,
  refreshRetryDelay,
  resolveToken,
  subprotocols,
} from "./client/tokens.js";

export { Backoff } from "./client/backoff.js";
export { CloseCode, RECONNECT_CLOSE_CODES, reconnectRefusal } from "./client/closecodes.js";
export { DuplicateFilter, conflationKey, messageKey } from "./client/dedupe.js";
export {
  AuthenticationError,
  ConnectionClosedError,
  QueueFull,
  RequestTimeout,
  ServerError,
  SubscriptionError,
  TidewireError,
  TokenError,
} from "./client/errors.js";
export { HeartbeatTracker } from "./client/heartbeat.js";
export { NOT_RECOVERED, RESYNC, isResync } from "./client/resync.js";
export { Router, compareDecimals, matches, messagePrice, toDecimal } from "./client/routing.js";
export { STREAMS, STREAM_NAMES, isReliable, keepsLastValues, resolveStream, splitTopic, streamSpec } from "./client/streams.js";
export { Subscription } from "./client/subscription.js";
export {
  TOKEN_SUBPROTOCOL_PREFIX,
  redactToken,
  refreshDelay,
  refreshRetryDelay,
} from "./client/tokens.js";

/** @import { ClientCommand, Filters, StreamName, StreamPosition, StreamFilters } from "./tidewire-protocol.d.ts" */
/** @import { MessageCallback, ResyncCallback } from "./client/subscription.js" */
/** @import { ResyncMarker } from "./client/resync.js" */
/** @import { TokenProvider, TokenSource } from "./client/tokens.js" */
/** @import { ClockSync, SnapshotResult, SubscriptionChange, TradeHistoryResult } from "./client/queries.js" */

export const SUBPROTOCOL_JSON = "tidewire.v3.json";
/** Ms before trying again an `update_subscription` the gateway answered `unavailable`
 * (still delivering the subscription's snapshot or replay); doubling up to the maximum. */
const UPDATE_RETRY_DELAY = 10;
const MAX_UPDATE_RETRY_DELAY = 250;

/** Where a client's connection stands (the Python client's `ConnectionState`). */
export const ConnectionState = Object.freeze({
  /** Not started (or stopped by `disconnect()`): commands are queued until `connect()`. */
  DISCONNECTED: "disconnected",
  /** The first connection attempt of a run is in progress. */
  CONNECTING: "connecting",
  /** Open, `connection_established` received, subscriptions re-sent, queue flushed. */
  CONNECTED: "connected",
  /** The connection was lost (or the first attempt failed); retrying with backoff. */
  RECONNECTING: "reconnecting",
  /** Stopped for good: `close()`, a close code that forbids reconnecting, or gave up. */
  CLOSED: "closed",
});

/** @typedef {typeof ConnectionState[keyof typeof ConnectionState]} State */

/**
 * @typedef {object} FrameInfo one WebSocket frame, for protocol viewers and statistics
 * @property {"in" | "out"} direction
 * @property {number} time epoch milliseconds
 * @property {number} size bytes of the frame (UTF-8)
 * @property {string} text the frame as sent or received
 * @property {Record<string, any> | null} message the decoded frame (a `batch` stays a batch)
 */

/**
 * @typedef {object} ClientOptions
 * @property {boolean} [autoReconnect] reconnect after the close codes that call for it (true)
 * @property {number} [reconnectInterval] base of the backoff, ms (1000)
 * @property {number} [maxReconnectInterval] cap of the backoff, ms (30000)
 * @property {number | null} [maxReconnectAttempts] attempts before giving up; null: forever
 * @property {number | null} [heartbeatInterval] ms between heartbeats (15000); null: none
 * @property {number | null} [heartbeatTimeout] ms without any frame before the connection is
 *   considered dead (three heartbeat intervals)
 * @property {number} [messageQueueSize] commands that may wait for a connection (1000)
 * @property {number | null} [batchMs] ask for batch frames flushed every N ms
 * @property {boolean} [decimalsAsStrings] ask for decimal numbers as strings
 * @property {number} [requestTimeout] default timeout of requests, ms (10000)
 * @property {number} [connectTimeout] timeout of one attempt up to `connection_established`, ms
 * @property {TokenSource | null} [token] a JWT, or a provider returning one (or a Promise of
 *   one): asked before every connection attempt and again before the token expires
 * @property {boolean | ((line: string) => void)} [debug] log every frame (tokens redacted):
 *   true for `console.debug`, or a function taking each line
 * @property {Backoff} [backoff] a custom backoff (tests)
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (default: the global one)
 */

/**
 * @typedef {object} TokenInfo who the gateway says the connection is, and until when
 * @property {string | null} userId `user_id` of the token in force
 * @property {number | null} expiresAt epoch ms at which it expires
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {Filters} [filters] server-side filters (docs/protocol.md section 3)
 * @property {string} [subscriptionId] generated when not given
 * @property {number | null} [rateLimit] messages per second per key (latest-value streams)
 * @property {boolean | null} [snapshot] false: no snapshot on latest-value streams
 * @property {StreamPosition | null} [since] resume after this position
 * @property {MessageCallback | null} [onMessage] data messages and resync markers
 * @property {ResyncCallback | null} [onResync] gaps of this subscription
 * @property {number | undefined} [timeout] ms to wait for the confirmation (requestTimeout)
 */

/**
 * @typedef {object} ClientEvents
 * @property {[previous: State, current: State]} state every state change
 * @property {[message: Record<string, any>]} message every message received, after routing
 * @property {[frame: FrameInfo]} frame every frame sent or received
 * @property {[subscription: Subscription, info: ResyncMarker]} resync a gap of a subscription
 * @property {[subscription: Subscription, reply: Record<string, any>]} confirmed a (re)subscription
 * @property {[subscription: Subscription, reply: Record<string, any>]} updated an
 *   `update_subscription` took effect (the subscription's filters and rate limit changed)
 * @property {[error: Error]} error an error reply nobody waited for, a refused resubscription,
 *   a subscription the gateway ended, a failed token provider or refresh (`TokenError`)
 * @property {[info: TokenInfo]} authenticated a connection or a refresh put a token in force
 */

let idPrefix = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, "0");
let idCounter = 0;

/** A message id unique across pages: random prefix plus a counter. */
export function newMessageId() {
  idCounter += 1;
  return `js-${idPrefix}-${idCounter.toString(16)}`;
}

/**
 * Bytes of `text` in UTF-8 (what the frame weighs on the wire).
 * @param {string} text
 */
export function utf8Length(text) {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff) {
      bytes += 2; // a surrogate pair: 4 bytes for 2 UTF-16 units
      i++;
    } else bytes += 2;
  }
  return bytes;
}

/**
 * `url` with the connection options as query parameters (`batch_ms`, `decimals`).
 * @param {string} url
 * @param {{batchMs?: number | null, decimalsAsStrings?: boolean}} options
 */
export function connectionUrl(url, { batchMs = null, decimalsAsStrings = false }) {
  const parsed = new URL(url);
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`the gateway URL must start with ws:// or wss://, not ${url}`);
  }
  if (batchMs !== null) {
    if (!(batchMs >= 1)) throw new RangeError("batchMs must be at least 1");
    parsed.searchParams.set("batch_ms", String(Math.round(batchMs)));
  }
  if (decimalsAsStrings) parsed.searchParams.set("decimals", "string");
  return parsed.toString();
}

export class TidewireClient {
  /**
   * @param {string} url the gateway's WebSocket URL, e.g. `ws://127.0.0.1:8765/ws`
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    const heartbeatInterval = options.heartbeatInterval === undefined ? 15000 : options.heartbeatInterval;
    if (heartbeatInterval !== null && !(heartbeatInterval > 0)) {
      throw new RangeError("heartbeatInterval must be positive (or null)");
    }
    const maxAttempts = options.maxReconnectAttempts ?? null;
    if (maxAttempts !== null && maxAttempts < 0) throw new RangeError("maxReconnectAttempts must not be negative");
    /** The gateway URL as given (connection options are added as query parameters). */
    this.url = url;
    this._wsUrl = connectionUrl(url, { batchMs: options.batchMs ?? null, decimalsAsStrings: options.decimalsAsStrings ?? false });
    /** Reconnect after the close codes that call for it; may be switched at any time. */
    this.autoReconnect = options.autoReconnect ?? true;
    this._maxReconnectAttempts = maxAttempts;
    this._heartbeatInterval = heartbeatInterval;
    this._heartbeatTimeout =
      options.heartbeatTimeout ?? (heartbeatInterval !== null ? 3 * heartbeatInterval : null);
    this._requestTimeout = options.requestTimeout ?? 10000;
    this._connectTimeout = options.connectTimeout ?? 10000;
    const base = options.reconnectInterval ?? 1000;
    this._backoff = options.backoff ?? new Backoff(base, Math.max(options.maxReconnectInterval ?? 30000, base));
    const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    if (WebSocketClass === undefined) throw new TypeError("no WebSocket class: pass options.WebSocket");
    this._WebSocket = WebSocketClass;
    /** @type {TokenSource | null} checked here: a fixed token that cannot travel fails now */
    this._tokenSource = checkTokenSource(options.token);
    /** @type {string | null} the token the current connection was opened with */
    this._connectionToken = null;
    const debug = options.debug ?? false;
    /** @type {((line: string) => void) | null} */
    this._debug = typeof debug === "function" ? debug : debug ? (line) => console.debug(line) : null;
    this._refreshTimer = new RefreshTimer(() => void this._scheduledRefresh());
    /** @type {object | null} the scheduled refresh in flight (its own marker object) */
    this._refreshing = null;
    this._outbound = new OutboundQueue(options.messageQueueSize ?? 1000);
    /** @type {Map<keyof ClientEvents, Set<(...args: any[]) => void>>} */
    this._listeners = new Map();
    this._inbound = new Dispatcher({
      established: () => this._onEstablished(),
      authenticated: () => this._onAuthenticated(),
      confirmed: (subscription, reply) => this._emit("confirmed", subscription, reply),
      updated: (subscription, reply) => this._emit("updated", subscription, reply),
      resync: (subscription, info) => this._emit("resync", subscription, info),
      message: (message) => this._emit("message", message),
      error: (error) => this._emit("error", error),
    });
    /** @type {State} */
    this._state = ConnectionState.DISCONNECTED;
    /** @type {WebSocket | null} */
    this._ws = null;
    /** Number of the current socket; subscriptions remember the one they were sent on. */
    this._generation = 0;
    /** Number of the current connection attempt: a token provider answering late for an
     * attempt given up meanwhile (timeout, disconnect) is ignored. */
    this._attempt = 0;
    this._ready = false;
    this._reconnectAttempts = 0;
    /** @type {ConnectionClosedError | null} */
    this._lastError = null;
    /** @type {number | null} */
    this._closeCode = null;
    /** @type {number | null} */
    this._connectedAt = null;
    /** @type {number | null} */
    this._nextAttemptAt = null;
    this._lastReceived = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._connectTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._reconnectTimer = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this._heartbeatTimer = null;
    /** Subscription ids generated by this client. */
    this._subscriptionCounter = 0;
    // One query (`get_snapshot`, `get_trade_history`) in flight at a time: the gateway
    // answers a connection's second one with `rate_limited`. The others wait their turn,
    // in order (the Python client's `_query_lock`).
    this._queryBusy = false;
    /** @type {(() => void)[]} */
    this._queryWaiters = [];
  }

  // ------------------------------------------------------------------ read-only state

  /** Current state of the connection (see `ConnectionState`). */
  get state() {
    return this._state;
  }

  get connected() {
    return this._state === ConnectionState.CONNECTED;
  }

  /** Round trip of the last heartbeat, in milliseconds; null until measured. */
  get messageLatency() {
    return this._inbound.messageLatency;
  }

  /** Messages received since the client was created (a batch counts its messages). */
  get messagesReceived() {
    return this._inbound.messagesReceived;
  }

  /** Reconnection attempts since the last successful connection. */
  get reconnectAttempts() {
    return this._reconnectAttempts;
  }

  /** `connection_id` of the last `connection_established`. */
  get connectionId() {
    return this._inbound.connectionId;
  }

  /** `server_version` of the last `connection_established`. */
  get serverVersion() {
    return this._inbound.serverVersion;
  }

  /** `limits` of the last `connection_established`. */
  get serverLimits() {
    return this._inbound.serverLimits;
  }

  /** Seconds of silence after which the gateway sends `heartbeat`, as it announced. */
  get serverHeartbeatInterval() {
    return this._inbound.serverHeartbeatInterval;
  }

  /** `user_id` the gateway gave the current connection's token (null without one). */
  get userId() {
    return this._inbound.userId;
  }

  /** Epoch ms at which the current connection's token expires (null: no token, or never). */
  get tokenExpiresAt() {
    return this._inbound.expiresAt;
  }

  /** True when a provider supplies the token (it is renewed); false for a fixed one or none. */
  get renewableToken() {
    return typeof this._tokenSource === "function";
  }

  /** Why the client closed by itself (authentication failed, attempts exhausted, ...). */
  get lastError() {
    return this._lastError;
  }

  /** Close code of the last connection that ended (1006 when it just went away). */
  get closeCode() {
    return this._closeCode;
  }

  /** `Date.now()` when the current connection became ready; null when not connected. */
  get connectedAt() {
    return this._connectedAt;
  }

  /** `Date.now()` of the next reconnection attempt while reconnecting, else null. */
  get nextAttemptAt() {
    return this._nextAttemptAt;
  }

  /** Active subscriptions by id (a copy), in creation order. */
  get subscriptions() {
    return new Map(this._inbound.subscriptions);
  }

  /** Commands waiting for a connection. */
  get queuedMessages() {
    return this._outbound.size;
  }

  // ------------------------------------------------------------------ events

  /**
   * Call `listener` for `event`; returns a function that removes it. Exceptions in listeners
   * are reported, never propagated.
   * @template {keyof ClientEvents} K
   * @param {K} event
   * @param {(...args: ClientEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this._listeners.set(event, set);
    }
    const listeners = set;
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} event
   * @param {ClientEvents[K]} args
   */
  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (set === undefined || set.size === 0) return;
    for (const listener of set) safeCall(() => listener(...args));
  }

  /** @param {State} state */
  _setState(state) {
    const previous = this._state;
    if (previous === state) return;
    this._state = state;
    this._emit("state", previous, state);
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * Start the client (when it is not running) and wait until it is connected. Failed attempts
   * are retried with backoff while `autoReconnect` is on. Rejects with the client's
   * `lastError` when it gives up, with `RequestTimeout` after `timeout` ms; either way a client
   * started by this call is closed again.
   * @param {{timeout?: number | undefined}} [options]
   */
  async connect(options = {}) {
    const started = this._state === ConnectionState.DISCONNECTED || this._state === ConnectionState.CLOSED;
    if (started) {
      this._lastError = null;
      this._reconnectAttempts = 0;
      this._backoff.reset();
      this._setState(ConnectionState.CONNECTING);
      this._open();
    }
    try {
      await this.waitConnected(options.timeout);
    } catch (error) {
      if (started && this._state !== ConnectionState.CLOSED) this.close();
      throw error;
    }
  }

  /**
   * Resolve when the state is CONNECTED; reject when it is or becomes CLOSED, or after
   * `timeout` ms.
   * @param {number} [timeout]
   * @returns {Promise<void>}
   */
  waitConnected(timeout) {
    if (this._state === ConnectionState.CONNECTED) return Promise.resolve();
    if (this._state === ConnectionState.CLOSED) {
      return Promise.reject(this._lastError ?? new ConnectionClosedError("the client is closed"));
    }
    return new Promise((resolve, reject) => {
      /** @type {ReturnType<typeof setTimeout> | null} */
      let timer = null;
      const off = this.on("state", (_previous, current) => {
        if (current === ConnectionState.CONNECTED) finish(null);
        else if (current === ConnectionState.CLOSED) {
          finish(this._lastError ?? new ConnectionClosedError("the client is closed"));
        }
      });
      const finish = (/** @type {Error | null} */ error) => {
        off();
        if (timer !== null) clearTimeout(timer);
        if (error === null) resolve();
        else reject(error);
      };
      if (timeout !== undefined) {
        timer = setTimeout(() => finish(new RequestTimeout(`not connected after ${timeout} ms`)), timeout);
      }
    });
  }

  /**
   * Drop the connection (close code 1000) and stop reconnecting, but keep the subscriptions
   * and queued commands: `connect()` resumes every subscription where it stopped.
   */
  disconnect() {
    this._stopConnection(CloseCode.NORMAL, "client disconnect");
    this._setState(ConnectionState.DISCONNECTED);
  }

  /**
   * Close the connection (1000) and stop for good: subscriptions end, pending requests fail,
   * queued commands are discarded. `connect()` starts a new run without subscriptions.
   */
  close() {
    this._stopConnection(CloseCode.NORMAL, "client close");
    this._stop(null);
  }

  /**
   * Replace the connection now: drop the current one (if any) and connect at once, without
   * backoff; subscriptions resume with `since` like after any reconnection.
   */
  reconnect() {
    if (this._state === ConnectionState.DISCONNECTED || this._state === ConnectionState.CLOSED) {
      this.connect().catch(() => {});
      return;
    }
    this._stopConnection(CloseCode.NORMAL, "client reconnect");
    this._setState(ConnectionState.RECONNECTING);
    this._open();
  }

  // ------------------------------------------------------------------ commands

  /**
   * Send a raw command; queued (in order) while not connected. Throws `QueueFull` when
   * `messageQueueSize` commands already wait, `ConnectionClosedError` when closed.
   * @param {ClientCommand | Record<string, any>} message
   */
  sendMessage(message) {
    if (this._state === ConnectionState.CLOSED) {
      throw this._lastError ?? new ConnectionClosedError("the client is closed");
    }
    const ws = this._ws;
    if (ws !== null && this._state === ConnectionState.CONNECTED && ws.readyState === ws.OPEN) {
      this._write(ws, message);
      this._inbound.sent(message);
      return;
    }
    this._outbound.put(message);
  }

  /**
   * Send a command and return the reply correlated with it. Rejects with `ServerError` for an
   * `error` reply, `SubscriptionError` for `subscription_error`, `ConnectionClosedError` when
   * the connection is lost after sending, `RequestTimeout` after `timeout` ms (a command still
   * queued is then withdrawn).
   * @param {ClientCommand | Record<string, any>} message
   * @param {{timeout?: number | undefined}} [options]
   * @returns {Promise<Record<string, any>>}
   */
  async request(message, options = {}) {
    const command = { ...message };
    if (typeof command.message_id !== "string") command.message_id = newMessageId();
    const messageId = /** @type {string} */ (command.message_id);
    const reply = this._inbound.expectReply(messageId);
    try {
      this.sendMessage(command);
      return await this._withTimeout(reply, options.timeout, `no reply to ${command.type}`);
    } finally {
      this._inbound.release(messageId);
      this._outbound.remove(command);
    }
  }

  /**
   * Subscribe to `stream` and wait for the gateway's confirmation. May be called before
   * `connect()` or while reconnecting: the subscribe goes out with the next connection.
   * Rejects with `SubscriptionError` when refused, `RequestTimeout` after `timeout` ms.
   * @template {StreamName} S
   * @param {S | string} stream
   * @param {SubscribeOptions & {filters?: StreamFilters<S>}} [options]
   * @returns {Promise<Subscription>}
   */
  async subscribe(stream, options = {}) {
    if (this._state === ConnectionState.CLOSED) {
      throw this._lastError ?? new ConnectionClosedError("the client is closed");
    }
    const id = options.subscriptionId ?? this._newSubscriptionId();
    if (this._inbound.subscriptions.has(id)) throw new Error(`subscription ${id} already exists`);
    const subscription = new Subscription(this, {
      subscriptionId: id,
      stream,
      filters: normalizeFilters(options.filters),
      rateLimit: options.rateLimit ?? null,
      snapshot: options.snapshot ?? null,
      since: options.since ?? null,
      onMessage: options.onMessage ?? null,
      onResync: options.onResync ?? null,
    });
    const confirmed = this._inbound.addSubscription(subscription);
    const ws = this._ws;
    // Otherwise the (re)connection sends every subscription not yet sent on it.
    if (ws !== null && this._state === ConnectionState.CONNECTED) this._sendSubscribe(ws, subscription);
    try {
      await this._withTimeout(confirmed, options.timeout, `subscription ${id} not confirmed`);
    } catch (error) {
      // Timed out: tell the gateway without waiting for its answer.
      if (subscription.active) this._dropSubscriptions([subscription], false).catch(() => {});
      throw error;
    }
    return subscription;
  }

  /**
   * End one subscription, or several in one `unsubscribe` command (all or nothing: an id
   * this client does not have throws before anything is sent).
   * @param {string | string[]} ids
   * @param {{timeout?: number | undefined}} [options]
   */
  async unsubscribe(ids, options = {}) {
    const list = typeof ids === "string" ? [ids] : [...ids];
    const subscriptions = list.map((id) => {
      const subscription = this._inbound.subscriptions.get(id);
      if (subscription === undefined) throw new Error(`no subscription ${id}`);
      return subscription;
    });
    await this._dropSubscriptions(subscriptions, true, options.timeout);
  }

  /**
   * Change the filters and/or the rate limit of a subscription in place
   * (`update_subscription`): the same subscription goes on, switched between two messages,
   * without a gap or a duplicate. `filters` replace the old ones (`{}` or null: none);
   * `rateLimit` null or 0 removes the limit. Where the stream keeps last values, those of
   * the keys the new filters add follow the confirmation. Resolves when the gateway
   * confirmed (`subscription_confirmed` with `updated: true`; the subscription's `filters`
   * and `rateLimit` are then the confirmed ones). While disconnected the command waits in
   * the queue, behind the resubscription (which carries the filters confirmed so far), like
   * any queued command; on timeout it is withdrawn. Rejects with `SubscriptionError` or
   * `ServerError` when refused, `ConnectionClosedError` when the connection is lost after
   * sending, `RequestTimeout` after `timeout` ms: the subscription then goes on as it was
   * (`invalid_rate_limit` on a reliable stream before anything is sent). `unavailable`
   * (the subscription's snapshot or replay still being delivered) is retried until the
   * timeout (the Python client's `update_subscription`).
   * @param {string} id
   * @param {SubscriptionChange} change
   * @param {{timeout?: number | undefined}} [options]
   * @returns {Promise<Subscription>}
   */
  async updateSubscription(id, change, options = {}) {
    const subscription = this._inbound.subscriptions.get(id);
    if (subscription === undefined) throw new Error(`no subscription ${id}`);
    const command = updateCommand(subscription, change);
    if (command === null) return subscription;
    const ms = options.timeout ?? this._requestTimeout;
    const deadline = performance.now() + ms;
    let delay = UPDATE_RETRY_DELAY;
    for (;;) {
      try {
        // A fresh message_id per try: `request` correlates the reply by it.
        await this.request({ ...command }, { timeout: Math.max(0, deadline - performance.now()) });
        return subscription;
      } catch (error) {
        // The gateway is still delivering the subscription's snapshot or replay (or an
        // earlier update's): it says so, retryable; a moment later it is done.
        const starting = error instanceof ServerError && error.errorCode === "unavailable" && error.retryable;
        if (!starting || !subscription.active || performance.now() + delay >= deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(2 * delay, MAX_UPDATE_RETRY_DELAY);
      }
    }
  }

  /**
   * Change the rate limit of a latest-value subscription (`updateSubscription` with
   * `rateLimit` only; null removes it). Reliable streams take no rate limit (every message
   * matters there): refused here before anything is sent.
   * @param {string} id
   * @param {number | null} rateLimit
   * @param {{timeout?: number | undefined}} [options]
   * @returns {Promise<Subscription>} the subscription (the same object, updated)
   */
  async setRateLimit(id, rateLimit, options = {}) {
    return this.updateSubscription(id, { rateLimit }, options);
  }

  /**
   * The latest values of `stream` that `filters` select (`get_snapshot`): the newest message
   * per snapshot unit, in seq order, at most `limit` (the newest are kept, `truncated` says
   * so). Nothing is subscribed: the messages go to no subscription.
   * @param {StreamName | string} stream a stream (or alias), or a topic (`market_data.AAPL`)
   * @param {Filters | Record<string, unknown> | null} [filters]
   * @param {{limit?: number | null, timeout?: number | undefined}} [options]
   * @returns {Promise<SnapshotResult>}
   */
  async getSnapshot(stream, filters = null, options = {}) {
    const reply = await this._query(snapshotCommand(stream, filters, options), options.timeout);
    return snapshotResult(reply);
  }

  /**
   * Recent trades this connection may read (`get_trade_history`), from the history of
   * `trade_updates`: at most `limit` (the gateway's default 100, at most 1000), oldest first.
   * @param {Filters | Record<string, unknown> | null} [filters]
   * @param {{limit?: number | null, timeout?: number | undefined}} [options]
   * @returns {Promise<TradeHistoryResult>}
   */
  async getTradeHistory(filters = null, options = {}) {
    const reply = await this._query(tradeHistoryCommand(filters, options), options.timeout);
    return tradeHistoryResult(reply);
  }

  /**
   * A query, one at a time: the gateway answers a connection's second query in flight with
   * `rate_limited`, so concurrent calls wait for the previous ones, in order. The wait
   * counts against `timeout` (`RequestTimeout`, like `request`).
   * @param {Record<string, any>} command
   * @param {number | undefined} timeout
   * @returns {Promise<Record<string, any>>}
   */
  _query(command, timeout) {
    const ms = timeout ?? this._requestTimeout;
    const started = performance.now();
    // Nothing in flight: sent at once (synchronously, like `request`).
    if (!this._queryBusy) {
      this._queryBusy = true;
      return this._sendQuery(command, ms, started);
    }
    return this._awaitQueryTurn(ms, `no reply to ${command.type}`).then(() => this._sendQuery(command, ms, started));
  }

  /**
   * Send a query whose turn it is; the turn passes on when it is answered (or failed).
   * @param {Record<string, any>} command
   * @param {number} ms the query's whole timeout
   * @param {number} started `performance.now()` when it was asked for
   * @returns {Promise<Record<string, any>>}
   */
  async _sendQuery(command, ms, started) {
    try {
      const left = Math.max(0, ms - (performance.now() - started));
      return await this.request(command, { timeout: left });
    } finally {
      this._releaseQuery();
    }
  }

  /**
   * The turn to send a query, after those waiting before; rejects with `RequestTimeout`
   * when it does not come in `ms` (the place in the line is then given up).
   * @param {number} ms
   * @param {string} what
   * @returns {Promise<void>}
   */
  _awaitQueryTurn(ms, what) {
    return new Promise((resolve, reject) => {
      const waiter = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const index = this._queryWaiters.indexOf(waiter);
        if (index >= 0) this._queryWaiters.splice(index, 1);
        reject(new RequestTimeout(`${what} after ${ms} ms (waiting for the previous query)`));
      }, ms);
      this._queryWaiters.push(waiter);
    });
  }

  /** The query in flight is done: hand the turn to the next one waiting, if any. */
  _releaseQuery() {
    const next = this._queryWaiters.shift();
    if (next !== undefined) next();
    else this._queryBusy = false;
  }

  /**
   * Compare clocks with the gateway (`sync`): `offsetMs` is the gateway's clock minus this
   * one, from `sync_response.server_time` at the middle of the round trip `rttMs`. Only when
   * connected: a command that waited in the queue would measure the wait.
   * @param {{timeout?: number | undefined}} [options]
   * @returns {Promise<ClockSync>}
   */
  async sync(options = {}) {
    if (this._ws === null || this._state !== ConnectionState.CONNECTED) throw new ConnectionClosedError("not connected");
    const sentAt = Date.now();
    const started = performance.now();
    // Epoch milliseconds, as a number: the gateway echoes it in the type it was sent.
    const reply = await this.request({ type: "sync", client_timestamp: sentAt }, options);
    return clockSync(reply, sentAt, performance.now() - started);
  }

  /**
   * The gateway's view of this connection's subscriptions (`list_subscriptions`).
   * @param {{timeout?: number | undefined}} [options]
   */
  async listSubscriptions(options = {}) {
    const reply = await this.request({ type: "list_subscriptions" }, options);
    return Array.isArray(reply.subscriptions) ? reply.subscriptions : [];
  }

  /**
   * Send a heartbeat now and return its round trip in milliseconds.
   * @param {{timeout?: number | undefined}} [options]
   */
  async ping(options = {}) {
    const ws = this._ws;
    if (ws === null || this._state !== ConnectionState.CONNECTED) throw new ConnectionClosedError("not connected");
    const { promise, waiter } = this._inbound.expectPing();
    try {
      this._write(ws, this._inbound.heartbeats.start());
      return await this._withTimeout(promise, options.timeout, "no heartbeat response");
    } finally {
      this._inbound.releasePing(waiter);
    }
  }

  // ------------------------------------------------------------------ token

  /**
   * Replace the token (a JWT, a provider, or null). Later connections use it; while
   * connected it is sent at once as `refresh` and the promise resolves with the `auth_ok`
   * (rejects with `ServerError` when the gateway refuses it: a token of another user, an
   * invalid one; the connection keeps its current token until that expires).
   * @param {TokenSource | null} token
   * @param {{timeout?: number | undefined}} [options]
   * @returns {Promise<Record<string, any> | null>} null when not connected
   */
  async setToken(token, options = {}) {
    this._tokenSource = checkTokenSource(token);
    if (!this.renewableToken) this._refreshTimer.cancel();
    if (this._tokenSource === null || this._state !== ConnectionState.CONNECTED) return null;
    return this.refreshToken(options);
  }

  /**
   * Send `refresh` now with the current token (a provider is asked for a new one) and
   * return the gateway's `auth_ok`. Rejects with `TokenError` when the provider fails,
   * `ServerError` when the gateway refuses the token, `ConnectionClosedError` when not
   * connected or the connection is lost meanwhile. Nothing is queued: a new connection
   * presents its token in the handshake anyway.
   * @param {{timeout?: number | undefined}} [options]
   * @returns {Promise<Record<string, any>>}
   */
  async refreshToken(options = {}) {
    const source = this._tokenSource;
    if (source === null) throw new TokenError("no token to refresh with (option token)");
    const ws = this._ws;
    if (ws === null || this._state !== ConnectionState.CONNECTED) throw new ConnectionClosedError("not connected");
    const token = await this._withTimeout(resolveToken(source), options.timeout, "the token provider did not answer");
    if (this._ws !== ws || ws.readyState !== ws.OPEN) throw new ConnectionClosedError("connection lost before the refresh");
    const message = { type: "refresh", token, message_id: newMessageId() };
    const reply = this._inbound.expectReply(message.message_id);
    try {
      this._write(ws, message);
      this._inbound.sent(message);
      return await this._withTimeout(reply, options.timeout, "no reply to refresh");
    } finally {
      this._inbound.release(message.message_id);
    }
  }

  /** `auth_ok` arrived: a refresh of ours (which schedules the next itself) or another. */
  _onAuthenticated() {
    if (this._refreshing === null) this._scheduleRefresh();
    this._emit("authenticated", { userId: this._inbound.userId, expiresAt: this._inbound.expiresAt });
  }

  /**
   * Arm the next refresh: `delayMs` from now, or by the shared rule from the expiry the
   * gateway announced. Only a provider can give a newer token, so only then.
   * @param {number | null} [delayMs]
   */
  _scheduleRefresh(delayMs = null) {
    const expiresAt = this._inbound.expiresAt;
    if (!this.renewableToken || expiresAt === null || this._ws === null) {
      this._refreshTimer.cancel();
      return;
    }
    this._refreshTimer.arm(delayMs ?? refreshDelay((expiresAt - Date.now()) / 1000) * 1000);
  }

  /** The timer fired: refresh, then arm the next one; a failure is reported and retried. */
  async _scheduledRefresh() {
    const ws = this._ws;
    if (ws === null || this._state !== ConnectionState.CONNECTED) return;
    const marker = {};
    this._refreshing = marker;
    const before = this._inbound.expiresAt;
    try {
      await this.refreshToken({ timeout: this._connectTimeout });
      const after = this._inbound.expiresAt;
      // A provider that hands back the same token would otherwise be asked again at once.
      if (before !== null && (after === null || after <= before)) {
        throw new TokenError("the token provider returned a token that expires no later than the current one");
      }
      if (this._ws === ws) this._scheduleRefresh();
    } catch (error) {
      // Lost with the connection: the next one asks the provider in its handshake.
      if (this._ws !== ws || error instanceof ConnectionClosedError) return;
      const failure = error instanceof TokenError ? error : new TokenError(`token refresh failed: ${/** @type {Error} */ (error).message}`, error);
      this._emit("error", failure);
      const left = (this._inbound.expiresAt ?? Date.now()) - Date.now();
      this._scheduleRefresh(refreshRetryDelay(left));
    } finally {
      if (this._refreshing === marker) this._refreshing = null;
    }
  }

  // ------------------------------------------------------------------ connection

  /** A connection attempt: ask for the token (a provider may answer later), then open. */
  _open() {
    this._clearTimers();
    this._nextAttemptAt = null;
    this._ready = false;
    this._inbound.established = false;
    const attempt = ++this._attempt;
    // The attempt's deadline covers the provider's answer too.
    this._connectTimer = setTimeout(() => this._attemptTimedOut(attempt), this._connectTimeout);
    const source = this._tokenSource;
    if (typeof source !== "function") {
      this._openSocket(attempt, source);
      return;
    }
    resolveToken(source).then(
      (token) => this._openSocket(attempt, token),
      (/** @type {Error} */ error) => this._attemptFailed(attempt, error),
    );
  }

  /**
   * @param {number} attempt
   * @param {string | null} token
   */
  _openSocket(attempt, token) {
    if (attempt !== this._attempt) return; // given up meanwhile
    this._generation += 1;
    this._connectionToken = token;
    /** @type {WebSocket} */
    let ws;
    try {
      ws = new this._WebSocket(this._wsUrl, subprotocols(SUBPROTOCOL_JSON, token));
    } catch (error) {
      // A malformed URL will not get better by retrying. The browser's message may quote
      // the subprotocol entries, so it is not shown when one carries a token.
      const why = token === null ? String(error) : "the URL or the token entry was refused";
      this._stop(new ConnectionClosedError(`cannot open a WebSocket to ${this.url}: ${why}`));
      return;
    }
    this._ws = ws;
    ws.onmessage = (event) => {
      if (this._ws === ws) this._onFrame(ws, event.data);
    };
    ws.onclose = (event) => this._connectionEnded(ws, event.code || ABNORMAL_CLOSURE, event.reason || "");
    ws.onerror = () => {}; // a close event always follows
  }

  /**
   * The token provider failed: report it, then retry like a failed connection.
   * @param {number} attempt
   * @param {Error} error
   */
  _attemptFailed(attempt, error) {
    if (attempt !== this._attempt) return;
    this._attempt += 1;
    this._emit("error", error);
    this._clearTimers();
    this._retryOrStop(ABNORMAL_CLOSURE, error.message);
  }

  /** @param {number} attempt */
  _attemptTimedOut(attempt) {
    if (attempt !== this._attempt) return;
    if (this._ws !== null) {
      this._abort(this._ws, "connect timeout");
      return;
    }
    this._attemptFailed(attempt, new TokenError("the token provider did not answer before the connect timeout"));
  }

  /**
   * @param {WebSocket} ws
   * @param {unknown} data
   */
  _onFrame(ws, data) {
    this._lastReceived = performance.now();
    if (typeof data !== "string") return; // JSON subprotocol only: binary frames are not ours
    if (this._debug !== null) this._debug(`tidewire < ${data}`);
    /** @type {Record<string, any>} */
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn("tidewire: ignoring a frame that is not JSON");
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if (this._listeners.get("frame")?.size) {
      this._emit("frame", { direction: "in", time: Date.now(), size: utf8Length(data), text: data, message: frame });
    }
    this._inbound.handleFrame(frame);
    void ws;
  }

  /** `connection_established` arrived: resend subscriptions, flush the queue, then ready. */
  _onEstablished() {
    const ws = this._ws;
    if (ws === null) return;
    if (this._connectTimer !== null) clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._reconnectAttempts = 0;
    this._backoff.reset();
    // A proxy may have dropped the token entry of the handshake: present it as `auth`
    // first (the gateway serves commands in order, so the rest follows authenticated).
    const token = this._connectionToken;
    if (this._inbound.authRequired && token !== null) {
      this._write(ws, { type: "auth", token, message_id: newMessageId() });
    }
    // Subscriptions first (queued commands may refer to them), then queued commands in order.
    for (const subscription of this._inbound.subscriptions.values()) {
      if (subscription._generation !== this._generation) this._sendSubscribe(ws, subscription);
    }
    for (let message = this._outbound.shift(); message !== undefined; message = this._outbound.shift()) {
      if (ws.readyState !== ws.OPEN) {
        this._outbound.requeue(message);
        return;
      }
      this._write(ws, message);
      this._inbound.sent(message);
    }
    this._ready = true;
    this._connectedAt = Date.now();
    this._setState(ConnectionState.CONNECTED);
    this._scheduleRefresh();
    if (this._inbound.userId !== null || this._inbound.expiresAt !== null) {
      this._emit("authenticated", { userId: this._inbound.userId, expiresAt: this._inbound.expiresAt });
    }
    if (this._heartbeatInterval !== null) {
      const timeout = this._heartbeatTimeout;
      this._write(ws, this._inbound.heartbeats.start());
      this._heartbeatTimer = setInterval(() => {
        if (timeout !== null && performance.now() - this._lastReceived > timeout) {
          this._abort(ws, "heartbeat timeout");
          return;
        }
        if (ws.readyState === ws.OPEN) this._write(ws, this._inbound.heartbeats.start());
      }, this._heartbeatInterval);
    }
  }

  /**
   * @param {WebSocket} ws
   * @param {Subscription} subscription
   */
  _sendSubscribe(ws, subscription) {
    subscription._generation = this._generation;
    const command = subscription._command(newMessageId());
    this._inbound.subscribeSent(/** @type {string} */ (command.message_id), subscription.subscriptionId);
    this._write(ws, command);
  }

  /**
   * @param {WebSocket} ws
   * @param {Record<string, any>} message
   */
  _write(ws, message) {
    const text = JSON.stringify(message);
    ws.send(text);
    const viewers = this._listeners.get("frame")?.size;
    if (!viewers && this._debug === null) return;
    // What is shown or logged never carries a token (auth, refresh): "***" instead.
    const shown = redactToken(message);
    const shownText = shown === message ? text : JSON.stringify(shown);
    if (this._debug !== null) this._debug(`tidewire > ${shownText}`);
    if (viewers) {
      this._emit("frame", { direction: "out", time: Date.now(), size: utf8Length(text), text: shownText, message: shown });
    }
  }

  /**
   * A dead or stuck connection: stop listening to it and treat it as gone (1006); a closing
   * handshake would need a live peer.
   * @param {WebSocket} ws
   * @param {string} reason
   */
  _abort(ws, reason) {
    if (this._ws !== ws) return;
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close(CloseCode.NORMAL, reason);
    } catch {
      // already closing
    }
    this._connectionEnded(ws, ABNORMAL_CLOSURE, reason);
  }

  /**
   * The socket `ws` ended with `code`: reconnect with backoff or stop, as the code says.
   * @param {WebSocket} ws
   * @param {number} code
   * @param {string} reason
   */
  _connectionEnded(ws, code, reason) {
    if (this._ws !== ws) return; // a socket replaced or dropped on purpose already
    const wasReady = this._ready;
    this._detach(code);
    if (wasReady) this._closeCode = code;
    this._retryOrStop(code, reason);
  }

  /**
   * An attempt or a connection ended with `code`: schedule the next attempt, or stop.
   * @param {number} code
   * @param {string} reason
   */
  _retryOrStop(code, reason) {
    const refusal = reconnectRefusal(code, reason, {
      autoReconnect: this.autoReconnect,
      attempts: this._reconnectAttempts,
      maxAttempts: this._maxReconnectAttempts,
      renewableToken: this.renewableToken,
    });
    if (refusal !== null) {
      this._stop(refusal);
      return;
    }
    this._setState(ConnectionState.RECONNECTING);
    const delay = this._backoff.nextDelay(throttled(code));
    this._nextAttemptAt = Date.now() + delay;
    this._reconnectTimer = setTimeout(() => {
      this._reconnectAttempts += 1;
      this._open();
    }, delay);
  }

  /**
   * Close the current socket on purpose (no reconnection follows) and forget timers.
   * @param {number} code
   * @param {string} reason
   */
  _stopConnection(code, reason) {
    this._attempt += 1; // a provider still answering is no longer waited for
    const ws = this._ws;
    if (ws !== null) {
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
      const wasReady = this._ready;
      this._detach(code);
      if (wasReady) this._closeCode = code;
    }
    this._clearTimers();
    this._nextAttemptAt = null;
  }

  /** @param {number} code */
  _detach(code) {
    this._ws = null;
    this._connectionToken = null;
    this._ready = false;
    this._connectedAt = null;
    this._clearTimers();
    this._inbound.connectionLost(code);
  }

  _clearTimers() {
    if (this._connectTimer !== null) clearTimeout(this._connectTimer);
    if (this._reconnectTimer !== null) clearTimeout(this._reconnectTimer);
    if (this._heartbeatTimer !== null) clearInterval(this._heartbeatTimer);
    this._connectTimer = this._reconnectTimer = this._heartbeatTimer = null;
    this._refreshTimer.cancel();
  }

  /**
   * Final cleanup of a run: end subscriptions, fail waiters, state CLOSED.
   * @param {ConnectionClosedError | null} error
   */
  _stop(error) {
    this._clearTimers();
    this._nextAttemptAt = null;
    if (error !== null) {
      this._lastError = error;
      console.warn(`tidewire client closed: ${error.message}`);
    }
    this._inbound.shutDown(error);
    this._outbound.clear();
    this._setState(ConnectionState.CLOSED);
  }

  // ------------------------------------------------------------------ helpers

  /**
   * @param {Subscription[]} subscriptions
   * @param {boolean} wait
   * @param {number} [timeout]
   */
  async _dropSubscriptions(subscriptions, wait, timeout) {
    for (const subscription of subscriptions) this._inbound.forget(subscription, null);
    const ws = this._ws;
    // Only subscriptions sent on the live connection exist on the gateway; the next
    // connection simply does not resubscribe the others.
    if (ws === null || !this._ready) return;
    const live = subscriptions.filter((s) => s._generation === this._generation).map((s) => s.subscriptionId);
    if (live.length === 0) return;
    /** @type {Record<string, any>} */
    const command = live.length === 1 ? { type: "unsubscribe", subscription_id: live[0] } : { type: "unsubscribe", subscription_ids: live };
    if (!wait) {
      this.sendMessage({ ...command, message_id: newMessageId() });
      return;
    }
    try {
      await this.request(command, { timeout });
    } catch (error) {
      // Lost with the connection, or never confirmed there: either way it no longer exists.
      if (error instanceof ConnectionClosedError) return;
      if (error instanceof ServerError && error.errorCode === "not_found") return;
      throw error;
    }
  }

  _newSubscriptionId() {
    this._subscriptionCounter += 1;
    return `sub-${idPrefix.slice(0, 6)}-${this._subscriptionCounter}`;
  }

  /**
   * @template T
   * @param {Promise<T>} promise
   * @param {number | undefined} timeout
   * @param {string} what
   * @returns {Promise<T>}
   */
  _withTimeout(promise, timeout, what) {
    const ms = timeout ?? this._requestTimeout;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const expired = new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new RequestTimeout(`${what} after ${ms} ms`)), ms);
    });
    return /** @type {Promise<T>} */ (Promise.race([promise, expired])).finally(() => clearTimeout(timer));
  }
}

/** For tests: make message ids deterministic. */
export function _resetIds(prefix = "00000000") {
  idPrefix = prefix;
  idCounter = 0;
}
