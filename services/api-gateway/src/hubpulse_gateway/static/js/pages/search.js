// Search: text with debounce, filters, sort, and "more" through the opaque cursor.
import { api, el, fmt, modelHref, query } from "../api.js";
import { watchButton } from "./watches.js";
import { MAX_COMPARED, compareHref } from "./compare.js";

const TASKS = ["text-generation", "text-classification", "token-classification", "question-answering",
  "summarization", "translation", "fill-mask", "feature-extraction", "sentence-similarity", "text-ranking",
  "automatic-speech-recognition", "text-to-speech", "text-to-image", "image-to-image", "image-classification",
  "object-detection", "image-text-to-text", "reinforcement-learning"];
const LIBRARIES = ["transformers", "sentence-transformers", "diffusers", "peft", "gguf", "mlx", "timm", "pytorch",
  "onnx", "keras", "transformers.js", "stable-baselines3"];
const SORTS = [["trend", "Trend probability"], ["downloads", "Downloads"], ["likes", "Likes"],
  ["growth", "Growth (7 d)"], ["created", "Newest"]];
const DEBOUNCE_MS = 250;
const EMPTY_RETRY_MS = 5000;

const select = (name, label, options) => el("select", { name, "aria-label": label, "data-testid": name },
  options.map(([value, text]) => el("option", { value }, text)));

export function render(root) {
  const form = el("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    el("input", { name: "q", type: "search", placeholder: "Search models, authors, tags…", "aria-label": "search",
      "data-testid": "q", autofocus: "" }),
    select("task", "task", [["", "Any task"], ...TASKS.map((t) => [t, t])]),
    select("library", "library", [["", "Any library"], ...LIBRARIES.map((l) => [l, l])]),
    el("input", { name: "min_downloads", type: "number", min: "0", placeholder: "min downloads", "data-testid": "min_downloads" }),
    el("input", { name: "min_likes", type: "number", min: "0", placeholder: "min likes", "data-testid": "min_likes" }),
    select("sort", "sort", SORTS));
  const status = el("p", { class: "muted", "data-testid": "status" });
  const body = el("tbody", { "data-testid": "results" });
  const more = el("button", { type: "button", hidden: "", "data-testid": "more" }, "More");
  const selected = new Set();
  const compare = el("a", { class: "button", hidden: "", "data-testid": "compare-selected" });
  const updateCompare = () => {
    compare.hidden = selected.size < 2;
    compare.textContent = `Compare ${selected.size} models`;
    compare.href = compareHref([...selected]);
    body.querySelectorAll("input[type=checkbox]").forEach((box) => {
      box.disabled = !box.checked && selected.size >= MAX_COMPARED;
    });
  };
  const saveSearch = watchButton("search", () => query(Object.fromEntries(new FormData(form))).slice(1),
    "Watch this search");
  root.append(form, el("div", { class: "toolbar" }, status, compare, saveSearch), el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "Model"), el("th", {}, "Task"), el("th", {}, "Library"),
      el("th", { class: "num" }, "Downloads"), el("th", { class: "num" }, "Likes"),
      el("th", { class: "num" }, "Growth 7d"), el("th", { class: "num" }, "Trend"),
      el("th", { class: "pick", title: `Tick up to ${MAX_COMPARED} models to compare` }, "Compare"))), body), more);

  let cursor = null;
  let inflight = null;
  let timer = null;

  const row = (m) => el("tr", { "data-testid": "result", "data-id": m.model_id },
    el("td", {}, el("a", { href: modelHref(m.model_id) }, m.model_id)),
    el("td", {}, m.pipeline_tag ?? "–"), el("td", {}, m.library_name ?? "–"),
    el("td", { class: "num" }, fmt.int(m.downloads)), el("td", { class: "num" }, fmt.int(m.likes)),
    el("td", { class: "num" }, m.growth_7d == null ? "–" : fmt.pct(m.growth_7d)),
    el("td", { class: "num" }, fmt.pct(m.probability)),
    el("td", { class: "pick" }, el("input", { type: "checkbox", "aria-label": "compare " + m.model_id,
      "data-testid": "compare-box", checked: selected.has(m.model_id) ? "" : null, onchange: (e) => {
        if (e.target.checked) selected.add(m.model_id);
        else selected.delete(m.model_id);
        updateCompare();
      } })));

  async function load(append) {
    inflight?.abort(); // the newest query wins; stale answers are dropped
    inflight = new AbortController();
    const params = Object.fromEntries(new FormData(form));
    if (append && cursor) params.cursor = cursor;
    status.textContent = "Searching…";
    try {
      const page = await api("/v1/models" + query(params), { signal: inflight.signal });
      if (!append) body.replaceChildren();
      body.append(...page.items.map(row));
      updateCompare();
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const unfiltered = Object.entries(params).every(([k, v]) => k === "sort" || v === "");
      if (!body.children.length && unfiltered) {
        // a fresh platform: the catalog fills as the Hub's first day goes through the pipeline
        status.textContent = "No models yet: the first Hub day is on its way through the pipeline. Looking again shortly…";
        clearTimeout(timer);
        timer = setTimeout(() => load(false), EMPTY_RETRY_MS);
      } else {
        status.textContent = body.children.length ? `${body.children.length} models shown` : "No models match.";
      }
    } catch (err) {
      if (err.name !== "AbortError") status.textContent = err.message;
    }
  }

  const debounced = () => { clearTimeout(timer); timer = setTimeout(() => load(false), DEBOUNCE_MS); };
  form.addEventListener("input", debounced);
  form.addEventListener("change", debounced);
  more.addEventListener("click", () => load(true));
  load(false);
  return () => { clearTimeout(timer); inflight?.abort(); };
}
