// Small DOM helpers: build elements without a framework, write only what changed.

/**
 * Create an element. `attrs`: `class`, `on<event>` handlers, `data-*` and other attributes;
 * children: nodes, strings, arrays, null (skipped).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && !name.startsWith("data-") && name !== "list") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Set text only when it changed: DOM writes are what costs at thousands of updates. */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** Set innerHTML only when it changed. */
export function setHtml(el, html) {
  if (el._html !== html) {
    el._html = html;
    el.innerHTML = html;
  }
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe for innerHTML: message content comes from producers, never trust it. */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A labelled value tile (`.kv`): returns [element, value element]. */
export function tile(label, testId, extraClass = "") {
  const value = h("div", { class: "kv-value", "data-testid": testId }, "–");
  return [h("div", { class: `kv ${extraClass}` }, h("div", { class: "kv-label" }, label), value), value];
}

/**
 * An HTML table body from rows and column specs `{label, cell(row) -> html, cls?}`.
 * @param {{label: string, cell: (row: any) => string, cls?: string}[]} columns
 * @param {any[]} rows
 * @param {(row: any) => string} [rowClass]
 */
export function tableRows(columns, rows, rowClass) {
  let html = "";
  for (const row of rows) {
    html += `<tr class="${rowClass ? rowClass(row) : ""}">`;
    for (const column of columns) html += `<td class="${column.cls ?? ""}">${column.cell(row)}</td>`;
    html += "</tr>";
  }
  return html;
}

/** A `<table>` with a header for `columns`; fill its tbody with `tableRows`. */
export function table(columns, testId) {
  const body = h("tbody");
  const el = h(
    "table",
    { class: "grid", "data-testid": testId },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.cls ?? "" }, c.label)))),
    body,
  );
  return { el, body };
}
