// Small helpers shared by the pages: elements, SVG, the API, colours, dialogs and messages.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element: h("div.cls#id", {attr: value, onclick: fn}, child, "text", ...). */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || "div");
  for (const part of rest) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element with attributes and children. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An error answered by the server: its JSON body is kept in `body`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Call a JSON endpoint; throws ApiError with the library's message. */
export async function api(path, { method = "GET", body, params } = {}) {
  let url = path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const text = q.toString();
    if (text) url += (url.includes("?") ? "&" : "?") + text;
  }
  const init = { method, headers: {} };
  if (body !== undefined || method !== "GET") {  // a change is always sent as JSON (the server requires it)
    init.body = JSON.stringify(body === undefined ? {} : body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = null; }
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

/** The URL of an image endpoint. */
export function imageUrl(ds, v, params) {
  return `/api/datasets/${ds}/versions/${v}/image?` + new URLSearchParams(params).toString();
}

/** A stable colour for a label. */
export function colour(label) {
  let hash = 0;
  for (const ch of String(label)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360}, 85%, 55%)`;
}

export const MASK_PALETTE = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
];

export function when(ms) {
  if (!ms) return "-";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function fmt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

/** Show a message at the bottom right for a few seconds. */
export function toast(text, bad = false) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, bad ? 9000 : 3500);
}

/** Run an async action; its failure is shown as a message (the library's text). */
export async function attempt(action, done) {
  try {
    const out = await action();
    if (done) toast(done);
    return out;
  } catch (err) {
    toast(err.message, true);
    return undefined;
  }
}

/**
 * A small form dialog: fields [{name, label, value, type}] -> Promise of {name: value} or null.
 * Checkbox fields give booleans.
 */
export function ask(title, fields, okText = "OK") {
  return new Promise((resolve) => {
    const inputs = {};
    const close = (value) => { wrap.remove(); resolve(value); };
    const form = h("form.panel", {
      onsubmit: (e) => {
        e.preventDefault();
        const out = {};
        for (const [k, el] of Object.entries(inputs)) out[k] = el.type === "checkbox" ? el.checked : el.value;
        close(out);
      },
    },
      h("h2", { text: title }),
      fields.map((f) => {
        const input = h("input", { name: f.name, type: f.type || "text", value: f.value ?? "" });
        if (f.type === "checkbox") input.checked = !!f.value;
        inputs[f.name] = input;
        return f.type === "checkbox" ? h("label", {}, input, " ", f.label) : [h("label", { text: f.label }), input];
      }),
      h("div.row", {},
        h("button", { type: "button", onclick: () => close(null), text: "Cancel" }),
        h("button.primary", { type: "submit", text: okText })),
    );
    const wrap = h("div.modal", { onclick: (e) => { if (e.target === wrap) close(null); } }, form);
    document.body.append(wrap);
    const first = Object.values(inputs)[0];
    if (first) { first.focus(); if (first.select) first.select(); }
  });
}

/** Parse "a=1&b=2" of the location hash into an object. */
export function hashParams(text) {
  return Object.fromEntries(new URLSearchParams(text || "").entries());
}

export function hashOf(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "" && v !== false) q.set(k, v);
  const text = q.toString();
  return "#" + path + (text ? "?" + text : "");
}

/** Replace an element's children (null, false and undefined are skipped; arrays are flattened). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}
