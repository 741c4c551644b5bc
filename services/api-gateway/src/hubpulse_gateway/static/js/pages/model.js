// One model: stats, what its probability means, charts of downloads, likes and probability against what then
// happened, and the "why" as sentences with the signed push of each as a bar.
import { ApiError, api, el, fill, fmt } from "../api.js";
import { lineChart } from "../charts.js";
import { compareHref } from "./compare.js";
import { deployButton } from "./deployments.js";
import { watchButton } from "./watches.js";

const card = (label, value, testid, hint) => el("div", { class: "card", title: hint },
  el("span", { class: "muted" }, label), el("b", { "data-testid": testid }, value));

function why(explanation) {
  if (!explanation.length) return el("p", { class: "muted", "data-testid": "why" }, "No explanation for this score yet.");
  const sorted = [...explanation].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution));
  const widest = Math.max(...sorted.map((c) => Math.abs(c.contribution)), 1e-9);
  return el("ul", { class: "why", "data-testid": "why" }, sorted.map((c) => {
    const up = c.contribution >= 0;
    const raw = `${c.feature} = ${c.value == null ? "missing" : +c.value.toFixed(3)} (${up ? "+" : ""}${c.contribution.toFixed(2)} log-odds)`;
    return el("li", { title: raw },
      el("span", { class: "why-text" }, c.text),
      el("span", { class: "push " + (up ? "up" : "down"), "aria-label": up ? "raises the probability" : "lowers the probability" },
        el("span", { class: "bar", style: { width: `${(100 * Math.abs(c.contribution)) / widest}%` } }),
        el("span", { class: "amount" }, (up ? "+" : "−") + Math.abs(c.contribution).toFixed(2))));
  }));
}

function hype(m) {
  // The hype score needs both a probability and recent likes; without them 0/100 would read as a verdict.
  if (m.hype_score == null || m.hype_score < 1) return card("Hype score", "quiet", "hype", "No recent likes to speak of");
  return card("Hype score", m.hype_score.toFixed(0) + " / 100", "hype", "Trend probability and the share of likes earned this week");
}

// Deploy only where the deployer can serve the model; otherwise its reason, in its words.
function deployAction(modelId) {
  const slot = el("span", { class: "deploy-slot", "data-testid": "deployability" });
  const path = modelId.split("/").map(encodeURIComponent).join("/");
  api(`/v1/models/${path}/deployability`).then((d) => {
    slot.dataset.deployable = String(d.deployable);
    slot.replaceChildren(d.deployable ? deployButton(modelId)
      : el("span", { class: "muted not-deployable", "data-testid": "not-deployable" }, `Not deployable here: ${d.reason}.`));
  }, (err) => {
    slot.replaceChildren(el("span", { class: "muted", "data-testid": "not-deployable" }, `Deployment unavailable for now: ${err.message}`));
  });
  return slot;
}

export async function render(root, modelId) {
  root.replaceChildren(el("p", { class: "muted", "data-testid": "loading" }, "Loading…"));
  let m;
  try {
    m = await api("/v1/models/" + modelId.split("/").map(encodeURIComponent).join("/"));
  } catch (err) {
    root.replaceChildren(el("p", { class: "error", "data-testid": "error" },
      err instanceof ApiError && err.status === 404 ? `No model ${modelId} in the catalog.` : err.message));
    return;
  }
  const dates = m.history.map((p) => p.snapshot_date);
  const charts = ["downloads", "likes", "probability"].map((name) => el("div", { class: "chart", "data-testid": "chart-" + name }));
  fill(root,
    el("h1", { "data-testid": "model-id" }, m.model_id),
    el("p", { class: "actions" }, deployAction(m.model_id), " ", watchButton("model", () => m.model_id),
      " ", el("a", { class: "button secondary", href: compareHref([m.model_id]), "data-testid": "compare-link" }, "Compare…"),
      m.hub_url ? el("a", { class: "button secondary", href: m.hub_url, target: "_blank", rel: "noopener", "data-testid": "hub-link" }, "On the Hub ↗") : null),
    el("p", {}, ...m.tags.map((t) => el("span", { class: "tag" }, t)),
      el("span", { class: "muted" }, m.created_at ? ` created ${fmt.date(m.created_at)},` : " creation date unknown,",
        ` data of ${fmt.date(m.snapshot_date)}`)),
    el("div", { class: "cards" },
      card("Trend probability", fmt.pct(m.probability), "probability", m.label_text ?? undefined),
      hype(m),
      card("Downloads (30 d)", fmt.int(m.downloads), "downloads"),
      card("Likes", fmt.int(m.likes), "likes")),
    m.label_text ? el("p", { class: "muted", "data-testid": "label-text" }, m.label_text) : null,
    m.is_pick ? el("p", { class: "hype", "data-testid": "is-pick" }, `AI pick: above the ${fmt.pct(m.threshold)} threshold of model ${m.model_version}`) : null,
    dates.length ? el("div", { class: "charts" }, ...charts) : el("p", { class: "muted" }, "No daily history yet."),
    el("h2", {}, "Why"),
    why(m.explanation));
  if (dates.length) {
    lineChart(charts[0], "Downloads (30 d)", dates, [{ label: "downloads", values: m.history.map((p) => p.downloads) }]);
    lineChart(charts[1], "Likes", dates, [{ label: "likes", values: m.history.map((p) => p.likes) }]);
    lineChart(charts[2], "Trend probability, and what happened", dates, [
      { label: "probability", values: m.history.map((p) => p.probability) },
      { label: "in the trending top 10", bars: true, color: "#d9480f",
        values: m.history.map((p) => (p.trending_rank != null && p.trending_rank <= 10 ? 1 : 0)) },
    ], { percent: true });
  }
}
