// Deployments: create one (also from a model's page through `deployButton`), the list with live status,
// one deployment's transition log, versions with rollback, and a predict playground.
//
// Routes: #/deployments (list + new form), #/deployments?model=ID (form prefilled), #/deployments/ID (detail).
import { ApiError, api, el, fill, modelHref } from "../api.js";

export const TARGETS = [
  ["local", "Local (this machine)"],
  ["hf-space", "Hugging Face Space"],
  ["aws-lambda", "AWS Lambda"],
  ["kubernetes", "Kubernetes"],
];
const BUSY = new Set(["pending", "provisioning"]); // states worth polling
const POLL_MS = 1000;
const enc = encodeURIComponent;

export const badge = (status) => el("span", { class: `badge status-${status}`, "data-testid": "status", "data-status": status }, status);

const field = (label, input) => el("label", { class: "field" }, el("span", {}, label), input);

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

function errorText(err) {
  return err instanceof ApiError ? `${err.code}: ${err.message}` : String(err.message ?? err);
}

// The form that creates a deployment; `onCreated(deployment)` after the gateway accepted it; `cancel`: a button
// shown beside its submit button (the dialog's).
export function deployForm(modelId, onCreated, cancel = null) {
  const error = el("p", { class: "error", role: "alert", "data-testid": "deploy-error" });
  const target = el("select", { name: "target", "data-testid": "target" },
    TARGETS.map(([value, text]) => el("option", { value }, text)));
  const hardware = field("Space hardware", el("input", { name: "hardware", value: "cpu-basic", maxlength: "40" }));
  const memory = field("Memory per replica (MB)", el("input", { name: "memory_mb", type: "number", min: "128", max: "10240", value: "1024" }));
  const showTargetFields = () => {
    hardware.hidden = target.value !== "hf-space";
    memory.hidden = !["aws-lambda", "kubernetes"].includes(target.value);
  };
  target.addEventListener("change", showTargetFields);
  showTargetFields();
  const submit = el("button", { type: "submit", "data-testid": "deploy-submit" }, "Deploy");
  const form = el("form", { class: "deploy-form", "aria-label": "new deployment", "data-testid": "deploy-form" },
    field("Model", el("input", { name: "model_id", required: "", value: modelId ?? "", placeholder: "owner/name",
      autocomplete: "off", "data-testid": "model-input" })),
    field("Revision", el("input", { name: "revision", value: "main", required: "", maxlength: "100" })),
    field("Target", target),
    el("fieldset", { class: "inline" }, el("legend", {}, "Autoscaling"),
      field("Min replicas", el("input", { name: "min_replicas", type: "number", min: "0", max: "100", value: "1", "data-testid": "min-replicas" })),
      field("Max replicas", el("input", { name: "max_replicas", type: "number", min: "1", max: "100", value: "1", "data-testid": "max-replicas" })),
      field("Target concurrency", el("input", { name: "target_concurrency", type: "number", min: "1", max: "1000", value: "4" }))),
    hardware, memory, el("div", { class: "actions" }, submit, cancel), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const v = Object.fromEntries(new FormData(form));
    const min = Number(v.min_replicas), max = Number(v.max_replicas);
    if (min > max) { error.textContent = "Min replicas must not exceed max replicas."; return; }
    const config = { autoscaling: { min_replicas: min, max_replicas: max, target_concurrency: Number(v.target_concurrency) } };
    if (v.target === "hf-space") config.hardware = v.hardware;
    if (["aws-lambda", "kubernetes"].includes(v.target)) config.memory_mb = Number(v.memory_mb);
    submit.disabled = true;
    try {
      const created = await api("/v1/deployments", { method: "POST",
        body: { model_id: v.model_id.trim(), revision: v.revision.trim(), target: v.target, config } });
      onCreated(created);
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? "Log in to deploy." : errorText(err);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// The "Deploy" button of a model's page: opens a dialog with the form, then shows the new deployment.
export function deployButton(modelId) {
  const dialog = el("dialog", { class: "deploy-dialog", "aria-label": `Deploy ${modelId}`, "data-testid": "deploy-dialog" });
  const close = el("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel");
  dialog.append(el("h2", {}, `Deploy ${modelId}`),
    deployForm(modelId, (d) => { dialog.close(); location.hash = "#/deployments/" + enc(d.id); }, close));
  const button = el("button", { type: "button", "data-testid": "deploy", "aria-haspopup": "dialog",
    onclick: () => dialog.showModal() }, "Deploy");
  return el("span", { class: "deploy-action" }, button, dialog);
}

export async function render(root, params) {
  if (params.startsWith("/") && params.length > 1) return renderDetail(root, params.slice(1));
  const prefill = new URLSearchParams(params.startsWith("?") ? params.slice(1) : "").get("model");
  return renderList(root, prefill);
}

function loginNeeded(root) {
  root.replaceChildren(el("h1", {}, "Deployments"),
    el("p", { "data-testid": "login-needed" }, el("a", { href: "#/login" }, "Log in"), " to deploy and call models."));
}

async function renderList(root, prefill) {
  const status = el("p", { class: "muted", role: "status", "data-testid": "list-status" }, "Loading…");
  const body = el("tbody", { "data-testid": "deployments" });
  const showDeleted = el("input", { type: "checkbox", "data-testid": "show-deleted" });
  root.append(el("h1", {}, "Deployments"),
    el("details", { class: "panel", open: prefill ? "" : null },
      el("summary", {}, "New deployment"),
      deployForm(prefill, (d) => { location.hash = "#/deployments/" + enc(d.id); })),
    el("label", { class: "check" }, showDeleted, " show deleted"),
    status,
    el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "Deployment"), el("th", {}, "Model"), el("th", {}, "Target"), el("th", {}, "Status"),
      el("th", { class: "num" }, "Version"), el("th", {}, "Updated"))), body));

  let timer = null;
  let stopped = false;
  const load = async () => {
    timer = null;
    let items;
    try {
      items = (await api("/v1/deployments" + (showDeleted.checked ? "?include_deleted=true" : ""))).items;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { loginNeeded(root); return; }
      status.textContent = errorText(err);
      if (!stopped) timer = setTimeout(load, 5 * POLL_MS);
      return;
    }
    if (stopped) return;
    status.textContent = items.length ? `${items.length} deployment${items.length === 1 ? "" : "s"}` : "No deployments yet.";
    body.replaceChildren(...items.map((d) => el("tr", { "data-testid": "deployment-row", "data-id": d.id },
      el("td", {}, el("a", { href: "#/deployments/" + enc(d.id) }, d.id.slice(0, 8))),
      el("td", {}, el("a", { href: modelHref(d.model_id) }, d.model_id)),
      el("td", {}, d.target), el("td", {}, badge(d.status), d.reason ? el("span", { class: "muted" }, " ", d.reason) : null),
      el("td", { class: "num" }, "v" + d.version), el("td", {}, when(d.updated_at)))));
    if (items.some((d) => BUSY.has(d.status))) timer = setTimeout(load, POLL_MS); // follow them to a final state
  };
  showDeleted.addEventListener("change", () => { clearTimeout(timer); load(); });
  await load();
  return () => { stopped = true; clearTimeout(timer); };
}

function describeOutput(out) {
  if (typeof out === "number") return el("b", { "data-testid": "similarity" }, out.toFixed(3)); // a cosine
  if (out && typeof out === "object" && !Array.isArray(out) && "label" in out) {
    return el("span", {}, el("b", { "data-testid": "label" }, out.label),
      typeof out.score === "number" ? el("span", { class: "muted" }, ` ${(100 * out.score).toFixed(1)}%`) : null);
  }
  if (Array.isArray(out) && out.every((o) => o && typeof o === "object" && "label" in o)) {
    return el("span", {}, ...out.map((o) => describeOutput(o)).flatMap((n, i) => (i ? [", ", n] : [n])));
  }
  if (Array.isArray(out) && out.every((o) => o && typeof o === "object" && ("entity" in o || "entity_group" in o))) {
    return el("span", {}, out.map((o) => `${o.word} → ${o.entity_group ?? o.entity}`).join(", ") || "no entities");
  }
  const text = JSON.stringify(out);
  return el("code", {}, text.length > 300 ? text.slice(0, 300) + "…" : text);
}

// sentence-similarity takes one pair: the first line is compared with each line after it
function similarityCall(lines) {
  if (lines.length < 2) return { error: "Type the source sentence, then at least one sentence to compare it with." };
  const [source, ...sentences] = lines;
  return { inputs: { source_sentence: source, sentences }, items: sentences, outputs: (r) => r.outputs };
}

function textCall(lines) {
  if (!lines.length) return { error: "Type some text first." };
  const inputs = lines.length === 1 ? lines[0] : lines;
  return { inputs, items: lines, outputs: (r) => (Array.isArray(inputs) ? r.outputs : [r.outputs]) };
}

function playground(id, task) {
  const pairs = task === "sentence-similarity";
  const input = el("textarea", { id: "predict-input", rows: "4", required: "", "data-testid": "predict-input",
    placeholder: pairs ? "A man is eating food.\nA man is eating a piece of bread.\nA man is riding a horse."
      : "I love this!\nThis is terrible." });
  const run = el("button", { type: "submit", "data-testid": "predict-run" }, "Run");
  const result = el("div", { class: "result", "aria-live": "polite", "data-testid": "predict-result" });
  const form = el("form", { class: "playground", "aria-label": "predict playground" },
    el("label", { for: "predict-input" }, pairs
      ? "Source sentence on the first line, then one sentence per line to compare it with"
      : "Input text (one line per input; several lines are sent as one batch)"),
    input, el("div", {}, run), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const lines = input.value.split("\n").map((l) => l.trim()).filter(Boolean);
    const call = (pairs ? similarityCall : textCall)(lines);
    if (call.error) { result.replaceChildren(el("p", { class: "error", role: "alert" }, call.error)); return; }
    const { inputs, items } = call;
    run.disabled = true;
    const started = performance.now();
    try {
      const response = await api(`/v1/deployments/${enc(id)}/predict`, { method: "POST", body: { inputs } });
      const latency = performance.now() - started;
      const outputs = call.outputs(response);
      result.replaceChildren(
        el("p", { class: "muted" }, "Latency ", el("b", { "data-testid": "predict-latency" }, `${latency.toFixed(0)} ms`),
          ` · version v${response.version} · ${items.length} ${pairs ? "sentence" : "input"}${items.length === 1 ? "" : "s"}`),
        el("table", { "data-testid": "predict-outputs" },
          el("thead", {}, el("tr", {}, el("th", {}, pairs ? "Sentence" : "Input"),
            el("th", {}, pairs ? `Similarity to “${inputs.source_sentence}”` : "Output"))),
          el("tbody", {}, items.map((text, i) => el("tr", { "data-testid": "predict-output" },
            el("td", {}, text), el("td", {}, describeOutput(outputs[i])))))));
    } catch (err) {
      const latency = performance.now() - started;
      result.replaceChildren(el("p", { class: "error", role: "alert", "data-testid": "predict-error" },
        err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String(err.message ?? err),
        el("span", { class: "muted" }, ` (${latency.toFixed(0)} ms)`)));
    } finally {
      run.disabled = false;
    }
  });
  return form;
}

function newVersionForm(d, onDone) {
  const a = d.config?.autoscaling ?? {};
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "inline-form", "aria-label": "new version" },
    field("Revision", el("input", { name: "revision", value: d.revision, required: "", maxlength: "100" })),
    field("Min replicas", el("input", { name: "min_replicas", type: "number", min: "0", max: "100", value: a.min_replicas ?? 1 })),
    field("Max replicas", el("input", { name: "max_replicas", type: "number", min: "1", max: "100", value: a.max_replicas ?? 1 })),
    el("button", { type: "submit", "data-testid": "new-version" }, "Deploy new version"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const { secrets: _secrets, ...config } = d.config ?? {}; // secrets come back as names only: keep them as they are
    config.autoscaling = { ...a, min_replicas: Number(v.min_replicas), max_replicas: Number(v.max_replicas) };
    try {
      await api(`/v1/deployments/${enc(d.id)}`, { method: "PATCH", body: { revision: v.revision.trim(), config } });
      onDone();
    } catch (err) { error.textContent = errorText(err); }
  });
  return form;
}

async function renderDetail(root, id) {
  const head = el("div", { "data-testid": "deployment" }, el("p", { class: "muted" }, "Loading…"));
  const message = el("p", { class: "error", role: "alert", "data-testid": "action-error" });
  root.append(el("p", {}, el("a", { href: "#/deployments" }, "← all deployments")), head, message);
  let timer = null;
  let stopped = false;
  let playgroundShown = false;

  const act = async (fn) => {
    message.textContent = "";
    try { await fn(); } catch (err) { message.textContent = errorText(err); }
    clearTimeout(timer);
    await load();
  };

  const load = async () => {
    timer = null;
    let d;
    try {
      d = await api("/v1/deployments/" + enc(id));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { loginNeeded(root); return; }
      if (err instanceof ApiError && err.status === 404) {
        head.replaceChildren(el("p", { class: "error", "data-testid": "error" }, `No deployment ${id}.`));
        return;
      }
      message.textContent = errorText(err);
      if (!stopped) timer = setTimeout(load, 5 * POLL_MS);
      return;
    }
    if (stopped) return;
    const a = d.config?.autoscaling ?? {};
    const earlier = d.versions.filter((v) => v.version !== d.version);
    fill(head,
      el("h1", {}, el("a", { href: modelHref(d.model_id) }, d.model_id), " ", badge(d.status)),
      d.reason ? el("p", { class: d.status === "failed" ? "error" : "muted", "data-testid": "reason" }, d.reason) : null,
      el("dl", { class: "facts" },
        el("dt", {}, "Id"), el("dd", { "data-testid": "deployment-id" }, d.id),
        el("dt", {}, "Target"), el("dd", {}, d.target),
        el("dt", {}, "Task"), el("dd", {}, d.task),
        el("dt", {}, "Version"), el("dd", { "data-testid": "version" }, `v${d.version} (revision ${d.revision})`),
        el("dt", {}, "Autoscaling"), el("dd", {}, `${a.min_replicas ?? "–"}–${a.max_replicas ?? "–"} replicas, ${a.target_concurrency ?? "–"} in flight each`),
        d.resources ? el("dt", {}, "Resources") : null,
        d.resources ? el("dd", {}, Object.entries(d.resources).filter(([, v]) => v != null && typeof v !== "object")
          .map(([k, v]) => `${k} ${typeof v === "number" ? +v.toFixed(1) : v}`).join(", ") || "–") : null),
      el("p", { class: "actions" },
        el("a", { href: "#/monitoring?deployment=" + enc(d.id) }, "Monitor"), " ",
        d.status !== "deleted"
          ? el("button", { type: "button", class: "secondary", "data-testid": "delete",
              onclick: () => { if (confirm(`Delete deployment ${d.id}?`)) act(() => api("/v1/deployments/" + enc(d.id), { method: "DELETE" })); } }, "Delete")
          : null),
      el("h2", {}, "Transitions"),
      el("table", { "data-testid": "transitions" },
        el("thead", {}, el("tr", {}, el("th", {}, "When"), el("th", {}, "From"), el("th", {}, "To"),
          el("th", { class: "num" }, "Version"), el("th", {}, "Reason"))),
        el("tbody", {}, [...d.transitions].reverse().map((t) => el("tr", { "data-testid": "transition", "data-status": t.status },
          el("td", {}, when(t.at)), el("td", {}, t.previous ?? "–"), el("td", {}, badge(t.status)),
          el("td", { class: "num" }, "v" + t.version), el("td", {}, t.reason ?? ""))))),
      el("h2", {}, "Versions"),
      el("table", { "data-testid": "versions" },
        el("thead", {}, el("tr", {}, el("th", {}, "Version"), el("th", {}, "Revision"), el("th", {}, "Replicas"),
          el("th", {}, "Source"), el("th", {}, "Created"), el("th", {}, ""))),
        el("tbody", {}, [...d.versions].reverse().map((v) => el("tr", { "data-testid": "version-row", "data-version": v.version },
          el("td", {}, "v" + v.version, v.version === d.version ? el("span", { class: "muted" }, " (current)") : null),
          el("td", {}, v.revision),
          el("td", {}, `${v.config?.autoscaling?.min_replicas ?? "–"}–${v.config?.autoscaling?.max_replicas ?? "–"}`),
          el("td", {}, v.source), el("td", {}, when(v.created_at)),
          el("td", {}, v.version !== d.version && d.status !== "deleted"
            ? el("button", { type: "button", class: "secondary", "data-testid": "rollback",
                onclick: () => act(() => api(`/v1/deployments/${enc(d.id)}/rollback`, { method: "POST", body: { version: v.version } })) },
                `Roll back to v${v.version}`)
            : null))))),
      earlier.length === 0 ? el("p", { class: "muted" }, "One version so far: deploy a new one to be able to roll back.") : null,
      d.status !== "deleted" ? el("details", {}, el("summary", {}, "New version"), newVersionForm(d, () => act(async () => {}))) : null);
    if (!playgroundShown && d.status !== "deleted") {
      playgroundShown = true;
      root.append(el("h2", {}, "Predict playground"), playground(d.id, d.task));
    }
    if (BUSY.has(d.status)) timer = setTimeout(load, POLL_MS);
  };
  await load();
  return () => { stopped = true; clearTimeout(timer); };
}
