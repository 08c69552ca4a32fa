// Bar charts and histograms drawn as SVG.

import { s, fmt, colour } from "./util.js";

/** Horizontal bars, one per {name, count, colour?}, in the order given (at most 25). */
export function barChart(items) {
  if (!items || !items.length) return s("svg", { height: 30 }, s("text", { x: 4, y: 20, class: "val", text: "nothing to show" }));
  const shown = items.slice(0, 25);
  const max = Math.max(1, ...shown.map((i) => i.count));
  const rowH = 22, labelW = 150, width = 460;
  const svg = s("svg", { viewBox: `0 0 ${width} ${shown.length * rowH + 6}`, height: shown.length * rowH + 6 });
  shown.forEach((item, i) => {
    const y = i * rowH + 3, w = ((width - labelW - 70) * item.count) / max;
    const name = String(item.name);
    svg.append(
      s("text", { x: labelW - 6, y: y + 14, "text-anchor": "end", text: name.length > 22 ? name.slice(0, 21) + "…" : name }),
      s("rect", { class: "barrect", x: labelW, y: y + 3, width: Math.max(1, w), height: rowH - 8, rx: 3, style: `fill:${item.colour || colour(name)}` }),
      s("text", { class: "val", x: labelW + w + 6, y: y + 14, text: fmt(item.count) }));
  });
  return svg;
}

/** Vertical bars for numeric bins, in order. */
export function histogram(items) {
  if (!items.length) return barChart([]);
  const max = Math.max(1, ...items.map((i) => i.count));
  const width = 460, height = 200, base = 160, bw = (width - 20) / items.length;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, height });
  items.forEach((item, i) => {
    const hgt = ((base - 10) * item.count) / max, x = 10 + i * bw;
    svg.append(
      s("rect", { class: "barrect", x: x + 1, y: base - hgt, width: Math.max(1, bw - 2), height: hgt },
        s("title", { text: `${item.name}: ${fmt(item.count)}` })),
      s("text", { class: "val", x: x + bw / 2, y: base - hgt - 4, "text-anchor": "middle", text: item.count ? fmt(item.count) : "" }));
  });
  svg.append(
    s("text", { class: "val", x: 10, y: base + 16, text: items[0].name.split(" – ")[0] }),
    s("text", { class: "val", x: width - 10, y: base + 16, "text-anchor": "end", text: items[items.length - 1].name.split(" – ")[1] }));
  return svg;
}
