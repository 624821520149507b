// Time-series charts on uPlot (vendored), drawn from bounded columns, only when changed.

import uPlot from "../vendor/uplot/uPlot.esm.js";

const AXIS = { stroke: "#8b97a8", grid: { stroke: "#1f2a37", width: 1 }, ticks: { stroke: "#1f2a37", width: 1 }, font: "10px ui-monospace, monospace" };

/**
 * A chart of one or more series over time (x in epoch seconds). Points go into bounded
 * columns (`capacity`); the chart is created when first drawn with a visible width, and
 * redrawn only when points changed since the last draw.
 */
export class TimeChart {
  /**
   * @param {HTMLElement} container
   * @param {{series: {label: string, stroke: string, scale?: string, fill?: string}[],
   *   height?: number, capacity?: number, axes?: boolean, yFormat?: (v: number) => string,
   *   y2Format?: (v: number) => string}} options
   */
  constructor(container, options) {
    this.container = container;
    this.options = options;
    this.capacity = options.capacity ?? 600;
    /** @type {number[][]} x column then one column per series */
    this.columns = [[], ...options.series.map(() => [])];
    this.dirty = false;
    this.plot = null;
    this._width = 0;
  }

  /** Append a point (x epoch seconds). */
  push(x, ...values) {
    const columns = this.columns;
    columns[0].push(x);
    for (let i = 0; i < values.length; i++) columns[i + 1].push(values[i]);
    // Trim in chunks: one splice per 10% overflow instead of a shift per point.
    if (columns[0].length > this.capacity * 1.1) {
      const extra = columns[0].length - this.capacity;
      for (const column of columns) column.splice(0, extra);
    }
    this.dirty = true;
  }

  /** Replace the last point's values (the current time bucket). */
  replaceLast(...values) {
    const columns = this.columns;
    const last = columns[0].length - 1;
    if (last < 0) return;
    for (let i = 0; i < values.length; i++) columns[i + 1][last] = values[i];
    this.dirty = true;
  }

  clear() {
    this.columns = [[], ...this.options.series.map(() => [])];
    this.dirty = true;
  }

  draw() {
    const width = this.container.clientWidth;
    if (width === 0) return; // hidden
    if (this.plot === null) this._create(width);
    else if (width !== this._width) {
      this._width = width;
      this.plot.setSize({ width, height: this.options.height ?? 160 });
    }
    if (!this.dirty || this.plot === null) return;
    this.dirty = false;
    this.plot.setData(this.columns);
  }

  _create(width) {
    const o = this.options;
    const axes = o.axes === false
      ? [{ show: false }, { show: false }]
      : [
          { ...AXIS },
          { ...AXIS, size: 52, values: o.yFormat ? (_u, ticks) => ticks.map(o.yFormat) : undefined },
        ];
    const scales = { x: { time: true } };
    if (o.series.some((s) => s.scale === "y2")) {
      scales.y2 = {};
      if (o.axes !== false) {
        axes.push({ ...AXIS, scale: "y2", side: 1, size: 56, grid: { show: false }, values: o.y2Format ? (_u, ticks) => ticks.map(o.y2Format) : undefined });
      }
    }
    this._width = width;
    this.plot = new uPlot(
      {
        width,
        height: o.height ?? 160,
        legend: { show: o.axes !== false },
        cursor: { show: o.axes !== false, drag: { x: false, y: false } },
        scales,
        axes,
        series: [{}, ...o.series.map((s) => ({ label: s.label, stroke: s.stroke, fill: s.fill, width: 1.25, scale: s.scale ?? "y", points: { show: false } }))],
      },
      this.columns,
      this.container,
    );
    this.dirty = false;
  }
}
