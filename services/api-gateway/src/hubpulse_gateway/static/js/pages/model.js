// One model: stats, hype score, charts of downloads, likes and probability over time, and the "why".
import { ApiError, api, el, fmt } from "../api.js";
import { lineChart } from "../charts.js";
import { deployButton } from "./deployments.js";
import { watchButton } from "./watches.js";

const card = (label, value, testid) => el("div", { class: "card" }, el("span", { class: "muted" }, label),
  el("b", { "data-testid": testid }, value));

export async function render(root, modelId) {
  root.append(el("p", { class: "muted" }, "Loading…"));
  let m;
  try {
    m = await api("/v1/models/" + modelId.split("/").map(encodeURIComponent).join("/"));
  } catch (err) {
    root.replaceChildren(el("p", { class: "error", "data-testid": "error" },
      err instanceof ApiError && err.status === 404 ? `No model ${modelId} in the catalog.` : err.message));
    return;
  }
  const dates = m.history.map((p) => p.snapshot_date);
  const downloadsChart = el("div", { class: "chart", "data-testid": "chart-downloads" });
  const likesChart = el("div", { class: "chart", "data-testid": "chart-likes" });
  const probabilityChart = el("div", { class: "chart", "data-testid": "chart-probability" });
  const why = [...m.explanation].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution));
  root.replaceChildren(
    el("h1", { "data-testid": "model-id" }, m.model_id),
    el("p", { class: "actions" }, deployButton(m.model_id), " ", watchButton("model", () => m.model_id)),
    el("p", {}, ...m.tags.map((t) => el("span", { class: "tag" }, t)),
      el("span", { class: "muted" }, ` created ${fmt.date(m.created_at)}, data of ${fmt.date(m.snapshot_date)}`)),
    el("div", { class: "cards" },
      card("Trend probability", fmt.pct(m.probability), "probability"),
      card("Hype score", m.hype_score == null ? "–" : m.hype_score.toFixed(0) + " / 100", "hype"),
      card("Downloads (30 d)", fmt.int(m.downloads), "downloads"),
      card("Likes", fmt.int(m.likes), "likes")),
    m.is_pick ? el("p", { class: "hype", "data-testid": "is-pick" }, `AI pick: above the ${fmt.pct(m.threshold)} threshold of model ${m.model_version}`) : null,
    el("div", { class: "charts" }, downloadsChart, likesChart, probabilityChart),
    el("h2", {}, "Why"),
    why.length
      ? el("ul", { class: "why", "data-testid": "why" }, why.map((c) => el("li", {},
          el("span", { class: c.contribution >= 0 ? "up" : "down" }, c.contribution >= 0 ? "▲ " : "▼ "),
          `${c.feature} = ${c.value == null ? "missing" : +c.value.toFixed(3)} `,
          el("span", { class: "muted" }, `(${c.contribution >= 0 ? "+" : ""}${c.contribution.toFixed(2)} log-odds)`))))
      : el("p", { class: "muted", "data-testid": "why" }, "No explanation for this score yet."));
  if (dates.length) {
    lineChart(downloadsChart, "Downloads (30 d)", dates, [{ label: "downloads", values: m.history.map((p) => p.downloads) }]);
    lineChart(likesChart, "Likes", dates, [{ label: "likes", values: m.history.map((p) => p.likes) }]);
    lineChart(probabilityChart, "Trend probability", dates,
      [{ label: "probability", values: m.history.map((p) => p.probability) }], { percent: true });
  }
}
