// Stored DataViews: listed with their rules; open one in the grid, rename or delete it.

import { api, h, ask, attempt, hashOf, fill } from "./util.js";
import { app, crumbs } from "./app.js";

export async function dataviewsPage(view) {
  crumbs([["DataViews"]]);
  const { dataviews } = await api("/api/dataviews");
  const reload = () => dataviewsPage(view);
  const act = (text, fn, cls = "") => h("button" + cls, { text, onclick: fn, disabled: !app.info.write, title: app.info.write ? "" : "start hds ui --write to change DataViews" });
  const rows = dataviews.map((dv) => h("tr", { "data-dataview": dv.name },
    h("td", {}, h("b", { text: dv.name }), h("div.muted", { text: dv.id })),
    h("td", { text: dv.status }),
    h("td", {}, dv.queries.map((q) => h("div", {},
      h("a", { href: hashOf(`/d/${q.dataset_id}/v/${q.version_id}/frames`, { q: q.frame_query, roi: q.roi_query }), text: `${q.dataset_name || q.dataset_id} / ${q.version_name || q.version_id}` }),
      q.frame_query ? h("code", { text: `  frame: ${q.frame_query}` }) : null,
      q.roi_query ? h("code", { text: `  roi: ${q.roi_query}` }) : null))),
    h("td", {},
      act("Rename", async () => {
        const got = await ask(`Rename DataView ${dv.name}`, [{ name: "name", label: "New name", value: dv.name }], "Rename");
        if (got && (await attempt(() => api(`/api/dataviews/${dv.id}/rename`, { method: "POST", body: got }), "Renamed"))) reload();
      }), " ",
      act("Delete", async () => {
        const got = await ask(`Delete DataView ${dv.name}?`, [], "Delete");
        if (got && (await attempt(() => api(`/api/dataviews/${dv.id}/delete`, { method: "POST" }), "Deleted"))) reload();
      }, ".danger"))));
  fill(view, 
    h("h1", { text: "DataViews" }),
    h("p.muted", { text: "Queries stored in the store. Save one from a version's query box." }),
    dataviews.length
      ? h("table.list#dataviews", {}, h("tr", {}, h("th", { text: "name" }), h("th", { text: "status" }), h("th", { text: "rules" }), h("th", { text: "" })), rows)
      : h("p.muted#no-dataviews", { text: "No stored DataView." }));
}
