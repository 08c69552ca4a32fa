// A version: the frames grid (with the query box), statistics as charts, and info with metadata.

import { api, h, s, attempt, fmt, when, colour, imageUrl, hashOf, MASK_PALETTE, fill } from "./util.js";
import { app, crumbs } from "./app.js";
import { queryBox } from "./query.js";
import { roiShape, isFrameLabel, onSource } from "./shapes.js";
import { barChart, histogram } from "./charts.js";

const PAGE = 48;

export async function versionPage(view, dsId, vId, tab, params) {
  const ver = await api(`/api/datasets/${dsId}/versions/${vId}`);
  crumbs([["Datasets", "#/"], [ver.dataset.name, `#/d/${dsId}`], [ver.name]]);
  const keep = { q: params.q, roi: params.roi };
  const tabs = h("nav.tabs", {}, ["frames", "stats", "info"].map((t) =>
    h("a" + (t === tab ? ".active" : ""), { href: hashOf(`/d/${dsId}/v/${vId}/${t}`, keep), text: { frames: "Frames", stats: "Statistics", info: "Info & metadata" }[t] })));
  const body = h("div");
  fill(view, 
    h("div.row", {}, h("h1", { text: `${ver.dataset.name} / ${ver.name}` }), h("span", { class: `status ${ver.status}`, text: ver.status })),
    tabs, body);
  if (tab === "stats") return statsTab(body, dsId, vId, ver, params);
  if (tab === "info") return infoTab(body, dsId, vId, ver);
  return framesTab(body, dsId, vId, ver, params);
}

// ---------------------------------------------------------------------------- frames grid

async function framesTab(body, dsId, vId, ver, params) {
  const state = {
    q: params.q || "", roi: params.roi || "", sort: params.sort || "id", desc: params.desc === "1",
    group: params.group === "1", page: Number(params.page || 0),
  };
  const look = { hidden: new Set(), conf: 0, rois: true, masks: true, names: false };
  const go = (change) => {
    const next = { ...state, ...change };
    location.hash = hashOf(`/d/${dsId}/v/${vId}/frames`, { q: next.q, roi: next.roi, sort: next.sort !== "id" ? next.sort : "", desc: next.desc ? 1 : "", group: next.group ? 1 : "", page: next.page || "" });
  };
  const box = queryBox(dsId, vId, state, (got) => go({ ...got, page: 0 }));
  const sort = h("select#sort", { onchange: () => go({ sort: sort.value, page: 0 }) },
    [["id", "id"], ["context", "context, timestamp"], ["timestamp", "timestamp"], ...ver.meta_fields.map((f) => [`meta.${f}`, `meta.${f}`])].map(([v, t]) => {
      const o = h("option", { value: v, text: "sort by " + t });
      if (v === state.sort) o.selected = true;
      return o;
    }));
  const desc = h("button" + (state.desc ? ".on" : ""), { text: state.desc ? "↓ descending" : "↑ ascending", onclick: () => go({ desc: !state.desc, page: 0 }) });
  const group = h("button#group" + (state.group ? ".on" : ""), { text: "group by context", onclick: () => go({ group: !state.group, page: 0 }) });
  const chips = h("div.chips#labels");
  const conf = h("input#confidence", { type: "range", min: 0, max: 1, step: 0.05, value: 0 });
  const confText = h("span.muted", { text: "confidence ≥ 0" });
  const toggle = (key, text) => {
    const b = h("button" + (look[key] ? ".on" : ""), { text, "data-toggle": key, onclick: () => { look[key] = !look[key]; b.classList.toggle("on", look[key]); redraw(); } });
    return b;
  };
  const grid = h("div.grid#grid");
  const pager = h("div.pager");
  fill(body, 
    box.el,
    h("div.controls", {}, sort, desc, group, toggle("rois", "ROIs"), toggle("masks", "masks"), toggle("names", "label names"), confText, conf),
    chips, pager, grid);

  const page = await api(`/api/datasets/${dsId}/versions/${vId}/frames`, {
    params: { q: state.q, roi: state.roi, sort: state.sort, desc: state.desc ? 1 : "", group: state.group ? 1 : "", offset: state.page * PAGE, limit: PAGE, stats: 1 },
  });
  box.showCount(page.total, ver.stats.frames);
  const labels = page.stats.labels.map((l) => l.name);
  fill(chips, ...labels.map((name) => {
    const chip = h("span.chip", { "data-label": name, onclick: () => { look.hidden.has(name) ? look.hidden.delete(name) : look.hidden.add(name); chip.classList.toggle("off"); redraw(); } },
      h("i", { style: `background:${colour(name)}` }), name);
    return chip;
  }));
  conf.addEventListener("input", () => { look.conf = Number(conf.value); confText.textContent = `confidence ≥ ${look.conf}`; redraw(); });

  const pages = Math.max(1, Math.ceil(page.total / PAGE));
  const jump = h("input", { type: "number", min: 1, max: pages, value: state.page + 1, onchange: () => go({ page: Math.min(pages, Math.max(1, Number(jump.value))) - 1 }) });
  fill(pager, 
    h("button", { text: "«", disabled: state.page === 0, onclick: () => go({ page: 0 }) }),
    h("button#prev-page", { text: "‹ prev", disabled: state.page === 0, onclick: () => go({ page: state.page - 1 }) }),
    h("span", {}, "page ", jump, ` of ${fmt(pages)}`),
    h("button#next-page", { text: "next ›", disabled: state.page >= pages - 1, onclick: () => go({ page: state.page + 1 }) }),
    h("button", { text: "»", disabled: state.page >= pages - 1, onclick: () => go({ page: pages - 1 }) }),
    h("span.muted", { text: `frames ${fmt(Math.min(page.total, page.offset + 1))}–${fmt(Math.min(page.total, page.offset + PAGE))} of ${fmt(page.total)}` }));

  const tiles = [];
  let context = null;
  for (const f of page.frames) {
    if (state.group && f.context_id !== context) {
      context = f.context_id;
      grid.append(h("div.group-head", { text: `context ${context}` }));
    }
    const tile = frameTile(dsId, vId, f, state);
    tiles.push(tile);
    grid.append(tile.el);
  }
  if (!page.frames.length) grid.append(h("p.muted", { text: "No frame matches." }));
  function redraw() { for (const t of tiles) t.draw(look); }
  redraw();
}

function frameTile(dsId, vId, f, state) {
  const src = f.sources[0] || { id: "", width: null, height: null, masks: [] };
  const w = src.width || 640, hgt = src.height || 480;
  const img = h("img", { loading: "lazy", alt: f.id, src: imageUrl(dsId, vId, { id: f.id, source: src.id, w: 320 }) });
  const mask = src.masks.length ? h("img.mask", { alt: "", src: imageUrl(dsId, vId, { id: f.id, source: src.id, kind: "mask", w: 320 }) }) : null;
  const svg = s("svg", { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "xMidYMid meet", style: `font-size:${w / 20}px` });
  const flabels = f.rois.filter((r) => isFrameLabel(r)).flatMap((r) => r.labels);
  const link = hashOf(`/d/${dsId}/v/${vId}/frame`, { id: f.id, q: state.q, roi: state.roi, sort: state.sort !== "id" ? state.sort : "", desc: state.desc ? 1 : "", group: state.group ? 1 : "" });
  const el = h("div.tile", { "data-frame": f.id, onclick: () => { location.hash = link; } },
    h("div.thumb", {}, img, mask, svg),
    h("div.cap", { title: f.id }, f.id, flabels.length ? h("span.flabels", { text: " · " + flabels.join(", ") }) : null));
  return {
    el,
    draw(look) {
      if (mask) mask.style.display = look.masks ? "" : "none";
      fill(svg, );
      if (!look.rois) return;
      f.rois.forEach((roi, i) => {
        if (!onSource(roi, src.id) || isFrameLabel(roi)) return;
        if ((roi.labels || []).some((l) => look.hidden.has(l))) return;
        if (look.conf > 0 && (roi.confidence === null || roi.confidence === undefined || roi.confidence < look.conf)) return;
        const shape = roiShape(roi, i, { text: look.names });
        if (shape) svg.append(shape);
      });
    },
  };
}

// ---------------------------------------------------------------------------- statistics

async function statsTab(body, dsId, vId, ver, params) {
  const st = ver.stats;
  const annotated = [{ name: "annotated", count: st.annotated, colour: "#059669" }, { name: "not annotated", count: st.unannotated, colour: "#9ca3af" }];
  const field = h("select#dist-field", {}, ver.meta_fields.map((f) => h("option", { value: `meta.${f}`, text: `meta.${f}` })));
  const query = h("input#dist-query", { value: params.q || "", placeholder: "over frames matching (frame query)", size: 40 });
  const dist = h("div#distribution");
  const loadDist = async () => {
    if (!field.value) { fill(dist, h("p.muted", { text: "The frames carry no metadata." })); return; }
    try {
      const got = await api(`/api/datasets/${dsId}/versions/${vId}/distribution`, { params: { field: field.value, q: query.value } });
      const items = got.kind === "number"
        ? got.bins.map((b) => ({ name: `${+b.low.toFixed(3)} – ${+b.high.toFixed(3)}`, count: b.count }))
        : got.values;
      fill(dist, 
        got.kind === "number" ? histogram(items) : barChart(items),
        h("p.muted", { text: `${fmt(got.frames)} frames${got.missing ? `, ${fmt(got.missing)} without ${got.field}` : ""}${got.other ? `, ${fmt(got.other)} in other values` : ""}` }));
    } catch (err) {
      fill(dist, h("p.error", { text: err.message }));
    }
  };
  field.addEventListener("change", loadDist);
  query.addEventListener("keydown", (e) => { if (e.key === "Enter") loadDist(); });
  fill(body, 
    h("div.figs", {},
      h("div.panel", {}, h("b", { text: fmt(st.frames) }), "frames"),
      h("div.panel", {}, h("b", { text: fmt(st.annotated) }), "annotated"),
      h("div.panel", {}, h("b", { text: fmt(st.rois) }), "ROIs"),
      h("div.panel", {}, h("b", { text: fmt(st.labels.length) }), "labels")),
    h("div.charts", {},
      h("div.panel.chart#chart-labels", {}, h("h2", { text: "ROIs per label" }), barChart(st.labels)),
      h("div.panel.chart#chart-annotated", {}, h("h2", { text: "Annotated share" }), barChart(annotated)),
      h("div.panel.chart#chart-types", {}, h("h2", { text: "Content types" }), barChart(st.content_types)),
      h("div.panel.chart", {}, h("h2", { text: "Distribution of a meta field" }), h("div.row", {}, field, query), dist)));
  await loadDist();
}

// ---------------------------------------------------------------------------- info and metadata

function infoTab(body, dsId, vId, ver) {
  const editable = app.info.write && ver.status === "draft";
  const text = h("textarea#metadata", { spellcheck: "false" });
  text.value = JSON.stringify(ver.metadata, null, 2);
  if (!editable) text.readOnly = true;
  const legend = ver.mask_labels.map((m, i) => h("span", {}, h("i", { style: `background:rgb(${MASK_PALETTE[i % MASK_PALETTE.length].join(",")})` }), `${m.labels.join(", ")} = rgb(${m.value.join(", ")})`));
  fill(body, 
    h("div.charts", {},
      h("div.panel", {},
        h("h2", { text: "Info" }),
        h("dl.kv", {},
          h("dt", { text: "dataset" }), h("dd", { text: `${ver.dataset.name} (${ver.dataset.id})` }),
          h("dt", { text: "version id" }), h("dd", { text: ver.id }),
          h("dt", { text: "status" }), h("dd", { text: ver.status }),
          h("dt", { text: "parent" }), h("dd", { text: ver.parent || "none (root)" }),
          h("dt", { text: "children" }), h("dd", { text: ver.children.length }),
          h("dt", { text: "created" }), h("dd", { text: when(ver.created) + (ver.created_by ? ` by ${ver.created_by}` : "") }),
          h("dt", { text: "published" }), h("dd", { text: when(ver.published) + (ver.published_by ? ` by ${ver.published_by}` : "") }),
          h("dt", { text: "comment" }), h("dd", { text: ver.comment || "-" }),
          h("dt", { text: "tags" }), h("dd", {}, ver.tags.map((t) => h("span.tag", { text: t }))),
          h("dt", { text: "frames" }), h("dd", { text: fmt(ver.stats.frames) }),
          h("dt", { text: "mask labels" }), h("dd.legend", {}, legend.length ? legend : "-"))),
      h("div.panel", {},
        h("h2", { text: "Metadata" }),
        text,
        h("div.row", { style: "margin-top:8px" },
          h("button.primary#save-metadata", {
            text: "Save metadata", disabled: !app.info.write,
            title: app.info.write ? "" : "start hds ui --write to edit metadata",
            onclick: async () => {
              let value;
              try { value = JSON.parse(text.value); } catch (e) { attempt(async () => { throw new Error(`not JSON: ${e.message}`); }); return; }
              await attempt(() => api(`/api/datasets/${dsId}/versions/${vId}/metadata`, { method: "PUT", body: { metadata: value } }), "Metadata saved");
            },
          }),
          editable ? null : h("span.muted", { text: ver.status === "published" ? "published versions keep their metadata" : "read-only" })))));
}
