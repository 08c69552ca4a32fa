// The frame viewer and annotator: zoom and pan, every source of a frame group, previews, masks with
// the version's mask labels, the ROI list with metadata, frame metadata, navigation; on drafts
// (with --write) drawing and editing rectangles and polygons, frame labels, ROI labels and
// metadata, undo/redo and save through the library's update_frames.

import { api, h, s, attempt, toast, fmt, when, colour, imageUrl, hashOf, MASK_PALETTE, fill } from "./util.js";
import { app, crumbs } from "./app.js";
import { roiShape, isFrameLabel, onSource } from "./shapes.js";

const WIDE = 1600;
const clone = (x) => JSON.parse(JSON.stringify(x));

export async function viewerPage(view, dsId, vId, params) {
  const grid = { q: params.q || "", roi: params.roi || "", sort: params.sort || "", desc: params.desc || "", group: params.group || "" };
  const got = await api(`/api/datasets/${dsId}/versions/${vId}/frame`, { params: { id: params.id, ...grid } });
  const ver = got.version;
  crumbs([["Datasets", "#/"], [got.dataset.name, `#/d/${dsId}`], [ver.name, hashOf(`/d/${dsId}/v/${vId}/frames`, grid)], [got.frame.id]]);
  const canDraw = app.info.write;
  const st = {
    frame: got.frame, rois: clone(got.frame.rois || []), meta: clone(got.frame.meta || {}),
    undo: [], redo: [], selected: null, tool: "pan", source: 0, masks: true, dirty: false,
    zoom: { k: 1, x: 0, y: 0 }, drawing: null, defaultLabel: "object",
  };
  const sources = st.frame.sources || [];
  const frameNav = (id) => { location.hash = hashOf(`/d/${dsId}/v/${vId}/frame`, { id, ...grid }); };

  // ------------------------------------------------------------------ layout
  const stage = h("div.stage#stage");
  const layer = h("div.layer");
  const img = h("img#frame-image", { alt: st.frame.id, draggable: "false" });
  const maskImg = h("img.mask", { alt: "", draggable: "false" });
  const svg = s("svg", { id: "overlay" });
  const zoomText = h("span.zoom");
  layer.append(img, maskImg, svg);
  stage.append(layer, zoomText);
  const toolbar = h("div");
  const sourceTabs = h("div.sources");
  const previews = h("div.previews");
  const side = h("div");
  const banner = h("div");
  fill(view, 
    h("div.row", {}, h("h1", { text: st.frame.id }), h("span", { class: `status ${ver.status}`, text: ver.status }),
      h("span.muted", { text: got.position !== null ? `frame ${fmt(got.position + 1)} of ${fmt(got.total)}` : `not among the ${fmt(got.total)} frames of the query` })),
    banner,
    h("div.viewer", {}, h("div", {}, toolbar, sourceTabs, stage, previews), side));

  if (!canDraw) fill(banner, );
  else if (ver.status === "published") fill(banner, h("p.error#published-note", { text: "This version is published: its frames cannot change, and saving is refused by the library." }));

  // ------------------------------------------------------------------ geometry of the image
  let W = 640, H = 480;
  const src = () => sources[st.source] || { id: "", masks: [] };
  function loadSource() {
    const cur = src();
    W = cur.width || W; H = cur.height || H;
    img.src = imageUrl(dsId, vId, { id: st.frame.id, source: cur.id, w: WIDE });
    const hasMask = (cur.masks || []).length > 0;
    maskImg.style.display = hasMask && st.masks ? "" : "none";
    if (hasMask) maskImg.src = imageUrl(dsId, vId, { id: st.frame.id, source: cur.id, kind: "mask", w: WIDE });
    fill(previews, ...(cur.preview ? [h("span.muted", { text: "preview: " }), h("img#preview", { alt: "preview", src: imageUrl(dsId, vId, { id: st.frame.id, source: cur.id, kind: "preview", w: 240 }) })] : []));
    sizeLayer();
    fit();
    drawShapes();
    drawSide();
  }
  img.addEventListener("load", () => {
    if (!src().width || !src().height) { W = img.naturalWidth; H = img.naturalHeight; sizeLayer(); fit(); drawShapes(); }
  });
  function sizeLayer() {
    for (const el of [img, maskImg]) { el.style.width = W + "px"; el.style.height = H + "px"; }
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W); svg.setAttribute("height", H);
  }
  function apply() {
    layer.style.transform = `translate(${st.zoom.x}px, ${st.zoom.y}px) scale(${st.zoom.k})`;
    zoomText.textContent = `${Math.round(st.zoom.k * 100)} %`;
    svg.style.fontSize = `${13 / st.zoom.k}px`;  // labels keep their size on screen
  }
  function fit() {
    const r = stage.getBoundingClientRect();
    const k = Math.min(r.width / W, r.height / H) || 1;
    st.zoom = { k, x: (r.width - W * k) / 2, y: (r.height - H * k) / 2 };
    apply();
  }
  const toImage = (e) => {
    const r = stage.getBoundingClientRect();
    return [(e.clientX - r.left - st.zoom.x) / st.zoom.k, (e.clientY - r.top - st.zoom.y) / st.zoom.k];
  };
  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = stage.getBoundingClientRect();
    const px = e.clientX - r.left, py = e.clientY - r.top;
    const k = Math.min(40, Math.max(0.05, st.zoom.k * (e.deltaY < 0 ? 1.15 : 1 / 1.15)));
    st.zoom = { k, x: px - ((px - st.zoom.x) * k) / st.zoom.k, y: py - ((py - st.zoom.y) * k) / st.zoom.k };
    apply();
  }, { passive: false });

  // ------------------------------------------------------------------ editing
  const change = (fn) => {
    st.undo.push(clone({ rois: st.rois, meta: st.meta }));
    st.redo = [];
    fn();
    st.dirty = true;
    drawShapes(); drawSide(); drawToolbar();
  };
  const restore = (from, to) => {
    if (!from.length) return;
    to.push(clone({ rois: st.rois, meta: st.meta }));
    const prev = from.pop();
    st.rois = prev.rois; st.meta = prev.meta; st.selected = null; st.dirty = true;
    drawShapes(); drawSide(); drawToolbar();
  };
  const newRoi = (type, poly) => ({
    id: null, labels: [st.defaultLabel || "object"], type, poly, confidence: null,
    sources: sources.length > 1 ? [src().id] : [], meta: {}, mask: null,
  });

  let drag = null;
  stage.addEventListener("mousedown", (e) => {
    if (e.button !== 0) return;
    const [x, y] = toImage(e);
    const handle = e.target.closest && e.target.closest(".handle");
    if (handle && canDraw) {
      const i = st.selected, v = Number(handle.dataset.vertex);
      st.undo.push(clone({ rois: st.rois, meta: st.meta })); st.redo = [];
      drag = { kind: "vertex", roi: i, vertex: v };
      e.preventDefault();
      return;
    }
    if (st.tool === "rect" && canDraw) { drag = { kind: "rect", x0: x, y0: y, x1: x, y1: y }; e.preventDefault(); return; }
    if (st.tool === "poly" && canDraw) {
      if (!st.drawing) st.drawing = [];
      const first = st.drawing[0];
      if (first && st.drawing.length >= 3 && Math.hypot(first[0] - x, first[1] - y) * st.zoom.k < 8) finishPolygon();
      else st.drawing.push([x, y]);
      drawShapes();
      e.preventDefault();
      return;
    }
    const shape = e.target.closest && e.target.closest(".roi");
    if (shape) { st.selected = Number(shape.dataset.index); drawShapes(); drawSide(); return; }
    drag = { kind: "pan", sx: e.clientX, sy: e.clientY, x: st.zoom.x, y: st.zoom.y, moved: false };
  });
  window.addEventListener("mousemove", onMove);
  window.addEventListener("mouseup", onUp);
  function onMove(e) {
    if (!drag) return;
    if (drag.kind === "pan") {
      st.zoom.x = drag.x + e.clientX - drag.sx; st.zoom.y = drag.y + e.clientY - drag.sy;
      drag.moved = true;
      apply();
      return;
    }
    const [x, y] = toImage(e);
    if (drag.kind === "rect") { drag.x1 = x; drag.y1 = y; drawShapes(); }
    if (drag.kind === "vertex") { moveVertex(st.rois[drag.roi], drag.vertex, x, y); st.dirty = true; drawShapes(); }
  }
  function onUp() {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (d.kind === "pan" && !d.moved) { st.selected = null; drawShapes(); drawSide(); }
    if (d.kind === "rect") {
      const x0 = Math.max(0, Math.min(d.x0, d.x1)), y0 = Math.max(0, Math.min(d.y0, d.y1));
      const x1 = Math.min(W, Math.max(d.x0, d.x1)), y1 = Math.min(H, Math.max(d.y0, d.y1));
      if (x1 - x0 >= 2 && y1 - y0 >= 2) {
        const r = (n) => Math.round(n * 10) / 10;
        change(() => { st.rois.push(newRoi("box2d", [r(x0), r(y0), r(x1), r(y0), r(x1), r(y1), r(x0), r(y1)])); st.selected = st.rois.length - 1; });
      } else drawShapes();
    }
    if (d.kind === "vertex") { drawSide(); drawToolbar(); }
  }
  function finishPolygon() {
    const pts = st.drawing;
    st.drawing = null;
    if (!pts || pts.length < 3) { drawShapes(); return; }
    change(() => { st.rois.push(newRoi("poly2d", pts.flat().map((n) => Math.round(n * 10) / 10))); st.selected = st.rois.length - 1; });
  }
  function moveVertex(roi, v, x, y) {
    const p = roi.poly;
    if (roi.type === "box2d") {
      // corners 0..3 = (x0,y0) (x1,y0) (x1,y1) (x0,y1): keep the box axis-aligned
      let [x0, y0, x1, , , y1] = p;
      if (v === 0 || v === 3) x0 = x; else x1 = x;
      if (v === 0 || v === 1) y0 = y; else y1 = y;
      const a = Math.min(x0, x1), b = Math.min(y0, y1), c = Math.max(x0, x1), d = Math.max(y0, y1);
      roi.poly = [a, b, c, b, c, d, a, d].map((n) => Math.round(n * 10) / 10);
    } else {
      p[2 * v] = Math.round(x * 10) / 10; p[2 * v + 1] = Math.round(y * 10) / 10;
    }
  }
  const onKey = (e) => {
    if (e.target.closest && e.target.closest("input, textarea")) return;
    if (e.key === "Escape") { st.drawing = null; drawShapes(); }
    else if (e.key === "Enter" && st.drawing) finishPolygon();
    else if ((e.key === "Delete" || e.key === "Backspace") && st.selected !== null && canDraw) removeSelected();
    else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); e.shiftKey ? restore(st.redo, st.undo) : restore(st.undo, st.redo); }
    else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "y") { e.preventDefault(); restore(st.redo, st.undo); }
    else if (e.key === "ArrowRight") seek(1);
    else if (e.key === "ArrowLeft") seek(-1);
  };
  window.addEventListener("keydown", onKey);
  stage.addEventListener("dblclick", (e) => { if (st.tool === "poly" && st.drawing) { e.preventDefault(); st.drawing.pop(); finishPolygon(); } });
  const cleanup = () => {
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("mousemove", onMove);
    window.removeEventListener("mouseup", onUp);
    window.removeEventListener("hds:leave", cleanup);
    window.removeEventListener("resize", fit);
  };
  window.addEventListener("hds:leave", cleanup);
  window.addEventListener("resize", fit);
  function removeSelected() {
    const i = st.selected;
    change(() => { st.rois.splice(i, 1); st.selected = null; });
  }

  // ------------------------------------------------------------------ drawing
  function drawShapes() {
    fill(svg, );
    st.rois.forEach((roi, i) => {
      if (!onSource(roi, src().id) || isFrameLabel(roi)) return;
      const shape = roiShape(roi, i, { text: true });
      if (!shape) return;
      if (i === st.selected) (shape.querySelector(".roi") || shape).classList.add("selected");
      svg.append(shape);
    });
    const sel = st.selected !== null ? st.rois[st.selected] : null;
    if (sel && canDraw && (sel.type === "box2d" || sel.type === "poly2d") && !sel.poly.includes(-999999999)) {
      const r = 5 / st.zoom.k;
      for (let v = 0; v * 2 < sel.poly.length; v++) svg.append(s("circle", { class: "handle", "data-vertex": v, cx: sel.poly[2 * v], cy: sel.poly[2 * v + 1], r }));
    }
    if (drag && drag.kind === "rect") {
      const x = Math.min(drag.x0, drag.x1), y = Math.min(drag.y0, drag.y1);
      svg.append(s("rect", { class: "roi drawing", stroke: "#fff", x, y, width: Math.abs(drag.x1 - drag.x0), height: Math.abs(drag.y1 - drag.y0) }));
    }
    if (st.drawing && st.drawing.length) svg.append(s("polyline", { class: "roi drawing", stroke: "#fff", points: st.drawing.map((p) => p.join(",")).join(" ") }));
    stage.classList.toggle("drawing", st.tool !== "pan");
  }

  async function seek(step, annotated = false) {
    if (got.position === null) return;
    const target = annotated ? got.position : got.position + step;
    await attempt(async () => {
      const hit = await api(`/api/datasets/${dsId}/versions/${vId}/seek`, { params: { position: target, step: annotated ? step : "", annotated: annotated ? 1 : "", ...grid } });
      if (st.dirty && !confirm("Leave this frame without saving?")) return;
      frameNav(hit.id);
    });
  }

  async function save() {
    const body = { frame: { ...st.frame, rois: st.rois, meta: st.meta } };
    const out = await attempt(() => api(`/api/datasets/${dsId}/versions/${vId}/frame`, { method: "PUT", body }), "Frame saved");
    if (out) { st.frame = out.frame; st.rois = clone(out.frame.rois); st.meta = clone(out.frame.meta || {}); st.dirty = false; st.selected = null; drawShapes(); drawSide(); drawToolbar(); }
  }

  function drawToolbar() {
    const tool = (name, text) => h("button" + (st.tool === name ? ".on" : ""), { "data-tool": name, text, disabled: name !== "pan" && !canDraw, onclick: () => { st.tool = name; st.drawing = null; drawToolbar(); drawShapes(); } });
    const labelInput = h("input#new-label", { value: st.defaultLabel, size: 10, title: "label of new ROIs", onchange: () => { st.defaultLabel = labelInput.value.trim() || "object"; } });
    fill(toolbar,
      h("div.toolbar", {},
        h("button", { text: "−10", onclick: () => seek(-10) }),
        h("button#prev-frame", { text: "‹ prev", onclick: () => seek(-1) }),
        h("button#next-frame", { text: "next ›", onclick: () => seek(1) }),
        h("button", { text: "+10", onclick: () => seek(10) }),
        h("button#next-annotated", { text: "next annotated ›", onclick: () => seek(1, true) }),
        h("span.spacer"),
        h("button", { text: "fit", onclick: fit })),
      h("div.toolbar", {},
        tool("pan", "select / pan"), tool("rect", "▭ rectangle"), tool("poly", "⬠ polygon"),
        canDraw ? h("span.muted", {}, "label ", labelInput) : null,
        h("span.spacer"),
        h("button#undo", { text: "↶ undo", disabled: !st.undo.length, onclick: () => restore(st.undo, st.redo) }),
        h("button#redo", { text: "↷ redo", disabled: !st.redo.length, onclick: () => restore(st.redo, st.undo) }),
        h("button#save-frame.primary", { text: st.dirty ? "Save •" : "Save", disabled: !canDraw || !st.dirty, title: canDraw ? "" : "start hds ui --write to annotate", onclick: save })));
    if (sources.length > 1) {
      fill(sourceTabs, ...sources.map((so, i) => h("button" + (i === st.source ? ".on" : ""), { "data-source": so.id, text: `source ${so.id}`, onclick: () => { st.source = i; drawToolbar(); loadSource(); } })));
    }
  }

  function drawSide() {
    const cur = src();
    const frameLabels = st.rois.map((r, i) => [r, i]).filter(([r]) => isFrameLabel(r));
    const shapes = st.rois.map((r, i) => [r, i]).filter(([r]) => !isFrameLabel(r));
    const addLabel = h("input#add-frame-label", { placeholder: "add a frame label", size: 16, disabled: !canDraw,
      onkeydown: (e) => { if (e.key === "Enter" && addLabel.value.trim()) { const name = addLabel.value.trim(); change(() => st.rois.push({ ...newRoi("label", []), labels: [name], sources: [] })); } } });
    const sel = st.selected !== null ? st.rois[st.selected] : null;
    const legend = (got.mask_labels || []).map((m, i) => h("span", {}, h("i", { style: `background:rgb(${MASK_PALETTE[i % MASK_PALETTE.length].join(",")})` }), m.labels.join(", ")));
    fill(side, 
      h("div.panel", {},
        h("dl.kv", {},
          h("dt", { text: "id" }), h("dd", { text: st.frame.id }),
          h("dt", { text: "context" }), h("dd", { text: st.frame.context_id }),
          h("dt", { text: "timestamp" }), h("dd", { text: st.frame.timestamp }),
          h("dt", { text: "source" }), h("dd", { text: cur.uri || "-" }),
          h("dt", { text: "size" }), h("dd", { text: cur.width ? `${cur.width} × ${cur.height}` : "unknown" }),
          h("dt", { text: "saved" }), h("dd", { text: st.frame.saved ? when(st.frame.saved) : "-" })),
        (cur.masks || []).length ? h("div.legend", { style: "margin-top:8px" },
          h("label", {}, h("input", { type: "checkbox", checked: st.masks, onchange: (e) => { st.masks = e.target.checked; maskImg.style.display = st.masks ? "" : "none"; } }), " mask "), legend) : null),
      h("h2", { text: "Frame labels" }),
      h("div.chips#frame-labels", {}, frameLabels.map(([r, i]) => h("span.chip", {}, h("i", { style: `background:${colour(r.labels[0])}` }), r.labels.join(", "),
        canDraw ? h("b", { text: " ×", style: "cursor:pointer", onclick: () => change(() => { st.rois.splice(i, 1); st.selected = null; }) }) : null)), canDraw ? addLabel : null),
      h("h2", { text: `ROIs (${shapes.length})` }),
      h("div.roilist#roi-list", {}, shapes.map(([r, i]) => h("div.roiitem" + (i === st.selected ? ".selected" : ""), { "data-index": i, onclick: () => { st.selected = i; drawShapes(); drawSide(); } },
        h("div", {}, h("b", { style: `color:${colour(r.labels[0] || "")}`, text: (r.labels || []).join(", ") || "(no label)" }), ` · ${r.type}`, r.confidence != null ? ` · ${r.confidence}` : "", r.sources && r.sources.length ? ` · ${r.sources.join(",")}` : ""),
        r.meta && Object.keys(r.meta).length ? h("div.meta", { text: JSON.stringify(r.meta) }) : null))),
      sel ? roiEditor(sel) : null,
      h("h2", { text: "Frame metadata" }),
      canDraw ? metaEditor() : h("pre.json#frame-meta", { text: JSON.stringify(st.meta, null, 2) }),
      cur.meta && Object.keys(cur.meta).length ? [h("h2", { text: "Source metadata" }), h("pre.json", { text: JSON.stringify(cur.meta, null, 2) })] : null,
      h("h2", { text: "History" }), historyList);
  }
  const historyList = h("div#history.muted", { text: "…" });
  api(`/api/datasets/${dsId}/versions/${vId}/history`, { params: { id: st.frame.id } }).then((got) => {
    fill(historyList, got.changes.map((c) => h("div", {}, h("a", { href: hashOf(`/d/${dsId}/v/${c.version_id}/frame`, { id: st.frame.id }), text: c.version_name }), ` · ${c.change} (${c.status})`)));
  }, (err) => { historyList.textContent = err.message; });

  function roiEditor(roi) {
    if (!canDraw) return null;
    const labels = h("input#roi-labels", { value: (roi.labels || []).join(", ") });
    const conf = h("input#roi-confidence", { value: roi.confidence ?? "", placeholder: "none" });
    const meta = h("textarea#roi-meta", { spellcheck: "false" });
    meta.value = JSON.stringify(roi.meta || {}, null, 1);
    const applyEdit = () => {
      let parsed;
      try { parsed = JSON.parse(meta.value || "{}"); } catch (e) { toast(`ROI metadata is not JSON: ${e.message}`, true); return; }
      const c = conf.value.trim() === "" ? null : Number(conf.value);
      change(() => {
        const target = st.rois[st.selected];
        target.labels = labels.value.split(",").map((x) => x.trim()).filter(Boolean);
        target.confidence = c;
        target.meta = parsed;
      });
    };
    return h("div.panel.editor", {},
      h("b", { text: "Selected ROI" }),
      h("label", { text: "labels (comma-separated)" }), labels,
      h("label", { text: "confidence (0..1)" }), conf,
      h("label", { text: "metadata (JSON)" }), meta,
      h("div.row", { style: "margin-top:6px" }, h("button#apply-roi", { text: "Apply", onclick: applyEdit }), h("button.danger#delete-roi", { text: "Delete ROI", onclick: removeSelected })));
  }

  function metaEditor() {
    const text = h("textarea#frame-meta-edit", { spellcheck: "false" });
    text.value = JSON.stringify(st.meta, null, 2);
    return h("div", {}, text, h("button", { text: "Apply metadata", onclick: () => {
      try { const parsed = JSON.parse(text.value || "{}"); change(() => { st.meta = parsed; }); } catch (e) { toast(`frame metadata is not JSON: ${e.message}`, true); }
    } }));
  }

  drawToolbar();
  loadSource();
}
