// The pages of the web app. Add one entry per page: its route prefix, nav label (null: not in the nav)
// and the module that renders it. A page module exports `render(root, params)`; it may return a cleanup
// function, called when the user navigates away.

export const pages = [
  { route: "", nav: "Search", load: () => import("./pages/search.js") },
  { route: "models/", nav: null, load: () => import("./pages/model.js") },
  { route: "compare", nav: "Compare", load: () => import("./pages/compare.js") },
  { route: "login", nav: "Log in", load: () => import("./pages/login.js"), anonymousOnly: true },
  { route: "signup", nav: "Sign up", load: () => import("./pages/signup.js"), anonymousOnly: true },
  { route: "deployments", nav: "Deployments", load: () => import("./pages/deployments.js"), requiresLogin: true },
  { route: "monitoring", nav: "Monitoring", load: () => import("./pages/monitoring.js"), requiresLogin: true },
  { route: "watches", nav: "Watches", load: () => import("./pages/watches.js"), requiresLogin: true },
  { route: "alerts", nav: "Alerts", load: () => import("./pages/alerts.js"), requiresLogin: true },
];
