// @ts-check
/**
 * The inbound side of a client: messages to subscriptions, replies to waiters
 * (`tidewire.client.dispatch`).
 *
 * The dispatcher holds everything that waits for the gateway (subscriptions, subscribe
 * confirmations, request replies, heartbeat round trips) and what the gateway said about the
 * connection. It never sends: the client sends and tells the dispatcher what it sent, so the
 * rules of who gets which reply live here in one place.
 *
 * Order of the calls for one message: the subscriptions first (routing, confirmation,
 * positions), then the resync handlers of a gap that message revealed, then the subscription's
 * `onMessage` (marker or data), then the client's "message" listeners.
 */

import { ConnectionClosedError, ServerError, SubscriptionError } from "./errors.js";
import { positionOf } from "./dedupe.js";
import { HeartbeatTracker } from "./heartbeat.js";
import { Router } from "./routing.js";
import { REPLY_TYPE_LIST } from "./catalogue.js";
import { parseExpiry } from "./tokens.js";

/** @import { Subscription } from "./subscription.js" */
/** @import { ResyncMarker } from "./resync.js" */

/** Replies (everything that is not a data message); data messages are routed by `stream`. */
export const REPLY_TYPES = new Set(REPLY_TYPE_LIST);

/**
 * @typedef {object} DispatchHooks what the dispatcher tells its client
 * @property {() => void} established `connection_established` arrived: send the backlog now
 * @property {() => void} authenticated `auth_ok` arrived (`userId`, `expiresAt` updated)
 * @property {(subscription: Subscription, reply: Record<string, any>) => void} confirmed
 * @property {(subscription: Subscription, reply: Record<string, any>) => void} updated an
 *   `update_subscription` took effect (filters and rate limit of the subscription changed)
 * @property {(subscription: Subscription, info: ResyncMarker) => void} resync
 * @property {(message: Record<string, any>) => void} message every message, after routing
 * @property {(error: Error) => void} error an error reply nobody waits for, a refused resubscription
 */

/**
 * @template T
 * @typedef {{resolve: (value: T) => void, reject: (error: Error) => void}} Waiter
 */

/** Call a handler of the application; an exception must not take the connection down. */
export function safeCall(/** @type {() => void} */ fn) {
  try {
    fn();
  } catch (error) {
    if (typeof globalThis.reportError === "function") globalThis.reportError(error);
    else console.error(error);
  }
}

export class Dispatcher {
  /** @param {DispatchHooks} hooks */
  constructor(hooks) {
    this._hooks = hooks;
    /** @type {Map<string, Subscription>} active subscriptions, in resubscription order */
    this.subscriptions = new Map();
    /** @type {Router<Subscription>} */
    this.router = new Router();
    this.heartbeats = new HeartbeatTracker();
    /** @type {Map<string, Waiter<Record<string, any>>>} subscription_id -> first confirmation */
    this._confirmations = new Map();
    /** @type {Map<string, string>} message_id of a subscribe sent on this connection -> id */
    this._subscribeIds = new Map();
    /** @type {Map<string, Waiter<Record<string, any>>>} message_id -> reply waiter */
    this._requests = new Map();
    /** @type {Set<string>} requests written on the current connection: lost with it */
    this._sentRequests = new Set();
    /** @type {Waiter<number>[]} */
    this._pings = [];

    /** True once the current connection's `connection_established` arrived. */
    this.established = false;
    /** @type {string | null} */
    this.connectionId = null;
    /** @type {string | null} */
    this.serverVersion = null;
    /** @type {Record<string, any> | null} */
    this.serverLimits = null;
    /** @type {number | null} seconds of silence after which the gateway sends `heartbeat` */
    this.serverHeartbeatInterval = null;
    /** @type {string | null} the user the connection's token names (`user_id`) */
    this.userId = null;
    /** @type {number | null} epoch ms at which the connection's token expires */
    this.expiresAt = null;
    /** True when the gateway waits for an `auth` message on this connection. */
    this.authRequired = false;
    /** @type {number | null} round trip of the last heartbeat, in milliseconds */
    this.messageLatency = null;
    /** Messages received (a batch counts its messages). */
    this.messagesReceived = 0;
  }

  // ------------------------------------------------------------------ bookkeeping

  /**
   * Register a new subscription; the promise resolves with its first confirmation.
   * @param {Subscription} subscription
   * @returns {Promise<Record<string, any>>}
   */
  addSubscription(subscription) {
    const confirmed = new Promise((resolve, reject) => {
      this._confirmations.set(subscription.subscriptionId, { resolve, reject });
    });
    this.subscriptions.set(subscription.subscriptionId, subscription);
    this.router.add(subscription.subscriptionId, subscription.stream, subscription.filters, subscription);
    return /** @type {Promise<Record<string, any>>} */ (confirmed);
  }

  /**
   * Stop routing to `subscription` and end it (with `error`, if any).
   * @param {Subscription} subscription
   * @param {Error | null} error
   */
  forget(subscription, error) {
    this.subscriptions.delete(subscription.subscriptionId);
    this.router.remove(subscription.subscriptionId);
    this._confirmations.delete(subscription.subscriptionId);
    subscription._finish(error);
  }

  /** @param {string} messageId @param {string} subscriptionId */
  subscribeSent(messageId, subscriptionId) {
    this._subscribeIds.set(messageId, subscriptionId);
  }

  /**
   * A promise of the reply whose `correlation_id` is `messageId`.
   * @param {string} messageId
   * @returns {Promise<Record<string, any>>}
   */
  expectReply(messageId) {
    return new Promise((resolve, reject) => this._requests.set(messageId, { resolve, reject }));
  }

  /** @param {string} messageId the caller stopped waiting */
  release(messageId) {
    this._requests.delete(messageId);
    this._sentRequests.delete(messageId);
  }

  /** @param {Record<string, any>} message written on the current connection */
  sent(message) {
    const id = message.message_id;
    if (typeof id === "string" && this._requests.has(id)) this._sentRequests.add(id);
  }

  /** @returns {{promise: Promise<number>, waiter: Waiter<number>}} the next round trip (ms) */
  expectPing() {
    /** @type {Waiter<number>} */
    let waiter = { resolve: () => {}, reject: () => {} };
    const promise = new Promise((resolve, reject) => {
      waiter = { resolve, reject };
    });
    this._pings.push(waiter);
    return { promise: /** @type {Promise<number>} */ (promise), waiter };
  }

  /** @param {Waiter<number>} waiter */
  releasePing(waiter) {
    const index = this._pings.indexOf(waiter);
    if (index >= 0) this._pings.splice(index, 1);
  }

  /**
   * The current connection ended: replies to what was sent on it will never come.
   * @param {number} code
   */
  connectionLost(code) {
    this.established = false;
    for (const subscription of this.subscriptions.values()) subscription._onDisconnected();
    this._subscribeIds.clear();
    this.heartbeats.clear();
    const lost = new ConnectionClosedError("connection lost before the reply", { code });
    for (const id of this._sentRequests) this._requests.get(id)?.reject(lost);
    this._sentRequests.clear();
    for (const ping of this._pings.splice(0)) ping.reject(lost);
  }

  /**
   * The client stopped: end every subscription and fail every waiter.
   * @param {Error | null} error
   */
  shutDown(error) {
    for (const subscription of this.subscriptions.values()) subscription._finish(error);
    this.subscriptions.clear();
    this.router = new Router();
    const failure = error ?? new ConnectionClosedError("the client was closed");
    for (const waiter of [...this._confirmations.values(), ...this._requests.values(), ...this._pings]) {
      waiter.reject(failure);
    }
    this._confirmations.clear();
    this._requests.clear();
    this._pings = [];
    this._subscribeIds.clear();
    this._sentRequests.clear();
  }

  // ------------------------------------------------------------------ inbound

  /**
   * Process one decoded frame: a message, or a batch of messages in order.
   * @param {Record<string, any>} frame
   */
  handleFrame(frame) {
    if (frame.type === "batch" && Array.isArray(frame.messages)) {
      for (const item of frame.messages) {
        if (item !== null && typeof item === "object") this.handleMessage(item);
      }
    } else {
      this.handleMessage(frame);
    }
  }

  /** @param {Record<string, any>} message */
  handleMessage(message) {
    this.messagesReceived += 1;
    const type = message.type;
    if (REPLY_TYPES.has(type)) this._handleReply(type, message);
    else if (typeof message.stream === "string") this._route(message);
    const hooks = this._hooks;
    safeCall(() => hooks.message(message));
  }

  /** @param {Record<string, any>} message */
  _route(message) {
    const now = performance.now();
    for (const subscription of this.router.targets(message)) {
      // Only subscriptions confirmed on this connection get messages, so a new subscription
      // never sees messages from before it existed on the gateway.
      if (!subscription._confirmed || !subscription._accept(message)) continue;
      subscription.lastMessageAt = now;
      const onMessage = subscription.onMessage;
      if (onMessage !== null) safeCall(() => onMessage(message, subscription));
    }
  }

  /** @param {string} type @param {Record<string, any>} message */
  _handleReply(type, message) {
    // The gateway never lets a reply overtake the replay or snapshot it queued before it for
    // a reliable stream: any reply means those are complete.
    for (const subscription of this.subscriptions.values()) subscription._settle();
    if (type === "connection_established") this._onEstablished(message);
    else if (type === "subscription_confirmed" || type === "subscription_error") {
      this._onSubscriptionReply(type, message);
    } else if (type === "heartbeat_response") this._onHeartbeatResponse(message);
    else if (type === "auth_ok") this._onAuthOk(message);
    const correlationId = message.correlation_id;
    if (typeof correlationId !== "string") {
      if (type === "error") this._hooks.error(ServerError.fromReply(message));
      return;
    }
    const waiter = this._requests.get(correlationId);
    if (waiter !== undefined) {
      this._requests.delete(correlationId);
      this._sentRequests.delete(correlationId);
      if (type === "error") waiter.reject(ServerError.fromReply(message));
      else if (type === "subscription_error") waiter.reject(SubscriptionError.fromReply(message));
      else waiter.resolve(message);
    } else if (type === "error") {
      // A subscribe so malformed that the gateway answered `error`.
      if (this._subscribeIds.has(correlationId)) this._onSubscriptionReply("subscription_error", message);
      else this._hooks.error(ServerError.fromReply(message));
    }
  }

  /** @param {Record<string, any>} message */
  _onEstablished(message) {
    this.connectionId = typeof message.connection_id === "string" ? message.connection_id : "";
    this.serverVersion = typeof message.server_version === "string" ? message.server_version : null;
    this.serverLimits = message.limits !== null && typeof message.limits === "object" ? { ...message.limits } : null;
    if (typeof message.heartbeat_interval === "number") this.serverHeartbeatInterval = message.heartbeat_interval;
    this.userId = typeof message.user_id === "string" ? message.user_id : null;
    this.expiresAt = parseExpiry(message.expires_at);
    this.authRequired = message.auth_required === true;
    this.established = true;
    this._hooks.established();
  }

  /** @param {Record<string, any>} message an `auth_ok`: the token now in force */
  _onAuthOk(message) {
    if (typeof message.user_id === "string") this.userId = message.user_id;
    this.expiresAt = parseExpiry(message.expires_at);
    this.authRequired = false;
    this._hooks.authenticated();
  }

  /** @param {string} type @param {Record<string, any>} message */
  _onSubscriptionReply(type, message) {
    if (type === "subscription_confirmed" && message.updated === true) {
      this._onUpdated(message);
      return;
    }
    // Every subscribe this client sends carries a message_id, so a reply correlated with
    // another id answers a raw subscribe sent with `sendMessage`: it must not touch ours.
    const correlationId = message.correlation_id;
    /** @type {unknown} */
    let subscriptionId;
    if (typeof correlationId === "string") {
      subscriptionId = this._subscribeIds.get(correlationId);
      this._subscribeIds.delete(correlationId);
    } else {
      subscriptionId = message.subscription_id;
    }
    const subscription = typeof subscriptionId === "string" ? this.subscriptions.get(subscriptionId) : undefined;
    if (subscription === undefined) return;
    const waiter = this._confirmations.get(subscription.subscriptionId);
    this._confirmations.delete(subscription.subscriptionId);
    if (type === "subscription_confirmed") {
      const marker = subscription._onConfirmed(message);
      // The gateway names the canonical stream; route by that name from now on.
      this.router.add(subscription.subscriptionId, subscription.stream, subscription.filters, subscription);
      const hooks = this._hooks;
      if (marker !== null) {
        const onResync = subscription.onResync;
        if (onResync !== null) safeCall(() => onResync(subscription, structuredClone(marker)));
        safeCall(() => hooks.resync(subscription, structuredClone(marker)));
        const onMessage = subscription.onMessage;
        if (onMessage !== null) safeCall(() => onMessage(marker, subscription));
      }
      safeCall(() => hooks.confirmed(subscription, message));
      waiter?.resolve(message);
      return;
    }
    const error = /** @type {SubscriptionError} */ (SubscriptionError.fromReply(message));
    error.subscriptionId = subscription.subscriptionId;
    this.forget(subscription, error);
    if (waiter !== undefined) waiter.reject(error);
    else this._hooks.error(error); // a resubscription refused
  }

  /**
   * The confirmation of an `update_subscription`: the subscription goes on, with new filters
   * from this message on (a refused update leaves it as it was: only the request fails).
   * @param {Record<string, any>} message
   */
  _onUpdated(message) {
    const id = message.subscription_id;
    const subscription = typeof id === "string" ? this.subscriptions.get(id) : undefined;
    if (subscription === undefined) return;
    subscription._onUpdated(message);
    this.router.add(subscription.subscriptionId, subscription.stream, subscription.filters, subscription);
    const hooks = this._hooks;
    safeCall(() => hooks.updated(subscription, message));
  }

  /** @param {Record<string, any>} message */
  _onHeartbeatResponse(message) {
    const latency = this.heartbeats.finish(message.client_timestamp);
    if (latency !== null) {
      this.messageLatency = latency;
      for (const ping of this._pings.splice(0)) ping.resolve(latency);
    }
    const positions = message.positions;
    if (positions === null || typeof positions !== "object") return;
    for (const subscription of this.subscriptions.values()) {
      const position = positionOf(positions[subscription.stream]);
      if (position !== null && subscription._confirmed) subscription._onPosition(position);
    }
  }
}
