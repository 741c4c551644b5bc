// Monitoring: live latency (p50/p95) and error-rate charts from WS /v1/live/metrics (a point a second),
// a summary of the chosen time range (GET /v1/metrics/deployments/{id}), and usage (GET /v1/usage) as a table
// with a CSV export. Filters: deployment and time range; #/monitoring?deployment=ID preselects one.
import uPlot from "../../vendor/uplot/uPlot.esm.js";
import { ApiError, api, el, fmt, query } from "../api.js";

const RANGES = [["15", "Last 15 minutes"], ["60", "Last hour"], ["360", "Last 6 hours"], ["1440", "Last 24 hours"], ["10080", "Last 7 days"]];
const GROUPS = [["deployment", "Deployment"], ["user", "User"], ["org", "Organisation"]];
const MAX_POINTS = 300; // five minutes of live points
const USAGE_REFRESH_MS = 3000;
const ms = (v) => (v == null ? "–" : `${v.toFixed(v < 10 ? 1 : 0)} ms`);

const select = (name, label, options, value) => {
  const s = el("select", { id: "mon-" + name, name, "data-testid": "mon-" + name },
    options.map(([v, text]) => el("option", { value: v, selected: v === value ? "" : null }, text)));
  return el("label", { class: "field", for: "mon-" + name }, el("span", {}, label), s);
};

function liveChart(target, title, series, yValues) {
  const colors = ["#4f46e5", "#d9480f", "#067647"];
  const opts = {
    title, width: 500, height: 220,
    scales: { x: { time: true } },
    axes: [{}, { values: (u, vals) => vals.map(yValues) }],
    series: [{}, ...series.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 2, spanGaps: true }))],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], target);
}

// One point for the whole push: one deployment as it is; several pooled (errors exactly, latency as the maximum).
function point(deployments) {
  if (!deployments.length) return { requests: 0, errors: 0, error_rate: null, p50_ms: null, p95_ms: null, throughput_rps: 0 };
  if (deployments.length === 1) return deployments[0];
  const sum = (k) => deployments.reduce((a, d) => a + (d[k] ?? 0), 0);
  const max = (k) => Math.max(...deployments.map((d) => d[k] ?? -Infinity));
  const requests = sum("requests"), errors = sum("errors");
  return { requests, errors, error_rate: requests ? errors / requests : null, throughput_rps: sum("throughput_rps"),
    p50_ms: Number.isFinite(max("p50_ms")) ? max("p50_ms") : null, p95_ms: Number.isFinite(max("p95_ms")) ? max("p95_ms") : null };
}

export async function render(root, params) {
  const wanted = new URLSearchParams(params.startsWith("?") ? params.slice(1) : "").get("deployment") ?? "";
  let deployments;
  try {
    deployments = (await api("/v1/deployments")).items;
  } catch (err) {
    root.replaceChildren(el("h1", {}, "Monitoring"), err instanceof ApiError && err.status === 401
      ? el("p", { "data-testid": "login-needed" }, el("a", { href: "#/login" }, "Log in"), " to see your deployments' metrics.")
      : el("p", { class: "error", role: "alert" }, err.message));
    return;
  }
  const deploymentFilter = select("deployment", "Deployment",
    [["", "All deployments"], ...deployments.map((d) => [d.id, `${d.model_id} · ${d.target} · ${d.id.slice(0, 8)} (${d.status})`])], wanted);
  const rangeFilter = select("range", "Time range", RANGES, "60");
  const groupFilter = select("group_by", "Usage by", GROUPS, "deployment");
  const [deploymentSel, rangeSel, groupSel] = [deploymentFilter, rangeFilter, groupFilter].map((l) => l.querySelector("select"));

  const liveState = el("span", { class: "muted", "data-testid": "live-state" }, "connecting");
  const live = {
    requests: el("b", { "data-testid": "live-requests" }, "–"), p50: el("b", { "data-testid": "live-p50" }, "–"),
    p95: el("b", { "data-testid": "live-p95" }, "–"), errors: el("b", { "data-testid": "live-error-rate" }, "–"),
    window: el("span", {}, ""),
  };
  const latencyBox = el("div", { class: "chart", "data-testid": "chart-latency" });
  const errorBox = el("div", { class: "chart", "data-testid": "chart-errors" });
  const summary = el("div", { class: "cards", "data-testid": "summary" });
  const usageState = el("p", { class: "muted", role: "status", "data-testid": "usage-state" });
  const usageHead = el("tr", {});
  const usageBody = el("tbody", { "data-testid": "usage" });
  const csv = el("a", { class: "button", download: "", "data-testid": "export-csv" }, "Export CSV");

  root.append(
    el("h1", {}, "Monitoring"),
    el("form", { class: "filters mon-filters", "aria-label": "filters", onsubmit: (e) => e.preventDefault() },
      deploymentFilter, rangeFilter, groupFilter),
    el("h2", {}, "Live ", liveState),
    el("p", { class: "live-line", "aria-live": "off" }, "Requests ", live.requests, " · p50 ", live.p50, " · p95 ", live.p95,
      " · error rate ", live.errors, " ", live.window),
    el("div", { class: "charts" }, latencyBox, errorBox),
    el("h2", {}, "Selected range"), summary,
    el("h2", {}, "Usage ", csv), usageState,
    el("table", {}, el("thead", {}, usageHead), usageBody));

  // live charts: the socket pushes a snapshot of the trailing window every second; we append one point each
  let latency = null, errorsChart = null, xs = [], p50 = [], p95 = [], rates = [];
  const resetCharts = () => {
    latency?.destroy(); errorsChart?.destroy();
    xs = []; p50 = []; p95 = []; rates = [];
    const many = !deploymentSel.value;
    latency = liveChart(latencyBox, many ? "Latency, slowest deployment (ms)" : "Latency (ms)", ["p50", "p95"], (v) => v.toFixed(0));
    errorsChart = liveChart(errorBox, "Error rate", ["error rate"], (v) => (100 * v).toFixed(0) + "%");
  };
  let ws = null, retry = 500, retryTimer = null, stopped = false;
  const onPush = (msg) => {
    if (msg.error) { liveState.textContent = msg.error.message; return; }
    const p = point(msg.deployments ?? []);
    live.requests.textContent = String(p.requests);
    live.p50.textContent = ms(p.p50_ms);
    live.p95.textContent = ms(p.p95_ms);
    live.errors.textContent = fmt.pct(p.error_rate);
    live.window.textContent = `(last ${Math.round(msg.window_s)} s)`;
    xs.push(Date.parse(msg.at) / 1000); p50.push(p.p50_ms); p95.push(p.p95_ms); rates.push(p.error_rate);
    if (xs.length > MAX_POINTS) [xs, p50, p95, rates].forEach((a) => a.shift());
    latency.setData([xs, p50, p95]);
    errorsChart.setData([xs, rates]);
  };
  const connect = () => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${proto}//${location.host}/v1/live/metrics${query({ deployment_id: deploymentSel.value })}`);
    ws = socket;
    socket.onopen = () => { liveState.textContent = "live"; retry = 500; };
    socket.onmessage = (event) => { if (socket === ws) onPush(JSON.parse(event.data)); };
    socket.onclose = (event) => {
      if (socket !== ws || stopped) return;
      if (event.code === 1008) { liveState.textContent = "not allowed: log in again"; return; }
      liveState.textContent = "reconnecting";
      retryTimer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  };
  const reconnect = () => {
    clearTimeout(retryTimer);
    const old = ws;
    ws = null;
    old?.close();
    resetCharts();
    liveState.textContent = "connecting";
    connect();
  };

  const since = () => new Date(Date.now() - Number(rangeSel.value) * 60_000).toISOString();
  const loadSummary = async () => {
    const id = deploymentSel.value;
    if (!id) { summary.replaceChildren(el("p", { class: "muted" }, "Pick a deployment for its latency, errors and resources over the range.")); return; }
    try {
      const m = await api(`/v1/metrics/deployments/${encodeURIComponent(id)}${query({ since: since() })}`);
      const s = m.summary, r = m.resources ?? {};
      const card = (label, value, testid) => el("div", { class: "card" }, el("span", { class: "muted" }, label), el("b", { "data-testid": testid }, value));
      summary.replaceChildren(
        card("Requests", String(s.requests), "range-requests"), card("p50 / p95", `${ms(s.p50_ms)} / ${ms(s.p95_ms)}`, "range-latency"),
        card("Error rate", fmt.pct(s.error_rate), "range-errors"),
        card("CPU / memory", r.samples ? `${r.cpu_percent_avg?.toFixed(0) ?? "–"}% / ${r.memory_mb_avg?.toFixed(0) ?? "–"} MB` : "–", "range-resources"));
    } catch (err) {
      summary.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
    }
  };
  const loadUsage = async () => {
    const params = { group_by: groupSel.value, since: since(), deployment_id: deploymentSel.value };
    csv.href = "/v1/usage" + query({ ...params, format: "csv" });
    try {
      const report = await api("/v1/usage" + query({ ...params, format: "json" }));
      if (stopped) return;
      const label = GROUPS.find(([v]) => v === report.group_by)?.[1] ?? report.group_by;
      usageHead.replaceChildren(...[label, "Requests", "Errors", "Inputs", "Request bytes", "Response bytes", "Mean latency"]
        .map((h, i) => el("th", { class: i ? "num" : null, scope: "col" }, h)));
      usageBody.replaceChildren(...report.rows.map((row) => el("tr", { "data-testid": "usage-row", "data-key": row.key ?? "" },
        el("td", {}, row.key ?? "–"), el("td", { class: "num", "data-testid": "usage-requests" }, String(row.requests)),
        el("td", { class: "num" }, String(row.errors)), el("td", { class: "num" }, String(row.inputs)),
        el("td", { class: "num" }, fmt.int(row.request_bytes)), el("td", { class: "num" }, fmt.int(row.response_bytes)),
        el("td", { class: "num" }, ms(row.mean_latency_ms)))));
      usageState.textContent = report.rows.length ? "" : "No calls in this range.";
    } catch (err) {
      usageState.textContent = err.message;
    }
  };

  deploymentSel.addEventListener("change", () => { reconnect(); loadSummary(); loadUsage(); });
  rangeSel.addEventListener("change", () => { loadSummary(); loadUsage(); });
  groupSel.addEventListener("change", loadUsage);
  resetCharts();
  connect();
  const refresh = setInterval(() => { loadSummary(); loadUsage(); }, USAGE_REFRESH_MS); // the range's numbers grow too
  loadSummary(); loadUsage();
  return () => {
    stopped = true;
    clearInterval(refresh); clearTimeout(retryTimer);
    const old = ws; ws = null; old?.close();
    latency?.destroy(); errorsChart?.destroy();
  };
}
