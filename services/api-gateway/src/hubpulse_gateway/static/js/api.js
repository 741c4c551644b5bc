// Calls to the gateway's JSON API. Errors arrive as {"error": {"code", "message"}}; we throw them as ApiError.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("hp_csrf="))?.slice("hp_csrf=".length);
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const csrf = csrfToken();
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf; // cookie sessions need it on writes
  const response = await fetch(path, {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const err = data?.error ?? {};
    // never an empty message: HTTP/2 responses carry no status text
    const message = err.message || response.statusText || `The request failed (HTTP ${response.status}).`;
    throw new ApiError(response.status, err.code ?? "http_" + response.status, message);
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

export const fmt = {
  int: (n) => (n == null ? "–" : Intl.NumberFormat("en", { notation: "compact" }).format(n)),
  pct: (p) => (p == null ? "–" : (100 * p).toFixed(1) + "%"),
  date: (d) => (d ? String(d).slice(0, 10) : "–"),
};

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v); // through the CSSOM: the CSP refuses style attributes
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children.flat().filter((c) => c != null).map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

// A node's children replaced, the absent ones (null, undefined) left out: the DOM's own replaceChildren writes
// them as the text "null".
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c != null));
  return node;
}

export function modelHref(id) {
  return "#/models/" + id.split("/").map(encodeURIComponent).join("/");
}
