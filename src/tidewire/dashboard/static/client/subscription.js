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
import { matches } from "./routing.js";
import { NOT_RECOVERED, resyncMarker } from "./resync.js";
import { KEY_FILTER_OF_FIELD, isReliable, keepsLastValues, resolveStream, splitTopic, streamSpec } from "./streams.js";

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
 * Filters as sent on the wire: unset (null/undefined) filters, empty strings and empty lists
 * are left out (the gateway reads them as "no filter" too).
 * @param {Filters | Record<string, unknown> | null | undefined} filters
 * @returns {Filters}
 */
export function normalizeFilters(filters) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [name, value] of Object.entries(filters ?? {})) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value) && value.length === 0) continue;
    out[name] = value;
  }
  return /** @type {Filters} */ (out);
}

/**
 * @typedef {object} SubscriptionTarget
 * @property {string} stream the canonical stream (`name` itself when it names none)
 * @property {string | null} topic `name` when it had a key suffix
 * @property {string | null} keyFilter the filter the suffix became (`symbols`, ...)
 * @property {Filters} filters the filters, with the key filter added
 */

/**
 * What a subscription to `name` asks for: the canonical stream, the topic when `name` had a
 * key suffix (`market_data.AAPL`: the gateway turns it into the key filter, and so does the
 * client, to route), and the filters with that key filter added.
 * @param {string} name
 * @param {Filters} filters
 * @returns {SubscriptionTarget}
 */
export function subscriptionTarget(name, filters) {
  const [streamName, key] = splitTopic(name);
  const stream = resolveStream(streamName) ?? streamName;
  const keyField = streamSpec(stream)?.keyField;
  const keyFilter = keyField === undefined ? undefined : /** @type {Record<string, string>} */ (KEY_FILTER_OF_FIELD)[keyField];
  if (key === null) return { stream, topic: null, keyFilter: null, filters };
  // A stream no filter selects by key: left for the gateway to refuse, as asked.
  if (keyFilter === undefined) return { stream: name, topic: name, keyFilter: null, filters };
  /** @type {Record<string, unknown>} */
  const withKey = { ...filters };
  // A different value is left for the gateway to refuse (`invalid_filter`).
  if (withKey[keyFilter] === undefined) withKey[keyFilter] = [key];
  return { stream, topic: name, keyFilter, filters: /** @type {Filters} */ (withKey) };
}

/**
 * Whether two sets of wire filters are the same (the gateway sends the latest values of new
 * keys only when the filters changed).
 * @param {Readonly<Filters>} a
 * @param {Readonly<Filters>} b
 */
function sameFilters(a, b) {
  const keys = Object.keys(a).sort();
  if (keys.join() !== Object.keys(b).sort().join()) return false;
  const x = /** @type {Record<string, unknown>} */ (a);
  const y = /** @type {Record<string, unknown>} */ (b);
  return keys.every((k) => JSON.stringify(x[k]) === JSON.stringify(y[k]));
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
    const target = subscriptionTarget(options.stream, options.filters);
    /** Canonical stream name (resolved from aliases; the gateway's name after confirmation). */
    this.stream = target.stream;
    /** @type {string | null} the topic as asked for (`market_data.AAPL`), sent as `stream` */
    this._askedTopic = target.topic;
    /** @type {string | null} the filter its key suffix became */
    this._topicFilter = target.keyFilter;
    /** The gateway's name of the target (`topic` of the confirmation): the stream, or the
     * topic with its key suffix. */
    this.topic = target.topic ?? this.stream;
    /** @type {Readonly<Filters>} the filters in force (as confirmed by the gateway) */
    this.filters = Object.freeze({ ...target.filters });
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
    /** Updates confirmed (`update_subscription`: new filters or rate limit). */
    this.updates = 0;
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
      stream: this._topic(),
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
    const topic = /** @type {Record<string, any>} */ (reply).topic;
    if (typeof topic === "string" && topic !== "") this.topic = topic;
    const since = this._sinceSent;
    this._sinceSent = null;
    const position = positionOf(reply.position);
    const replay = this.reliable && since !== null && recovered === true;
    // What follows the confirmation (docs/protocol.md section 5): a replay of what came after
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

  /**
   * The gateway confirmed an `update_subscription` (`updated: true`): the subscription goes on
   * with the confirmed filters and rate limit, its position kept. No resync, no restart: the
   * stream switches between two messages; where it keeps last values, those of the keys the
   * old filters did not cover follow, each delivered once although older than what was.
   * @param {Record<string, any>} reply
   */
  _onUpdated(reply) {
    this.updates += 1;
    const rate = reply.rate_limit;
    this.rateLimit = typeof rate === "number" && rate > 0 ? rate : null;
    const filters = reply.filters;
    if (filters === null || typeof filters !== "object") return;
    const old = this.filters;
    this.filters = Object.freeze({ ...normalizeFilters(filters) });
    this.topic = this._topic();
    if (this._keepsSnapshot && !sameFilters(old, this.filters)) {
      // The latest values of the keys the old filters did not cover follow.
      this._filter.admit((m) => conflationKey(this.stream, m), (m) => matches(old, m));
    }
  }

  /**
   * What `subscribe` names: the topic as asked for (so that the gateway confirms it by that
   * name) while the filters still select its key alone, else the stream.
   */
  _topic() {
    const topic = this._askedTopic;
    if (topic === null || this._topicFilter === null) return topic ?? this.stream;
    const values = /** @type {Record<string, unknown>} */ (this.filters)[this._topicFilter];
    const key = topic.slice(topic.indexOf(".") + 1);
    return Array.isArray(values) && values.length === 1 && values[0] === key ? topic : this.stream;
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
