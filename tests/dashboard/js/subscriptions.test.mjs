// The scenarios of tests/vectors/subscriptions.json on the JavaScript client's Subscription
// (the Python SDK runs them in tests/client/test_subscription_vectors.py).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Subscription } from "../../../src/tidewire/dashboard/static/client/subscription.js";
import { STREAMS } from "../../../src/tidewire/dashboard/static/client/streams.js";

const VECTORS = JSON.parse(readFileSync(new URL("../../vectors/subscriptions.json", import.meta.url), "utf8"));
const MARKER_FIELDS = ["reason", "position", "resume_position", "snapshot", "loss"];
const OWNER = { unsubscribe: async () => {} };

for (const scenario of VECTORS.scenarios) {
  test(`subscriptions: ${scenario.name}`, () => {
    const stream = scenario.stream;
    assert.ok(Object.hasOwn(STREAMS, stream), stream);
    const sub = new Subscription(/** @type {any} */ (OWNER), {
      subscriptionId: "s1",
      stream,
      filters: {},
      rateLimit: null,
      snapshot: scenario.snapshot,
      since: scenario.since,
      onMessage: null,
      onResync: null,
    });
    scenario.steps.forEach((step, number) => {
      const where = `step ${number}: ${JSON.stringify(step)}`;
      if ("subscribe" in step) {
        const command = sub._command(`m-${number}`);
        assert.deepEqual(command.since ?? null, step.subscribe.since, where);
      } else if ("confirmed" in step) {
        const marker = sub._onConfirmed({ type: "subscription_confirmed", stream, ...step.confirmed });
        if (step.marker === null) assert.equal(marker, null, where);
        else {
          assert.ok(marker !== null, where);
          const picked = Object.fromEntries(MARKER_FIELDS.map((k) => [k, marker[k]]));
          assert.deepEqual(picked, step.marker, where);
        }
      } else if ("message" in step) {
        assert.equal(sub._accept({ type: "x", stream, ...step.message }), step.delivered, where);
      } else if ("reply" in step) {
        sub._settle();
      } else if ("heartbeat_position" in step) {
        sub._onPosition(step.heartbeat_position);
      } else if ("disconnected" in step) {
        sub._onDisconnected();
      } else {
        const actual = {
          position: sub.position,
          messages_received: sub.messagesReceived,
          duplicates: sub.duplicates,
          resyncs: sub.resyncs,
        };
        const picked = Object.fromEntries(Object.keys(step.expect).map((k) => [k, actual[k]]));
        assert.deepEqual(picked, step.expect, where);
      }
    });
  });
}
