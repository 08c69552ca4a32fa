// The router: the location hash names the page; each page module renders into <main id="view">.

import { api, h, fill } from "./util.js";
import { datasetsPage } from "./datasets.js";
import { treePage } from "./tree.js";
import { versionPage } from "./version.js";
import { viewerPage } from "./viewer.js";
import { diffPage } from "./diff.js";
import { dataviewsPage } from "./dataviews.js";

const view = document.getElementById("view");
export const app = { info: { write: false, store: "" }, crumbs: [] };

/** Set the breadcrumb: [[text, href], ...] (the last without href). */
export function crumbs(items) {
  const nav = document.getElementById("crumbs");
  fill(nav, );
  items.forEach(([text, href], i) => {
    if (i) nav.append(h("span.sep", { text: "/" }));
    nav.append(href ? h("a", { href, text }) : h("span", { text }));
  });
}

const routes = [
  [/^\/?$/, "datasets", () => datasetsPage(view)],
  [/^\/dataviews$/, "dataviews", () => dataviewsPage(view)],
  [/^\/d\/([0-9a-f]+)$/, "tree", (m) => treePage(view, m[1])],
  [/^\/d\/([0-9a-f]+)\/diff$/, "diff", (m, p) => diffPage(view, m[1], p)],
  [/^\/d\/([0-9a-f]+)\/v\/([0-9a-f]+)\/frame$/, "viewer", (m, p) => viewerPage(view, m[1], m[2], p)],
  [/^\/d\/([0-9a-f]+)\/v\/([0-9a-f]+)(?:\/(frames|stats|info))?$/, "version", (m, p) => versionPage(view, m[1], m[2], m[3] || "frames", p)],
];

let rendering = 0;

async function render() {
  const token = ++rendering;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = Object.fromEntries(new URLSearchParams(query || "").entries());
  window.dispatchEvent(new Event("hds:leave"));
  for (const [pattern, name, page] of routes) {
    const m = path.match(pattern);
    if (!m) continue;
    try {
      await page(m, params, token);
    } catch (err) {
      if (token !== rendering) return;
      fill(view, h("div.panel", {}, h("h2", { text: "Cannot show this page" }), h("p.error", { text: err.message })));
    }
    if (token !== rendering) return;
    document.body.dataset.page = name;
    document.body.dataset.ready = String(token);
    return;
  }
  fill(view, h("p.error", { text: `No page at ${path}` }));
}

async function start() {
  app.info = await api("/api/info");
  document.getElementById("store").textContent = app.info.store;
  const mode = document.getElementById("mode");
  mode.textContent = app.info.write ? "read-write" : "read-only";
  mode.classList.toggle("rw", app.info.write);
  window.addEventListener("hashchange", render);
  await render();
}

start();
