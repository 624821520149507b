// 5. Real-time streaming: a tab per stream with a freshness indicator; price charts per
// symbol; order, trade and position tables; a risk alert feed coloured by severity; engine
// status and system health; performance tables and risk metrics as portfolio x metric. Only
// the visible tab draws, at most a few times per second, from the store (never per message).

import { STREAM_NAMES } from "../tidewire-client.js";
import { TimeChart } from "../lib/charts.js";
import { esc, h, setHtml, setText } from "../lib/dom.js";
import { fmtDuration, fmtInt, fmtMoney, fmtNum, fmtPct, fmtPrice, fmtTime, signClass } from "../lib/format.js";
import { throttle } from "../lib/scheduler.js";

const LABELS = {
  market_data: "Market data", order_updates: "Orders", trade_updates: "Trades", position_updates: "Positions",
  risk_alerts: "Risk alerts", engine_status: "Engines", system_health: "System health", performance_updates: "Performance",
  strategy_performance: "Strategies", risk_metrics: "Risk metrics", execution_analytics: "Execution", events: "Events",
};
const ROWS = 150;
const sev = (s) => (s ? `<span class="sev ${esc(s)}">${esc(s)}</span>` : "");
const side = (s) => `<span class="${s === "buy" || s === "long" ? "pos" : s === "sell" || s === "short" ? "neg" : ""}">${esc(s ?? "")}</span>`;
const money = (v) => `<span class="${signClass(v)}">${fmtMoney(v)}</span>`;
const pct = (v) => `<span class="${signClass(v)}">${fmtPct(v)}</span>`;
/** An order status, with the reason of a cancellation or rejection as its tooltip. */
const status = (s, reason) => `<span class="st-${esc(s ?? "")}"${reason ? ` title="${esc(reason)}"` : ""}>${esc(s ?? "")}</span>`;
const col = (label, cell, cls = "") => ({ label, cell, cls });

/** Table columns per stream (the store's rows are `data` plus the top-level fields). */
const TABLES = {
  order_updates: {
    rows: (s) => s.orders.newest(ROWS),
    columns: [
      col("Time", (r) => fmtTime(r._t)), col("Order", (r) => esc(r.order_id)), col("Portfolio", (r) => esc(r.portfolio_id)),
      col("User", (r) => esc(r.user_id)), col("Strategy", (r) => esc(r.strategy_id)), col("Symbol", (r) => esc(r.symbol)),
      col("Side", (r) => side(r.side)), col("Type", (r) => esc(r.order_type)), col("Qty", (r) => fmtInt(r.quantity), "num"),
      col("Filled", (r) => fmtInt(r.filled_quantity), "num"), col("Remaining", (r) => fmtInt(r.remaining_quantity), "num"),
      col("Price", (r) => fmtPrice(r.price), "num"), col("Avg fill", (r) => fmtPrice(r.avg_fill_price), "num"),
      col("Status", (r) => status(r.order_status, r.reject_reason ?? r.cancel_reason)),
    ],
  },
  trade_updates: {
    rows: (s) => s.trades.newest(ROWS),
    columns: [
      col("Time", (r) => fmtTime(r._t)), col("Trade", (r) => (r._gap ? esc(r.message) : esc(r.trade_id))), col("Order", (r) => esc(r.order_id)),
      col("Portfolio", (r) => esc(r.portfolio_id)), col("User", (r) => esc(r.user_id)), col("Symbol", (r) => esc(r.symbol)),
      col("Side", (r) => side(r.side)), col("Qty", (r) => fmtInt(r.quantity), "num"), col("Price", (r) => fmtPrice(r.price), "num"),
      col("Status", (r) => status(r.status)), col("Commission", (r) => fmtNum(r.commission), "num"),
    ],
  },
  position_updates: {
    rows: (s) => s.positions.newest(ROWS),
    columns: [
      col("Portfolio", (r) => esc(r.portfolio_id)), col("Strategy", (r) => esc(r.strategy_id)), col("Symbol", (r) => esc(r.symbol)),
      col("Side", (r) => side(r.position_side)), col("Qty", (r) => `<span class="${signClass(r.quantity)}">${fmtInt(r.quantity)}</span>`, "num"),
      col("Avg price", (r) => fmtPrice(r.avg_price), "num"), col("Market price", (r) => fmtPrice(r.market_price), "num"),
      col("Unrealized", (r) => money(r.unrealized_pnl), "num"), col("Realized", (r) => money(r.realized_pnl), "num"),
      col("Market value", (r) => money(r.market_value), "num"), col("Updated", (r) => fmtTime(r._t)),
    ],
  },
  performance_updates: {
    rows: (s) => s.performance.newest(ROWS),
    columns: [
      col("Portfolio", (r) => esc(r.portfolio_id)), col("Strategy", (r) => esc(r.strategy_id)), col("P&L", (r) => money(r.pnl), "num"),
      col("Returns", (r) => pct(r.returns), "num"), col("Total value", (r) => fmtMoney(r.total_value), "num"),
      col("Daily P&L", (r) => money(r.daily_pnl), "num"), col("Sharpe", (r) => fmtNum(r.sharpe_ratio), "num"),
      col("Max drawdown", (r) => fmtPct(r.max_drawdown), "num"), col("Win rate", (r) => fmtPct(r.win_rate, 1), "num"),
      col("Trades", (r) => fmtInt(r.total_trades), "num"), col("Updated", (r) => fmtTime(r._t)),
    ],
  },
  strategy_performance: {
    rows: (s) => s.strategies.newest(ROWS),
    columns: [
      col("Strategy", (r) => esc(r.strategy_id)), col("Name", (r) => esc(r.strategy_name)), col("Portfolio", (r) => esc(r.portfolio_id)),
      col("Total return", (r) => pct(r.total_return), "num"), col("Trades", (r) => fmtInt(r.trade_count), "num"),
      col("Win rate", (r) => fmtPct(r.win_rate, 1), "num"), col("Profit factor", (r) => fmtNum(r.profit_factor), "num"),
      col("Sharpe", (r) => fmtNum(r.sharpe_ratio), "num"), col("Max drawdown", (r) => fmtPct(r.max_drawdown), "num"),
      col("Updated", (r) => fmtTime(r._t)),
    ],
  },
  execution_analytics: {
    rows: (s) => s.executions.newest(ROWS),
    columns: [
      col("Time", (r) => fmtTime(r._t)), col("Execution", (r) => (r._gap ? esc(r.message) : esc(r.execution_id))), col("Symbol", (r) => esc(r.symbol)),
      col("Portfolio", (r) => esc(r.portfolio_id)), col("Fill price", (r) => fmtPrice(r.fill_price), "num"),
      col("Benchmark", (r) => fmtPrice(r.benchmark_price), "num"), col("Slippage bps", (r) => fmtNum(r.slippage_bps), "num"),
      col("Exec ms", (r) => fmtNum(r.execution_time_ms, 1), "num"), col("Fill ratio", (r) => fmtNum(r.fill_ratio, 3), "num"),
    ],
  },
};

/** A metric value: money-sized values with separators, small ones with decimals. */
const metric = (v) => (v != null && Math.abs(Number(v)) >= 1000 ? fmtMoney(v) : fmtNum(v, v != null && Math.abs(Number(v)) < 1 ? 4 : 2));
const TREND = { increasing: "▲", decreasing: "▼", stable: "▬" };

/** A risk metric's cell: its value, its trend, the rest of what it says as a tooltip. */
function metricCell(r) {
  if (r === undefined) return '<td class="num muted">–</td>';
  const details = [
    r.percentile != null ? `percentile ${fmtNum(r.percentile, 1)}` : "",
    r.historical_avg != null ? `historical avg ${metric(r.historical_avg)}` : "",
    r.confidence_level != null ? `confidence ${fmtNum(r.confidence_level, 3)}` : "",
    r.calculation_method ? `method ${esc(r.calculation_method)}` : "",
    r.lookback_period != null ? `lookback ${esc(r.lookback_period)}` : "",
    `updated ${fmtTime(r._t)}`,
  ].filter(Boolean).join(" · "); // escaped already: the format helpers escape what is not a number
  const trend = TREND[r.trend] ? ` <span class="muted">${TREND[r.trend]}</span>` : "";
  return `<td class="num" data-metric="${esc(r.metric_type)}" title="${details}">${metric(r.value)}${trend}</td>`;
}

/** The events stream's message types, each as a headline and a text. */
function eventText(a) {
  switch (a.type) {
    case "alert":
      return [a.title ?? "alert", a.message, a.alert_category];
    case "system_alert":
      return [`${a.component ?? ""} ${a.alert_type ?? ""}`.trim(), a.description, a.impact_level];
    case "notification":
      return [a.title ?? "notification", a.message, null];
    case "command_response":
      return [`${a.command ?? "command"} ${a.status ?? ""}`.trim(), a.error != null ? String(a.error) : a.result != null ? JSON.stringify(a.result) : "", a.command_id];
    default: // event
      return [a.title ?? a.event_type ?? a.type, a.description, a.category];
  }
}

/** A risk_alert or breach_alert as one line. */
function alertText(a) {
  if (a.type === "breach_alert") {
    const over = a.breach_percentage != null ? ` (${Number(a.breach_percentage) >= 0 ? "+" : ""}${fmtNum(a.breach_percentage, 1)}%)` : "";
    return `<b>${esc(a.portfolio_id ?? "")}</b> ${esc(a.breach_type ?? "")}: ${esc(a.limit_type)} ${fmtNum(a.current_value)} / limit ${fmtNum(a.limit_value)}${over}`;
  }
  return `<b>${esc(a.portfolio_id ?? "")}</b> ${esc(a.risk_type ?? "")}: ${esc(a.metric)} ${fmtNum(a.current_value)} / threshold ${fmtNum(a.threshold)}${a.message ? ` — ${esc(a.message)}` : ""}`;
}

/** Engine and component states by how they look. */
const STATE_CLASS = { running: "ok", healthy: "ok", degraded: "warn", starting: "warn", stopping: "warn", stale: "warn" };

/** The details of an engine_status or system_health card, only what the message says. */
function cardDetail(name, r) {
  const parts = [];
  const add = (value, text) => value != null && value !== "" && parts.push(text);
  if (name === "engine_status") {
    add(r.uptime, `uptime ${fmtDuration(Number(r.uptime) * 1000)}`);
    add(r.active_strategies, `strategies ${fmtInt(r.active_strategies)}`);
    add(r.orders_processed, `orders ${fmtInt(r.orders_processed)}`);
    add(r.trades_executed, `trades ${fmtInt(r.trades_executed)}`);
    add(r.open_orders, `open orders ${fmtInt(r.open_orders)}`);
    add(r.cpu_usage, `cpu ${fmtNum(r.cpu_usage, 1)}%`);
    // engine_status says memory_usage in megabytes (system_health's is a percentage).
    add(r.memory_usage, `mem ${fmtNum(r.memory_usage, 0)} MB`);
    add(r.error_count, `errors ${fmtInt(r.error_count)}`);
    add(r.warning_count, `warnings ${fmtInt(r.warning_count)}`);
  } else {
    add(r.cpu_usage, `cpu ${fmtNum(r.cpu_usage, 1)}%`);
    add(r.memory_usage, `mem ${fmtNum(r.memory_usage, 1)}%`);
    add(r.memory_mb, `mem ${fmtNum(r.memory_mb, 0)} MB`); // extension
    add(r.disk_usage, `disk ${fmtNum(r.disk_usage, 1)}%`);
    add(r.latency_ms, `${fmtNum(r.latency_ms, 2)} ms`); // extension
    add(r.network_latency, `net ${fmtNum(r.network_latency, 2)} ms`);
    add(r.active_connections, `conns ${fmtInt(r.active_connections)}`);
    add(r.throughput, `${fmtNum(r.throughput, 0)}/s`);
    add(r.error_rate, `errors ${fmtNum(r.error_rate, 3)}`);
    add(r.health_score, `score ${fmtNum(r.health_score, 0)}`);
    add(r.uptime, `uptime ${fmtDuration(Number(r.uptime) * 1000)}`);
  }
  return parts.join(" · ") || "–";
}

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
    if (name === "risk_metrics") {
      // Columns are the metric types seen: built when they change.
      const head = h("tr");
      const matrix = h("tbody", { "data-testid": "rows-risk_metrics" });
      const table = h("table", { class: "grid", "data-testid": "risk-matrix" }, h("thead", {}, head), matrix);
      return { el: h("div", {}, info, h("div", { class: "scroll tall" }, table)), info, head, matrix, metrics: "" };
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
    else if (view.matrix) this._drawRiskMetrics(view);
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
        const sub = h("div", { class: "chart-sub muted", "data-testid": "chart-last" });
        const box = h("div", { class: "chart-box" });
        const card = h("div", { class: "chart-card", "data-symbol": entry.symbol }, head, sub, box);
        const chart = new TimeChart(box, { series: [{ label: entry.symbol, stroke: "#4aa3ff", fill: "rgba(74,163,255,0.08)" }], height: 90, axes: false });
        c = { card, head, sub, chart, version: -1 };
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
      setText(c.sub, entry.last === null ? "" : `last ${fmtPrice(entry.last)}${entry.lastSize === null ? "" : ` × ${fmtInt(entry.lastSize)}`}`);
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
      // An alert's level is its severity (the gateway sets both).
      const level = a.severity ?? a.alert_level;
      let text;
      if (name === "risk_alerts") text = alertText(a);
      else {
        const [title, body, extra] = eventText(a);
        text = `<b>${esc(title ?? "")}</b> ${esc(body ?? "")} <span class="muted">${esc(extra ?? "")} ${esc(a.source ?? "")}</span>`;
      }
      html += `<div class="alert ${esc(level ?? "low")}" data-severity="${esc(level ?? "")}" data-type="${esc(a.type)}"><span class="mono">${fmtTime(a._t)}</span><span>${sev(level)}</span><span>${text}</span><span class="muted">${esc(a.type)}</span></div>`;
    }
    setHtml(feed, html || '<div class="muted">no messages yet</div>');
  }

  _drawCards(name, cards) {
    const rows = (name === "engine_status" ? this.store.engines : this.store.health).newest(ROWS);
    const nameOf = (r) => String((name === "engine_status" ? r.engine_id : r.component) ?? r.source ?? "");
    rows.sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
    let html = "";
    for (const r of rows) {
      // engine_status says `state`; system_health says `status`.
      const state = (name === "engine_status" ? r.state : r.status) ?? "unknown";
      const cls = STATE_CLASS[state] ?? "bad";
      html += `<div class="status-card ${cls}" data-name="${esc(nameOf(r))}"><span class="state">${esc(state)}</span><div class="name">${esc(nameOf(r))}</div>` +
        `<div class="muted mono">${cardDetail(name, r)}</div>${r.message ? `<div>${esc(r.message)}</div>` : ""}<div class="muted mono">${fmtTime(r._t)}</div></div>`;
    }
    setHtml(cards, html || '<div class="muted">no messages yet</div>');
  }

  /** Risk metrics as portfolio x metric_type: one message per cell. */
  _drawRiskMetrics(view) {
    const byPortfolio = new Map();
    const metrics = new Set();
    for (const r of this.store.riskMetrics.newest()) {
      if (r.metric_type == null) continue;
      metrics.add(String(r.metric_type));
      const portfolio = String(r.portfolio_id ?? "");
      let cells = byPortfolio.get(portfolio);
      if (cells === undefined) byPortfolio.set(portfolio, (cells = { cells: new Map(), last: r._t }));
      cells.cells.set(String(r.metric_type), r);
    }
    const columns = [...metrics].sort();
    const columnsKey = columns.join("|");
    if (view.metrics !== columnsKey) {
      view.metrics = columnsKey;
      setHtml(view.head, `<th>Portfolio</th>${columns.map((m) => `<th class="num">${esc(m)}</th>`).join("")}<th>Updated</th>`);
    }
    let html = "";
    for (const portfolio of [...byPortfolio.keys()].sort()) {
      const { cells, last } = byPortfolio.get(portfolio);
      html += `<tr data-portfolio="${esc(portfolio)}"><td>${esc(portfolio)}</td>${columns.map((m) => metricCell(cells.get(m))).join("")}<td>${fmtTime(last)}</td></tr>`;
    }
    setHtml(view.matrix, html);
  }
}
