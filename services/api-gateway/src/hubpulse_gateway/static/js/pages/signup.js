// Sign up through POST /v1/auth/signup, then log straight in.
import { api, el } from "../api.js";
import * as session from "../session.js";
import { authForm } from "./auth_form.js";

export function render(root) {
  root.append(el("h1", {}, "Sign up"), authForm("Create account", async ({ email, password }) => {
    await api("/v1/auth/signup", { method: "POST", body: { email, password } });
    await session.login(email, password);
    location.hash = "#/";
  }), el("p", {}, "Have an account? ", el("a", { href: "#/login" }, "Log in")));
}
