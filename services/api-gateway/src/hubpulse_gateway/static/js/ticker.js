// The live AI-picks ticker: a snapshot, then each new pick as the scorer writes it (WS /v1/live/picks).
import { el, fmt, modelHref } from "./api.js";

const MAX_ITEMS = 12;

export function startTicker(list, state, threshold = 0.45) {
  let retry = 500;
  const show = (pick, first) => {
    list.querySelector(`[data-id="${CSS.escape(pick.model_id)}"]`)?.remove();
    const item = el("li", { "data-id": pick.model_id },
      el("a", { href: modelHref(pick.model_id) }, pick.model_id), " ", el("span", { class: "p" }, fmt.pct(pick.probability)));
    first ? list.prepend(item) : list.append(item);
    while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
  };
  const connect = () => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/v1/live/picks?threshold=${threshold}`);
    ws.onopen = () => { state.textContent = "live"; retry = 500; };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "snapshot") { list.replaceChildren(); msg.items.forEach((p) => show(p, false)); }
      else if (msg.type === "pick") show(msg.item, true);
    };
    ws.onclose = () => { // reconnect with backoff: the gateway may be restarting
      state.textContent = "reconnecting";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  };
  connect();
}
