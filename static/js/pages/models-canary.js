// The Models page's canary panel for one model: the running canary (version, share, time left, its comparison with
// the live version, "Promote now" and "Abort", each confirmed first) and how the last one ended. docs/learning.md
// (## Canaries).
//
//   GET  /v1/admin/models                          each model's `canary` (running) and `last_canary` (ended)
//   POST /v1/admin/models/{name}/canary/promote    the version now live (409 when none runs)
//   POST /v1/admin/models/{name}/canary/abort      the version, now rolled back (409 when none runs)
import { api, h, showError, when } from "../api.js";

const enc = encodeURIComponent;
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const count = (v) => (isNum(v) ? new Intl.NumberFormat().format(v) : "–");
const rate = (v) => (isNum(v) ? `${(v * 100).toFixed(v < 0.1 ? 2 : 1)} %` : "–");
export const share = (v) => (isNum(v) ? `${Number((v * 100).toFixed(1))} %` : "–");
/** An arm's p95 in ms; none until it has a timed call. */
const p95 = (arm) => (arm && arm.timed > 0 && isNum(arm.p95_ms) ? arm.p95_ms.toFixed(arm.p95_ms < 10 ? 3 : 1) : "–");

const DECISION = {
  promoted: ["promoted", "ok", "Went live: it held for its period, or an admin promoted it"],
  rolled_back: ["rolled back", "bad", "Crossed a limit, or served too few calls by its end: the live version kept " +
                "serving"],
  aborted: ["aborted", "warn", "Ended by an admin, or by a rollback or reload of the live version"],
};

/** What is left of a period, in words ("3 h 12 min left"); the browser's clock stands in for the server's. */
export function timeLeft(endsAt) {
  const s = endsAt - Date.now() / 1000;
  if (!isNum(s)) return "–";
  if (s <= 0) return "due now: judged at the next check";
  if (s < 60) return "under a minute left";
  const d = Math.floor(s / 86_400), hrs = Math.floor((s % 86_400) / 3600), min = Math.floor((s % 3600) / 60);
  return `${d ? `${d} d ` : ""}${d || hrs ? `${hrs} h ` : ""}${d ? "" : `${min} min `}left`;
}

/** The limits that decide (the server's [canary] configuration, sent with each canary). */
function limitsText(c) {
  const l = c.limits || {};
  return `Limits: p95 ≤ ${isNum(l.max_p95_ms) ? `${l.max_p95_ms} ms` : "–"}, error rate ≤ ${rate(l.max_error_rate)}.`;
}

/** The canary panel of model `name`; update(model) with each poll's view of it. */
export function canaryPanel(name, id, { badge, refresh, alive, acting = () => {} }) {
  const alertBox = () => h("p", { class: "error", role: "alert", hidden: true });
  const headline = h("p", { class: "models-canary-line" });
  const times = h("p", { class: "muted small" });
  const arms = h("tbody", {});
  const limits = h("p", { class: "muted small models-canary-limits" });
  const promote = h("button", { type: "button", onclick: () => ask(true) }, "Promote now");
  const abort = h("button", { type: "button", class: "secondary", onclick: () => ask(false) }, "Abort");
  const confirmBox = h("div", { class: "models-confirm", role: "region", hidden: true,
                                "aria-label": `Confirm the end of ${name}'s canary` });
  const error = alertBox();
  const outcome = h("p", { class: "ok", role: "status", "aria-live": "polite", tabindex: "-1", hidden: true });
  const last = h("p", { class: "models-canary-last", hidden: true });
  const idle = h("p", { class: "muted small" }, "No canary running. A kept version that is not live can go out as ",
    "one (Start canary on its row below): it serves canary.share of the traffic for canary.duration_s.");
  const th = (label, cls) => h("th", { scope: "col", class: cls }, label);
  const running = h("div", { class: "models-canary-running", hidden: true },
    headline, times,
    h("div", { class: "table-wrap" }, h("table", { class: "models-canary-compare",
                                                   "aria-label": `${name}: canary against live` },
      h("thead", {}, h("tr", {}, th("Arm (version)"), th("Calls", "num"), th("Errors", "num"),
        th("Error rate", "num"), th("p95 ms", "num"))),
      arms)),
    limits,
    h("div", { class: "actions" }, promote, abort),
    confirmBox);
  const el = h("div", { class: "models-canary", role: "region", "aria-labelledby": `${id}-canary-h` },
    h("h3", { id: `${id}-canary-h` }, `Canary of ${name}`), running, error, outcome, last, idle);

  let model = null;
  let endedStart = null; // the started_at of the canary the outcome line is about

  function update(m) {
    const before = model && model.canary;
    model = m;
    const c = m.canary;
    if (!c || (before && before.started_at !== c.started_at)) confirmBox.hidden = true;
    if (c && c.started_at !== endedStart) outcome.hidden = true;
    running.hidden = !c;
    idle.hidden = Boolean(c);
    if (c) {
      headline.replaceChildren(badge("canary", "canary", "Serves a share of the traffic beside the live version"), " ",
        h("strong", { class: "mono" }, c.version), " serves ", h("strong", { class: "nowrap" }, share(c.share)), " of the traffic beside ",
        h("span", { class: "mono" }, m.live || "the live version"), " · ",
        h("strong", { class: "models-canary-left" }, timeLeft(c.ends_at)));
      times.textContent = `Started ${when(c.started_at)} by ${c.started_by || "–"} · judged at ${when(c.ends_at)}: ` +
        "promoted if it held, rolled back at once if it crosses a limit.";
      const cmp = c.comparison;
      const row = (label, version, arm) => h("tr", { "data-arm": label.toLowerCase() },
        h("th", { scope: "row" }, label, h("span", { class: "mono models-canary-version" }, version || "–")),
        h("td", { class: "num" }, count(arm && arm.calls)), h("td", { class: "num" }, count(arm && arm.errors)),
        h("td", { class: "num" }, arm && arm.calls ? rate(arm.error_rate) : "–"),
        h("td", { class: "num", title: arm ? `over its newest ${count(arm.timed)} timed calls` : "" }, p95(arm)));
      arms.replaceChildren(row("Canary", c.version, cmp && cmp.canary), row("Live", m.live, cmp && cmp.live));
      const served = c.limits && isNum(c.limits.min_calls) ? count(c.limits.min_calls) : "canary.min_calls";
      limits.textContent = `${limitsText(c)} Only the canary's figures decide, once it has served ${served} ` +
        "calls; the live version's are for comparison.";
    }
    const l = m.last_canary;
    last.hidden = !l;
    if (l) {
      const [label, cls, title] = DECISION[l.decision] || [l.decision, "muted", ""];
      last.replaceChildren(h("span", { class: "muted" }, "Last canary: "), h("span", { class: "mono" }, l.version), " ",
        badge(label, cls, title), " ", h("span", {}, l.reason || ""),
        h("span", { class: "muted small" }, ` · ${when(l.decided_at)}`));
    }
  }

  function ask(toLive) {
    const c = model && model.canary;
    if (!c) return;
    error.hidden = true;
    outcome.hidden = true;
    acting();
    const go = h("button", { type: "button", class: "danger", onclick: () => end(toLive, go) },
      `Confirm: ${toLive ? "promote" : "abort"} ${c.version}`);
    confirmBox.replaceChildren(
      h("p", {}, h("strong", {}, toLive ? `Promote ${c.version} live now?` : `Abort the canary ${c.version}?`),
        toLive ? ` It replaces ${model.live || "the live version"} (retired) whatever its measurements so far; ` +
                 "all traffic switches to it at once."
          : ` It is marked rolled back and ${model.live || "the live version"} serves all traffic again.`),
      h("div", { class: "actions" }, go, h("button", { type: "button", class: "secondary", onclick: () => {
        confirmBox.hidden = true;
        (toLive ? promote : abort).focus();
      } }, "Keep the canary running")));
    confirmBox.hidden = false;
    go.focus();
  }

  async function end(toLive, button) {
    const c = model.canary;
    const live = model.live;
    button.disabled = true;
    try {
      const v = await api("POST", `/v1/admin/models/${enc(name)}/canary/${toLive ? "promote" : "abort"}`);
      if (!alive()) return;
      confirmBox.hidden = true;
      endedStart = c.started_at;
      outcome.hidden = false;
      outcome.textContent = toLive ? `${v.version} is live (promoted from its canary).`
        : `The canary ${v.version} is aborted: ${live || "the live version"} serves all traffic again.`;
      outcome.focus({ preventScroll: true }); // the buttons the focus was on are hidden
      await refresh();
    } catch (err) {
      button.disabled = false;
      if (alive()) showError(error, err);
    }
  }

  return { el, update };
}
