// Small time-series charts on the vendored uPlot (static/vendor/uplot, MIT).
import uPlot from "../vendor/uplot/uPlot.esm.js";

export function lineChart(target, title, dates, series, { width = 500, height = 220, percent = false } = {}) {
  const xs = dates.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const colors = ["#4f46e5", "#d9480f", "#067647"];
  const opts = {
    title, width, height,
    scales: percent ? { y: { range: [0, 1] } } : {},
    axes: [{}, { values: (u, vals) => vals.map((v) => (percent ? (100 * v).toFixed(0) + "%" : Intl.NumberFormat("en", { notation: "compact" }).format(v))) }],
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2, spanGaps: true }))],
  };
  return new uPlot(opts, [xs, ...series.map((s) => s.values)], target);
}
