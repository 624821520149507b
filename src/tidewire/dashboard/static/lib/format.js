// Number, size and time formatting for a dense trading-desk display.
//
// The results go into innerHTML: a value that is not a number (or a date) is shown as it
// came, escaped, so that what a producer sends never becomes markup.

import { esc } from "./dom.js";

const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** Integer with thousands separators. */
export function fmtInt(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : intFormat.format(value);
}

/** Fixed decimals; "–" for missing values. */
export function fmtNum(value, digits = 2) {
  if (value === null || value === undefined || value === "") return "–";
  const number = Number(value);
  return Number.isFinite(number) ? number.toFixed(digits) : esc(value);
}

/** A price with as many decimals as its magnitude needs (FX 5, equities 2, crypto 2). */
export function fmtPrice(value) {
  if (value === null || value === undefined) return "–";
  const number = Number(value);
  if (!Number.isFinite(number)) return esc(value);
  const abs = Math.abs(number);
  return number.toFixed(abs >= 1000 ? 2 : abs >= 10 ? 2 : abs >= 1 ? 4 : 5);
}

/** A fraction as a percentage (0.0123 -> "1.23%"); "–" for missing values. */
export function fmtPct(value, digits = 2) {
  if (value === null || value === undefined || value === "") return "–";
  const number = Number(value);
  return Number.isFinite(number) ? `${(number * 100).toFixed(digits)}%` : esc(value);
}

/** Money with separators and sign colouring left to the caller. */
export function fmtMoney(value) {
  if (value === null || value === undefined) return "–";
  const number = Number(value);
  return Number.isFinite(number) ? number.toLocaleString("en-US", { maximumFractionDigits: 0 }) : esc(value);
}

/** Bytes as B, KB, MB. */
export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MB`;
}

/** A duration (ms) as 3.2s, 4m 05s, 2h 03m. */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  const hours = Math.floor(minutes / 60);
  return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
}

/** Wall-clock time of an epoch-ms or ISO timestamp: HH:MM:SS.mmm (local). */
export function fmtTime(value) {
  if (value === null || value === undefined) return "–";
  const date = typeof value === "number" ? new Date(value) : new Date(value);
  if (Number.isNaN(date.getTime())) return esc(value);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** Milliseconds as "12.3 ms". */
export function fmtMs(ms) {
  return ms === null || ms === undefined ? "–" : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

/** CSS class for the sign of a number (P&L colouring). */
export function signClass(value) {
  const number = Number(value);
  return number > 0 ? "pos" : number < 0 ? "neg" : "";
}

/** Filters of a subscription as "symbols=AAPL,MSFT · severity≥high". */
export function fmtFilters(filters) {
  const parts = [];
  for (const [name, value] of Object.entries(filters ?? {})) {
    if (name === "severity") parts.push(`severity≥${value}`);
    else if (name === "min_price") parts.push(`price≥${value}`);
    else if (name === "max_price") parts.push(`price≤${value}`);
    else parts.push(`${name}=${Array.isArray(value) ? value.join(",") : value}`);
  }
  return parts.length ? parts.join(" · ") : "all";
}
