// The filter rules of tests/vectors/filters.json in the JavaScript client (the gateway and
// the Python SDK run the same file in tests/protocol/test_filter_vectors.py).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { matches } from "../../../src/tidewire/dashboard/static/tidewire-client.js";

const VECTORS = JSON.parse(readFileSync(new URL("../../vectors/filters.json", import.meta.url), "utf8"));

/** `value` with every number written as a decimal string (a connection with decimals=string). */
function asDecimalStrings(value) {
  if (typeof value === "number") return String(value);
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, asDecimalStrings(item)]));
  }
  return value;
}

for (const vector of VECTORS.cases) {
  test(`filters: ${vector.name}`, () => {
    const message = { stream: vector.stream, ...vector.message };
    assert.equal(matches(vector.filters, message), vector.match);
    const strings = { ...message, data: asDecimalStrings(message.data) };
    assert.equal(matches(vector.filters, strings), vector.match, "with decimals=string");
  });
}
