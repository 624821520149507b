// Unit tests of the client's newer commands (update_subscription, get_snapshot,
// get_trade_history, sync) and of topics, against the scripted FakeWebSocket.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Backoff,
  ConnectionClosedError,
  SubscriptionError,
  TidewireClient,
  isResync,
} from "../../../src/tidewire/dashboard/static/tidewire-client.js";
import { FakeWebSocket, tick } from "./fake-websocket.mjs";

const EPOCH = "e1";
const quote = (symbol, seq) => ({
  type: "market_data", stream: "market_data", key: symbol, seq, epoch: EPOCH, symbol,
  data_type: "quote", data: { bid_price: 100, ask_price: 101, timestamp: "t" },
});
const position = (symbol, seq) => ({
  type: "position_update", stream: "position_updates", key: "PF-A", seq, epoch: EPOCH,
  portfolio_id: "PF-A", symbol, position_side: "long",
  data: { quantity: seq, avg_price: 10, unrealized_pnl: 0, timestamp: "t" },
});

function newClient(options = {}) {
  FakeWebSocket.instances = [];
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

/** Subscribe and confirm at `seq`; returns the subscription. */
async function subscribed(client, ws, stream, options = {}, seq = 0) {
  const pending = client.subscribe(stream, options);
  const command = ws.sentOfType("subscribe").at(-1);
  ws.receive({
    type: "subscription_confirmed", subscription_id: command.subscription_id, stream: command.stream.split(".")[0],
    topic: command.stream, filters: command.filters ?? {}, position: { epoch: EPOCH, seq }, correlation_id: command.message_id,
  });
  return pending;
}

/** The gateway's confirmation of the last update_subscription. */
function confirmUpdate(ws, { filters, seq, rate_limit } = {}) {
  const update = ws.sentOfType("update_subscription").at(-1);
  ws.receive({
    type: "subscription_confirmed", subscription_id: update.subscription_id, stream: "position_updates",
    topic: "position_updates", filters: filters ?? update.filters ?? {}, position: { epoch: EPOCH, seq },
    updated: true, correlation_id: update.message_id, ...(rate_limit === undefined ? {} : { rate_limit }),
  });
}

test("updateSubscription switches filters between two messages, the new keys' latest values follow", async () => {
  const client = newClient();
  const ws = await connected(client);
  const got = [];
  const updates = [];
  client.on("updated", (subscription) => updates.push(subscription.subscriptionId));
  const sub = await subscribed(client, ws, "position_updates", { filters: { symbols: ["AAPL"] }, onMessage: (m) => got.push(m) });
  ws.receive(position("AAPL", 5));
  ws.receive(position("MSFT", 6)); // not this subscription's: routed elsewhere
  ws.receive(position("AAPL", 8));
  const done = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL", "MSFT"], portfolio_ids: [] } });
  const [update] = ws.sentOfType("update_subscription");
  assert.deepEqual(update.filters, { symbols: ["AAPL", "MSFT"] }); // blank lists left out
  assert.equal("rate_limit" in update, false); // absent: kept
  confirmUpdate(ws, { seq: 8 });
  assert.equal(await done, sub);
  assert.deepEqual(sub.filters, { symbols: ["AAPL", "MSFT"] });
  assert.deepEqual(updates, [sub.subscriptionId]);
  // The newest MSFT position (older than what was delivered), a stale AAPL, then live.
  ws.receive(position("MSFT", 6));
  ws.receive(position("AAPL", 5));
  ws.receive(position("MSFT", 9));
  ws.receive(position("AAPL", 8)); // a duplicate
  ws.receive(position("AAPL", 10));
  assert.deepEqual(got.map((m) => `${m.symbol}:${m.seq}`), ["AAPL:5", "AAPL:8", "MSFT:6", "MSFT:9", "AAPL:10"]);
  assert.ok(!got.some(isResync));
  assert.equal(sub.confirmations, 1);
  assert.equal(sub.updates, 1);
  assert.deepEqual(sub.position, { epoch: EPOCH, seq: 10 });
  // After the catch-up, one sequence again: an old MSFT is stale now.
  ws.receive(position("MSFT", 7));
  assert.equal(got.length, 5);
});

test("a refused update leaves the subscription as it was", async () => {
  const client = newClient();
  const ws = await connected(client);
  const sub = await subscribed(client, ws, "market_data", { filters: { symbols: ["AAPL"] } });
  const done = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL"], severity: "high" } });
  const [update] = ws.sentOfType("update_subscription");
  ws.receive({
    type: "subscription_error", subscription_id: sub.subscriptionId, error_code: "invalid_filter",
    error_message: "stream market_data does not support filter(s) severity", retryable: false, correlation_id: update.message_id,
  });
  await assert.rejects(done, (e) => e instanceof SubscriptionError && e.errorCode === "invalid_filter");
  assert.equal(sub.active, true);
  assert.deepEqual(sub.filters, { symbols: ["AAPL"] });
  // Reliable streams refuse rate limits before anything is sent.
  const orders = await subscribed(client, ws, "order_updates");
  await assert.rejects(client.updateSubscription(orders.subscriptionId, { rateLimit: 3 }), (e) => e.errorCode === "invalid_rate_limit");
  await assert.rejects(client.updateSubscription(orders.subscriptionId, {}), TypeError);
  assert.equal(ws.sentOfType("update_subscription").length, 1);
});

test("an update while disconnected waits behind the resubscription, which keeps the confirmed filters", async () => {
  const client = newClient();
  const ws = await connected(client);
  const sub = await subscribed(client, ws, "market_data", { filters: { symbols: ["AAPL"] }, rateLimit: 5 }, 3);
  ws.drop(1012);
  let settled = false;
  const done = client.updateSubscription(sub.subscriptionId, { filters: null, rateLimit: 0 });
  done.then(() => (settled = true), () => (settled = true));
  await tick();
  assert.equal(settled, false); // nothing confirmed it yet
  assert.deepEqual(sub.filters, { symbols: ["AAPL"] });
  assert.equal(sub.rateLimit, 5);
  await tick(5);
  const ws2 = FakeWebSocket.last();
  assert.notEqual(ws2, ws);
  ws2.establish();
  // The resubscription with the filters confirmed so far, then the update.
  assert.deepEqual(ws2.sent.map((m) => m.type), ["subscribe", "update_subscription"]);
  const [again, update] = ws2.sent;
  assert.deepEqual(again.filters, { symbols: ["AAPL"] });
  assert.equal(again.rate_limit, 5);
  assert.deepEqual(again.since, { epoch: EPOCH, seq: 3 });
  assert.deepEqual(update.filters, {});
  assert.equal(update.rate_limit, 0);
  ws2.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "market_data", topic: "market_data",
    filters: { symbols: ["AAPL"] }, rate_limit: 5, position: { epoch: EPOCH, seq: 3 }, recovered: true, correlation_id: again.message_id,
  });
  await tick();
  assert.equal(settled, false); // the resubscription's confirmation is not the update's
  assert.deepEqual(sub.filters, { symbols: ["AAPL"] });
  ws2.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "market_data", topic: "market_data",
    filters: {}, rate_limit: 0, position: { epoch: EPOCH, seq: 3 }, updated: true, correlation_id: update.message_id,
  });
  assert.equal(await done, sub);
  assert.deepEqual(sub.filters, {});
  assert.equal(sub.rateLimit, null);
  client.close();
});

test("an update refused after the reconnection rejects and leaves the subscription as it was", async () => {
  const client = newClient();
  const ws = await connected(client);
  const sub = await subscribed(client, ws, "market_data", { filters: { symbols: ["AAPL"] } }, 3);
  ws.drop(1012);
  const done = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL"], severity: "high" } });
  const refused = assert.rejects(done, (e) => e instanceof SubscriptionError && e.errorCode === "invalid_filter");
  await tick(5);
  const ws2 = FakeWebSocket.last();
  ws2.establish();
  const [again, update] = ws2.sent;
  assert.deepEqual(again.filters, { symbols: ["AAPL"] }); // not the refused ones
  ws2.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "market_data", topic: "market_data",
    filters: { symbols: ["AAPL"] }, position: { epoch: EPOCH, seq: 3 }, recovered: true, correlation_id: again.message_id,
  });
  ws2.receive({
    type: "subscription_error", subscription_id: sub.subscriptionId, error_code: "invalid_filter",
    error_message: "stream market_data does not support filter(s) severity", retryable: false, correlation_id: update.message_id,
  });
  await refused;
  assert.equal(sub.active, true);
  assert.equal(sub.confirmed, true);
  assert.deepEqual(sub.filters, { symbols: ["AAPL"] });
  // The next reconnection resubscribes with those filters too.
  ws2.drop(1012);
  await tick(5);
  const ws3 = FakeWebSocket.last();
  ws3.establish();
  assert.deepEqual(ws3.sentOfType("subscribe")[0].filters, { symbols: ["AAPL"] });
  assert.equal(ws3.sentOfType("update_subscription").length, 0);
  client.close();
});

test("a widening update while disconnected on position_updates: the new keys' current values follow", async () => {
  const client = newClient();
  const ws = await connected(client);
  const got = [];
  const sub = await subscribed(client, ws, "position_updates", { filters: { symbols: ["AAPL"] }, onMessage: (m) => got.push(`${m.symbol}:${m.seq}`) });
  ws.receive(position("AAPL", 5));
  ws.drop(1012);
  const done = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL", "MSFT"] } });
  await tick(5);
  const ws2 = FakeWebSocket.last();
  ws2.establish();
  const [again, update] = ws2.sent;
  assert.deepEqual(again.filters, { symbols: ["AAPL"] });
  assert.deepEqual(again.since, { epoch: EPOCH, seq: 5 });
  ws2.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "position_updates", topic: "position_updates",
    filters: { symbols: ["AAPL"] }, position: { epoch: EPOCH, seq: 9 }, recovered: true, correlation_id: again.message_id,
  });
  ws2.receive(position("AAPL", 8)); // the replay of what came after since
  confirmUpdate(ws2, { seq: 9 });
  await done;
  ws2.receive(position("MSFT", 4)); // MSFT's current value, older than since: delivered
  ws2.receive(position("MSFT", 9));
  assert.deepEqual(got, ["AAPL:5", "AAPL:8", "MSFT:4", "MSFT:9"]);
  assert.deepEqual(sub.filters, { symbols: ["AAPL", "MSFT"] });
  client.close();
});

test("a topic subscribes by its name, routes by its key, and keeps the gateway's topic", async () => {
  const client = newClient();
  const ws = await connected(client);
  const got = [];
  const sub = await subscribed(client, ws, "market_data.AAPL", { onMessage: (m) => got.push(m.symbol) });
  const [command] = ws.sentOfType("subscribe");
  assert.equal(command.stream, "market_data.AAPL");
  assert.deepEqual(command.filters, { symbols: ["AAPL"] });
  assert.equal(sub.stream, "market_data");
  assert.equal(sub.topic, "market_data.AAPL");
  assert.equal(sub.reliable, false);
  ws.receive(quote("MSFT", 1));
  ws.receive(quote("AAPL", 2));
  assert.deepEqual(got, ["AAPL"]);
});

test("getSnapshot and getTradeHistory: correlated requests whose messages reach no subscription", async () => {
  const client = newClient();
  const ws = await connected(client);
  const delivered = [];
  await subscribed(client, ws, "market_data", { onMessage: (m) => delivered.push(m) });
  const snapshot = client.getSnapshot("quotes", { symbols: ["AAPL"], venue: "" }, { limit: 5 });
  const [get] = ws.sentOfType("get_snapshot");
  assert.deepEqual({ ...get, message_id: undefined }, {
    type: "get_snapshot", stream: "market_data", filters: { symbols: ["AAPL"] }, limit: 5, message_id: undefined,
  });
  ws.receive({
    type: "snapshot", stream: "market_data", topic: "market_data", position: { epoch: EPOCH, seq: 3 },
    messages: [quote("AAPL", 3)], truncated: true, correlation_id: get.message_id,
  });
  const result = await snapshot;
  assert.deepEqual(result.position, { epoch: EPOCH, seq: 3 });
  assert.deepEqual(result.messages.map((m) => m.seq), [3]);
  assert.equal(result.truncated, true);
  assert.equal(result.topic, "market_data");
  assert.deepEqual(delivered, []);
  await assert.rejects(client.getSnapshot("market_data", null, { limit: 0 }), RangeError);

  const history = client.getTradeHistory({ symbols: ["AAPL"] }, { limit: 2 });
  const [ask] = ws.sentOfType("get_trade_history");
  assert.deepEqual(ask.filters, { symbols: ["AAPL"] });
  assert.equal(ask.limit, 2);
  const trade = { type: "trade_updates", stream: "trade_updates", key: "u1", seq: 4, epoch: EPOCH, user_id: "u1", data: { trade_id: "T1" } };
  ws.receive({ type: "trade_history", position: { epoch: EPOCH, seq: 4 }, trades: [trade], correlation_id: ask.message_id });
  const trades = await history;
  assert.deepEqual(trades.trades.map((t) => t.data.trade_id), ["T1"]);
  assert.deepEqual(trades.position, { epoch: EPOCH, seq: 4 });
});

test("sync: offset from server_time at the middle of the round trip", async () => {
  const client = newClient();
  await assert.rejects(client.sync(), ConnectionClosedError); // not connected: no queued sync
  const ws = await connected(client);
  const before = Date.now();
  const pending = client.sync();
  const [command] = ws.sentOfType("sync");
  assert.equal(typeof command.client_timestamp, "number");
  assert.ok(command.client_timestamp >= before);
  const ahead = 60_000;
  ws.receive({
    type: "sync_response", client_timestamp: command.client_timestamp, server_timestamp: "t",
    server_time: command.client_timestamp + ahead, correlation_id: command.message_id,
  });
  const { offsetMs, rttMs } = await pending;
  assert.ok(rttMs >= 0);
  // Epoch milliseconds near 1.7e12 keep about a microsecond of precision.
  assert.ok(Math.abs(offsetMs - (ahead - rttMs / 2)) < 0.01, `${offsetMs} ${rttMs}`);
});

test("a latest-value update: new keys' latest values once each, old keys judged as before", async () => {
  const client = newClient();
  const ws = await connected(client);
  const got = [];
  const sub = await subscribed(client, ws, "market_data", { filters: { symbols: ["AAPL"] }, onMessage: (m) => got.push(`${m.symbol}:${m.seq}`) });
  ws.receive(quote("AAPL", 4));
  const done = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL", "MSFT"] } });
  const update = ws.sentOfType("update_subscription").at(-1);
  ws.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "market_data", topic: "market_data",
    filters: { symbols: ["AAPL", "MSFT"] }, position: { epoch: EPOCH, seq: 6 }, updated: true, correlation_id: update.message_id,
  });
  await done;
  for (const m of [quote("MSFT", 3), quote("MSFT", 3), quote("AAPL", 2), quote("MSFT", 7), quote("AAPL", 8)]) ws.receive(m);
  assert.deepEqual(got, ["AAPL:4", "MSFT:3", "MSFT:7", "AAPL:8"]);
  // The same filters again open no window.
  const again = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL", "MSFT"] } });
  const second = ws.sentOfType("update_subscription").at(-1);
  ws.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "market_data", topic: "market_data",
    filters: { symbols: ["AAPL", "MSFT"] }, position: { epoch: EPOCH, seq: 8 }, updated: true, correlation_id: second.message_id,
  });
  await again;
  assert.equal(sub.updates, 2);
});

test("an update the gateway answers unavailable (still starting) is tried again", async () => {
  const client = newClient();
  const ws = await connected(client);
  const sub = await subscribed(client, ws, "market_data");
  const done = client.updateSubscription(sub.subscriptionId, { rateLimit: 4 });
  const first = ws.sentOfType("update_subscription")[0];
  ws.receive({
    type: "error", error_code: "unavailable", error_message: "still starting; retry", retryable: true, correlation_id: first.message_id,
  });
  for (let i = 0; i < 50 && ws.sentOfType("update_subscription").length < 2; i++) await tick(10);
  const second = ws.sentOfType("update_subscription")[1];
  assert.ok(second, "no second attempt");
  assert.notEqual(second.message_id, first.message_id);
  ws.receive({
    type: "subscription_confirmed", subscription_id: sub.subscriptionId, stream: "market_data", topic: "market_data",
    filters: {}, position: { epoch: EPOCH, seq: 0 }, rate_limit: 4, updated: true, correlation_id: second.message_id,
  });
  await done;
  assert.equal(sub.rateLimit, 4);
});

test("two updates: a newly covered key's value admitted at the first is not delivered again after the second", async () => {
  const client = newClient();
  const ws = await connected(client);
  const got = [];
  const sub = await subscribed(client, ws, "position_updates", { filters: { symbols: ["AAPL"] }, onMessage: (m) => got.push(`${m.symbol}:${m.seq}`) });
  ws.receive(position("AAPL", 5));
  const first = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL", "MSFT"] } });
  confirmUpdate(ws, { seq: 8 });
  await first;
  ws.receive(position("MSFT", 6)); // the newest MSFT value, admitted once
  const second = client.updateSubscription(sub.subscriptionId, { filters: { symbols: ["AAPL", "MSFT", "IBM"] } });
  confirmUpdate(ws, { seq: 8 });
  await second;
  ws.receive(position("IBM", 7)); // the newest IBM value
  ws.receive(position("MSFT", 6)); // another subscription's snapshot replays it
  ws.receive(position("IBM", 7));
  ws.receive(position("MSFT", 9));
  assert.deepEqual(got, ["AAPL:5", "MSFT:6", "IBM:7", "MSFT:9"]);
});

test("queries go one at a time, in order; the wait counts against each one's timeout", async () => {
  const client = newClient();
  const ws = await connected(client);
  const first = client.getSnapshot("market_data");
  const second = client.getTradeHistory();
  const third = client.getSnapshot("position_updates", null, { timeout: 30 });
  const thirdGaveUp = assert.rejects(third, (e) => e.name === "RequestTimeout" && /after 30 ms/.test(e.message));
  const fourth = client.getSnapshot("market_data.MSFT");
  await tick();
  const queries = () => ws.sent.filter((m) => m.type === "get_snapshot" || m.type === "get_trade_history");
  assert.deepEqual(queries().map((m) => m.type), ["get_snapshot"]); // one in flight
  const answer = (m) => (m.type === "get_snapshot"
    ? { type: "snapshot", stream: m.stream, topic: m.stream, position: { epoch: EPOCH, seq: 1 }, messages: [], truncated: false, correlation_id: m.message_id }
    : { type: "trade_history", position: { epoch: EPOCH, seq: 1 }, trades: [], correlation_id: m.message_id });
  await tick(50); // the third gives up its place meanwhile
  await thirdGaveUp;
  ws.receive(answer(queries()[0]));
  assert.equal((await first).stream, "market_data");
  await tick();
  assert.deepEqual(queries().map((m) => m.type), ["get_snapshot", "get_trade_history"]);
  ws.receive(answer(queries()[1]));
  assert.deepEqual((await second).trades, []);
  await tick();
  assert.deepEqual(queries().map((m) => m.stream ?? m.type), ["market_data", "get_trade_history", "market_data.MSFT"]);
  ws.receive(answer(queries()[2]));
  assert.equal((await fourth).topic, "market_data.MSFT");
  client.close();
});
