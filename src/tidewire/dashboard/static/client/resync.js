// @ts-check
/**
 * Resync signals: how a subscription tells the application that its stream has a gap
 * (`tidewire.client.resync`).
 *
 * After a reconnection the gateway may be unable to replay what the connection missed
 * (`subscription_confirmed` with `recovered: false`): the stream's epoch changed (the gateway
 * restarted) or its history no longer covers the gap. The subscription then hands its
 * `onMessage` a *resync marker* at exactly the place of the gap (before the snapshot that
 * follows, where the stream has one), and the resync handlers are called just before:
 *
 *     {type: "resync", reason: "not_recovered", subscription_id, stream,
 *      position,         // the subscription's position before the gap
 *      resume_position,  // where the stream resumes
 *      snapshot,         // the messages right after the marker are a snapshot
 *      loss,             // messages that matched may be missing for good
 *      dropped: null}
 *
 * The Python client also signals "overflow" (its bounded queue dropped messages); this client
 * hands messages to callbacks synchronously, so it has no queue that could overflow.
 */

/** `type` of a resync marker. */
export const RESYNC = "resync";
/** `reason`: a reconnection could not replay what was missed (`recovered: false`). */
export const NOT_RECOVERED = "not_recovered";
/** `reason` used by the Python client when its queue dropped messages (not used here). */
export const OVERFLOW = "overflow";

/**
 * @typedef {object} ResyncMarker
 * @property {"resync"} type
 * @property {string} reason
 * @property {string} subscription_id
 * @property {string} stream
 * @property {{epoch: string, seq: number} | null} position
 * @property {{epoch: string, seq: number} | null} resume_position
 * @property {boolean} snapshot
 * @property {boolean} loss
 * @property {number | null} dropped
 */

/**
 * True for a resync marker handed to `onMessage`.
 * @param {{type?: unknown}} message
 * @returns {message is ResyncMarker}
 */
export function isResync(message) {
  return message !== null && typeof message === "object" && message.type === RESYNC;
}

/**
 * @param {string} reason
 * @param {{subscriptionId: string, stream: string, position: {epoch: string, seq: number} | null,
 *   resumePosition?: {epoch: string, seq: number} | null, snapshot?: boolean, loss?: boolean,
 *   dropped?: number | null}} fields
 * @returns {ResyncMarker}
 */
export function resyncMarker(reason, fields) {
  const copy = (/** @type {{epoch: string, seq: number} | null | undefined} */ p) =>
    p == null ? null : { epoch: p.epoch, seq: p.seq };
  return {
    type: RESYNC,
    reason,
    subscription_id: fields.subscriptionId,
    stream: fields.stream,
    position: copy(fields.position),
    resume_position: copy(fields.resumePosition),
    snapshot: fields.snapshot ?? false,
    loss: fields.loss ?? true,
    dropped: fields.dropped ?? null,
  };
}
