// Log in through POST /v1/auth/login (HttpOnly session cookies, CSRF token cookie for writes).
import { el } from "../api.js";
import * as session from "../session.js";
import { authForm } from "./auth_form.js";

export function render(root) {
  root.append(el("h1", {}, "Log in"), authForm("Log in", async ({ email, password }) => {
    await session.login(email, password);
    location.hash = "#/";
  }), el("p", {}, "No account? ", el("a", { href: "#/signup" }, "Sign up")));
}
