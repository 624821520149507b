// Tidewire dashboard: boots the client, the data structures and the five panels.
//
// Data flow: WebSocket frames -> TidewireClient (routing, dedupe, recovery) -> plain stores
// (Store, Telemetry, the viewer's capture buffer) -> panels drawn by the Scheduler once per
// animation frame. Options come from the page URL: ?batch_ms=50 (batch frames, 0 for none),
// heartbeat_ms=2000, reconnect_ms=500 (backoff base), max_messages=2000 (viewer), ws=<url>.
// When the gateway needs tokens (`auth_required` of /api/config) the connection panel asks
// for one (lib/auth.js); nothing connects before.

import { STREAM_NAMES, TidewireClient } from "./tidewire-client.js";
import { AuthSession, apiFetch } from "./lib/auth.js";
import { h, setText } from "./lib/dom.js";
import { fmtInt, fmtMs } from "./lib/format.js";
import { RecoveryTracker } from "./lib/recovery.js";
import { RingBuffer } from "./lib/ring.js";
import { Scheduler, throttle } from "./lib/scheduler.js";
import { Store } from "./lib/store.js";
import { SubscriptionRegistry } from "./lib/subscriptions.js";
import { Telemetry } from "./lib/telemetry.js";
import { ConnectionPanel } from "./components/connection-panel.js";
import { ProtocolViewer } from "./components/protocol-viewer.js";
import { StatisticsPanel } from "./components/statistics-panel.js";
import { StreamingPanel } from "./components/streaming-panel.js";
import { SubscriptionPanel } from "./components/subscription-panel.js";

const params = new URLSearchParams(location.search);
const option = (name, fallback) => (params.has(name) ? Number(params.get(name)) : fallback);

async function loadConfig() {
  const response = await apiFetch("/api/config");
  if (!response.ok) throw new Error(`/api/config answered ${response.status}`);
  return response.json();
}

async function main() {
  const config = await loadConfig();
  const batchMs = option("batch_ms", 50);
  const client = new TidewireClient(params.get("ws") ?? config.ws_url, {
    // Batch frames: one frame (one parse, one event) per flush instead of one per message.
    batchMs: batchMs > 0 ? batchMs : null,
    heartbeatInterval: option("heartbeat_ms", 2000),
    // A desk screen wants its data back quickly; jitter still spreads the reconnections.
    reconnectInterval: option("reconnect_ms", 500),
    maxReconnectInterval: 10_000,
  });
  const store = new Store(STREAM_NAMES);
  const telemetry = new Telemetry(client);
  const subscriptions = new SubscriptionRegistry(client, store);
  const recovery = new RecoveryTracker(client);
  const scheduler = new Scheduler();
  const log = new RingBuffer(200);
  const note = (kind, text) => log.push({ time: Date.now(), kind, text });

  // The gateway's clock against this one, measured with `sync` on every connection.
  const clock = { offsetMs: null, rttMs: null, error: null };
  client.on("state", (previous, current) => {
    const code = current === "reconnecting" || current === "closed" ? ` (close ${client.closeCode ?? "–"})` : "";
    note("state", `${previous} → ${current}${code}`);
    if (current === "reconnecting" && previous === "connected") telemetry.countClose(client.closeCode ?? 1006);
    if (current === "connected") {
      client.sync().then(
        (result) => Object.assign(clock, result, { error: null }),
        (error) => {
          clock.error = error.message;
          note("error", `sync: ${error.message}`);
        },
      );
    }
  });
  client.on("resync", (subscription, info) => note("resync", `${subscription.subscriptionId} (${info.stream}): ${info.reason}${info.snapshot ? ", snapshot follows" : ""}`));
  client.on("error", (error) => note("error", error.message));

  // Connect, and (re)create the dashboard's subscription to each stream: they resume by
  // themselves after a reconnection, but a client closed (a refused or expired token)
  // ended them.
  const start = () => {
    client.connect().catch((error) => note("error", `connect: ${error.message}`));
    const missing = STREAM_NAMES.filter((stream) => !client.subscriptions.has(`dash-${stream}`));
    return Promise.allSettled(missing.map((stream) => subscriptions.create(stream, { subscriptionId: `dash-${stream}` })));
  };
  const auth = new AuthSession(client, { required: config.auth_required === true, start, note });

  const ctx = { client, config, auth, store, telemetry, subscriptions, recovery, scheduler, log, note, clock, batchMs, maxMessages: option("max_messages", 2000) };
  const panels = [
    new ConnectionPanel(ctx),
    new SubscriptionPanel(ctx),
    new ProtocolViewer(ctx),
    new StatisticsPanel(ctx),
    new StreamingPanel(ctx),
  ];
  mountPanels(panels, params.get("panel") ?? "connection");
  for (const panel of panels) scheduler.add(panel);
  scheduler.add(topBar(ctx));
  const authDue = throttle(2);
  scheduler.add({ visible: () => auth.required, draw: (now) => authDue(now) && auth.tick() });
  scheduler.start();
  // For tests and the curious: `window.tidewire.client` in the console.
  window.tidewire = ctx;

  setText(document.getElementById("server-version"), `v${config.server_version}`);
  note("info", `gateway ${client.url}, batch ${batchMs || "off"} ms${auth.required ? ", token required" : ""}`);
  await auth.begin();
}

function mountPanels(panels, initial) {
  const tabs = document.getElementById("panel-tabs");
  const main = document.getElementById("panels");
  main.replaceChildren();
  const select = (id) => {
    for (const panel of panels) {
      const active = panel.id === id;
      panel.el.classList.toggle("active", active);
      panel.tab.setAttribute("aria-selected", String(active));
      panel.active = active;
    }
    history.replaceState(null, "", `?${new URLSearchParams({ ...Object.fromEntries(new URLSearchParams(location.search)), panel: id })}`);
  };
  for (const panel of panels) {
    panel.tab = h("button", { role: "tab", "data-panel": panel.id, "data-testid": `tab-${panel.id}`, onclick: () => select(panel.id) }, panel.title);
    panel.el.classList.add("panel");
    panel.el.dataset.testid = `panel-${panel.id}`;
    tabs.append(panel.tab);
    main.append(panel.el);
  }
  select(panels.some((p) => p.id === initial) ? initial : panels[0].id);
}

/** The status strip at the top: state, latency, inbound rate, quality, UI frame rate, and
 * a word when the token needs attention (whichever panel is open). */
function topBar({ client, telemetry, scheduler, auth }) {
  const status = document.querySelector("[data-testid=status]");
  const latency = document.getElementById("top-latency");
  const rate = document.getElementById("top-rate");
  const quality = document.getElementById("top-quality");
  const fps = document.getElementById("top-fps");
  const clock = document.getElementById("clock");
  const authHint = document.getElementById("top-auth");
  const hints = { missing: "token needed", refused: "token refused", expired: "token expired", expiring: "token expiring" };
  const due = throttle(4);
  return {
    visible: () => true,
    draw(now) {
      if (status.dataset.state !== client.state) {
        status.dataset.state = client.state;
        setText(status, client.state);
      }
      if (!due(now)) return;
      const hint = hints[auth.phase] ?? "";
      authHint.hidden = hint === "";
      setText(authHint, hint);
      setText(latency, fmtMs(client.messageLatency));
      setText(rate, `${fmtInt(telemetry.rates.msgsIn)} msg/s`);
      setText(quality, String(telemetry.quality()));
      setText(fps, `${scheduler.fps.toFixed(0)} fps`);
      setText(clock, new Date().toLocaleTimeString());
    },
  };
}

main().catch((error) => {
  document.getElementById("panels").replaceChildren(h("p", { class: "error-text boot" }, `Dashboard failed to start: ${error.message}`));
  throw error;
});
