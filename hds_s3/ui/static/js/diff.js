// The diff of two versions of a dataset: frames added, deleted and rewritten, and ROI counts per label.

import { api, h, fmt, hashOf, fill } from "./util.js";
import { crumbs } from "./app.js";

export async function diffPage(view, dsId, params) {
  const ds = await api(`/api/datasets/${dsId}`);
  crumbs([["Datasets", "#/"], [ds.name, `#/d/${dsId}`], ["diff"]]);
  const pick = (id, chosen) => h("select#" + id, { onchange: () => { location.hash = hashOf(`/d/${dsId}/diff`, { old: oldSel.value, new: newSel.value }); } },
    ds.versions.map((v) => { const o = h("option", { value: v.id, text: `${v.name} (${v.status})` }); if (v.id === chosen) o.selected = true; return o; }));
  const current = ds.versions.find((v) => v.id === params.new) || ds.versions.find((v) => v.id === ds.current) || ds.versions[ds.versions.length - 1];
  const older = ds.versions.find((v) => v.id === params.old) || ds.versions.find((v) => v.id === (current && current.parent)) || ds.versions[0];
  const oldSel = pick("diff-old", older && older.id), newSel = pick("diff-new", current && current.id);
  const out = h("div#diff");
  fill(view, h("h1", { text: `Diff of ${ds.name}` }), h("div.row", {}, "from ", oldSel, " to ", newSel), out);
  if (!older || !current) { out.append(h("p.muted", { text: "The dataset has no versions." })); return; }
  const d = await api(`/api/datasets/${dsId}/diff`, { params: { old: older.id, new: current.id } });
  const list = (title, ids, vId) => h("div.panel", {}, h("h2", { text: `${title} (${fmt(d.counts[title.toLowerCase()])})` }),
    ids.length ? h("div", {}, ids.map((id) => h("div", {}, vId ? h("a", { href: hashOf(`/d/${dsId}/v/${vId}/frame`, { id }), text: id }) : id))) : h("p.muted", { text: "none" }),
    d.counts[title.toLowerCase()] > ids.length ? h("p.muted", { text: `… and ${fmt(d.counts[title.toLowerCase()] - ids.length)} more` }) : null);
  out.append(
    h("div.figs", {},
      h("div.panel#diff-added", {}, h("b", { text: fmt(d.counts.added) }), "frames added"),
      h("div.panel#diff-deleted", {}, h("b", { text: fmt(d.counts.deleted) }), "frames deleted"),
      h("div.panel#diff-changed", {}, h("b", { text: fmt(d.counts.changed) }), "frames changed")),
    h("div.panel", {}, h("h2", { text: "ROIs per label" }),
      d.labels.length ? h("table.list#diff-labels", {}, h("tr", {}, h("th", { text: "label" }), h("th", { text: d.old.name }), h("th", { text: d.new.name }), h("th", { text: "change" })),
        d.labels.map((l) => { const delta = l.new - l.old; return h("tr", {}, h("td", { text: l.name }), h("td", { text: fmt(l.old) }), h("td", { text: fmt(l.new) }), h("td", { class: `delta ${delta > 0 ? "up" : "down"}`, text: (delta > 0 ? "+" : "") + fmt(delta) })); }))
        : h("p.muted", { text: "No label count changed." })),
    h("div.charts", { style: "margin-top:14px" }, list("Added", d.added, current.id), list("Changed", d.changed, current.id), list("Deleted", d.deleted, older.id)));
}
