// Who is logged in: the gateway keeps the session in HttpOnly cookies; /v1/me tells us who that is.
import { api } from "./api.js";

let current = null;
const listeners = new Set();

export function user() { return current; }
export function onChange(fn) { listeners.add(fn); }

export async function refresh() {
  // A web session always carries the readable CSRF cookie: without it, asking /v1/me would only log a 401.
  const hasSession = document.cookie.split("; ").some((c) => c.startsWith("hp_csrf="));
  try { current = hasSession ? await api("/v1/me") : null; } catch { current = null; }
  listeners.forEach((fn) => fn(current));
  return current;
}

export async function login(email, password) {
  await api("/v1/auth/login", { method: "POST", body: { email, password, session: true } });
  return refresh();
}

export async function logout() {
  await api("/v1/auth/logout", { method: "POST", body: { session: true } }).catch(() => null);
  current = null;
  listeners.forEach((fn) => fn(current));
}
