// Compare 2-4 models: downloads, likes and trend probability over time, overlaid. `#/compare?ids=a/b,c/d`.
import { ApiError, api, el, fmt, modelHref } from "../api.js";
import { lineChart } from "../charts.js";

export const MAX_COMPARED = 4;

export function compareHref(ids) {
  return "#/compare?ids=" + ids.map(encodeURIComponent).join(",");
}

function idsOf(params) {
  const raw = new URLSearchParams(params.replace(/^\?/, "")).get("ids") ?? "";
  return [...new Set(raw.split(",").map((s) => decodeURIComponent(s).trim()).filter(Boolean))].slice(0, MAX_COMPARED);
}

async function fetchModel(id) {
  try {
    return await api("/v1/models/" + id.split("/").map(encodeURIComponent).join("/"));
  } catch (err) {
    return { model_id: id, error: err instanceof ApiError && err.status === 404 ? "not in the catalog" : err.message };
  }
}

export async function render(root, params) {
  const ids = idsOf(params);
  const add = el("form", { class: "inline", "data-testid": "compare-add", onsubmit: (e) => {
    e.preventDefault();
    const id = new FormData(e.target).get("model_id").trim();
    if (id && !ids.includes(id)) location.hash = compareHref([...ids, id].slice(-MAX_COMPARED));
  } }, el("input", { name: "model_id", placeholder: "add a model: org/name", "aria-label": "model to add", required: "" }),
    el("button", { type: "submit" }, "Add"));
  root.replaceChildren(el("h1", {}, "Compare"), add);
  if (ids.length < 2) {
    root.append(el("p", { class: "muted", "data-testid": "compare-empty" },
      ids.length ? `Add another model to compare with ${ids[0]}.` : "Pick 2 to 4 models: tick rows in Search, or add them here by id."));
    if (!ids.length) return;
  }
  root.append(el("p", { class: "muted", "data-testid": "loading" }, "Loading…"));
  const models = await Promise.all(ids.map(fetchModel));
  root.querySelector("[data-testid=loading]")?.remove();
  const found = models.filter((m) => !m.error);
  root.append(el("ul", { class: "legend", "data-testid": "compare-legend" }, models.map((m) => el("li", {},
    el("a", { href: modelHref(m.model_id) }, m.model_id), " ",
    m.error ? el("span", { class: "error" }, m.error) : el("span", { class: "muted" }, `${fmt.pct(m.probability)} · ${fmt.int(m.downloads)} downloads`),
    " ", el("a", { href: compareHref(ids.filter((x) => x !== m.model_id)), "aria-label": "remove " + m.model_id }, "remove")))));
  if (found.length < 2) return;
  const dates = [...new Set(found.flatMap((m) => m.history.map((p) => p.snapshot_date)))].sort();
  const column = (m, key) => {
    const byDate = new Map(m.history.map((p) => [p.snapshot_date, p[key]]));
    return dates.map((d) => byDate.get(d) ?? null);
  };
  const charts = ["downloads", "likes", "probability"].map((name) => el("div", { class: "chart", "data-testid": "compare-" + name }));
  root.append(el("div", { class: "charts" }, ...charts));
  const series = (key) => found.map((m) => ({ label: m.model_id, values: column(m, key) }));
  // models a thousand times apart in size: on a log scale each one's own rise stays visible
  lineChart(charts[0], "Downloads (30 d), log scale", dates, series("downloads"), { log: true });
  lineChart(charts[1], "Likes, log scale", dates, series("likes"), { log: true });
  lineChart(charts[2], "Trend probability", dates, series("probability"), { percent: true });
}
