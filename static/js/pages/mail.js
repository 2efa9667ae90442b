// Mail (admin): the embedded SMTP sink's mailbox with a sandboxed preview, email analytics per activation, and the
// suppression list. Mail HTML never enters this page's document: it is parsed inert, stripped of what would load
// or run, and shown in an <iframe sandbox srcdoc>.
import { api, every, h, showError, useStyle, when } from "../api.js";
import { tabs } from "../tabs.js";

const TABS = [["mailbox", "Mailbox"], ["analytics", "Analytics"], ["suppressions", "Suppressions"]];
const CHANNELS = ["all", "email", "sms", "push"];
const pct = (x) => new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 }).format(x || 0);
const alertBox = () => h("p", { class: "error", role: "alert", hidden: true });
const statusBox = () => h("p", { role: "status", "aria-live": "polite", class: "muted" });
const th = (text, cls) => h("th", { scope: "col", class: cls }, text);
const num = (v) => h("td", { class: "num" }, v);

export function render(root, { params }) {
  useStyle("mail");
  const analytics = analyticsPanel();
  const mailbox = mailboxPanel((activationId) => { analytics.focus(activationId); select("analytics"); }, analytics);
  const panels = { mailbox, analytics, suppressions: suppressionsPanel() };
  let select = () => {};
  const tablist = tabs("Mail sections", TABS, panels, params.get("tab"), (id) => {
    history.replaceState(null, "", `#/mail?tab=${id}`);
  });
  // The tab buttons select themselves; other sections switch tabs by clicking them.
  select = (id) => tablist.querySelector(`#tab-${id}`).click();
  root.append(h("section", { class: "card wide mail-head" },
    h("h1", {}, "Mail"),
    h("p", { class: "muted" }, "What the server sent (the embedded SMTP sink), how each activation's email did, ",
      "and who gets none."),
    tablist), ...Object.values(panels).map((p) => p.el));
  return () => { for (const p of Object.values(panels)) p.hide && p.hide(); };
}

// ---- the preview: inert parsing, nothing that loads or runs, links shown rather than followed ----
const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:";
const BASE_STYLE = "body{font:15px/1.5 system-ui,sans-serif;margin:14px;color:#1b1f24;background:#fff}" +
  "a{color:#0645ad;text-decoration:underline;cursor:default}img{max-width:100%}" +
  ".contrail-blocked{display:inline-block;border:1px dashed #999;color:#666;font-size:12px;padding:2px 6px}";

/** The email's HTML made safe to show: {srcdoc, links: [{text, target, tracked}], blocked, pixel}. */
export function previewOf(html) {
  const doc = new DOMParser().parseFromString(html || "", "text/html"); // inert: nothing loads, nothing runs
  doc.querySelectorAll("script, noscript, iframe, frame, object, embed, applet, link, meta, base, form, " +
                       "audio, video, source, track, svg, math, template").forEach((n) => n.remove());
  let blocked = 0, pixel = false;
  for (const el of doc.querySelectorAll("*")) {
    for (const a of [...el.attributes]) {
      const name = a.name.toLowerCase();
      if (name.startsWith("on") || ["srcset", "background", "poster", "formaction", "action", "ping"].includes(name))
        el.removeAttribute(a.name);
      else if (name === "style" && /url\s*\(|@import|expression/i.test(a.value))
        el.setAttribute("style", a.value.replace(/url\s*\(|@import|expression/gi, "blocked("));
    }
  }
  for (const style of doc.querySelectorAll("style"))
    style.textContent = style.textContent.replace(/url\s*\(|@import|expression/gi, "blocked(");
  for (const img of doc.querySelectorAll("img")) {
    const src = img.getAttribute("src") || "";
    if (src.startsWith("data:image/")) continue;
    img.removeAttribute("src");
    if (/\/v1\/email\/open\//.test(src)) { pixel = true; img.remove(); continue; }
    blocked += 1;
    const note = doc.createElement("span");
    note.className = "contrail-blocked";
    note.textContent = `image not loaded${img.getAttribute("alt") ? `: ${img.getAttribute("alt")}` : ""}`;
    img.replaceWith(note);
  }
  const links = [];
  for (const a of doc.querySelectorAll("[href]")) {
    const href = a.getAttribute("href");
    a.removeAttribute("href");
    a.removeAttribute("target");
    let target = href, tracked = false, kind = "link";
    try {
      const url = new URL(href);
      if (/\/v1\/email\/click\//.test(url.pathname) && url.searchParams.get("u")) {
        target = url.searchParams.get("u");
        tracked = true;
      } else if (/\/v1\/email\/unsubscribe/.test(url.pathname)) kind = "unsubscribe";
    } catch { /* not an absolute URL: shown as written */ }
    a.setAttribute("title", target);
    links.push({ text: a.textContent.trim() || "(no text)", target, tracked, kind });
  }
  const head = [...doc.head.querySelectorAll("style")].map((s) => s.outerHTML).join("");
  const srcdoc = `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" ` +
    `content="${CSP}"><style>${BASE_STYLE}</style>${head}</head><body>${doc.body.innerHTML}</body></html>`;
  return { srcdoc, links, blocked, pixel };
}

const header = (m, name) => (m.headers && (m.headers[name] ?? m.headers[name.toLowerCase()])) || null;
const activationOf = (m) => header(m, "X-Contrail-Activation");
const sentAt = (m) => {
  const date = header(m, "Date");
  const t = date ? Date.parse(date) : NaN;
  return Number.isNaN(t) ? null : t / 1000;
};

// ---- mailbox ----
function mailboxPanel(showAnalytics, analytics) {
  const el = h("div", { class: "wide mail-panel" });
  const error = alertBox();
  const status = statusBox();
  const list = h("ul", { class: "mail-list", "aria-label": "Messages, newest first" });
  const preview = h("section", { class: "card preview", "aria-label": "Preview" },
    h("h2", {}, "Preview"), h("p", { class: "muted" }, "Choose a message to read it."));
  let messages = [], selected = null, stop = null, seen = -1;

  async function load() {
    try {
      const box = await api("GET", "/v1/admin/mailbox?limit=100");
      error.hidden = true;
      if (box.received === seen && messages.length) return;
      seen = box.received;
      messages = [...box.items].reverse();
      analytics.known(messages);
      status.textContent = messages.length
        ? `${box.received} received; the newest ${messages.length} shown.` : "No mail yet.";
      list.replaceChildren(...messages.map((m) => {
        const t = sentAt(m);
        return h("li", {}, h("button", {
          type: "button", class: "mail-item", "aria-current": m.message_id === selected ? "true" : null,
          "data-id": m.message_id, onclick: () => open(m.message_id),
        }, h("span", { class: "mail-subject" }, m.subject || "(no subject)"),
        h("span", { class: "mail-to" }, `To ${(m.to || []).join(", ")}`),
        t ? h("time", { class: "mail-time", datetime: new Date(t * 1000).toISOString() }, when(t)) : null));
      }));
    } catch (err) { showError(error, err); }
  }

  function open(id) {
    const m = messages.find((x) => x.message_id === id);
    if (!m) return;
    selected = id;
    for (const b of list.querySelectorAll("button.mail-item"))
      b.setAttribute("aria-current", String(b.dataset.id === id));
    const activation = activationOf(m);
    const t = sentAt(m);
    const parts = [h("h2", {}, m.subject || "(no subject)"),
      h("dl", { class: "facts" },
        [["From", header(m, "From") || m.from], ["To", (m.to || []).join(", ")], ["Sent", t ? when(t) : header(m, "Date")],
         ["Message id", m.message_id]].filter(([, v]) => v).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
        activation ? h("div", {}, h("dt", {}, "Activation"), h("dd", {}, h("span", { class: "mono" }, activation), " ",
          h("button", { type: "button", class: "secondary small", onclick: () => showAnalytics(activation) },
            "Show its analytics"))) : null)];
    if (m.html) {
      const view = previewOf(m.html);
      parts.push(h("h3", {}, "HTML part"),
        h("div", { class: "frame" }, h("iframe", { sandbox: "", srcdoc: view.srcdoc, title: `Email preview: ${m.subject}`,
                                                   referrerpolicy: "no-referrer" })),
        h("p", { class: "muted small" }, "Shown without loading anything: ",
          view.pixel ? "the open-tracking pixel is left out (previewing is no open), " : "",
          view.blocked ? `${view.blocked} remote image${view.blocked === 1 ? "" : "s"} not loaded, ` : "",
          "links are listed below rather than followed (following one would count as a click)."));
      if (view.links.length) parts.push(h("h3", {}, "Links"), h("ul", { class: "links" }, view.links.map((l) =>
        h("li", {}, h("strong", {}, l.text), " → ", h("span", { class: "mono wrap" }, l.target),
          l.tracked ? h("span", { class: "muted" }, " (click-tracked)") : l.kind === "unsubscribe"
            ? h("span", { class: "muted" }, " (one-click unsubscribe)") : null))));
    } else {
      parts.push(h("p", { class: "muted" }, "This message has no HTML part."));
    }
    parts.push(h("h3", {}, "Text part"), h("pre", { class: "text-part" }, m.text || "(empty)"));
    preview.replaceChildren(...parts);
  }

  el.append(
    h("section", { class: "card mailbox" },
      h("div", { class: "row spread" }, h("h2", {}, "Mailbox"),
        h("button", { type: "button", class: "secondary small", onclick: () => { seen = -1; load(); } }, "Refresh")),
      error, status, list),
    preview);
  const show = () => { if (!stop) stop = every(5000, load); };
  const hide = () => { if (stop) { stop(); stop = null; } };
  return { el, show, hide };
}

// ---- analytics ----
function analyticsPanel() {
  const el = h("div", { class: "wide mail-panel single" });
  const error = alertBox();
  const totals = h("div", { class: "totals", "aria-live": "polite" });
  const rows = h("tbody");
  const status = statusBox();
  const lookup = h("input", { id: "mail-activation", name: "activation_id", autocomplete: "off", spellcheck: "false",
                              placeholder: "act_…" });
  const subjects = new Map(); // activation id -> {subject, at}, from the mailbox
  const extra = [];           // activations looked up by hand
  let focused = null, stop = null;

  function known(messages) {
    for (const m of messages) {
      const a = activationOf(m);
      if (a) subjects.set(a, { subject: m.subject, at: Math.max(sentAt(m) || 0, subjects.get(a)?.at || 0) });
    }
  }

  const chosen = h("section", { class: "card chosen", "aria-label": "Chosen activation", hidden: true });
  const stat = (label, value, cls) => h("span", { class: `stat ${cls || ""}` }, h("b", {}, value), label);
  const stats = (r) => [
    stat("sent", r.sent), stat("delivered", r.delivered),
    stat("opens (unique)", `${r.opens} (${r.unique_opens})`), stat("clicks (unique)", `${r.clicks} (${r.unique_clicks})`),
    stat("bounces", r.bounces, r.bounces ? "bad" : ""),
    stat("open rate", pct(r.open_rate)), stat("click rate", pct(r.click_rate)), stat("bounce rate", pct(r.bounce_rate))];
  const reportRow = (id, r) => h("tr", { "data-activation": id, class: id === focused ? "selected" : null },
    h("th", { scope: "row" }, h("span", { class: "mono" }, id), subjects.get(id)
      ? h("span", { class: "muted subject" }, subjects.get(id).subject) : null),
    num(r.sent), num(r.delivered), num(`${r.opens} (${r.unique_opens})`), num(`${r.clicks} (${r.unique_clicks})`),
    num(r.bounces), num(pct(r.open_rate)), num(pct(r.click_rate)), num(pct(r.bounce_rate)));

  async function load() {
    try {
      known([...(await api("GET", "/v1/admin/mailbox?limit=100")).items].reverse());
      const all = await api("GET", "/v1/channels/email/analytics");
      error.hidden = true;
      totals.replaceChildren(...stats(all),
        h("p", { class: "muted" }, `Also: ${all.blocked} blocked, ${all.dropped} dropped, ${all.deferred} deferred, `,
          `${all.spam_reports} spam reports, ${all.unsubscribes} unsubscribes. Rates are over messages sent.`));
      // The newest 20 activations the mailbox shows, and any looked up (the focused one first).
      const newest = [...subjects.entries()].sort((a, b) => b[1].at - a[1].at).slice(0, 20).map(([id]) => id);
      const ids = [...new Set([focused, ...extra, ...newest].filter(Boolean))];
      const reports = await Promise.all(ids.map((id) => api("GET", `/v1/channels/email/analytics/${encodeURIComponent(id)}`)
        .catch((err) => ({ err }))));
      rows.replaceChildren(...ids.map((id, i) => reports[i].err
        ? h("tr", {}, h("th", { scope: "row", class: "mono" }, id),
          h("td", { colspan: 8, class: "bad" }, reports[i].err.message))
        : reportRow(id, reports[i])));
      if (!ids.length) rows.replaceChildren(h("tr", {}, h("td", { colspan: 9, class: "muted" },
        "No activation has sent email yet (activations come from POST /v1/channels/activate).")));
      const mine = focused ? reports[ids.indexOf(focused)] : null;
      chosen.hidden = !mine || Boolean(mine.err);
      if (!chosen.hidden) chosen.replaceChildren(h("h2", {}, "Activation ", h("span", { class: "mono" }, focused)),
        h("p", { class: "muted" }, subjects.get(focused) ? `“${subjects.get(focused).subject}”` : "Not in the mailbox."),
        h("div", { class: "totals" }, ...stats(mine)));
      status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
      const row = focused && rows.querySelector(`tr[data-activation="${CSS.escape(focused)}"]`);
      if (row) row.scrollIntoView({ block: "nearest" });
    } catch (err) { showError(error, err); }
  }

  el.append(
    chosen,
    h("section", { class: "card" }, h("h2", {}, "All email"), error, totals),
    h("section", { class: "card" },
      h("div", { class: "row spread" }, h("h2", {}, "By activation"),
        h("form", { class: "row", onsubmit: (ev) => {
          ev.preventDefault();
          const id = lookup.value.trim();
          if (!id) return;
          if (!extra.includes(id)) extra.unshift(id);
          focused = id;
          load();
        } }, h("div", {}, h("label", { for: "mail-activation" }, "Activation id"), lookup),
        h("button", { type: "submit", class: "secondary" }, "Show"))),
      status,
      h("div", { class: "table-wrap" }, h("table", { class: "reports" },
        h("caption", { class: "sr-only" }, "Email analytics per activation"),
        h("thead", {}, h("tr", {}, th("Activation"), th("Sent", "num"), th("Delivered", "num"),
          th("Opens (unique)", "num"), th("Clicks (unique)", "num"), th("Bounces", "num"), th("Open rate", "num"),
          th("Click rate", "num"), th("Bounce rate", "num"))),
        rows))));
  const show = () => { if (!stop) stop = every(10000, load); };
  const hide = () => { if (stop) { stop(); stop = null; } };
  return { el, show, hide, known, focus: (id) => { focused = id; lookup.value = id; if (stop) load(); } };
}

// ---- the suppression list ----
function suppressionsPanel() {
  const el = h("div", { class: "wide mail-panel list-first" });
  const error = alertBox();
  const status = statusBox();
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(true) }, "Load more");
  const filterId = h("input", { id: "supp-filter", name: "identifier", autocomplete: "off", spellcheck: "false" });
  const filterChannel = h("select", { id: "supp-filter-channel" }, h("option", { value: "" }, "Any channel"),
    CHANNELS.map((c) => h("option", { value: c }, c)));
  const ident = h("input", { id: "supp-identifier", name: "identifier", required: true, maxlength: 254,
                             autocomplete: "off", spellcheck: "false", placeholder: "someone@example.com" });
  const channel = h("select", { id: "supp-channel", name: "channel" }, CHANNELS.map((c) => h("option", { value: c }, c)));
  const reason = h("input", { id: "supp-reason", name: "reason", value: "manual", required: true, maxlength: 64 });
  const expires = h("input", { id: "supp-expires", name: "expires_at", type: "datetime-local" });
  const addError = alertBox();
  let cursor = null, loaded = false;

  async function load(append = false) {
    error.hidden = true;
    const q = new URLSearchParams({ limit: "100" });
    if (filterId.value.trim()) q.set("identifier", filterId.value.trim());
    if (filterChannel.value) q.set("channel", filterChannel.value);
    if (append && cursor) q.set("after", cursor);
    try {
      const page = await api("GET", `/v1/suppressions?${q}`);
      cursor = page.next_cursor;
      const built = page.items.map((s) => h("tr", { "data-id": s.id },
        h("td", { class: "mono wrap" }, s.identifier), h("td", {}, s.channel), h("td", {}, s.reason.replace("_", " ")),
        h("td", {}, when(s.created_at)), h("td", {}, s.expires_at ? when(s.expires_at) : "never"),
        h("td", {}, h("button", { type: "button", class: "secondary small",
                                  "aria-label": `Remove ${s.identifier} (${s.channel})`, onclick: () => remove(s) },
          "Remove"))));
      if (append) rows.append(...built); else rows.replaceChildren(...built);
      if (!rows.children.length) rows.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted" },
        "Nobody is suppressed" + (q.has("identifier") || q.has("channel") ? " with this filter." : "."))));
      more.hidden = !cursor;
      loaded = true;
    } catch (err) { showError(error, err); }
  }

  async function remove(s) {
    error.hidden = true;
    try {
      const done = await api("DELETE", "/v1/suppressions", { entries: [{ identifier: s.identifier, channel: s.channel }] });
      status.className = "ok";
      status.textContent = done.changed ? `Removed ${s.identifier} (${s.channel}): they can be sent to again.`
        : `${s.identifier} (${s.channel}) was not on the list.`;
      await load();
    } catch (err) { showError(error, err); }
  }

  async function add(ev) {
    ev.preventDefault();
    addError.hidden = true;
    const entry = { identifier: ident.value.trim(), channel: channel.value, reason: reason.value.trim() || "manual" };
    if (expires.value) entry.expires_at = new Date(expires.value).getTime() / 1000;
    try {
      await api("POST", "/v1/suppressions", { entries: [entry] });
      status.className = "ok";
      status.textContent = `Suppressed ${entry.identifier} (${entry.channel}).`;
      ident.value = "";
      expires.value = "";
      await load();
    } catch (err) { showError(addError, err); }
  }

  el.append(
    h("section", { class: "card" },
      h("h2", {}, "Suppression list"),
      h("p", { class: "muted" }, "No email, SMS or push goes to these (checked when queued and again when sent). ",
        "Hard bounces, spam reports and unsubscribes add themselves."),
      h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); load(); } },
        h("div", { class: "grow" }, h("label", { for: "supp-filter" }, "Identifier is exactly"), filterId),
        h("div", {}, h("label", { for: "supp-filter-channel" }, "Show channel"), filterChannel),
        h("button", { type: "submit", class: "secondary" }, "Filter")),
      status, error,
      h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "sr-only" }, "Suppressed identifiers"),
        h("thead", {}, h("tr", {}, th("Identifier"), th("Channel"), th("Reason"), th("Added"), th("Expires"),
                                  h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
        rows)),
      h("div", { class: "actions" }, more)),
    h("section", { class: "card" },
      h("h2", {}, "Suppress someone"),
      h("form", { onsubmit: add },
        h("label", { for: "supp-identifier" }, "Email, phone or user id"), ident,
        h("label", { for: "supp-channel" }, "Channel"), channel,
        h("label", { for: "supp-reason" }, "Reason"), reason,
        h("label", { for: "supp-expires" }, "Until (leave empty: permanent)"), expires,
        addError,
        h("div", { class: "actions" }, h("button", { type: "submit" }, "Add to the list")))));
  return { el, show: () => { if (!loaded) load(); } };
}
