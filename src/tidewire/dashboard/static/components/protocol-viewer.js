// 3. Message protocol viewer: live capture of every frame in both directions, one row per
// message (a batch frame's messages are unpacked and keep their frame number), with record
// and pause, filters by type, stream and text, an expandable tree, sizes and rates, export
// to JSON and CSV. Memory is bounded by the maximum message count (a ring buffer).

import { esc, h, setHtml, setText } from "../lib/dom.js";
import { fmtBytes, fmtInt, fmtTime } from "../lib/format.js";
import { RingBuffer } from "../lib/ring.js";
import { throttle } from "../lib/scheduler.js";
import { utf8Length } from "../tidewire-client.js";

// The list shows the newest matching rows (pause the view to read them); export takes all.
// Rebuilding a long table is what costs frames, so the list stays short.
const ROWS_SHOWN = 120;

export class ProtocolViewer {
  constructor({ client, maxMessages }) {
    this.id = "viewer";
    this.title = "Protocol viewer";
    this.active = false;
    this.recording = true;
    this.paused = false;
    this.buffer = new RingBuffer(maxMessages);
    this._frame = 0;
    this._next = 1;
    this._version = 0;
    this._drawn = -1;
    this._selected = null;
    this._types = new Set();
    this._streams = new Set();
    this._due = throttle(4);
    this._rate = { at: performance.now(), in: 0, out: 0, bytesIn: 0, bytesOut: 0, shown: "–" };
    client.on("frame", (frame) => this._capture(frame));

    this.recordBtn = h("button", { class: "btn on", "data-testid": "viewer-record", onclick: () => this._toggleRecord() }, "● Recording");
    this.pauseBtn = h("button", { class: "btn", "data-testid": "viewer-pause", onclick: () => this._togglePause() }, "❚❚ Pause view");
    this.typeSelect = h("select", { "data-testid": "viewer-type", onchange: () => this._changed() }, h("option", { value: "" }, "all types"));
    this.streamSelect = h("select", { "data-testid": "viewer-stream", onchange: () => this._changed() }, h("option", { value: "" }, "all streams"));
    this.dirSelect = h("select", { "data-testid": "viewer-direction", onchange: () => this._changed() }, h("option", { value: "" }, "both directions"), h("option", { value: "in" }, "received"), h("option", { value: "out" }, "sent"));
    this.search = h("input", { type: "search", placeholder: "search text…", "data-testid": "viewer-search", oninput: () => this._changed() });
    this.maxInput = h("input", { type: "number", min: "10", step: "100", value: String(maxMessages), "data-testid": "viewer-max", onchange: () => this._resize() });
    this.stats = h("span", { class: "muted mono", "data-testid": "viewer-stats" });
    this.body = h("tbody", { "data-testid": "viewer-rows", onclick: (e) => this._select(e) });
    this.tree = h("div", { class: "tree", "data-testid": "viewer-detail" }, h("span", { class: "muted" }, "Select a message to see its structure."));
    this.el = h(
      "section",
      {},
      h("div", { class: "card" },
        h("div", { class: "toolbar" },
          this.recordBtn, this.pauseBtn,
          h("button", { class: "btn", "data-testid": "viewer-clear", onclick: () => this._clear() }, "Clear"),
          this.dirSelect, this.typeSelect, this.streamSelect, this.search,
          h("label", { class: "check" }, "max messages", this.maxInput),
          h("button", { class: "btn", "data-testid": "viewer-export-json", onclick: () => this._export("json") }, "Export JSON"),
          h("button", { class: "btn", "data-testid": "viewer-export-csv", onclick: () => this._export("csv") }, "Export CSV")),
        this.stats),
      h("div", { class: "viewer" },
        h("div", { class: "card scroll list" },
          h("table", { class: "grid fixed" },
            // Column widths live in dashboard.css (.viewer-cols): no inline styles under the CSP.
            h("colgroup", { class: "viewer-cols" }, Array.from({ length: 9 }, () => h("col"))),
            h("thead", {}, h("tr", {}, ["#", "Time", "Dir", "Type", "Stream", "Key", "Seq", "Frame", "Size"].map((t, i) => h("th", { class: i >= 6 ? "num" : "" }, t)))),
            this.body)),
        h("div", { class: "card" }, h("h3", {}, "Structure"), this.tree)),
    );
  }

  visible() {
    return this.active;
  }

  _capture(frame) {
    const rate = this._rate;
    if (frame.direction === "in") rate.bytesIn += frame.size;
    else rate.bytesOut += frame.size;
    const message = frame.message;
    const batch = message?.type === "batch" ? message.messages : null;
    const count = batch ? batch.length : 1;
    if (frame.direction === "in") rate.in += count;
    else rate.out += count;
    if (!this.recording) return;
    this._frame += 1;
    const add = (m, size) => {
      const entry = { n: this._next++, time: frame.time, dir: frame.direction, frame: this._frame, batch: batch ? count : 0, size, message: m, type: m?.type ?? "?", stream: m?.stream ?? "", text: null };
      this.buffer.push(entry);
      if (!this._types.has(entry.type)) this._addOption(this._types, this.typeSelect, entry.type);
      if (entry.stream && !this._streams.has(entry.stream)) this._addOption(this._streams, this.streamSelect, entry.stream);
    };
    // A batch's messages have no size of their own on the wire; it is measured when shown.
    if (batch) for (const m of batch) add(m, null);
    else add(message, frame.size);
    this._version += 1;
  }

  _addOption(set, select, value) {
    set.add(value);
    select.append(h("option", { value }, value));
  }

  _size(entry) {
    if (entry.size === null) entry.size = utf8Length(this._text(entry));
    return entry.size;
  }

  _text(entry) {
    if (entry.text === null) entry.text = JSON.stringify(entry.message);
    return entry.text;
  }

  _matcher() {
    const type = this.typeSelect.value;
    const stream = this.streamSelect.value;
    const dir = this.dirSelect.value;
    const needle = this.search.value.trim().toLowerCase();
    return (e) =>
      (!type || e.type === type) && (!stream || e.stream === stream) && (!dir || e.dir === dir) &&
      (!needle || this._text(e).toLowerCase().includes(needle));
  }

  _changed() {
    this._version += 1;
  }

  _toggleRecord() {
    this.recording = !this.recording;
    this.recordBtn.classList.toggle("on", this.recording);
    setText(this.recordBtn, this.recording ? "● Recording" : "○ Record");
  }

  _togglePause() {
    this.paused = !this.paused;
    this.pauseBtn.classList.toggle("on", this.paused);
    setText(this.pauseBtn, this.paused ? "▶ Resume view" : "❚❚ Pause view");
    this._version += 1;
  }

  _clear() {
    this.buffer.clear();
    this._selected = null;
    this._version += 1;
    this._drawn = -1;
  }

  _resize() {
    const max = Math.max(10, Math.min(1_000_000, Number(this.maxInput.value) || 2000));
    this.buffer.resize(max);
    this._version += 1;
  }

  _select(event) {
    const row = event.target.closest("tr[data-n]");
    if (!row) return;
    const n = Number(row.dataset.n);
    const entry = this.buffer.newest(this.buffer.size, (e) => e.n === n)[0];
    if (!entry) return;
    this._selected = n;
    for (const r of this.body.querySelectorAll("tr.selected")) r.classList.remove("selected");
    row.classList.add("selected");
    this.tree.replaceChildren(tree(entry.message, "message", 0));
  }

  /** Every captured message that passes the filters, oldest first. */
  filtered() {
    const keep = this._matcher();
    return this.buffer.toArray().filter(keep);
  }

  _export(format) {
    const rows = this.filtered();
    let blob;
    if (format === "json") {
      const data = rows.map((e) => ({ n: e.n, time: new Date(e.time).toISOString(), direction: e.dir, frame: e.frame, size: this._size(e), message: e.message }));
      blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    } else {
      const q = (v) => `"${String(v ?? "").replaceAll('"', '""')}"`;
      const lines = ["n,time,direction,type,stream,key,seq,frame,size,message"];
      for (const e of rows) {
        const m = e.message ?? {};
        lines.push([e.n, new Date(e.time).toISOString(), e.dir, q(e.type), q(e.stream), q(m.key), m.seq ?? "", e.frame, this._size(e), q(this._text(e))].join(","));
      }
      blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
    }
    const link = h("a", { href: URL.createObjectURL(blob), download: `tidewire-capture-${new Date().toISOString().replace(/[:.]/g, "-")}.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  draw(now) {
    if (!this._due(now)) return;
    const rate = this._rate;
    const elapsed = performance.now() - rate.at;
    if (elapsed >= 1000) {
      const per = 1000 / elapsed;
      rate.shown = `in ${fmtInt(rate.in * per)} msg/s (${fmtBytes(rate.bytesIn * per)}/s) · out ${fmtInt(rate.out * per)} msg/s (${fmtBytes(rate.bytesOut * per)}/s)`;
      rate.at = performance.now();
      rate.in = rate.out = rate.bytesIn = rate.bytesOut = 0;
    }
    setText(this.stats, `${fmtInt(this.buffer.size)} / ${fmtInt(this.buffer.capacity)} messages captured${this.buffer.evicted ? ` (${fmtInt(this.buffer.evicted)} oldest dropped)` : ""} · ${rate.shown}${this.recording ? "" : " · not recording"}${this.paused ? " · view paused" : ""}`);
    if (this.paused || this._version === this._drawn) return;
    this._drawn = this._version;
    const rows = this.buffer.newest(ROWS_SHOWN, this._matcher());
    let html = "";
    for (const e of rows) {
      const m = e.message ?? {};
      html += `<tr data-n="${e.n}"${e.n === this._selected ? ' class="selected"' : ""}><td class="muted">${e.n}</td><td>${fmtTime(e.time)}</td>` +
        `<td class="dir-${e.dir}">${e.dir === "in" ? "▼ in" : "▲ out"}</td><td>${esc(e.type)}</td><td>${esc(e.stream)}</td><td>${esc(m.key ?? "")}</td>` +
        `<td class="num">${m.seq ?? ""}</td><td class="num muted">${e.frame}${e.batch ? `/${e.batch}` : ""}</td><td class="num">${this._size(e)}</td></tr>`;
    }
    setHtml(this.body, html);
  }
}

/** An expandable view of a JSON value (objects and arrays fold; the top two levels open). */
function tree(value, name, depth) {
  const label = name === null ? "" : h("span", { class: "k" }, `${name}: `);
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const summary = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
    const details = h("details", { open: depth < 2 }, h("summary", {}, label, summary));
    for (const [k, v] of entries.slice(0, 500)) details.append(tree(v, String(k), depth + 1));
    return details;
  }
  const cls = typeof value === "string" ? "s" : typeof value === "number" ? "n" : "b";
  return h("div", { class: "leaf" }, label, h("span", { class: cls }, JSON.stringify(value)));
}
