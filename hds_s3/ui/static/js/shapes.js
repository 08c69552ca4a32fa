// ROI geometry as SVG: one element of class "roi" per ROI that has geometry (frame labels have none).

import { s, colour } from "./util.js";

export const SEPARATOR = -999999999;

/** The parts of a flat poly (split at the complex-polygon separator) as [[x, y], ...] lists. */
export function parts(poly) {
  const out = [[]];
  for (let i = 0; i < poly.length; ) {
    if (poly[i] === SEPARATOR) { out.push([]); i += 1; continue; }
    out[out.length - 1].push([poly[i], poly[i + 1]]);
    i += 2;
  }
  return out.filter((p) => p.length);
}

/** True when an ROI draws nothing (a frame label, or a type without 2-D geometry). */
export function isFrameLabel(roi) {
  return roi.type === "label" || !roi.poly || !roi.poly.length;
}

/** Whether an ROI belongs on the given source (ROIs bound to no source belong on all). */
export function onSource(roi, sourceId) {
  return !roi.sources || !roi.sources.length || roi.sources.includes(sourceId);
}

/** The SVG element of an ROI, or null. */
export function roiShape(roi, index, { text = false } = {}) {
  const label = (roi.labels || []).join(", ") || "(no label)";
  const stroke = colour((roi.labels || [])[0] || "");
  const common = { class: "roi", stroke, "data-index": index, "data-label": label };
  const p = roi.poly || [];
  let el = null, anchor = null;
  if (roi.type === "ellipse2d" && p.length === 5) {
    el = s("ellipse", { ...common, cx: p[0], cy: p[1], rx: p[2], ry: p[3], transform: `rotate(${(p[4] * 180) / Math.PI} ${p[0]} ${p[1]})` });
    anchor = [p[0] - p[2], p[1] - p[3]];
  } else if (roi.type === "points2d" || roi.type === "points3d") {
    const step = roi.type === "points3d" ? 3 : 2;
    const d = [];
    for (let i = 0; i + 1 < p.length; i += step) d.push(`M${p[i] - 3},${p[i + 1]} a3,3 0 1,0 6,0 a3,3 0 1,0 -6,0`);
    el = s("path", { ...common, d: d.join(" ") });
    anchor = [p[0], p[1]];
  } else if (roi.type === "box3d" && p.length === 10) {
    el = s("path", { ...common, d: `M${p[0]},${p[1]} h${p[3]} v${p[4]} h${-p[3]} Z M${p[5]},${p[6]} h${p[8]} v${p[9]} h${-p[8]} Z` });
    anchor = [p[0], p[1]];
  } else if (roi.type === "poly3d") {
    const pts = [];
    for (let i = 0; i + 1 < p.length; i += 3) pts.push(`${p[i]},${p[i + 1]}`);
    el = s("path", { ...common, d: "M" + pts.join(" L") + " Z" });
    anchor = [p[0], p[1]];
  } else if (!isFrameLabel(roi)) {
    const d = parts(p).map((part) => "M" + part.map(([x, y]) => `${x},${y}`).join(" L") + " Z").join(" ");
    el = s("path", { ...common, d });
    anchor = parts(p)[0] ? parts(p)[0][0] : [0, 0];
  }
  if (!el) return null;
  el.append(s("title", { text: label + (roi.confidence != null ? ` (${roi.confidence})` : "") }));
  if (!text) return el;
  return s("g", {}, el, s("text", { class: "roitext", x: anchor[0] + 2, y: anchor[1] - 4, text: label }));
}
