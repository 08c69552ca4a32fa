// The datasets page: a card per dataset (tags, description, versions, frames, % annotated, top labels), searchable.

import { api, h, fmt, when, fill } from "./util.js";
import { crumbs } from "./app.js";

export async function datasetsPage(view) {
  crumbs([["Datasets"]]);
  const search = h("input#search", { type: "search", placeholder: "Search names, descriptions, tags", size: 40 });
  const cards = h("div.cards");
  const load = async () => {
    const { datasets } = await api("/api/datasets", { params: { search: search.value } });
    fill(cards, ...datasets.map(card));
    if (!datasets.length) cards.append(h("p.muted", { text: search.value ? "No dataset matches." : "This store holds no dataset yet." }));
  };
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 200); });
  fill(view, h("div.row", {}, h("h1", { text: "Datasets" }), h("span.spacer"), search), cards);
  await load();
}

function card(ds) {
  const share = ds.frames ? Math.round((100 * ds.annotated) / ds.frames) : 0;
  return h("a.panel.dscard", { href: `#/d/${ds.id}`, "data-dataset": ds.name },
    h("h3", { text: ds.name }),
    h("div.muted", { text: ds.description || "no description" }),
    h("div", {}, ds.tags.map((t) => h("span.tag", { text: t }))),
    h("div.figures", {},
      h("div", {}, h("b", { text: fmt(ds.versions) }), h("span", { text: "versions" })),
      h("div", {}, h("b.frames", { text: fmt(ds.frames) }), h("span", { text: "frames" })),
      h("div", {}, h("b", { text: `${share} %` }), h("span", { text: "annotated" }))),
    h("div.bar", { title: `${fmt(ds.annotated)} of ${fmt(ds.frames)} frames annotated` }, h("i", { style: `width:${share}%` })),
    h("div.toplabels", {},
      ds.top_labels.length ? "Top labels: " + ds.top_labels.map((l) => `${l.name} (${fmt(l.count)})`).join(", ") : "No labels",
      ds.current ? h("div", { text: `${ds.current.name} · ${ds.current.status} · updated ${when(ds.last_update)}` }) : null));
}
