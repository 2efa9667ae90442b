// The console's shell: navigation by role, the session, the health banner, and one module per page.
// Adding a page: write js/pages/<name>.js exporting `render(root, ctx)` (returning an optional cleanup function)
// and add one line to PAGES.
import { api, every, saveSession, session } from "./api.js";

const PAGES = [
  // [route, label, roles that may open it (and see it in the navigation; none: anyone), module]
  ["shop", "Shop", ["guest", "customer", "admin", null], "./pages/shop.js"],
  ["account", "My account", ["customer"], "./pages/account.js"],
  ["bidding", "Live bidding", ["admin"], "./pages/bidding.js"],
  ["operations", "Operations", ["admin"], "./pages/operations.js"],
  ["campaigns", "Campaigns", ["admin", "approver"], "./pages/campaigns.js"],
  ["mail", "Mail", ["admin"], "./pages/mail.js"],
  ["reco", "Recommendations", ["admin"], "./pages/reco.js"],
  ["models", "Models", ["admin"], "./pages/models.js"],
  ["api", "API", ["guest", "customer", "admin", "approver", null], "./pages/api.js"],
  ["health", "Health", ["guest", "customer", "admin", "approver", null], "./pages/health.js"],
  ["signin", "Sign in", [], "./pages/signin.js"],
];

const $ = (sel) => document.querySelector(sel);
let cleanup = null;
let shown = 0; // the newest show(): an older one still loading its module must not render over it
let serverUp = true;

function role() {
  const s = session();
  return s ? s.role : null;
}

function renderNav() {
  const r = role();
  const current = routeName();
  $("#nav").replaceChildren(...PAGES.filter(([, , roles]) => roles.includes(r)).map(([route, label]) => {
    const a = document.createElement("a");
    a.href = `#/${route}`;
    a.textContent = label;
    if (route === current) a.setAttribute("aria-current", "page");
    return a;
  }));
  const s = session();
  const signedIn = s && s.role !== "guest";
  $("#who").textContent = signedIn ? `${s.email || s.subject} · ${s.role}` : s ? "Guest" : "";
  $("#signin-link").hidden = Boolean(signedIn);
  $("#signout").hidden = !signedIn;
}

function routeName() {
  const name = (location.hash.replace(/^#\/?/, "").split(/[/?]/)[0]) || "";
  if (name) return name;
  const r = role();
  return r === "admin" ? "bidding" : r === "customer" ? "account" : "shop";
}

async function show(initial = false) {
  const mine = ++shown;
  const name = routeName();
  const page = PAGES.find(([route]) => route === name) || PAGES[0];
  renderNav();
  if (cleanup) { try { cleanup(); } catch { /* a page's own teardown */ } cleanup = null; }
  // Each visit renders into a view of its own: a page still rendering when the user moves on writes into a view
  // that is no longer shown.
  const root = document.createElement("div");
  root.className = "view";
  $("#page").replaceChildren(root);
  document.title = `${page[1]} · Contrail console`;
  if (page[2].length && !page[2].includes(role())) {
    // Reached by its address from a session that may not use it: say so, and ask no data the server would refuse.
    const who = { admin: "administrators", customer: "customers", approver: "approvers" };
    const allowed = page[2].filter((r) => who[r]).map((r) => who[r]).join(" and ");
    const card = document.createElement("section");
    card.className = "card narrow";
    const heading = Object.assign(document.createElement("h1"), { textContent: page[1] });
    const text = Object.assign(document.createElement("p"), { textContent: `${page[1]} is for ${allowed}. ` });
    text.append(Object.assign(document.createElement("a"), { href: "#/signin", textContent: "Sign in" }),
      " with such an account.");
    card.append(heading, text);
    root.append(card);
    return;
  }
  let mod;
  try {
    mod = await import(page[3]);
  } catch {
    if (mine === shown) root.append(Object.assign(document.createElement("p"), { className: "error",
      textContent: `The ${page[1]} page could not be loaded; reload to try again.` }));
    return;
  }
  if (mine !== shown) return;
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const done = (await mod.render(root, { params, role: role(), session: session(), navigate,
                                         serverUp: () => serverUp })) || null;
  if (mine !== shown) { try { if (done) done(); } catch { /* its own teardown */ } return; }
  cleanup = done;
  // Focus moves to the new page for keyboard and screen-reader users, unless the page focused a field itself
  // (sign-in focuses Email) or this is the first load (focus starts at the top, on the skip link).
  if (!initial && !root.contains(document.activeElement)) $("#page").focus({ preventScroll: true });
}

export function navigate(route) {
  if (location.hash === `#/${route}`) show(); else location.hash = `#/${route}`;
}

// The health pill: the server's own readiness, and "unreachable" the moment it is not answering (never stale).
// Written only on a change: a live region rewritten every 2 s is re-announced by some screen readers.
function setPill(text, tone) {
  const pill = $("#health");
  if (pill.textContent !== text) pill.textContent = text;
  pill.className = `pill ${tone}`;
}

async function health() {
  try {
    const resp = await fetch("/health/ready", { cache: "no-store" });
    const body = await resp.json();
    setPill(body.ready ? "healthy" : `not ready: ${body.state}`, body.ready ? "ok" : "bad");
    if (!serverUp) { serverUp = true; $("#banner").hidden = true; }
  } catch {
    serverUp = false;
    setPill("server unreachable", "bad");
    const banner = $("#banner");
    banner.hidden = false;
    banner.textContent = "The server is not answering. What you see may be out of date; the console reconnects by itself.";
  }
}

$("#signout").addEventListener("click", () => { saveSession(null); navigate("shop"); });
window.addEventListener("hashchange", () => show());
window.addEventListener("contrail:session", renderNav);
every(2000, health);
show(true);
export { api };
