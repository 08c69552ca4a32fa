// A dataset's version tree drawn as a graph, with rename, publish, create child and delete.

import { api, h, s, ask, attempt, when, hashOf, fill } from "./util.js";
import { app, crumbs } from "./app.js";

const W = 190, H = 52, DX = 240, DY = 74;

/** Positions: x by depth, y by leaf order (children stacked under their parent's row). */
function layout(versions) {
  const kids = new Map();
  for (const v of versions) {
    const key = v.parent && versions.some((o) => o.id === v.parent) ? v.parent : null;
    if (!kids.has(key)) kids.set(key, []);
    kids.get(key).push(v);
  }
  const pos = new Map();
  let row = 0;
  const walk = (v, depth) => {
    const children = kids.get(v.id) || [];
    const start = row;
    if (!children.length) row += 1;
    for (const c of children) walk(c, depth + 1);
    pos.set(v.id, { x: 20 + depth * DX, y: 20 + ((start + row - 1) / 2) * DY });
  };
  for (const root of kids.get(null) || []) walk(root, 0);
  return { pos, rows: row, depth: Math.max(0, ...[...pos.values()].map((p) => (p.x - 20) / DX)) };
}

export async function treePage(view, dsId, selectedId) {
  const ds = await api(`/api/datasets/${dsId}`);
  crumbs([["Datasets", "#/"], [ds.name]]);
  const { pos, rows, depth } = layout(ds.versions);
  const svg = s("svg", { id: "tree", width: 40 + (depth + 1) * DX, height: Math.max(160, 40 + rows * DY) });
  const side = h("div.side.panel");
  let selected = selectedId || ds.current || (ds.versions[0] && ds.versions[0].id);
  const byId = new Map(ds.versions.map((v) => [v.id, v]));

  for (const v of ds.versions) {
    const p = pos.get(v.id), q = v.parent && pos.get(v.parent);
    if (p && q) {
      const x0 = q.x + W, y0 = q.y + H / 2, x1 = p.x, y1 = p.y + H / 2, mid = (x0 + x1) / 2;
      svg.append(s("path", { class: "edge", d: `M${x0},${y0} C${mid},${y0} ${mid},${y1} ${x1},${y1}` }));
    }
  }
  const nodes = new Map();
  for (const v of ds.versions) {
    const p = pos.get(v.id);
    if (!p) continue;
    const g = s("g", { class: `node ${v.status}`, transform: `translate(${p.x},${p.y})`, "data-version": v.name },
      s("rect", { width: W, height: H }),
      s("text", { x: 12, y: 21, text: v.name.length > 24 ? v.name.slice(0, 23) + "…" : v.name }),
      s("text", { class: "sub", x: 12, y: 39, text: v.status + (v.id === ds.current ? " · current" : "") }));
    g.addEventListener("click", () => { selected = v.id; draw(); });
    g.addEventListener("dblclick", () => { location.hash = `#/d/${dsId}/v/${v.id}`; });
    nodes.set(v.id, g);
    svg.append(g);
  }

  const act = (label, fn, cls = "") => h("button" + cls, { onclick: fn, text: label, disabled: !app.info.write, title: app.info.write ? "" : "start hds ui --write to change versions" });
  const reload = () => treePage(view, dsId, selected);

  function draw() {
    for (const [id, g] of nodes) g.classList.toggle("selected", id === selected);
    const v = byId.get(selected);
    if (!v) { fill(side, h("p.muted", { text: "No versions." })); return; }
    const hasKids = ds.versions.some((o) => o.parent === v.id);
    fill(side, 
      h("h2", { text: v.name }),
      h("div", {}, h("span", { class: `status ${v.status}`, text: v.status }), v.id === ds.current ? " · current" : ""),
      h("dl.kv", {},
        h("dt", { text: "id" }), h("dd", { text: v.id }),
        h("dt", { text: "parent" }), h("dd", { text: v.parent ? (byId.get(v.parent) || {}).name || v.parent : "none (root)" }),
        h("dt", { text: "created" }), h("dd", { text: when(v.created) + (v.created_by ? ` by ${v.created_by}` : "") }),
        h("dt", { text: "published" }), h("dd", { text: when(v.published) + (v.published_by ? ` by ${v.published_by}` : "") }),
        h("dt", { text: "comment" }), h("dd", { text: v.comment || "-" })),
      h("div.actions", {},
        h("a.button", { href: `#/d/${dsId}/v/${v.id}`, text: "Open frames" }),
        v.parent ? h("a.button", { href: hashOf(`/d/${dsId}/diff`, { old: v.parent, new: v.id }), text: "Diff with parent" }) : null),
      h("div.actions", {},
        act("Rename", async () => {
          const got = await ask(`Rename ${v.name}`, [{ name: "name", label: "New name", value: v.name }], "Rename");
          if (got && (await attempt(() => api(`/api/datasets/${dsId}/versions/${v.id}/rename`, { method: "POST", body: got }), "Renamed"))) reload();
        }),
        v.status === "draft" ? act("Publish", async () => {
          if (await attempt(() => api(`/api/datasets/${dsId}/versions/${v.id}/publish`, { method: "POST" }), `Published ${v.name}`)) reload();
        }) : act("Create child", async () => {
          const got = await ask(`New child of ${v.name}`, [{ name: "name", label: "Name of the new draft", value: "" }], "Create");
          if (!got) return;
          const made = await attempt(() => api(`/api/datasets/${dsId}/versions`, { method: "POST", body: { name: got.name, parent_id: v.id } }), `Created ${got.name}`);
          if (made) { selected = made.id; reload(); }
        }),
        act("Delete", async () => {
          const needsForce = v.status === "published" || hasKids;
          const got = await ask(`Delete ${v.name}?`, needsForce ? [{ name: "force", label: "also published versions and the subtree (force)", type: "checkbox", value: false }] : [], "Delete");
          if (!got) return;
          if (await attempt(() => api(`/api/datasets/${dsId}/versions/${v.id}/delete`, { method: "POST", body: { force: !!got.force } }), `Deleted ${v.name}`)) {
            selected = null;
            reload();
          }
        }, ".danger")),
    );
  }
  fill(view, 
    h("h1", { text: ds.name }),
    h("p.muted", {}, ds.description || "", " ", ds.tags.map((t) => h("span.tag", { text: t }))),
    h("p.muted", { text: `${ds.versions.length} versions · ${ds.paradigm === "single_version" ? "simple structure (a chain)" : "advanced structure (a tree)"} · click a version to select it, double-click to open it` }),
    h("div.treewrap", {}, svg, side));
  draw();
}
