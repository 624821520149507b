// Unit tests of the JavaScript client, run with `node --test` by tests/dashboard/test_client_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Backoff,
  ConnectionState,
  DuplicateFilter,
  HeartbeatTracker,
  QueueFull,
  SubscriptionError,
  TidewireClient,
  compareDecimals,
  conflationKey,
  connectionUrl,
  STREAMS,
  isResync,
  matches,
  messageKey,
  messagePrice,
  reconnectRefusal,
  toDecimal,
  utf8Length,
} from "../../../src/tidewire/dashboard/static/tidewire-client.js";
import { FakeWebSocket, tick } from "./fake-websocket.mjs";

const EPOCH = "e1";
const quote = (symbol, seq, extra = {}) => ({
  type: "market_data", stream: "market_data", key: symbol, seq, epoch: EPOCH, symbol,
  data_type: "quote", data: { bid_price: 100, ask_price: 101 }, ...extra,
});
const order = (seq, epoch = EPOCH) => ({
  type: "order_update", stream: "order_updates", key: "PF-A", seq, epoch, portfolio_id: "PF-A",
  order_id: `O-${seq}`, symbol: "AAPL", order_status: "open",
  data: { side: "buy", quantity: 10, filled_quantity: 0, remaining_quantity: 10 },
});

function newClient(options = {}) {
  FakeWebSocket.instances = [];
  // random() = 0: every backoff delay is 0 ms, so reconnections happen on the next tick.
  return new TidewireClient("ws://gw.test/ws", {
    WebSocket: FakeWebSocket, heartbeatInterval: null, backoff: new Backoff(10, 100, { random: () => 0 }), ...options,
  });
}

async function connected(client) {
  const done = client.connect();
  FakeWebSocket.last().establish();
  await done;
  return FakeWebSocket.last();
}

function confirm(ws, command, extra = {}) {
  ws.receive({
    type: "subscription_confirmed", subscription_id: command.subscription_id, stream: command.stream,
    filters: command.filters ?? {}, position: { epoch: EPOCH, seq: 0 }, correlation_id: command.message_id, ...extra,
  });
}

test("backoff: full jitter under an exponential ceiling, throttled at least half", () => {
  let value = 1;
  const backoff = new Backoff(100, 1000, { random: () => value });
  assert.deepEqual([backoff.nextDelay(), backoff.nextDelay(), backoff.nextDelay(), backoff.nextDelay(), backoff.nextDelay()], [100, 200, 400, 800, 1000]);
  backoff.reset();
  value = 0;
  assert.equal(backoff.nextDelay(), 0);
  assert.equal(backoff.nextDelay(true), 400); // ceiling 100 * 4 * 2, at least half of it
});

test("close codes: reconnect after 1001/1006/4000/4008, never after 1000/4003, 4001 is authentication", () => {
  const options = { autoReconnect: true, attempts: 0, maxAttempts: null };
  for (const code of [1001, 1006, 1012, 4000, 4008, 4010, 4029]) assert.equal(reconnectRefusal(code, "", options), null, code);
  for (const code of [1000, 1008, 1009, 4003]) assert.ok(reconnectRefusal(code, "", options), code);
  assert.equal(reconnectRefusal(4001, "", options)?.name, "AuthenticationError");
  assert.ok(reconnectRefusal(1006, "", { ...options, maxAttempts: 2, attempts: 2 }));
  assert.ok(reconnectRefusal(1006, "", { ...options, autoReconnect: false }));
});

test("routing: the gateway's filter rules", () => {
  const m = quote("AAPL", 1, { venue: "XNAS", severity: "high" });
  assert.ok(matches({ symbols: ["AAPL", "MSFT"] }, m));
  assert.ok(!matches({ symbols: ["MSFT"] }, m));
  assert.ok(matches({ min_price: 100, max_price: 101 }, m)); // mid 100.5
  assert.ok(!matches({ min_price: 101 }, m));
  assert.ok(matches({ venue: "XNAS", severity: "medium" }, m));
  assert.ok(!matches({ severity: "critical" }, m));
  assert.ok(matches({ severity: "medium" }, { ...m, severity: "error" })); // alias of high
  assert.ok(!matches({ portfolio_ids: ["PF-A"] }, m)); // no such field: no match
  assert.ok(matches({ portfolio_ids: ["PF-A"] }, { ...m, data: { portfolio_id: "PF-A" } }));
  // Blank form fields are no filter, as on the gateway.
  assert.ok(matches({ portfolio_ids: [], symbols: [], venue: "", severity: "" }, m));
});

test("routing: the price is data.price, else data.last_trade_price, else the bid/ask mid", () => {
  const tick = (data) => ({ type: "market_data", stream: "market_data", key: "X", symbol: "X", data });
  /** The exact price of `m`, as a number for the assertion. */
  const price = (m) => {
    const d = messagePrice(m);
    return d === null ? null : Number(d.mantissa) * 10 ** d.exponent;
  };
  assert.equal(price(tick({ price: 7, last_trade_price: 9, bid_price: 1, ask_price: 3 })), 7);
  assert.equal(price(tick({ last_trade_price: 9, bid_price: 1, ask_price: 3 })), 9);
  assert.equal(price(tick({ bid_price: 1, ask_price: 3 })), 2);
  assert.equal(price(tick({ bid_price: "1.5", ask_price: "2.5" })), 2); // decimals=string
  assert.equal(price(tick({ bid: 1, ask: 3 })), null); // 0.1 names are gone
  assert.equal(price(tick({ bid_price: 1 })), null);
  assert.equal(price({ ...tick({ bid_price: 1, ask_price: 3 }), price: 50 }), 2); // only data
  // Exact: the mid of 1.1 and 1.3 is 1.2, not 1.2000000000000002.
  assert.equal(compareDecimals(messagePrice(tick({ bid_price: 1.1, ask_price: 1.3 })), toDecimal("1.2")), 0);
  assert.ok(matches({ min_price: 9, max_price: 9 }, tick({ last_trade_price: 9, last_trade_size: 100 })));
  assert.ok(!matches({ max_price: 1.9 }, tick({ bid_price: 1, ask_price: 3 })));
});

test("dedupe: per conflation unit on latest-value streams, per subscription on reliable ones", () => {
  const unit = new DuplicateFilter((m) => conflationKey("market_data", m));
  assert.ok(unit.accept(quote("AAPL", 5)));
  assert.ok(unit.accept(quote("MSFT", 3))); // another key may be older
  assert.ok(!unit.accept(quote("AAPL", 4))); // stale for its key
  assert.ok(unit.accept(quote("AAPL", 4, { data_type: "bar" }))); // a bar is its own unit
  const seq = new DuplicateFilter();
  seq.restart(EPOCH, 10);
  assert.ok(!seq.accept(order(10)));
  assert.ok(seq.accept(order(11)));
  assert.ok(!seq.accept(order(11)));
  assert.ok(seq.accept(order(1, "e2"))); // a new epoch starts afresh
});

test("conflation keys mirror the gateway's snapshot_key; keys fall back like the gateway's", () => {
  const US = "\u001f";
  assert.equal(conflationKey("market_data", quote("AAPL", 1)), `AAPL${US}quote`);
  assert.equal(conflationKey("market_data", { key: "AAPL", data: {} }), `AAPL${US}`);
  assert.equal(conflationKey("position_updates", { key: "PF", symbol: "AAPL" }), `PF${US}${US}AAPL`);
  assert.equal(conflationKey("position_updates", { key: "PF", strategy_id: "S1", data: { symbol: "AAPL" } }), `PF${US}S1${US}AAPL`);
  assert.equal(conflationKey("risk_metrics", { key: "PF", metric_type: "var_95", data: { value: 1 } }), `PF${US}var_95`);
  assert.equal(conflationKey("engine_status", { key: "E1", data_type: "quote" }), "E1"); // no snapshot fields
  assert.equal(conflationKey("events", { data: {} }), null);
  assert.equal(messageKey("trade_updates", { user_id: "u1", data: {} }), "u1");
  assert.equal(messageKey("trade_updates", { portfolio_id: "PF", user_id: "u1" }), "PF");
  assert.equal(messageKey("engine_status", { source: "sim", data: {} }), "sim");
  assert.equal(STREAMS.position_updates.keepsLastValues, true);
  assert.deepEqual(STREAMS.risk_metrics.snapshotFields, ["metric_type"]);
  assert.equal(STREAMS.order_updates.keyFallback, "user_id");
});

test("heartbeat round trip uses the monotonic clock of the send", () => {
  let wall = 1000;
  let mono = 50;
  const tracker = new HeartbeatTracker({ wallClock: () => wall, monotonic: () => mono });
  const a = tracker.start();
  const b = tracker.start();
  assert.equal(b.client_timestamp, a.client_timestamp + 1); // unique keys within one ms
  assert.equal(typeof a.client_timestamp, "number"); // epoch ms, echoed as a number
  wall += 5000; // the wall clock jumped
  mono += 7;
  assert.equal(tracker.finish(a.client_timestamp), 7);
});

test("connection options travel as query parameters; frame sizes are UTF-8 bytes", () => {
  assert.equal(connectionUrl("ws://h:1/ws?x=1", { batchMs: 50, decimalsAsStrings: true }), "ws://h:1/ws?x=1&batch_ms=50&decimals=string");
  assert.throws(() => connectionUrl("http://h/ws", {}));
  assert.equal(utf8Length("a€😀"), 1 + 3 + 4);
});

test("subscribe, batch frames unpacked, duplicates dropped, per-subscription routing", async () => {
  const client = newClient({ batchMs: 50 });
  const ws = await connected(client);
  assert.match(ws.url, /batch_ms=50/);
  assert.equal(ws.protocol, "tidewire.v3.json");
  const all = [];
  const apple = [];
  const p1 = client.subscribe("market_data", { onMessage: (m) => all.push(m) });
  const p2 = client.subscribe("quotes", { filters: { symbols: ["AAPL"] }, onMessage: (m) => apple.push(m) });
  const [s1, s2] = ws.sentOfType("subscribe");
  assert.equal(s2.stream, "market_data"); // alias resolved
  assert.deepEqual(s2.filters, { symbols: ["AAPL"] });
  confirm(ws, s1);
  confirm(ws, s2);
  await Promise.all([p1, p2]);
  ws.receive({ type: "batch", messages: [quote("AAPL", 1), quote("MSFT", 2), quote("AAPL", 1), quote("AAPL", 3)] });
  assert.deepEqual(all.map((m) => m.seq), [1, 2, 3]);
  assert.deepEqual(apple.map((m) => m.seq), [1, 3]);
  assert.equal(client.messagesReceived, 1 + 2 + 4);
  const [sub] = client.subscriptions.values();
  assert.deepEqual(sub.position, { epoch: EPOCH, seq: 3 });
  assert.equal(sub.duplicates, 1);
});

test("reconnect after 1001: resubscribe with since, resync marker before the snapshot", async () => {
  const client = newClient();
  const states = [];
  client.on("state", (_previous, current) => states.push(current));
  const ws = await connected(client);
  const got = [];
  const resyncs = [];
  const pending = client.subscribe("order_updates", { onMessage: (m) => got.push(m), onResync: (_s, info) => resyncs.push(info) });
  const [command] = ws.sentOfType("subscribe");
  confirm(ws, command);
  await pending;
  ws.receive(order(1));
  ws.receive(order(2));
  client.sendMessage({ type: "list_subscriptions", message_id: "while-connected" });
  ws.drop(1001, "server going away");
  assert.equal(client.state, ConnectionState.RECONNECTING);
  client.sendMessage({ type: "list_subscriptions", message_id: "queued" }); // waits for the next connection
  assert.equal(client.queuedMessages, 1);
  await tick(5);
  const ws2 = FakeWebSocket.last();
  assert.notEqual(ws2, ws);
  ws2.establish("c-2");
  assert.equal(client.state, ConnectionState.CONNECTED);
  // Resubscription first, with `since`, then the queued command.
  assert.deepEqual(ws2.sent.map((m) => m.type), ["subscribe", "list_subscriptions"]);
  const [again] = ws2.sentOfType("subscribe");
  assert.deepEqual(again.since, { epoch: EPOCH, seq: 2 });
  assert.equal(again.subscription_id, command.subscription_id);
  // The gateway restarted: new epoch, history lost.
  ws2.receive({
    type: "subscription_confirmed", subscription_id: again.subscription_id, stream: "order_updates", filters: {},
    position: { epoch: "e2", seq: 0 }, recovered: false, correlation_id: again.message_id,
  });
  ws2.receive(order(1, "e2"));
  assert.deepEqual(got.map((m) => (isResync(m) ? "resync" : m.seq)), [1, 2, "resync", 1]);
  assert.equal(resyncs.length, 1);
  assert.equal(resyncs[0].reason, "not_recovered");
  assert.deepEqual(resyncs[0].position, { epoch: EPOCH, seq: 2 });
  assert.equal(resyncs[0].loss, true);
  assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connected"]);
  assert.equal(client.closeCode, 1001);
});

test("a recovered replay resumes after since, without a marker", async () => {
  const client = newClient();
  const ws = await connected(client);
  const got = [];
  const pending = client.subscribe("order_updates", { onMessage: (m) => got.push(m) });
  confirm(ws, ws.sentOfType("subscribe")[0]);
  await pending;
  ws.receive(order(1));
  ws.drop(1012);
  await tick(5);
  const ws2 = FakeWebSocket.last();
  ws2.establish();
  const again = ws2.sentOfType("subscribe")[0];
  ws2.receive({
    type: "subscription_confirmed", subscription_id: again.subscription_id, stream: "order_updates", filters: {},
    position: { epoch: EPOCH, seq: 3 }, recovered: true, correlation_id: again.message_id,
  });
  for (const seq of [1, 2, 3, 4]) ws2.receive(order(seq));
  assert.deepEqual(got.map((m) => m.seq), [1, 2, 3, 4]);
});

test("commands wait for the connection, in order, in a bounded queue", async () => {
  const client = newClient({ messageQueueSize: 2 });
  client.sendMessage({ type: "list_subscriptions", message_id: "a" });
  client.sendMessage({ type: "list_subscriptions", message_id: "b" });
  assert.throws(() => client.sendMessage({ type: "list_subscriptions" }), QueueFull);
  const ws = await connected(client);
  assert.deepEqual(ws.sent.map((m) => m.message_id), ["a", "b"]);
});

test("no reconnection after 1000; authentication failure closes with the reason", async () => {
  const client = newClient();
  const ws = await connected(client);
  ws.drop(1000, "normal closure");
  assert.equal(client.state, ConnectionState.CLOSED);
  assert.equal(client.lastError?.code, 1000);
  const other = newClient();
  const ws2 = await connected(other);
  ws2.drop(4001, "token expired");
  assert.equal(other.lastError?.name, "AuthenticationError");
});

test("an operator's close (4000) reconnects, unlike the application's own 1000", async () => {
  const client = newClient();
  const ws = await connected(client);
  ws.drop(4000, "closed by operator");
  assert.equal(client.state, ConnectionState.RECONNECTING);
  await tick(5);
  const ws2 = FakeWebSocket.last();
  assert.notEqual(ws2, ws);
  ws2.establish();
  await tick(5);
  assert.equal(client.state, ConnectionState.CONNECTED);
});

test("auto-reconnect off: a lost connection closes the client", async () => {
  const client = newClient({ autoReconnect: false });
  const ws = await connected(client);
  ws.drop(1006);
  assert.equal(client.state, ConnectionState.CLOSED);
});

test("heartbeats measure the latency and a silent connection is replaced", async () => {
  const client = newClient({ heartbeatInterval: 20, heartbeatTimeout: 30 });
  const ws = await connected(client);
  const [heartbeat] = ws.sentOfType("heartbeat"); // sent at once on connect
  ws.receive({ type: "heartbeat_response", client_timestamp: heartbeat.client_timestamp, server_timestamp: "t", positions: {} });
  assert.equal(typeof client.messageLatency, "number");
  await tick(80); // nothing received for longer than the timeout
  assert.notEqual(FakeWebSocket.last(), ws);
  client.close();
});

test("bulk unsubscribe is one command; rate limits are refused on reliable streams", async () => {
  const client = newClient();
  const ws = await connected(client);
  const subs = ["market_data", "order_updates", "events"].map((stream) => client.subscribe(stream));
  for (const command of ws.sentOfType("subscribe")) confirm(ws, command);
  const [a, b, c] = await Promise.all(subs);
  await assert.rejects(client.setRateLimit(b.subscriptionId, 5), (e) => e instanceof SubscriptionError && e.errorCode === "invalid_rate_limit");
  const done = client.unsubscribe([a.subscriptionId, c.subscriptionId]);
  const [command] = ws.sentOfType("unsubscribe");
  assert.deepEqual(command.subscription_ids, [a.subscriptionId, c.subscriptionId]);
  ws.receive({ type: "unsubscription_confirmed", subscription_ids: command.subscription_ids, correlation_id: command.message_id });
  await done;
  assert.deepEqual([...client.subscriptions.keys()], [b.subscriptionId]);
  assert.equal(a.active, false);
});

test("setRateLimit is an update_subscription of the same subscription", async () => {
  const client = newClient();
  const ws = await connected(client);
  const pending = client.subscribe("market_data");
  confirm(ws, ws.sentOfType("subscribe")[0]);
  const sub = await pending;
  ws.receive(quote("AAPL", 7));
  const changed = client.setRateLimit(sub.subscriptionId, 2);
  const [update] = ws.sentOfType("update_subscription");
  assert.deepEqual({ ...update, message_id: undefined }, {
    type: "update_subscription", subscription_id: sub.subscriptionId, rate_limit: 2, message_id: undefined,
  });
  assert.equal(ws.sentOfType("unsubscribe").length, 0);
  ws.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "market_data", topic: "market_data",
    filters: {}, position: { epoch: EPOCH, seq: 7 }, rate_limit: 2, updated: true, correlation_id: update.message_id,
  });
  assert.equal(await changed, sub);
  assert.equal(sub.rateLimit, 2);
  assert.equal(sub.confirmations, 1); // an update, not a resubscription
  client.setRateLimit(sub.subscriptionId, null).catch(() => {});
  assert.equal(ws.sentOfType("update_subscription")[1].rate_limit, 0); // 0 removes the limit
  client.close();
});

test("disconnect keeps subscriptions; connect resumes them", async () => {
  const client = newClient();
  const ws = await connected(client);
  const pending = client.subscribe("market_data");
  confirm(ws, ws.sentOfType("subscribe")[0]);
  await pending;
  ws.receive(quote("AAPL", 4));
  client.disconnect();
  assert.equal(client.state, ConnectionState.DISCONNECTED);
  assert.equal(ws.closedWith.code, 1000);
  const ws2 = await connected(client);
  assert.deepEqual(ws2.sentOfType("subscribe")[0].since, { epoch: EPOCH, seq: 4 });
});
