// The query box: the DataView query language (frame query and ROI query), the count, the error with
// its caret shown inline, and "save as DataView".

import { api, h, ask, attempt, fmt, fill } from "./util.js";
import { app } from "./app.js";

/**
 * Render the query box for a version. `state` holds q and roi; `onApply(state)` is called with
 * the new queries when they parse; returns {el, showCount(count, of)}.
 */
export function queryBox(dsId, vId, state, onApply) {
  const frameInput = h("input#frame-query", { value: state.q || "", placeholder: 'frame query, e.g. meta.city:bremen AND NOT label:cat', spellcheck: "false" });
  const roiInput = h("input#roi-query", { value: state.roi || "", placeholder: "ROI query, e.g. car", spellcheck: "false" });
  const count = h("span.count#count");
  const problem = h("div#query-error");
  const saveBtn = h("button#save-view", {
    text: "Save as DataView", disabled: !app.info.write,
    title: app.info.write ? "store these queries as a DataView" : "start hds ui --write to store DataViews",
    onclick: async () => {
      const got = await ask("Save the query as a DataView", [{ name: "name", label: "DataView name", value: "" }], "Save");
      if (!got) return;
      await attempt(() => api("/api/dataviews", { method: "POST", body: { name: got.name, dataset_id: dsId, version_id: vId, frame_query: frameInput.value, roi_query: roiInput.value } }), `Stored DataView ${got.name}`);
    },
  });
  const showError = (input, err) => {
    input.classList.add("bad");
    const pos = err.body && err.body.position;
    const lines = [h("div.error", { text: (err.message || "").split("\n")[0] })];
    if (pos !== null && pos !== undefined) lines.push(h("pre.caret", { text: input.value + "\n" + " ".repeat(pos) + "^" }));
    fill(problem, ...lines);
  };
  const apply = async () => {
    frameInput.classList.remove("bad");
    roiInput.classList.remove("bad");
    fill(problem, );
    try {
      const got = await api(`/api/datasets/${dsId}/versions/${vId}/count`, { params: { q: frameInput.value, roi: roiInput.value } });
      count.textContent = `${fmt(got.count)} of ${fmt(got.of)} frames`;
      onApply({ q: frameInput.value, roi: roiInput.value });
    } catch (err) {
      count.textContent = "";
      const text = err.message || "";
      showError(text.includes("roi") && roiInput.value ? roiInput : frameInput, err);
    }
  };
  for (const input of [frameInput, roiInput]) input.addEventListener("keydown", (e) => { if (e.key === "Enter") apply(); });
  const el = h("div.panel", {},
    h("div.querybox", {}, frameInput, roiInput, h("div.row", {}, h("button.primary#run-query", { text: "Query", onclick: apply }), saveBtn)),
    problem,
    h("div.row", { style: "margin-top:6px" }, count));
  return { el, showCount: (n, of) => { count.textContent = `${fmt(n)} of ${fmt(of)} frames`; } };
}
