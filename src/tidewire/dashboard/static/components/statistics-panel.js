// 4. Connection statistics: latency (heartbeat round trips) and throughput over time,
// messages and bytes per second, error counts, uptime, and a quality score from 0 to 100.

import { TimeChart } from "../lib/charts.js";
import { esc, h, setHtml, setText, tile } from "../lib/dom.js";
import { fmtBytes, fmtDuration, fmtInt, fmtMs } from "../lib/format.js";
import { throttle } from "../lib/scheduler.js";

export class StatisticsPanel {
  constructor({ client, telemetry, scheduler, batchMs }) {
    this.id = "statistics";
    this.title = "Statistics";
    this.client = client;
    this.t = telemetry;
    this.scheduler = scheduler;
    this.active = false;
    this._due = throttle(4);
    this._latencySeen = 0;
    this._secondsSeen = 0;

    const tiles = {};
    const make = (key, label, cls = "") => {
      const [el, value] = tile(label, `stat-${key}`, cls);
      tiles[key] = value;
      return el;
    };
    this.tiles = tiles;
    const latencyBox = h("div", { "data-testid": "chart-latency" });
    const throughputBox = h("div", { "data-testid": "chart-throughput" });
    this.latencyChart = new TimeChart(latencyBox, { series: [{ label: "RTT ms", stroke: "#4aa3ff", fill: "rgba(74,163,255,0.12)" }], height: 200, capacity: 300, yFormat: (v) => `${v.toFixed(1)}` });
    this.throughputChart = new TimeChart(throughputBox, {
      series: [
        { label: "msg/s in", stroke: "#2ecc71" },
        { label: "KB/s in", stroke: "#f5b942", scale: "y2" },
        { label: "msg/s out", stroke: "#ff8a3d" },
      ],
      height: 200,
      capacity: 300,
      yFormat: (v) => fmtInt(v),
      y2Format: (v) => `${v.toFixed(0)} KB`,
    });
    this.errorsBody = h("tbody", { "data-testid": "stat-errors-table" });
    this.el = h(
      "section",
      {},
      h("div", { class: "card" }, h("h3", {}, "Connection quality"),
        h("div", { class: "kvs" },
          make("quality", "Quality score (0-100)", "big"),
          make("latency", "Latency now", "big"),
          make("latency-avg", "Latency avg (10)", "big"),
          make("msgs-in", "Messages/s in", "big"),
          make("bytes-in", "Bytes/s in", "big"),
          make("msgs-out", "Messages/s out"),
          make("bytes-out", "Bytes/s out"),
          make("total-in", "Messages in"),
          make("total-bytes", "Bytes in"),
          make("frames", "Frames in / out"),
          make("errors", "Errors"),
          make("reconnects", "Reconnections"),
          make("uptime", "Connection uptime"),
          make("ui", "UI frames/s · longest draw"))),
      h("div", { class: "row" },
        h("div", { class: "card grow" },
          h("h3", {}, "Latency: heartbeat round trip (ms)",
            // The gateway holds replies for the batch interval like any message, so with
            // batching a round trip includes up to that much waiting on the server.
            batchMs > 0 ? h("span", { class: "muted plain" }, `includes up to ${batchMs} ms of batching`) : null),
          latencyBox),
        h("div", { class: "card grow" }, h("h3", {}, "Throughput"), throughputBox)),
      h("div", { class: "card" }, h("h3", {}, "Errors by code"),
        h("table", { class: "grid" }, h("thead", {}, h("tr", {}, h("th", {}, "Code"), h("th", { class: "num" }, "Count"))), this.errorsBody)),
    );
  }

  visible() {
    return this.active;
  }

  draw(now) {
    // Feed new samples into the charts' columns even at full frame rate: cheap, and the
    // charts redraw only when they got points.
    const t = this.t;
    const latencyTotal = t.latency.size + t.latency.evicted;
    if (latencyTotal !== this._latencySeen) {
      for (const p of t.latency.newest(latencyTotal - this._latencySeen).reverse()) this.latencyChart.push(p.t, p.ms);
      this._latencySeen = latencyTotal;
    }
    const secondsTotal = t.perSecond.size + t.perSecond.evicted;
    if (secondsTotal !== this._secondsSeen) {
      for (const p of t.perSecond.newest(secondsTotal - this._secondsSeen).reverse()) this.throughputChart.push(p.t, p.msgsIn, p.bytesIn / 1024, p.msgsOut);
      this._secondsSeen = secondsTotal;
    }
    this.latencyChart.draw();
    this.throughputChart.draw();
    if (!this._due(now)) return;
    const v = this.tiles;
    const quality = t.quality();
    setText(v.quality, String(quality));
    v.quality.style.color = quality >= 80 ? "var(--pos)" : quality >= 50 ? "var(--warn)" : "var(--neg)";
    setText(v.latency, fmtMs(this.client.messageLatency));
    setText(v["latency-avg"], fmtMs(t.averageLatency(10)));
    setText(v["msgs-in"], fmtInt(t.rates.msgsIn));
    setText(v["bytes-in"], `${fmtBytes(t.rates.bytesIn)}`);
    setText(v["msgs-out"], fmtInt(t.rates.msgsOut));
    setText(v["bytes-out"], fmtBytes(t.rates.bytesOut));
    setText(v["total-in"], fmtInt(t.messagesIn));
    setText(v["total-bytes"], fmtBytes(t.bytesIn));
    setText(v.frames, `${fmtInt(t.framesIn)} / ${fmtInt(t.framesOut)}`);
    setText(v.errors, fmtInt(t.errorTotal));
    setText(v.reconnects, fmtInt(t.reconnects));
    setText(v.uptime, this.client.connectedAt ? fmtDuration(Date.now() - this.client.connectedAt) : "–");
    setText(v.ui, `${this.scheduler.fps.toFixed(0)} · ${this.scheduler.maxDrawMs.toFixed(1)} ms`);
    const rows = [...t.errors.entries()].sort((a, b) => b[1] - a[1]);
    setHtml(this.errorsBody, rows.length ? rows.map(([code, n]) => `<tr><td>${esc(code)}</td><td class="num">${n}</td></tr>`).join("") : '<tr><td class="muted">no errors</td><td></td></tr>');
  }
}
