// Watches: the list (pause, test-send, delete, threshold), and the Watch button other pages place.
import { api, el } from "../api.js";
import * as session from "../session.js";

// A button that saves a watch (kind, target) and says so; on pages anyone may open, it asks to log in first.
export function watchButton(kind, target, label = "Watch") {
  const status = el("span", { class: "muted", "data-testid": "watch-status" });
  const button = el("button", { type: "button", "data-testid": "watch" }, label);
  button.addEventListener("click", async () => {
    if (!session.user()) { status.textContent = "Log in to watch."; return; }
    button.disabled = true;
    try {
      await api("/v1/watches", { method: "POST", body: { kind, target: target() } });
      status.textContent = "Watching: alerts appear under Alerts.";
    } catch (err) {
      status.textContent = err.message;
      button.disabled = false;
    }
  });
  return el("span", {}, button, " ", status);
}

export async function render(root) {
  const status = el("p", { class: "muted", "data-testid": "status" });
  const body = el("tbody", { "data-testid": "watches" });
  root.append(el("h1", {}, "Watches"), status, el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "Watching"), el("th", {}, "Threshold"), el("th", {}, "Conditions"),
      el("th", {}, "Channels"), el("th", {}, ""))), body));

  const act = (label, testid, fn) => el("button", { type: "button", "data-testid": testid, onclick: async () => {
    try { await fn(); } catch (err) { status.textContent = err.message; }
    await load();
  } }, label);

  const row = (w) => {
    const threshold = el("input", { type: "number", min: "0", max: "1", step: "0.01", value: w.threshold,
      "aria-label": "threshold", "data-testid": "threshold" });
    threshold.addEventListener("change", async () => {
      try { await api("/v1/watches/" + w.watch_id, { method: "PATCH", body: { threshold: +threshold.value } }); }
      catch (err) { status.textContent = err.message; }
    });
    const channels = [w.channels.webhook && "webhook", w.channels.email && "e-mail", w.channels.digest && "daily digest"]
      .filter(Boolean).join(", ") || "feed only";
    // the receiver answered 410 Gone: the webhook was switched off until the owner sets one again
    const gone = w.webhook_disabled && el("span", { class: "tag tag-off", "data-testid": "webhook-disabled",
      title: `${w.webhook_disabled.url}: ${w.webhook_disabled.reason}` }, "webhook switched off");
    return el("tr", { "data-testid": "watch-row", "data-id": w.watch_id },
      el("td", {}, `${w.kind}: ${w.target}`, w.scope === "org" ? el("span", { class: "tag" }, "shared") : null,
        w.paused ? el("span", { class: "tag", "data-testid": "paused" }, "paused") : null),
      el("td", {}, threshold), el("td", {}, w.conditions.join(", ")), el("td", {}, channels, gone ? " " : null, gone || null),
      el("td", {},
        act(w.paused ? "Resume" : "Pause", "pause",
          () => api("/v1/watches/" + w.watch_id, { method: "PATCH", body: { paused: !w.paused } })),
        " ", act("Test-send", "test-send", async () => {
          await api(`/v1/watches/${w.watch_id}/test`, { method: "POST" });
          status.textContent = "Test alert sent.";
        }),
        " ", act("Delete", "delete", () => api("/v1/watches/" + w.watch_id, { method: "DELETE" }))));
  };

  async function load() {
    try {
      const watches = await api("/v1/watches");
      body.replaceChildren(...watches.map(row));
      if (!watches.length) status.textContent = "No watches yet: use Watch on a model page or a search.";
    } catch (err) {
      status.textContent = err.message;
    }
  }
  await load();
  return null;
}


