// The email + password form shared by log in and sign up; shows the API's error message in place.
import { el } from "../api.js";

export function authForm(label, submit) {
  const error = el("p", { class: "error", "data-testid": "auth-error", role: "alert" });
  const form = el("form", { class: "auth" },
    el("input", { name: "email", type: "email", required: "", autocomplete: "username", placeholder: "email", "data-testid": "email" }),
    el("input", { name: "password", type: "password", required: "", autocomplete: "current-password", placeholder: "password", "data-testid": "password" }),
    el("button", { type: "submit", "data-testid": "submit" }, label), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try { await submit(Object.fromEntries(new FormData(form))); } catch (err) { error.textContent = err.message; }
  });
  return form;
}
