// Small time-series charts on the vendored uPlot (static/vendor/uplot, MIT).
import uPlot from "../vendor/uplot/uPlot.esm.js";

const COLORS = ["#4f46e5", "#d9480f", "#067647", "#b54708"];

// Tick labels with just enough precision that neighbours differ ("50.2K 50.6K 51K", never "51K 51K 51K").
export function tickLabels(values, percent = false) {
  for (let digits = 0; digits <= 3; digits++) {
    const format = percent
      ? (v) => (100 * v).toFixed(digits) + "%"
      : (v) => Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: digits }).format(v);
    const labels = values.map((v) => (v == null ? "" : format(v)));
    if (new Set(labels.filter((l) => l !== "")).size === labels.filter((l) => l !== "").length) return labels;
  }
  return values.map((v) => (v == null ? "" : String(+v.toPrecision(6))));
}

// series: [{label, values, color?, bars?}]; dates: ISO days. A chart with no finite value shows a note instead.
// log: a log scale, for series of very different sizes (a value of 0 is left out: it has no place on one).
export function lineChart(target, title, dates, series, { width = 500, height = 220, percent = false, log = false } = {}) {
  const finite = series.some((s) => s.values.some((v) => v != null && Number.isFinite(v)));
  if (!finite) {
    target.replaceChildren(Object.assign(document.createElement("p"), { className: "muted empty", textContent: `${title}: no data yet.` }));
    return null;
  }
  const xs = dates.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const opts = {
    title, width, height,
    // a key of names only (live values read "--" on a still page); a single line needs none
    legend: { show: series.length > 1, live: false },
    scales: percent ? { y: { range: [0, 1] } } : log ? { y: { distr: 3 } } : {},
    axes: [{}, { values: (u, vals) => tickLabels(vals, percent), size: 56 }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label,
      stroke: s.color ?? COLORS[i % COLORS.length],
      width: s.bars ? 0 : 2,
      fill: s.bars ? (s.color ?? COLORS[i % COLORS.length]) + "33" : undefined,
      paths: s.bars ? uPlot.paths.bars({ size: [0.9, 40] }) : undefined,
      points: { show: false },
      spanGaps: !s.bars,
    }))],
  };
  const values = series.map((s) => (log ? s.values.map((v) => (v > 0 ? v : null)) : s.values));
  return new uPlot(opts, [xs, ...values], target);
}
