// @ts-check
/**
 * One subscription of a `TidewireClient`: its stream position, duplicate filter and callbacks
 * (`tidewire.client.subscription`).
 *
 * - **Each message once, in order.** Messages are routed to a subscription only after the
 *   gateway confirmed it on the current connection, and pass its `DuplicateFilter`: within one
 *   epoch a message is delivered only when its seq is above the last one delivered since the
 *   latest confirmation (per conflation key on latest-value streams).
 * - **Its position** (`position`, the `since` of every resubscription) advances with accepted
 *   messages, `heartbeat_response.positions` and the confirmation. After a recovered
 *   resubscription (a replay), or a confirmation followed by the snapshot of a reliable stream
 *   (position_updates), the confirmed position is taken only once that replay or snapshot is
 *   in, so a connection lost half way resumes where it stopped.
 * - **Gaps are signalled, never hidden**: a resync marker in `onMessage` and the resync
 *   handlers (see `resync.js`).
 */

import { DuplicateFilter, conflationKey, positionOf } from "./dedupe.js";
import { NOT_RECOVERED, resyncMarker } from "./resync.js";
import { isReliable, keepsLastValues, resolveStream } from "./streams.js";

/** @import { Filters, StreamPosition, Subscribe, SubscriptionConfirmed } from "../tidewire-protocol.d.ts" */
/** @import { ResyncMarker } from "./resync.js" */

/**
 * @callback MessageCallback
 * @param {Record<string, any> | ResyncMarker} message a data message, or a resync marker
 * @param {Subscription} subscription
 * @returns {void}
 */
/**
 * @callback ResyncCallback
 * @param {Subscription} subscription
 * @param {ResyncMarker} info a copy of the marker
 * @returns {void}
 */

/**
 * @typedef {object} SubscriptionOwner
 * @property {(ids: string | string[]) => Promise<void>} unsubscribe
 */

/**
 * Filters as sent on the wire: unset (null/undefined) filters and empty strings are left out.
 * @param {Filters | Record<string, unknown> | null | undefined} filters
 * @returns {Filters}
 */
export function normalizeFilters(filters) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [name, value] of Object.entries(filters ?? {})) {
    if (value !== null && value !== undefined && value !== "") out[name] = value;
  }
  return /** @type {Filters} */ (out);
}

export class Subscription {
  /**
   * Created by `TidewireClient.subscribe`; not meant to be constructed by applications.
   * @param {SubscriptionOwner} owner
   * @param {{subscriptionId: string, stream: string, filters: Filters, rateLimit: number | null,
   *   snapshot: boolean | null, since: StreamPosition | null, onMessage: MessageCallback | null,
   *   onResync: ResyncCallback | null}} options
   */
  constructor(owner, options) {
    this._owner = owner;
    /** Id of the subscription, kept across reconnections. */
    this.subscriptionId = options.subscriptionId;
    /** Canonical stream name (resolved from aliases; the gateway's name after confirmation). */
    this.stream = resolveStream(options.stream) ?? options.stream;
    /** @type {Readonly<Filters>} the filters as sent to the gateway */
    this.filters = Object.freeze({ ...options.filters });
    /** Maximum messages per second asked of the gateway per key; null for no limit. */
    this.rateLimit = options.rateLimit;
    /** `snapshot` of the subscribe command; null leaves the gateway's default. */
    this.snapshot = options.snapshot;
    /** True for a reliable stream, false for a latest-value one. */
    this.reliable = isReliable(this.stream);
    /** Called with every data message delivered, and with resync markers at gaps. */
    this.onMessage = options.onMessage;
    /** Called for each resync signal of this subscription, before the client's handlers. */
    this.onResync = options.onResync;
    // Whether the stream keeps a snapshot (latest-value streams and position_updates).
    this._keepsSnapshot = keepsLastValues(this.stream);
    this._filter = new DuplicateFilter(this.reliable ? null : (m) => conflationKey(this.stream, m));
    /** @type {StreamPosition | null} */
    this._position = options.since ? { epoch: options.since.epoch, seq: options.since.seq } : null;
    /** Data messages delivered (duplicates not included). */
    this.messagesReceived = 0;
    /** Messages not delivered: already delivered, or older than the subscription's place. */
    this.duplicates = 0;
    /** Resync signals so far (gaps not recovered after a reconnection). */
    this.resyncs = 0;
    /** @type {boolean | null} `recovered` of the last confirmation */
    this.recovered = null;
    /** Confirmations received (the first subscribe and every resubscription). */
    this.confirmations = 0;
    /** @type {number | null} `performance.now()` of the last delivered message */
    this.lastMessageAt = null;
    /** @type {Error | null} why the subscription ended, when it did not end by unsubscribe */
    this.error = null;
    this._finished = false;
    // Set by the client: the connection generation this subscription was last sent on, and
    // whether the gateway confirmed it there (only confirmed subscriptions get messages, so
    // a snapshot always comes first).
    this._generation = -1;
    this._confirmed = false;
    /** @type {StreamPosition | null} the `since` of the last subscribe command */
    this._sinceSent = null;
    /** @type {StreamPosition | null} a confirmed position to take once its setup is in */
    this._settleAt = null;
  }

  /**
   * Last `{epoch, seq}` of the stream this subscription has accounted for; the `since` of
   * resubscriptions. Never moves back within an epoch.
   */
  get position() {
    return this._position === null ? null : { ...this._position };
  }

  /** False once unsubscribed, refused or ended by `close()`. */
  get active() {
    return !this._finished;
  }

  /** True while the gateway has confirmed this subscription on the current connection. */
  get confirmed() {
    return this._confirmed;
  }

  /** Stop this subscription (does nothing when it already ended). */
  async unsubscribe() {
    if (!this._finished) await this._owner.unsubscribe(this.subscriptionId);
  }

  // ------------------------------------------------------------------ driven by the client

  /**
   * The `subscribe` command for (re)subscribing, with `since` when a position is known.
   * @param {string} messageId
   * @returns {Subscribe}
   */
  _command(messageId) {
    /** @type {Subscribe} */
    const command = {
      type: "subscribe",
      message_id: messageId,
      stream: this.stream,
      subscription_id: this.subscriptionId,
    };
    if (Object.keys(this.filters).length > 0) command.filters = { ...this.filters };
    if (this.rateLimit !== null) command.rate_limit = this.rateLimit;
    if (this.snapshot !== null) command.snapshot = this.snapshot;
    this._sinceSent = this._position;
    if (this._position !== null) command.since = { ...this._position };
    return command;
  }

  /**
   * The gateway confirmed the subscription on this connection: restart the duplicate filter,
   * place the position; returns the resync marker when a resume (`since`) was not recovered.
   * @param {SubscriptionConfirmed | Record<string, any>} reply
   * @returns {ResyncMarker | null}
   */
  _onConfirmed(reply) {
    this._confirmed = true;
    this.confirmations += 1;
    const recovered = reply.recovered;
    this.recovered = typeof recovered === "boolean" ? recovered : null;
    if (typeof reply.stream === "string" && reply.stream !== "") this.stream = reply.stream;
    const since = this._sinceSent;
    this._sinceSent = null;
    const position = positionOf(reply.position);
    const replay = this.reliable && since !== null && recovered === true;
    // What follows the confirmation (PROTOCOL.md section 5): a replay of what came after
    // `since`, the snapshot (snapshot streams, unless refused), or live messages only.
    const snapshot = this._keepsSnapshot && this.snapshot !== false && !replay;
    /** @type {number | null} */
    let floor;
    if (replay && since !== null && position !== null) floor = since.epoch === position.epoch ? since.seq : null;
    else if (snapshot || position === null) floor = null;
    else floor = position.seq;
    this._filter.restart(position !== null ? position.epoch : null, floor);
    this._settleAt = null;
    if (position !== null) {
      // A reliable stream's replay or snapshot ends at `position`: taking it now would skip
      // the rest of it if the connection dropped half way. A latest-value stream needs no
      // such care: resuming it always sends the snapshot again.
      if (this.reliable && (replay || snapshot)) this._settleAt = position;
      else this._position = position;
    }
    if (since === null || recovered === true) return null;
    this.resyncs += 1;
    return resyncMarker(NOT_RECOVERED, {
      subscriptionId: this.subscriptionId,
      stream: this.stream,
      position: since,
      resumePosition: position,
      snapshot,
      // A latest-value stream loses nothing its snapshot does not replace.
      loss: this.reliable || !snapshot,
    });
  }

  /** A reply after the confirmation: the setup (replay, snapshot) is complete. */
  _settle() {
    if (this._settleAt !== null) {
      this._advance(this._settleAt);
      this._settleAt = null;
    }
  }

  /** @param {StreamPosition} position the stream's position from `heartbeat_response` */
  _onPosition(position) {
    this._advance(position);
  }

  /**
   * Whether a routed data message is delivered (passes the duplicate filter); advances the
   * position. The caller hands it to `onMessage`.
   * @param {Record<string, any>} message
   */
  _accept(message) {
    if (!this._filter.accept(message)) {
      this.duplicates += 1;
      return false;
    }
    this.messagesReceived += 1;
    const position = positionOf(message);
    const settleAt = this._settleAt;
    if (settleAt !== null && position !== null) {
      if (position.epoch !== settleAt.epoch) this._settleAt = null; // history reset since
      else if (position.seq > settleAt.seq) this._settle(); // a message after the setup
    }
    if (position !== null) this._advance(position);
    return true;
  }

  _onDisconnected() {
    this._confirmed = false;
    this._settleAt = null;
  }

  /** @param {Error | null} error */
  _finish(error) {
    if (this._finished) return;
    this._finished = true;
    this._confirmed = false;
    this.error = error;
  }

  /** @param {StreamPosition} position */
  _advance(position) {
    const current = this._position;
    // Within one epoch the position only moves forward (snapshot messages may be older than
    // the confirmed position); a new epoch means the stream's history was reset.
    if (current === null || current.epoch !== position.epoch || position.seq > current.seq) {
      this._position = { epoch: position.epoch, seq: position.seq };
    }
  }
}
