// Alerts: the feed with its unread count, kept live by /v1/live/alerts; "Mark read" acknowledges one.
import { api, el, fmt, modelHref } from "../api.js";

export async function render(root) {
  const unread = el("b", { "data-testid": "unread" }, "0");
  const live = el("span", { class: "muted", "data-testid": "live-state" }, "connecting");
  const list = el("ul", { class: "alerts", "data-testid": "alerts" });
  root.append(el("h1", {}, "Alerts"), el("p", {}, "Unread: ", unread, " · live: ", live), list);

  const item = (a) => {
    const read = el("button", { type: "button", "data-testid": "ack", hidden: a.read ? "" : null }, "Mark read");
    read.addEventListener("click", async () => {
      await api(`/v1/alerts/${a.alert_id}/ack`, { method: "POST" });
      read.hidden = true;
      node.classList.remove("unread");
      unread.textContent = String(Math.max(0, +unread.textContent - 1));
    });
    const change = a.previous_probability == null ? fmt.pct(a.probability)
      : `${fmt.pct(a.previous_probability)} → ${fmt.pct(a.probability)}`;
    const node = el("li", { "data-testid": "alert", "data-id": a.alert_id, class: a.read ? null : "unread" },
      el("a", { href: modelHref(a.model_id) }, a.model_id), ` ${a.condition.replace("_", " ")} · ${change} `,
      el("span", { class: "muted" }, fmt.date(a.created_at)), " ", read, el("p", { class: "muted" }, a.reason));
    return node;
  };

  const page = await api("/v1/alerts");
  unread.textContent = String(page.unread);
  list.replaceChildren(...page.items.map(item));

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/v1/live/alerts`);
  socket.addEventListener("open", () => { live.textContent = "live"; });
  socket.addEventListener("close", () => { live.textContent = "closed"; });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type !== "alert") return; // the snapshot repeats what the page already shows
    if (!list.querySelector(`[data-id="${message.item.alert_id}"]`)) list.prepend(item(message.item));
    unread.textContent = String(message.unread);
  });
  return () => socket.close();
}
