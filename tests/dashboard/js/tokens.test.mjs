// Tokens in the JavaScript client (`client/tokens.js` and the client's use of it), run with
// `node --test` by tests/dashboard/test_client_js.py. Timers and the clock are mocked where
// a refresh is due minutes later: the test moves time, nothing sleeps.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterEach, mock, test } from "node:test";

import {
  AuthenticationError,
  Backoff,
  ConnectionState,
  SubscriptionError,
  TOKEN_SUBPROTOCOL_PREFIX,
  TidewireClient,
  TokenError,
  redactToken,
  refreshDelay,
  refreshRetryDelay,
} from "../../../src/tidewire/dashboard/static/tidewire-client.js";
import { RefreshTimer } from "../../../src/tidewire/dashboard/static/client/tokens.js";
import { FakeWebSocket } from "./fake-websocket.mjs";

const VECTORS = JSON.parse(readFileSync(new URL("../../vectors/token_refresh.json", import.meta.url), "utf8"));
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
const NOW = Date.UTC(2026, 0, 2, 10, 0, 0);

/** Let promise callbacks run (setImmediate is not mocked: it follows the microtasks). */
const settle = () => new Promise((resolve) => setImmediate(resolve));
const iso = (ms) => new Date(ms).toISOString();

function newClient(options = {}) {
  FakeWebSocket.instances = [];
  return new TidewireClient("ws://gw.test/ws", {
    WebSocket: FakeWebSocket, heartbeatInterval: null, backoff: new Backoff(10, 100, { random: () => 0 }), ...options,
  });
}

/** A provider handing out token-1, token-2, ... and counting its calls. */
function counter() {
  const provider = () => `token-${++provider.calls}`;
  provider.calls = 0;
  return provider;
}

/** Connect and answer `connection_established` (with `extra` fields) on the socket opened. */
async function connected(client, extra = {}) {
  const done = client.connect();
  await settle(); // a provider answers asynchronously
  const ws = FakeWebSocket.last();
  ws.establish("c-1", extra);
  await done;
  return ws;
}

function useClock() {
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: NOW });
}

afterEach(() => mock.timers.reset());

test("refresh schedule: every case of tests/vectors/token_refresh.json", () => {
  assert.ok(VECTORS.cases.length >= 5);
  for (const { seconds_left: left, delay } of VECTORS.cases) {
    assert.ok(Math.abs(refreshDelay(left) - delay) < 1e-9, `seconds_left=${left}: ${refreshDelay(left)} != ${delay}`);
  }
  // Retries after a failure: soon, but never a tight loop.
  assert.ok(VECTORS.retries.length >= 3);
  for (const { seconds_left: left, delay } of VECTORS.retries) {
    assert.equal(refreshRetryDelay(left * 1000), delay * 1000, `retry at seconds_left=${left}`);
  }
});

test("a fixed token is offered as the tidewire.token entry beside the protocol entry", async () => {
  const ws = await connected(newClient({ token: JWT }));
  assert.deepEqual(ws.offered, ["tidewire.v3.json", `${TOKEN_SUBPROTOCOL_PREFIX}${JWT}`]);
  assert.equal(ws.protocol, "tidewire.v3.json");
  assert.doesNotMatch(ws.url, /token/); // never in the URL (proxy logs)
  const anonymous = await connected(newClient());
  assert.deepEqual(anonymous.offered, ["tidewire.v3.json"]);
});

test("a token that cannot be a subprotocol entry is refused without being quoted", () => {
  const secret = "not a jwt, with spaces";
  assert.throws(() => newClient({ token: secret }), (error) => error instanceof TypeError && !error.message.includes(secret));
  assert.throws(() => newClient({ token: "" }), TypeError);
});

test("a provider is asked before every connection attempt (plain or async)", async () => {
  const provider = counter();
  const client = newClient({ token: async () => provider() });
  const ws = await connected(client);
  assert.equal(ws.offeredToken, "token-1");
  ws.drop(1006);
  await new Promise((resolve) => setTimeout(resolve, 5)); // backoff of 0 ms
  await settle();
  const ws2 = FakeWebSocket.last();
  assert.notEqual(ws2, ws);
  assert.equal(ws2.offeredToken, "token-2");
  assert.equal(provider.calls, 2);
  client.close();
});

test("a failing provider is reported and retried, never thrown", async () => {
  let fail = true;
  const client = newClient({ token: () => (fail ? Promise.reject(new Error("auth server down")) : "fresh") });
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const done = client.connect();
  await settle();
  assert.equal(FakeWebSocket.instances.length, 0); // no socket without a token
  assert.equal(client.state, ConnectionState.RECONNECTING);
  assert.ok(errors[0] instanceof TokenError);
  assert.match(errors[0].message, /auth server down/);
  fail = false;
  await new Promise((resolve) => setTimeout(resolve, 5));
  await settle();
  FakeWebSocket.last().establish();
  await done;
  assert.equal(FakeWebSocket.last().offeredToken, "fresh");
  client.close();
});

test("refresh: scheduled from expires_at by the shared rule, sent with the provider's token, auth_ok handled", async () => {
  useClock();
  const provider = counter();
  const client = newClient({ token: provider });
  const seen = [];
  client.on("authenticated", (info) => seen.push(info));
  const ws = await connected(client, { user_id: "alice", expires_at: iso(NOW + 300_000) });
  assert.equal(client.userId, "alice");
  assert.equal(client.tokenExpiresAt, NOW + 300_000);
  assert.deepEqual(seen, [{ userId: "alice", expiresAt: NOW + 300_000 }]);
  assert.equal(provider.calls, 1);

  mock.timers.tick(refreshDelay(300) * 1000 - 1); // 240 s: one millisecond early
  await settle();
  assert.equal(ws.sentOfType("refresh").length, 0);
  mock.timers.tick(1);
  await settle();
  const [refresh] = ws.sentOfType("refresh");
  assert.equal(refresh.token, "token-2");
  assert.equal(typeof refresh.message_id, "string");
  assert.equal(provider.calls, 2);

  // The gateway's answer names the new expiry; the next refresh follows it.
  const renewed = Date.now() + 100_000;
  ws.receive({ type: "auth_ok", user_id: "alice", expires_at: iso(renewed), correlation_id: refresh.message_id });
  await settle();
  assert.equal(client.tokenExpiresAt, renewed);
  assert.equal(seen.length, 2);
  mock.timers.tick(refreshDelay(100) * 1000); // 80 s
  await settle();
  assert.equal(ws.sentOfType("refresh").length, 2);
  assert.equal(ws.sentOfType("refresh")[1].token, "token-3");
  assert.equal(client.state, ConnectionState.CONNECTED);
  client.close();
});

test("a refused refresh is reported and retried before expiry; the connection stays", async () => {
  useClock();
  const provider = counter();
  const client = newClient({ token: provider });
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const ws = await connected(client, { user_id: "alice", expires_at: iso(NOW + 10_000) });
  mock.timers.tick(refreshDelay(10) * 1000); // 8 s
  await settle();
  const [first] = ws.sentOfType("refresh");
  ws.receive({ type: "error", error_code: "forbidden", error_message: "a new token must be for the connection's own user", retryable: false, correlation_id: first.message_id });
  await settle();
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof TokenError);
  assert.equal(errors[0].errorCode, "forbidden");
  assert.equal(client.state, ConnectionState.CONNECTED);
  mock.timers.tick(refreshRetryDelay(2000)); // 1 s later: the next try
  await settle();
  assert.equal(ws.sentOfType("refresh").length, 2);
  client.close();
});

test("a provider handing back the same token is not asked again in a tight loop", async () => {
  useClock();
  const client = newClient({ token: () => JWT });
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const ws = await connected(client, { user_id: "alice", expires_at: iso(NOW + 3000) });
  mock.timers.tick(refreshDelay(3) * 1000); // 2 s
  await settle();
  const [refresh] = ws.sentOfType("refresh");
  ws.receive({ type: "auth_ok", user_id: "alice", expires_at: iso(NOW + 3000), correlation_id: refresh.message_id });
  await settle();
  mock.timers.tick(100);
  await settle();
  assert.equal(ws.sentOfType("refresh").length, 1);
  assert.match(errors[0]?.message ?? "", /expires no later/);
  mock.timers.tick(900); // the retry delay's floor (1 s)
  await settle();
  assert.equal(ws.sentOfType("refresh").length, 2);
  client.close();
});

test("a fixed token is never refreshed by itself; setToken sends one refresh", async () => {
  useClock();
  const client = newClient({ token: JWT });
  const ws = await connected(client, { user_id: "alice", expires_at: iso(NOW + 3000) });
  mock.timers.tick(10_000);
  await settle();
  assert.equal(ws.sentOfType("refresh").length, 0);
  const other = `${JWT}x`;
  const done = client.setToken(other);
  await settle();
  const [refresh] = ws.sentOfType("refresh");
  assert.equal(refresh.token, other);
  ws.receive({ type: "auth_ok", user_id: "alice", expires_at: iso(NOW + 60_000), correlation_id: refresh.message_id });
  assert.equal((await done)?.type, "auth_ok");
  assert.equal(client.tokenExpiresAt, NOW + 60_000);
  client.close();
});

test("the refresh timer waits longer than setTimeout can", () => {
  useClock();
  let runs = 0;
  const timer = new RefreshTimer(() => runs++);
  const days40 = 40 * 86_400_000; // beyond 2**31 - 1 ms, which setTimeout fires at once
  timer.arm(days40);
  mock.timers.tick(2 ** 31 - 1);
  assert.equal(runs, 0);
  mock.timers.tick(days40 - (2 ** 31 - 1));
  assert.equal(runs, 1);
  timer.arm(10);
  timer.cancel();
  mock.timers.tick(100);
  assert.equal(runs, 1);
});

test("4001 with a provider: reconnects with a fresh token, and gives up after the attempt limit", async () => {
  const provider = counter();
  const client = newClient({ token: provider, maxReconnectAttempts: 2 });
  const ws = await connected(client);
  ws.drop(4001, "token expired");
  assert.equal(client.state, ConnectionState.RECONNECTING);
  await new Promise((resolve) => setTimeout(resolve, 5));
  await settle();
  const ws2 = FakeWebSocket.last();
  assert.equal(ws2.offeredToken, "token-2");
  // Every later attempt is refused too: two attempts, then an AuthenticationError.
  ws2.drop(4001, "token revoked");
  for (let i = 0; i < 2 && client.state !== ConnectionState.CLOSED; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    await settle();
    FakeWebSocket.last().drop(4001, "token revoked");
  }
  assert.equal(client.state, ConnectionState.CLOSED);
  assert.ok(client.lastError instanceof AuthenticationError);
  assert.match(client.lastError.message, /gave up after 2 reconnection attempt\(s\): authentication failed \(4001\) token revoked/);
  assert.equal(provider.calls, 3); // the first connection and the two attempts allowed
});

test("4001 with a fixed token: AuthenticationError, no reconnection", async () => {
  const client = newClient({ token: JWT });
  const ws = await connected(client);
  ws.drop(4001, "token expired");
  assert.equal(client.state, ConnectionState.CLOSED);
  assert.ok(client.lastError instanceof AuthenticationError);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(FakeWebSocket.instances.length, 1);
  await assert.rejects(client.waitConnected(), AuthenticationError);
});

test("tokens are redacted in frame events and debug lines, and sent for real", async () => {
  useClock();
  const lines = [];
  const provider = () => `${JWT}.p${++provider.calls}`;
  provider.calls = 0;
  const client = newClient({ token: provider, debug: (line) => lines.push(line) });
  const frames = [];
  client.on("frame", (frame) => frames.push(frame));
  // A proxy dropped the token entry: the client presents it as `auth`.
  const ws = await connected(client, { auth_required: true, expires_at: iso(NOW + 10_000) });
  const [auth] = ws.sentOfType("auth");
  assert.equal(auth.token, `${JWT}.p1`);
  assert.equal(ws.sent[0].type, "auth"); // before anything else
  ws.receive({ type: "auth_ok", user_id: "alice", expires_at: iso(NOW + 10_000), correlation_id: auth.message_id });
  mock.timers.tick(8000);
  await settle();
  const [refresh] = ws.sentOfType("refresh");
  assert.equal(refresh.token, `${JWT}.p2`);

  const out = frames.filter((f) => f.direction === "out");
  const shown = out.filter((f) => f.message.type === "auth" || f.message.type === "refresh");
  assert.equal(shown.length, 2);
  for (const frame of shown) {
    assert.equal(frame.message.token, "***");
    assert.equal(JSON.parse(frame.text).token, "***");
    assert.ok(frame.size > frame.text.length); // the size is what went on the wire
  }
  const everything = JSON.stringify(frames) + lines.join("\n");
  assert.ok(!everything.includes(JWT), "a token reached a frame event or the debug log");
  assert.ok(lines.some((line) => line.startsWith("tidewire > ") && line.includes('"token":"***"')));
  assert.deepEqual(redactToken({ type: "ping" }), { type: "ping" });
  client.close();
});

test("a subscription the gateway ends (uncorrelated subscription_error) ends cleanly", async () => {
  const client = newClient({ token: counter() });
  const ws = await connected(client);
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const got = [];
  const pending = client.subscribe("order_updates", { onMessage: (m) => got.push(m) });
  const [command] = ws.sentOfType("subscribe");
  ws.receive({
    type: "subscription_confirmed", subscription_id: command.subscription_id, stream: "order_updates",
    filters: { portfolio_ids: ["PF-A"] }, position: { epoch: "e1", seq: 0 }, correlation_id: command.message_id,
  });
  const subscription = await pending;
  // A refreshed token no longer grants it: the gateway ends it without a correlation id.
  ws.receive({ type: "auth_ok", user_id: "alice" });
  ws.receive({
    type: "subscription_error", subscription_id: command.subscription_id, error_code: "forbidden",
    error_message: "the new token no longer grants subscription", retryable: false,
  });
  assert.equal(subscription.active, false);
  assert.equal(subscription.error?.errorCode, "forbidden");
  assert.equal(client.subscriptions.size, 0);
  assert.ok(errors[0] instanceof SubscriptionError);
  assert.equal(errors[0].subscriptionId, command.subscription_id);
  ws.receive({ type: "order_update", stream: "order_updates", key: "PF-A", seq: 1, epoch: "e1", portfolio_id: "PF-A", data: {} });
  assert.equal(got.length, 0); // no longer routed
  await subscription.unsubscribe(); // nothing to do, nothing sent
  assert.equal(ws.sentOfType("unsubscribe").length, 0);
  ws.drop(1006);
  await new Promise((resolve) => setTimeout(resolve, 5));
  await settle();
  FakeWebSocket.last().establish("c-2");
  assert.equal(FakeWebSocket.last().sentOfType("subscribe").length, 0); // not resubscribed
  client.close();
});

test("a provider answering after disconnect() opens nothing", async () => {
  let answer = () => {};
  const client = newClient({ token: () => new Promise((resolve) => (answer = resolve)) });
  client.connect().catch(() => {});
  await settle();
  client.disconnect();
  answer(JWT);
  await settle();
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(client.state, ConnectionState.DISCONNECTED);
});
