// 2. Subscription manager: every subscription with its stream, filters, rate, message count,
// age of the last message and health; create with the full filter set, change the filters or
// the rate limit of live subscriptions in place (update_subscription), subscribe and
// unsubscribe in bulk.

import { STREAM_NAMES, STREAMS } from "../tidewire-client.js";
import { esc, h, setHtml, setText } from "../lib/dom.js";
import { fmtDuration, fmtFilters, fmtInt, fmtTime } from "../lib/format.js";
import { throttle } from "../lib/scheduler.js";

const list = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

export class SubscriptionPanel {
  constructor({ client, subscriptions }) {
    this.id = "subscriptions";
    this.title = "Subscriptions";
    this.client = client;
    this.subs = subscriptions;
    this.active = false;
    this._due = throttle(4);
    this._selected = new Set();
    this._rates = new Map(); // id -> {count, at, rate}
    this._errorsSeen = -1;

    const f = (this.f = {
      streams: h("select", { multiple: true, "data-testid": "sub-streams", onchange: () => this._allowed() }, STREAM_NAMES.map((s) => h("option", { value: s }, s))),
      symbols: h("input", { placeholder: "AAPL, MSFT", "data-testid": "sub-symbols" }),
      portfolios: h("input", { placeholder: "PF-ALPHA", "data-testid": "sub-portfolios" }),
      strategies: h("input", { placeholder: "STRAT-MOMO-1", "data-testid": "sub-strategies" }),
      severity: h("select", { "data-testid": "sub-severity" }, ["", "low", "medium", "high", "critical"].map((s) => h("option", { value: s }, s || "any"))),
      minPrice: h("input", { type: "number", step: "any", placeholder: "min", "data-testid": "sub-min-price" }),
      maxPrice: h("input", { type: "number", step: "any", placeholder: "max", "data-testid": "sub-max-price" }),
      venue: h("input", { placeholder: "XNAS", "data-testid": "sub-venue" }),
      rate: h("input", { type: "number", min: "0", step: "any", placeholder: "none", "data-testid": "sub-rate" }),
      snapshot: h("input", { type: "checkbox", checked: true, "data-testid": "sub-snapshot" }),
    });
    f.streams.options[0].selected = true;
    this.allowedText = h("div", { class: "muted full-row" });
    this.errorText = h("div", { class: "error-text", "data-testid": "sub-error" });
    const form = h(
      "form",
      { class: "subform", "data-testid": "sub-form", onsubmit: (e) => { e.preventDefault(); this._create(); } },
      h("label", {}, "Streams"), f.streams,
      this.allowedText,
      h("label", {}, "Symbols"), f.symbols,
      h("label", {}, "Portfolio ids"), f.portfolios,
      h("label", {}, "Strategy ids"), f.strategies,
      h("label", {}, "Min severity"), f.severity,
      h("label", {}, "Price band"), h("div", { class: "row" }, f.minPrice, f.maxPrice),
      h("label", {}, "Venue"), f.venue,
      h("label", {}, "Rate limit/s"), f.rate,
      h("label", {}, "Snapshot"), h("label", { class: "check" }, f.snapshot, "latest value per key first"),
      h("span"), h("button", { class: "btn primary", type: "submit", "data-testid": "sub-create" }, "Subscribe"),
    );
    this.selectAll = h("input", { type: "checkbox", "data-testid": "sub-select-all", onchange: (e) => this._selectAll(e.target.checked) });
    this.body = h("tbody", { "data-testid": "sub-rows", onchange: (e) => this._rowChange(e), onclick: (e) => this._rowClick(e) });
    this.summary = h("span", { class: "muted" });
    this.el = h(
      "section",
      {},
      h("div", { class: "row" },
        h("div", { class: "card sub-form-card" }, h("h3", {}, "New subscription"), form, this.errorText),
        h("div", { class: "card grow" },
          h("h3", {}, "Subscriptions ", this.summary),
          h("div", { class: "toolbar" },
            h("button", { class: "btn danger", "data-testid": "sub-unsubscribe-selected", onclick: () => this._unsubscribeSelected() }, "Unsubscribe selected"),
            h("button", { class: "btn", "data-testid": "sub-update-selected", title: "the form's filters replace those of the selected subscriptions", onclick: () => this._updateSelected() }, "Apply filters to selected"),
            h("button", { class: "btn", "data-testid": "sub-subscribe-all", onclick: () => this._subscribeAll() }, "Subscribe every stream"),
          ),
          h("div", { class: "scroll taller" },
            h("table", { class: "grid", "data-testid": "sub-table" },
              h("thead", {}, h("tr", {},
                h("th", {}, this.selectAll), h("th", {}, "Id"), h("th", {}, "Stream"), h("th", {}, "Filters"), h("th", {}, "Rate limit"),
                h("th", { class: "num" }, "Messages"), h("th", { class: "num" }, "msg/s"), h("th", { class: "num" }, "Last msg"), h("th", {}, "Health"), h("th", {}, "State"), h("th", {}, "Keys seen"))),
              this.body)))),
    );
    this._allowed();
  }

  visible() {
    return this.active;
  }

  _selectedStreams() {
    return [...this.f.streams.selectedOptions].map((o) => o.value);
  }

  /** Show which filters the selected streams accept (the gateway refuses the others). */
  _allowed() {
    const streams = this._selectedStreams();
    const allowed = streams.length ? streams.map((s) => STREAMS[s].filters).reduce((a, b) => a.filter((x) => b.includes(x))) : [];
    setText(this.allowedText, streams.length ? `filters accepted: ${allowed.join(", ") || "none"}` : "select one or more streams");
  }

  _filters() {
    const f = this.f;
    const filters = {};
    if (f.symbols.value.trim()) filters.symbols = list(f.symbols.value);
    if (f.portfolios.value.trim()) filters.portfolio_ids = list(f.portfolios.value);
    if (f.strategies.value.trim()) filters.strategy_ids = list(f.strategies.value);
    if (f.severity.value) filters.severity = f.severity.value;
    if (f.minPrice.value !== "") filters.min_price = Number(f.minPrice.value);
    if (f.maxPrice.value !== "") filters.max_price = Number(f.maxPrice.value);
    if (f.venue.value.trim()) filters.venue = f.venue.value.trim();
    return filters;
  }

  /** One subscription per selected stream, all with the same filters (bulk subscribe). */
  async _create() {
    const streams = this._selectedStreams();
    const rate = this.f.rate.value === "" ? null : Number(this.f.rate.value);
    const options = { filters: this._filters(), rateLimit: rate, snapshot: this.f.snapshot.checked ? null : false };
    setText(this.errorText, "");
    const results = await Promise.allSettled(streams.map((stream) => this.subs.create(stream, options)));
    const failed = results.filter((r) => r.status === "rejected");
    setText(this.errorText, failed.map((r) => r.reason.message).join("; "));
  }

  async _subscribeAll() {
    const have = new Set(this.subs.list().filter((s) => Object.keys(s.filters).length === 0).map((s) => s.stream));
    await Promise.allSettled(STREAM_NAMES.filter((s) => !have.has(s)).map((s) => this.subs.create(s)));
  }

  async _unsubscribeSelected() {
    const ids = [...this._selected].filter((id) => this.client.subscriptions.has(id));
    this._selected.clear();
    this.selectAll.checked = false;
    if (ids.length === 0) return;
    try {
      await this.subs.remove(ids);
    } catch (error) {
      setText(this.errorText, error.message);
    }
  }

  /** The form's filters (blank: none) for every selected subscription, each updated in place. */
  async _updateSelected() {
    const ids = [...this._selected].filter((id) => this.client.subscriptions.has(id));
    if (ids.length === 0) {
      setText(this.errorText, "select the subscriptions to update");
      return;
    }
    setText(this.errorText, "");
    const filters = this._filters();
    const results = await Promise.allSettled(ids.map((id) => this.subs.update(id, { filters })));
    const failed = results.filter((r) => r.status === "rejected");
    setText(this.errorText, failed.map((r) => r.reason.message).join("; "));
  }

  _selectAll(on) {
    this._selected = on ? new Set(this.subs.list().map((s) => s.subscriptionId)) : new Set();
    for (const box of this.body.querySelectorAll("input[data-select]")) box.checked = on;
  }

  _rowChange(event) {
    const id = event.target.dataset.select;
    if (id === undefined) return;
    if (event.target.checked) this._selected.add(id);
    else this._selected.delete(id);
  }

  async _rowClick(event) {
    const id = event.target.dataset.rate;
    if (id === undefined) return;
    const input = this.body.querySelector(`input[data-rate-input="${CSS.escape(id)}"]`);
    const value = input.value === "" ? null : Number(input.value);
    setText(this.errorText, "");
    try {
      await this.subs.setRateLimit(id, value);
    } catch (error) {
      setText(this.errorText, error.message);
    }
  }

  draw(now) {
    if (!this._due(now)) return;
    const subs = this.subs.list();
    const key = `${this.subs.version}|${subs.map((s) => s.subscriptionId).join(",")}`;
    if (key !== this._rowsKey) this._buildRows(subs, key);
    const perf = performance.now();
    for (const s of subs) {
      const cells = this._cells.get(s.subscriptionId);
      if (!cells) continue;
      let r = this._rates.get(s.subscriptionId);
      if (!r) this._rates.set(s.subscriptionId, (r = { count: s.messagesReceived, at: perf, rate: 0 }));
      if (perf - r.at >= 1000) {
        r.rate = ((s.messagesReceived - r.count) * 1000) / (perf - r.at);
        r.count = s.messagesReceived;
        r.at = perf;
      }
      setText(cells.messages, fmtInt(s.messagesReceived));
      setText(cells.rate, r.rate.toFixed(1));
      setText(cells.age, s.lastMessageAt === null ? "never" : fmtDuration(perf - s.lastMessageAt));
      const health = this.subs.health(s, perf);
      setText(cells.healthValue, String(health));
      cells.healthBar.style.width = `${health}%`;
      cells.healthBar.style.background = health >= 80 ? "var(--pos)" : health >= 50 ? "var(--warn)" : "var(--neg)";
      const state = !s.confirmed ? "pending" : s.recovered === false ? "resynced" : s.recovered === true ? "replayed" : "live";
      setText(cells.state, state);
      const meta = this.subs.meta.get(s.subscriptionId);
      setText(cells.keys, meta ? [...meta.keys].join(", ") : "");
    }
    setText(this.summary, `${subs.length} active · ${subs.filter((s) => s.confirmed).length} confirmed`);
    const errors = this.subs.errors;
    if (errors.size + errors.evicted !== this._errorsSeen && errors.size) {
      this._errorsSeen = errors.size + errors.evicted;
      const e = errors.last();
      setText(this.errorText, `${fmtTime(e.time)} ${e.id}: ${e.code}: ${e.text}`);
    }
  }

  _buildRows(subs, key) {
    this._rowsKey = key;
    this._cells = new Map();
    let html = "";
    for (const s of subs) {
      const id = esc(s.subscriptionId);
      html += `<tr data-id="${id}"><td><input type="checkbox" data-select="${id}" ${this._selected.has(s.subscriptionId) ? "checked" : ""}></td>` +
        `<td>${id}</td><td>${esc(s.stream)}</td><td title="${esc(JSON.stringify(s.filters))}" data-testid="sub-filters">${esc(fmtFilters(s.filters))}</td>` +
        `<td>${s.reliable ? '<span class="muted">reliable</span>' : `<input type="number" min="0" step="any" value="${s.rateLimit ?? ""}" placeholder="none" data-rate-input="${id}"> <button class="btn" data-rate="${id}">Set</button>`}</td>` +
        `<td class="num" data-c="messages"></td><td class="num" data-c="rate"></td><td class="num" data-c="age"></td>` +
        `<td><span class="bar"><i data-c="bar"></i></span><span data-c="health"></span></td><td data-c="state"></td><td class="muted" data-c="keys" data-testid="sub-keys"></td></tr>`;
    }
    this.body.innerHTML = html;
    for (const row of this.body.rows) {
      const q = (c) => row.querySelector(`[data-c="${c}"]`);
      this._cells.set(row.dataset.id, { messages: q("messages"), rate: q("rate"), age: q("age"), healthBar: q("bar"), healthValue: q("health"), state: q("state"), keys: q("keys") });
    }
  }
}
