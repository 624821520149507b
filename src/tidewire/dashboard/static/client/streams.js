// @ts-check
/**
 * The stream catalogue as the client needs it (`tidewire.protocol.streams`): how messages are
 * keyed, which streams are reliable, which keep last values (and per which unit), and the
 * names the original frontend used for them.
 *
 * The tables themselves are generated from the gateway's catalogue into `catalogue.js`
 * (`make schema`); this module adds the lookups over them.
 */

import { KEY_FILTER_OF_FIELD, STREAMS, STREAM_ALIASES } from "./catalogue.js";

/** @import { StreamName } from "../tidewire-protocol.d.ts" */
/** @import { StreamSpec } from "./catalogue.js" */

/** @type {readonly StreamName[]} */
export const STREAM_NAMES = /** @type {StreamName[]} */ (Object.keys(STREAMS));

/**
 * The canonical name of `name` (canonical, singular or alias), or null for an unknown stream.
 * @param {string} name
 * @returns {StreamName | null}
 */
export function resolveStream(name) {
  if (Object.hasOwn(STREAMS, name)) return /** @type {StreamName} */ (name);
  const alias = /** @type {Record<string, StreamName>} */ (STREAM_ALIASES)[name];
  return alias ?? null;
}

/**
 * The spec of `name` (canonical, singular or alias), or null for an unknown stream.
 * @param {string} name
 * @returns {StreamSpec | null}
 */
export function streamSpec(name) {
  const canonical = resolveStream(name);
  return canonical === null ? null : STREAMS[canonical];
}

/**
 * A topic as the gateway splits it: `market_data.AAPL` -> ["market_data", "AAPL"]; a name
 * without a key suffix (or one that is itself a stream name) -> [name, null]. Stream names
 * hold no dot; keys may (`AAPL.NASDAQ`), so the first dot splits.
 * @param {string} name
 * @returns {[string, string | null]}
 */
export function splitTopic(name) {
  if (resolveStream(name) !== null || !name.includes(".")) return [name, null];
  const dot = name.indexOf(".");
  const stream = name.slice(0, dot);
  const key = name.slice(dot + 1);
  if (resolveStream(stream) === null || key === "") return [name, null];
  return [stream, key];
}

/**
 * Whether the stream keeps the newest message per snapshot unit, so that a subscription to it
 * starts with a snapshot (latest-value streams and position_updates).
 * @param {string} name
 */
export function keepsLastValues(name) {
  return streamSpec(name)?.keepsLastValues ?? false;
}

/**
 * Whether `name` is a reliable stream (unknown streams are treated as reliable: no
 * conflation is the safe side).
 * @param {string} name
 */
export function isReliable(name) {
  return streamSpec(name)?.reliable ?? true;
}

export { KEY_FILTER_OF_FIELD, STREAMS, STREAM_ALIASES };
