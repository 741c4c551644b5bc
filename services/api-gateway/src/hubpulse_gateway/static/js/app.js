// The shell: hash router over the page registry (pages.js), nav, account line and the live ticker.
import { el } from "./api.js";
import { pages } from "./pages.js";
import * as session from "./session.js";
import { startTicker } from "./ticker.js";

const view = document.getElementById("view");
let cleanup = null;

function currentRoute() {
  return decodeURIComponent(location.hash.replace(/^#\/?/, "").split("?")[0]) === "" ? "" : location.hash.replace(/^#\/?/, "");
}

function renderNav() {
  const route = currentRoute();
  const signedIn = session.user() != null;
  const nav = document.getElementById("nav");
  nav.replaceChildren(...pages
    .filter((p) => p.nav && !(signedIn && p.anonymousOnly) && !(!signedIn && p.requiresLogin))
    .map((p) => el("a", { href: "#/" + p.route, class: route === p.route ? "active" : null }, p.nav)));
  const account = document.getElementById("account");
  account.replaceChildren(signedIn
    ? el("span", {}, session.user().email ?? "signed in", " ",
        el("a", { href: "#/", "data-testid": "logout", onclick: () => session.logout() }, "log out"))
    : "");
}

async function route() {
  const path = currentRoute();
  const page = [...pages].sort((a, b) => b.route.length - a.route.length)
    .find((p) => (p.route === "" ? path === "" || path.startsWith("?") : path.startsWith(p.route)));
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  renderNav();
  if (!page) { view.replaceChildren(el("p", { class: "error" }, "No such page.")); return; }
  if (page.requiresLogin && session.user() == null) {
    // asked of the API, the page's data would only be a 401 (a console error) before the same sentence
    view.replaceChildren(el("h1", {}, page.nav), el("p", { "data-testid": "login-needed" },
      el("a", { href: "#/login" }, "Log in"), " or ", el("a", { href: "#/signup" }, "sign up"), ` to use ${page.nav.toLowerCase()}.`));
    return;
  }
  const module = await page.load();
  view.replaceChildren();
  cleanup = await module.render(view, decodeURIComponent(path.slice(page.route.length)));
}

window.addEventListener("hashchange", route);
session.onChange(renderNav);
startTicker(document.getElementById("ticker"), document.getElementById("ticker-state"));
session.refresh().then(route); // who is signed in decides what a page may ask for
