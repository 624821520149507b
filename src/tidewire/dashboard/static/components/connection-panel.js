// 1. Connection manager: live status, connect / disconnect / reconnect, auto-reconnect,
// reconnect attempts, latency, uptime, and what the last reconnection recovered; when the
// gateway needs tokens, the token field and what the gateway made of the token.

import { esc, h, setHtml, setText, tile } from "../lib/dom.js";
import { fmtDuration, fmtInt, fmtMs, fmtTime } from "../lib/format.js";
import { throttle } from "../lib/scheduler.js";

export class ConnectionPanel {
  constructor({ client, telemetry, recovery, log, auth, clock }) {
    this.id = "connection";
    this.title = "Connection";
    this.client = client;
    this.telemetry = telemetry;
    this.recovery = recovery;
    this.log = log;
    this.auth = auth;
    this.clock = clock;
    this.active = false;
    this._due = throttle(5);
    this._logSize = -1;

    const [stateTile, state] = tile("State", "conn-state", "big");
    const [latencyTile, latency] = tile("Latency (heartbeat RTT)", "conn-latency", "big");
    const [uptimeTile, uptime] = tile("Connection uptime", "conn-uptime", "big");
    const [attemptsTile, attempts] = tile("Reconnect attempts", "conn-attempts", "big");
    const [urlTile, url] = tile("Gateway", "conn-url");
    const [idTile, id] = tile("Connection id", "conn-id");
    const [versionTile, version] = tile("Server version", "conn-version");
    const [closeTile, close] = tile("Last close code", "conn-close");
    const [nextTile, next] = tile("Next attempt in", "conn-next");
    const [queuedTile, queued] = tile("Queued commands", "conn-queued");
    const [receivedTile, received] = tile("Messages received", "conn-received");
    const [sessionTile, session] = tile("Page uptime", "conn-session");
    const [subsTile, subs] = tile("Subscriptions", "conn-subs");
    const [limitsTile, limits] = tile("Server limits", "conn-limits");
    const [clockTile, clockValue] = tile("Gateway clock offset (sync)", "conn-clock");
    const [userTile, user] = tile("User (token)", "conn-user");
    const [expiresTile, expires] = tile("Token expires", "conn-expires");
    this.v = { state, latency, uptime, attempts, url, id, version, close, next, queued, received, session, subs, limits, clock: clockValue, user, expires };
    const authTiles = auth.required ? [userTile, expiresTile] : [];

    this.autoReconnect = h("input", { type: "checkbox", checked: client.autoReconnect, "data-testid": "auto-reconnect", onchange: (e) => (client.autoReconnect = e.target.checked) });
    this.connectBtn = h("button", { class: "btn primary", "data-testid": "btn-connect", onclick: () => auth.connect() }, "Connect");
    this.disconnectBtn = h("button", { class: "btn danger", "data-testid": "btn-disconnect", onclick: () => client.disconnect() }, "Disconnect");
    this.reconnectBtn = h("button", { class: "btn", "data-testid": "btn-reconnect", onclick: () => client.reconnect() }, "Reconnect now");
    this.recoveryText = h("div", { class: "kv-value wrap", "data-testid": "recovery", "data-phase": "idle" }, "–");
    this.logBox = h("div", { class: "log", "data-testid": "conn-log" });

    this.authCard = auth.required ? this._authCard() : null;

    this.el = h(
      "section",
      {},
      this.authCard,
      h("div", { class: "card" },
        h("h3", {}, "Connection manager"),
        h("div", { class: "toolbar" }, this.connectBtn, this.disconnectBtn, this.reconnectBtn,
          h("label", { class: "check" }, this.autoReconnect, "auto-reconnect (exponential backoff with jitter)")),
        h("div", { class: "kvs" }, stateTile, latencyTile, uptimeTile, attemptsTile)),
      h("div", { class: "row" },
        h("div", { class: "card grow" }, h("h3", {}, "Details"),
          h("div", { class: "kvs" }, urlTile, idTile, versionTile, closeTile, nextTile, queuedTile, receivedTile, subsTile, sessionTile, limitsTile, clockTile, authTiles)),
        h("div", { class: "card grow" }, h("h3", {}, "Recovery"), h("div", { class: "kv" }, h("div", { class: "kv-label" }, "Last reconnection"), this.recoveryText),
          h("h3", { class: "spaced" }, "Event log"), this.logBox)),
    );
  }

  /** The token field: the token is kept by `auth` (sessionStorage), never left in the field. */
  _authCard() {
    const auth = this.auth;
    this.tokenInput = h("input", {
      type: "password", autocomplete: "off", spellcheck: "false", placeholder: "paste a JWT",
      class: "token-input", "aria-label": "token", "data-testid": "auth-token",
    });
    this.authText = h("div", { class: "auth-message", "data-testid": "auth-message", "data-phase": auth.phase }, auth.message);
    const form = h(
      "form",
      { class: "toolbar", "data-testid": "auth-form", onsubmit: (e) => {
        e.preventDefault();
        const token = this.tokenInput.value;
        this.tokenInput.value = "";
        auth.use(token);
      } },
      this.tokenInput,
      h("button", { class: "btn primary", type: "submit", "data-testid": "auth-apply" }, "Use token"),
      h("button", { class: "btn", type: "button", "data-testid": "auth-forget", onclick: () => auth.forget() }, "Forget token"),
      h("span", { class: "muted" }, "kept for this tab only (sessionStorage)"),
    );
    return h("div", { class: "card", "data-testid": "auth-card" }, h("h3", {}, "Authentication"), form, this.authText);
  }

  visible() {
    return this.active;
  }

  draw(now) {
    if (!this._due(now)) return;
    const c = this.client;
    const v = this.v;
    setText(v.state, c.state.toUpperCase());
    v.state.dataset.state = c.state;
    setText(v.latency, fmtMs(c.messageLatency));
    setText(v.uptime, c.connectedAt ? fmtDuration(Date.now() - c.connectedAt) : "–");
    setText(v.attempts, String(c.reconnectAttempts));
    setText(v.url, c.url);
    setText(v.id, c.connectionId ?? "–");
    setText(v.version, c.serverVersion ?? "–");
    setText(v.close, c.closeCode ?? "–");
    setText(v.next, c.nextAttemptAt ? fmtDuration(Math.max(0, c.nextAttemptAt - Date.now())) : "–");
    setText(v.queued, String(c.queuedMessages));
    setText(v.received, fmtInt(c.messagesReceived));
    setText(v.subs, String(c.subscriptions.size));
    setText(v.session, fmtDuration(Date.now() - this.telemetry.startedAt));
    if (this.authCard !== null) {
      setText(v.user, c.userId ?? "–");
      setText(v.expires, c.tokenExpiresAt === null ? "–" : new Date(c.tokenExpiresAt).toLocaleTimeString());
      setText(this.authText, this.auth.message);
      this.authText.dataset.phase = this.auth.phase;
    }
    const l = c.serverLimits;
    setText(v.limits, l ? `${l.max_subscriptions} subs · ${l.max_inbound_per_second}/s in` : "–");
    const clock = this.clock;
    const offset = clock.offsetMs === null ? "–" : `${clock.offsetMs >= 0 ? "+" : "−"}${fmtMs(Math.abs(clock.offsetMs))} (rtt ${fmtMs(clock.rttMs)})`;
    setText(v.clock, clock.error !== null && clock.offsetMs === null ? "not measured" : offset);
    if (this.autoReconnect.checked !== c.autoReconnect) this.autoReconnect.checked = c.autoReconnect;
    this.connectBtn.disabled = c.state === "connected" || c.state === "connecting";
    this.disconnectBtn.disabled = c.state === "disconnected" || c.state === "closed";
    setText(this.recoveryText, this.recovery.describe());
    this.recoveryText.dataset.phase = this.recovery.phase;
    const logVersion = this.log.size + this.log.evicted;
    if (logVersion !== this._logSize) {
      this._logSize = logVersion;
      setHtml(this.logBox, this.log.newest(100).map((e) => `<div><span class="muted">${fmtTime(e.time)}</span> <b>${esc(e.kind)}</b> ${esc(e.text)}</div>`).join(""));
    }
  }
}
