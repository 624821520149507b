// 5. Real-time streaming: a tab per stream with a freshness indicator; price charts per
// symbol; order, trade and position tables; a risk alert feed coloured by severity; engine
// status and system health; performance and risk tables. Only the visible tab draws, at
// most a few times per second, from the store (never per message).

import { STREAM_NAMES } from "../tidewire-client.js";
import { TimeChart } from "../lib/charts.js";
import { esc, h, setHtml, setText } from "../lib/dom.js";
import { fmtDuration, fmtInt, fmtMoney, fmtNum, fmtPrice, fmtTime, signClass } from "../lib/format.js";
import { throttle } from "../lib/scheduler.js";

const LABELS = {
  market_data: "Market data", order_updates: "Orders", trade_updates: "Trades", position_updates: "Positions",
  risk_alerts: "Risk alerts", engine_status: "Engines", system_health: "System health", performance_updates: "Performance",
  strategy_performance: "Strategies", risk_metrics: "Risk metrics", execution_analytics: "Execution", events: "Events",
};
const ROWS = 150;
const sev = (s) => (s ? `<span class="sev ${esc(s)}">${esc(s)}</span>` : "");
const side = (s) => `<span class="${s === "buy" ? "pos" : s === "sell" ? "neg" : ""}">${esc(s ?? "")}</span>`;
const money = (v) => `<span class="${signClass(v)}">${fmtMoney(v)}</span>`;
const col = (label, cell, cls = "") => ({ label, cell, cls });

/** Table columns per stream (the store's rows are `data` plus envelope fields). */
const TABLES = {
  order_updates: {
    rows: (s) => s.orders.newest(ROWS),
    columns: [
      col("Time", (r) => fmtTime(r._t)), col("Order", (r) => esc(r.order_id)), col("Portfolio", (r) => esc(r.portfolio_id)),
      col("Strategy", (r) => esc(r.strategy_id)), col("Symbol", (r) => esc(r.symbol)), col("Side", (r) => side(r.side)),
      col("Type", (r) => esc(r.order_type)), col("Qty", (r) => fmtInt(r.quantity), "num"), col("Filled", (r) => fmtInt(r.filled_quantity), "num"),
      col("Price", (r) => fmtPrice(r.price), "num"), col("Avg fill", (r) => fmtPrice(r.avg_fill_price), "num"), col("Status", (r) => `<span class="st-${esc(r.status)}">${esc(r.status)}</span>`),
    ],
  },
  trade_updates: {
    rows: (s) => s.trades.newest(ROWS),
    columns: [
      col("Time", (r) => fmtTime(r._t)), col("Trade", (r) => (r._gap ? esc(r.message) : esc(r.trade_id))), col("Order", (r) => esc(r.order_id)),
      col("Portfolio", (r) => esc(r.portfolio_id)), col("Symbol", (r) => esc(r.symbol)), col("Side", (r) => side(r.side)),
      col("Qty", (r) => fmtInt(r.quantity), "num"), col("Price", (r) => fmtPrice(r.price), "num"), col("Commission", (r) => fmtNum(r.commission), "num"),
    ],
  },
  position_updates: {
    rows: (s) => s.positions.newest(ROWS),
    columns: [
      col("Portfolio", (r) => esc(r.portfolio_id)), col("Symbol", (r) => esc(r.symbol)), col("Qty", (r) => `<span class="${signClass(r.quantity)}">${fmtInt(r.quantity)}</span>`, "num"),
      col("Avg price", (r) => fmtPrice(r.avg_price), "num"), col("Unrealized", (r) => money(r.unrealized_pnl), "num"), col("Realized", (r) => money(r.realized_pnl), "num"),
      col("Market value", (r) => money(r.market_value), "num"), col("Updated", (r) => fmtTime(r._t)),
    ],
  },
  performance_updates: {
    rows: (s) => s.performance.newest(ROWS),
    columns: [
      col("Portfolio", (r) => esc(r.portfolio_id)), col("Total value", (r) => fmtMoney(r.total_value), "num"), col("Total P&L", (r) => money(r.total_pnl), "num"),
      col("Daily P&L", (r) => money(r.daily_pnl), "num"), col("Realized", (r) => money(r.realized_pnl), "num"), col("Unrealized", (r) => money(r.unrealized_pnl), "num"), col("Updated", (r) => fmtTime(r._t)),
    ],
  },
  strategy_performance: {
    rows: (s) => s.strategies.newest(ROWS),
    columns: [
      col("Strategy", (r) => esc(r.strategy_id)), col("Portfolio", (r) => esc(r.portfolio_id)), col("P&L", (r) => money(r.pnl), "num"),
      col("Trades", (r) => fmtInt(r.trades), "num"), col("Win rate", (r) => (r.win_rate == null ? "–" : `${(r.win_rate * 100).toFixed(1)}%`), "num"),
      col("Sharpe", (r) => fmtNum(r.sharpe_ratio), "num"), col("Updated", (r) => fmtTime(r._t)),
    ],
  },
  risk_metrics: {
    rows: (s) => s.riskMetrics.newest(ROWS),
    columns: [
      col("Portfolio", (r) => esc(r.portfolio_id)), col("VaR 95", (r) => fmtMoney(r.var_95), "num"), col("Exposure", (r) => fmtMoney(r.exposure), "num"),
      col("Leverage", (r) => fmtNum(r.leverage), "num"), col("Margin used", (r) => fmtMoney(r.margin_used), "num"), col("Updated", (r) => fmtTime(r._t)),
    ],
  },
  execution_analytics: {
    rows: (s) => s.executions.newest(ROWS),
    columns: [
      col("Time", (r) => fmtTime(r._t)), col("Order", (r) => (r._gap ? esc(r.message) : esc(r.order_id))), col("Symbol", (r) => esc(r.symbol)),
      col("Portfolio", (r) => esc(r.portfolio_id)), col("Slippage bps", (r) => fmtNum(r.slippage_bps), "num"),
      col("Fill ratio", (r) => fmtNum(r.fill_ratio, 3), "num"), col("Latency ms", (r) => fmtNum(r.latency_ms, 1), "num"),
    ],
  },
};

export class StreamingPanel {
  constructor({ store }) {
    this.id = "streaming";
    this.title = "Real-time streams";
    this.store = store;
    this.active = false;
    this.current = "market_data";
    this._due = throttle(5);
    this._drawn = new Map(); // stream -> version drawn
    this._charts = new Map(); // symbol -> {card, head, chart, version}
    this.tabs = new Map();
    this.views = new Map();
    const tabBar = h("div", { class: "subtabs", role: "tablist" });
    const body = h("div");
    for (const name of STREAM_NAMES) {
      const dot = h("span", { class: "dot", "data-testid": `fresh-${name}` });
      const count = h("span", { class: "count" });
      const tab = h("button", { role: "tab", "data-testid": `stream-tab-${name}`, onclick: () => this.select(name) }, dot, LABELS[name], count);
      this.tabs.set(name, { tab, dot, count });
      tabBar.append(tab);
      const view = this._view(name);
      view.el.dataset.testid = `stream-view-${name}`;
      view.el.hidden = true;
      this.views.set(name, view);
      body.append(view.el);
    }
    this.el = h("section", {}, h("div", { class: "card" }, tabBar, body));
    this.select(this.current);
  }

  visible() {
    return this.active;
  }

  select(name) {
    this.current = name;
    for (const [n, { tab }] of this.tabs) tab.setAttribute("aria-selected", String(n === name));
    for (const [n, view] of this.views) view.el.hidden = n !== name;
    this._drawn.delete(name);
  }

  _view(name) {
    const info = h("div", { class: "muted info-line" });
    if (name === "market_data") {
      const grid = h("div", { class: "charts", "data-testid": "market-charts" });
      return { el: h("div", {}, info, grid), info, grid };
    }
    if (name === "risk_alerts" || name === "events") {
      const feed = h("div", { class: "feed", "data-testid": `feed-${name}` });
      return { el: h("div", {}, info, feed), info, feed };
    }
    if (name === "engine_status" || name === "system_health") {
      const cards = h("div", { class: "status-cards", "data-testid": `cards-${name}` });
      return { el: h("div", {}, info, cards), info, cards };
    }
    const spec = TABLES[name];
    const body = h("tbody", { "data-testid": `rows-${name}` });
    const table = h("table", { class: "grid" }, h("thead", {}, h("tr", {}, spec.columns.map((c) => h("th", { class: c.cls }, c.label)))), body);
    return { el: h("div", {}, info, h("div", { class: "scroll tall" }, table)), info, body };
  }

  draw(now) {
    if (!this._due(now)) return;
    const wall = Date.now();
    for (const [name, { dot, count }] of this.tabs) {
      const state = this.store.streams.get(name);
      const age = state.lastAt === null ? null : wall - state.lastAt;
      // Freshness: green under 2 s, amber under 10 s, red after; grey before any message.
      const cls = age === null ? "dot" : age < 2000 ? "dot fresh" : age < 10000 ? "dot aging" : "dot stale";
      if (dot.className !== cls) dot.className = cls;
      dot.dataset.freshness = cls.slice(4) || "none";
      setText(count, state.count ? fmtInt(state.count) : "");
    }
    const name = this.current;
    const state = this.store.streams.get(name);
    const view = this.views.get(name);
    setText(view.info, state.lastAt === null ? "waiting for the first message…" : `${fmtInt(state.count)} messages · last ${fmtDuration(wall - state.lastAt)} ago${state.gaps ? ` · ${state.gaps} gap(s) not recovered` : ""}`);
    if (name === "market_data") {
      this._drawMarket();
      return;
    }
    if (this._drawn.get(name) === state.version) return;
    this._drawn.set(name, state.version);
    if (view.feed) this._drawFeed(name, view.feed);
    else if (view.cards) this._drawCards(name, view.cards);
    else {
      const spec = TABLES[name];
      const rows = spec.rows(this.store);
      let html = "";
      for (const r of rows) {
        html += `<tr class="${r._gap ? "gap" : ""}">`;
        for (const c of spec.columns) html += `<td class="${c.cls}">${c.cell(r)}</td>`;
        html += "</tr>";
      }
      setHtml(view.body, html);
    }
  }

  _drawMarket() {
    const view = this.views.get("market_data");
    // Charts of symbols no longer in the store (their subscription ended) go away.
    for (const [symbol, c] of this._charts) {
      if (!this.store.symbols.has(symbol)) {
        c.card.remove();
        this._charts.delete(symbol);
      }
    }
    const symbols = [...this.store.symbols.values()].sort((a, b) => a.symbol.localeCompare(b.symbol));
    for (const entry of symbols) {
      let c = this._charts.get(entry.symbol);
      if (c === undefined) {
        const head = h("div", { class: "chart-head" });
        const box = h("div", { class: "chart-box" });
        const card = h("div", { class: "chart-card", "data-symbol": entry.symbol }, head, box);
        const chart = new TimeChart(box, { series: [{ label: entry.symbol, stroke: "#4aa3ff", fill: "rgba(74,163,255,0.08)" }], height: 90, axes: false });
        c = { card, head, chart, version: -1 };
        this._charts.set(entry.symbol, c);
        // Keep the grid sorted by symbol.
        const after = [...this._charts.keys()].sort().indexOf(entry.symbol);
        const next = view.grid.children[after] ?? null;
        view.grid.insertBefore(card, next);
      }
      if (c.version === entry.version) continue;
      c.version = entry.version;
      const change = entry.first ? ((entry.mid - entry.first) / entry.first) * 100 : 0;
      setHtml(c.head, `<span><b>${esc(entry.symbol)}</b> <span class="muted">${esc(entry.venue ?? "")}</span></span>` +
        `<span>${fmtPrice(entry.bid)} / ${fmtPrice(entry.ask)} <span class="${signClass(change)}">${change >= 0 ? "+" : ""}${change.toFixed(2)}%</span></span>`);
      c.chart.columns = [entry.t, entry.p];
      c.chart.dirty = true;
      c.chart.draw();
    }
  }

  _drawFeed(name, feed) {
    const items = (name === "risk_alerts" ? this.store.alerts : this.store.events).newest(ROWS);
    let html = "";
    for (const a of items) {
      if (a._gap) {
        html += `<div class="alert gap"><span>${fmtTime(a._t)}</span><span></span><span>${esc(a.message)}</span><span></span></div>`;
        continue;
      }
      const text = name === "risk_alerts"
        ? `<b>${esc(a.portfolio_id ?? "")}</b> ${esc(a.metric)} ${fmtNum(a.current_value)} / limit ${fmtNum(a.threshold)}${a.message ? ` — ${esc(a.message)}` : ""}`
        : `<b>${esc(a.title ?? a.type)}</b> ${esc(a.message ?? "")} <span class="muted">${esc(a.source ?? "")}</span>`;
      html += `<div class="alert ${esc(a.severity ?? "low")}" data-severity="${esc(a.severity ?? "")}"><span class="mono">${fmtTime(a._t)}</span><span>${sev(a.severity)}</span><span>${text}</span><span class="muted">${esc(a.type)}</span></div>`;
    }
    setHtml(feed, html || '<div class="muted">no messages yet</div>');
  }

  _drawCards(name, cards) {
    const rows = (name === "engine_status" ? this.store.engines : this.store.health).newest(ROWS);
    rows.sort((a, b) => String(a.engine_id ?? a.component).localeCompare(String(b.engine_id ?? b.component)));
    let html = "";
    for (const r of rows) {
      const status = r.status ?? "unknown";
      const cls = ["running", "healthy"].includes(status) ? "ok" : ["degraded", "starting", "stale"].includes(status) ? "warn" : "bad";
      const detail = name === "engine_status"
        ? `uptime ${fmtDuration((r.uptime_seconds ?? 0) * 1000)} · open orders ${fmtInt(r.open_orders)}`
        : `cpu ${fmtNum(r.cpu_percent, 1)}% · mem ${fmtNum(r.memory_mb, 0)} MB${r.latency_ms != null ? ` · ${fmtNum(r.latency_ms, 2)} ms` : ""}`;
      html += `<div class="status-card ${cls}"><span class="state">${esc(status)}</span><div class="name">${esc(r.engine_id ?? r.component)}</div>` +
        `<div class="muted mono">${detail}</div>${r.message ? `<div>${esc(r.message)}</div>` : ""}<div class="muted mono">${fmtTime(r._t)}</div></div>`;
    }
    setHtml(cards, html || '<div class="muted">no messages yet</div>');
  }
}
