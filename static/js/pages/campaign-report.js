// One campaign's report, history, review tasks, pending changes and offer-selection policy, for the campaigns
// page's detail view (js/pages/campaigns.js). Each panel is {el, load(...), destroy()}; the page decides when to load.
//
//   GET /v1/admin/campaigns/{id}/report?granularity=hour|day&from=&to=   totals, series, today's pacing
//   GET /v1/admin/campaigns/{id}/history                                 the workflow steps
//   GET /v1/admin/campaigns/{id}/tasks                                   review tasks in Jira or Asana
//   GET /v1/admin/campaigns/{id}/policy                                  the arms' posteriors (404/409: none; asked
//                                                                        for, not on opening the page)
import { ApiError, api, h, micros, money, when } from "../api.js";
import { loadUplot } from "../charts.js";

const HOUR = 3600;
const DAY = 86_400;
const enc = encodeURIComponent;
/** The two views of the report: [id, label, granularity, span in seconds, step in seconds]. */
export const PERIODS = [
  ["hour", "Hourly, last 48 hours", "hour", 48 * HOUR, HOUR],
  ["day", "Daily, last 30 days", "day", 30 * DAY, DAY],
];
const PALETTE = { spend: "#5cc8ff", bids: "#5cc8ff", wins: "#4cc764", pacing: "#e3b341", spent: "#5cc8ff" };

/** A price in USD micros, with more digits when it is under ten cents. */
export const price = (m) => (m === null || m === undefined ? "–" : Math.abs(m) < 100_000 && m !== 0 ?
  new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 }).format(m / 1e6) :
  micros(m));
export const pct = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : `${(v * 100).toFixed(1)} %`);
const count = (n) => (n === null || n === undefined ? "–" : new Intl.NumberFormat().format(n));
// Below a dollar to the hundredth of a cent (an impression costs about $0.002), without zeros past the cents.
const dollars = (v) => (v === null || v === undefined ? "–" : Math.abs(v) < 1 && v !== 0 ?
  `$${v.toFixed(4).replace(/0{1,2}$/, "")}` : `$${v.toFixed(2)}`);
const plain = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 100 ? String(Math.round(v)) :
  String(Number(v.toFixed(1))));
const stamp = (t, step) => (step >= DAY ? new Date(t * 1000).toLocaleDateString(undefined, { timeZone: "UTC" }) :
  new Date(t * 1000).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }));

/**
 * A static chart of aligned series in `box` (it fills the box's width): xs in epoch seconds, each series
 * {label, values, color, bars}. The box is an image with a text alternative (`summary`). Returns {destroy()}.
 */
// Tick steps for charts of counts: a bid is never a fraction.
const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];

async function drawChart(box, { title, xs, series, range, step, format = plain, summary = "", whole = false }) {
  const uPlot = await loadUplot();
  const css = getComputedStyle(document.documentElement);
  const ink = css.getPropertyValue("--muted").trim() || "#9fb0bf";
  const grid = css.getPropertyValue("--line").trim() || "#243140";
  const height = 210;
  let width = Math.max(220, Math.floor(box.clientWidth) || 320);
  const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined;
  box.classList.add("chart");
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", `${title}: ${summary || "no data"}`);
  box.replaceChildren();
  let plot = new uPlot({
    width, height,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: true, range: () => range },
      y: { range: (u, min, max) => [0, Math.max(Number(max) || 0, 0) * 1.12 || 1] },
    },
    axes: [
      { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
      { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 62,
        values: (u, splits) => splits.map((v) => format(v)), ...(whole ? { incrs: WHOLE_STEPS } : {}) },
    ],
    series: [
      { label: step >= DAY ? "day (UTC)" : "time", value: (u, v) => (v === null || v === undefined ? "–" : stamp(v, step)) },
      ...series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, spanGaps: false,
        fill: s.bars ? `${s.color}99` : undefined,
        paths: s.bars ? bars : undefined,
        points: { show: !s.bars && xs.length <= 12, size: 5 },
        value: (u, v) => (v === null || v === undefined ? "–" : format(v)),
      })),
    ],
  }, [xs, ...series.map((s) => s.values)], box);
  // The legend shows the latest period's values unless the pointer is on the chart.
  const last = Math.max(0, series[0].values.findLastIndex((v) => v !== null && v !== undefined));
  const showLatest = () => { if (xs.length && plot) plot.setLegend({ idx: last }); };
  plot.over.addEventListener("mouseleave", () => setTimeout(showLatest));
  requestAnimationFrame(showLatest);
  let frame = 0;
  const resize = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      const w = Math.max(220, Math.floor(box.clientWidth));
      if (plot && Math.abs(w - width) > 2) { width = w; plot.setSize({ width, height }); }
    });
  });
  resize.observe(box);
  box.dataset.points = String(xs.length);
  return { destroy() { resize.disconnect(); cancelAnimationFrame(frame); if (plot) plot.destroy(); plot = null; } };
}

/** Every period of the range, with the report's figures where it has some and zero where it has none. */
function grid(report, span, step) {
  const end = report.end;
  const first = Math.floor((end - span) / step) * step + step;
  const byAt = new Map(report.series.map((p) => [Math.floor(p.at / step) * step, p.totals]));
  const xs = [];
  for (let t = first; t <= end; t += step) xs.push(t);
  const at = (key) => xs.map((t) => (byAt.get(t) ? byAt.get(t)[key] || 0 : 0));
  return { xs, at, range: [first - step / 2, Math.floor(end / step) * step + step / 2] };
}

/** Today's spend, hour by hour, against what pacing allows (from an hourly report covering today). */
function pacingLine(hourly) {
  const today = hourly.today;
  const now = hourly.end;
  const dayStart = now - (now % DAY);
  const spentBy = new Map(hourly.series.filter((p) => p.at >= dayStart).map((p) => [p.at, p.totals.spend_micros]));
  const points = [...today.pacing.map((p) => p.at), now].sort((a, b) => a - b);
  const allowedAt = (t) => {
    const ps = today.pacing;
    for (let i = 1; i < ps.length; i++) {
      if (t <= ps[i].at) {
        const f = (t - ps[i - 1].at) / (ps[i].at - ps[i - 1].at);
        return ps[i - 1].allowed_micros + f * (ps[i].allowed_micros - ps[i - 1].allowed_micros);
      }
    }
    return ps.length ? ps[ps.length - 1].allowed_micros : null;
  };
  let total = 0;
  const spent = points.map((t) => {
    if (t > now) return null;
    if (t === now) return today.spent_micros / 1e6;
    total = 0;
    for (const [at, m] of spentBy) if (at + HOUR <= t) total += m;
    return total / 1e6;
  });
  return { xs: points, spent, allowed: points.map((t) => allowedAt(t) / 1e6), range: [dayStart, dayStart + DAY] };
}

/** The report: a period toggle, the totals, and three charts. `onError(err)` reports a failed load. */
export function reportPanel(id) {
  let period = PERIODS[0];
  let charts = [];
  let latest = 0;
  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const totals = h("dl", { class: "report-totals", "aria-label": "Report totals" });
  const reasons = h("p", { class: "muted small" });
  const boxes = {
    spend: h("div", { class: "chart", "data-chart": "spend" }),
    bids: h("div", { class: "chart", "data-chart": "bids" }),
    pacing: h("div", { class: "chart", "data-chart": "pacing" }),
  };
  const titles = { spend: h("h3", {}), bids: h("h3", {}), pacing: h("h3", {}, "Today's spend against pacing (UTC day)") };
  const toggle = h("fieldset", { class: "period" }, h("legend", { class: "visually-hidden" }, "Report period"),
    ...PERIODS.map(([key, label]) => h("label", { class: "radio" },
      h("input", { type: "radio", name: `period-${id}`, value: key, checked: key === period[0] || null,
                   onchange: () => { period = PERIODS.find(([k]) => k === key); load(); } }), " ", label)));
  const el = h("section", { class: "card report", "aria-labelledby": "report-heading" },
    h("div", { class: "campaigns-head" }, h("h2", { id: "report-heading" }, "Report"), toggle),
    status, error, totals,
    h("div", { class: "chart-grid" },
      ...["spend", "bids", "pacing"].map((k) => h("figure", { class: "chart-card" }, titles[k], boxes[k]))),
    reasons);

  async function load() {
    const mine = ++latest;
    const [, label, granularity, span, step] = period;
    const to = Date.now() / 1000;
    status.textContent = `Loading the ${label.toLowerCase()}…`;
    try {
      const q = (g, from) => api("GET", `/v1/admin/campaigns/${enc(id)}/report?granularity=${g}&from=${from}&to=${to}`);
      const report = await q(granularity, to - span);
      // Today's pacing needs today hour by hour: the hourly view has it already.
      const hourly = granularity === "hour" ? report : await q("hour", to - (to % DAY));
      if (mine !== latest) return;
      error.hidden = true;
      showTotals(report);
      await drawAll(report, hourly, span, step, label);
      status.textContent = `${label}: ${report.series.length} ${granularity === "hour" ? "hours" : "days"} with activity.`;
    } catch (err) {
      if (mine !== latest) return;
      status.textContent = "";
      error.hidden = false;
      error.textContent = `The report is not available: ${err.message}`;
    }
  }

  function showTotals(report) {
    const t = report.totals;
    const pairs = [
      ["Bids", count(t.bids)], ["Wins", count(t.wins)], ["Win rate", pct(t.win_rate)],
      ["Impressions", count(t.impressions)], ["Spend", price(t.spend_micros)],
      ["Avg clearing price", t.avg_clearing_price_micros === null ? "–" : `${price(t.avg_clearing_price_micros)} CPM`],
      ["Losses", count(t.losses)], ["Clicks", count(t.clicks)], ["Conversions", count(t.conversions)],
      ["Revenue", money(t.revenue_cents || 0, report.revenue_currency)],
    ];
    totals.replaceChildren(...pairs.map(([k, v]) => h("div", { class: "stat" }, h("dt", {}, k), h("dd", {}, v))));
    const nb = Object.entries(report.no_bid_reasons || {}).sort((a, b) => b[1] - a[1]);
    reasons.textContent = nb.length ? `The bidder's no-bids over the range (all campaigns): ${
      nb.slice(0, 6).map(([r, n]) => `${r} ${count(n)}`).join(", ")}${nb.length > 6 ? ", …" : ""}.` : "";
  }

  async function drawAll(report, hourly, span, step, label) {
    for (const c of charts) c.destroy();
    charts = [];
    const g = grid(report, span, step);
    const per = step >= DAY ? "day" : "hour";
    titles.spend.textContent = `Spend per ${per} (${label.toLowerCase()})`;
    titles.bids.textContent = `Bids and wins per ${per}`;
    const spend = g.at("spend_micros").map((m) => m / 1e6);
    const bids = g.at("bids");
    const wins = g.at("wins");
    const pace = pacingLine(hourly);
    const t = report.totals;
    const today = hourly.today;
    const pacedNow = hourly.state === "live" || hourly.state === "paused";
    charts = await Promise.all([
      drawChart(boxes.spend, { title: titles.spend.textContent, xs: g.xs, range: g.range, step, format: dollars,
        series: [{ label: "spend (USD)", values: spend, color: PALETTE.spend, bars: true }],
        summary: `${price(t.spend_micros)} in all, at most ${dollars(Math.max(0, ...spend))} in one ${per}` }),
      drawChart(boxes.bids, { title: titles.bids.textContent, xs: g.xs, range: g.range, step, whole: true,
        series: [{ label: "bids", values: bids, color: PALETTE.bids }, { label: "wins", values: wins, color: PALETTE.wins }],
        summary: `${count(t.bids)} bids and ${count(t.wins)} wins in all (win rate ${pct(t.win_rate)})` }),
      drawChart(boxes.pacing, { title: titles.pacing.textContent, xs: pace.xs, range: pace.range, step: HOUR,
        format: dollars,
        // Pacing holds back a campaign that bids (live) or may again (paused); for any other it allows nothing.
        series: [{ label: "spent (USD)", values: pace.spent, color: PALETTE.spent },
                 ...(pacedNow ? [{ label: "pacing allows (USD)", values: pace.allowed, color: PALETTE.pacing }] : [])],
        summary: `${price(today.spent_micros)} spent today of ${price(today.daily_budget_micros)}; ` +
          (pacedNow ? `pacing allows ${price(today.paced_micros)} by now` : `not bidding (${stateText(hourly.state)})`) }),
    ]);
  }

  return { el, load, destroy() { latest++; for (const c of charts) c.destroy(); charts = []; } };
}

const ACTION_LABELS = { create: "created", submit: "submitted", approve: "approved", approve_changes: "approved changes",
  reject: "rejected", reject_changes: "rejected changes", revise: "changes submitted", schedule: "scheduled", start: "started",
  pause: "paused", resume: "resumed", complete: "completed", archive: "archived", edit: "edited" };
const stateText = (s) => (s ? s.replace(/_/g, " ") : "–");

/** Who did it, as the page shows it: "you" for the signed-in user. */
export function actorText(actor, me) {
  if (!actor) return "–";
  return me && actor === me ? `you (${actor})` : actor;
}

/** The campaign's workflow steps, newest first. */
export function historyPanel(id, me) {
  const body = h("tbody");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const el = h("section", { class: "card", "aria-labelledby": "history-heading" },
    h("h2", { id: "history-heading" }, "History"), error,
    h("div", { class: "table-wrap" }, h("table", { class: "history-table" },
      h("caption", { class: "visually-hidden" }, "The campaign's workflow history, newest first"),
      h("thead", {}, h("tr", {}, ...["When", "Who", "Action", "From → to", "Comment"].map((t) => h("th", { scope: "col" }, t)))),
      body)));
  async function load() {
    try {
      const answer = await api("GET", `/v1/admin/campaigns/${enc(id)}/history`);
      error.hidden = true;
      const items = [...answer.items].reverse();
      body.replaceChildren(...(items.length ? items.map((e) => h("tr", { "data-action": e.action },
        h("td", { class: "nowrap" }, when(e.at)),
        h("td", {}, h("code", {}, actorText(e.actor, me))),
        h("td", {}, ACTION_LABELS[e.action] || e.action),
        h("td", { class: "nowrap" }, e.from_state === e.to_state || !e.from_state ? stateText(e.to_state) :
          `${stateText(e.from_state)} → ${stateText(e.to_state)}`),
        h("td", { class: "comment" }, e.comment || h("span", { class: "muted" }, "–"))))
        : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No steps recorded yet."))]));
    } catch (err) {
      error.hidden = false;
      error.textContent = `The history is not available: ${err.message}`;
    }
  }
  return { el, load };
}

/** The review tasks opened for the campaign in the team's task tool (Jira, Asana), with their synced status;
 * hidden while there are none (no task tool configured, or never submitted). */
export function tasksPanel(id) {
  const body = h("tbody");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const el = h("section", { class: "card", "aria-labelledby": "tasks-heading", hidden: true },
    h("h2", { id: "tasks-heading" }, "Review tasks"), error,
    h("div", { class: "table-wrap" }, h("table", { class: "tasks-table" },
      h("caption", { class: "visually-hidden" }, "The campaign's review tasks in the team's task tool"),
      h("thead", {}, h("tr", {}, ...["Opened", "Tool", "Task", "Status", "Last synced"].map((t) =>
        h("th", { scope: "col" }, t)))),
      body)));
  async function load() {
    try {
      const answer = await api("GET", `/v1/admin/campaigns/${enc(id)}/tasks`);
      error.hidden = true;
      el.hidden = !answer.items.length;
      body.replaceChildren(...[...answer.items].reverse().map((t) => h("tr", { "data-status": t.status },
        h("td", { class: "nowrap" }, when(t.opened_at)),
        h("td", {}, t.tool),
        h("td", {}, t.url ? h("a", { href: t.url, target: "_blank", rel: "noopener" }, t.task_key || t.task_id)
          : h("span", { class: "muted" }, "–")),
        h("td", {}, t.status === "failed" || t.status === "given_up" ? h("span", { class: "error" },
          `not opened after ${t.attempts} attempt${t.attempts === 1 ? "" : "s"}: ${t.error}`) : stateText(t.status)),
        h("td", { class: "nowrap" }, when(t.synced_at)))));
    } catch (err) {
      el.hidden = false;
      error.hidden = false;
      error.textContent = `The review tasks are not available: ${err.message}`;
    }
  }
  return { el, load };
}

/** Creatives whose asset the last asset-library sync could not read: shown only while there are some. */
export function assetsPanel(id) {
  const list = h("ul", {});
  const note = h("p", { class: "small muted" });
  const el = h("section", { class: "card", "aria-labelledby": "assets-heading", hidden: true },
    h("h2", { id: "assets-heading" }, "Asset library sync"), note, list);
  async function load() {
    let answer;
    try {
      answer = await api("GET", `/v1/admin/campaigns/${enc(id)}/assets`);
    } catch {
      el.hidden = true;  // nothing current to say; the page's own errors say when the server is away
      return;
    }
    const failing = answer.failing || [];
    el.hidden = !failing.length;  // a failed folder listing alone: each asset was read on its own
    note.textContent = `These creatives keep their last version until a sync of ${answer.dam} reads them again `
      + `(last sync ${when(answer.last_sync_at)}).` + (answer.folder_error ? ` The team folder could not be listed: `
      + `${answer.folder_error}.` : "");
    list.replaceChildren(...failing.map((f) => h("li", { class: "error" },
      `${f.creative_id} (${f.dam_id}): ${f.error}; failing since ${when(f.since)}, ${f.failures} sync${
        f.failures === 1 ? "" : "s"} in a row`)));
  }
  return { el, load };
}

const FIELD_LABELS = { bid_cap_micros: "Bid cap", daily_budget_micros: "Daily budget", targeting: "Targeting",
  creatives: "Creatives", channels: "Channels" };

function fieldText(key, v) {
  if (v === null || v === undefined) return "–";
  if (key.endsWith("_micros")) return key === "bid_cap_micros" ? `${price(v)} CPM` : micros(v);
  if (key === "creatives") return v.length ? v.map((c) => `${c.id} (${c.format}${c.w && c.h ? ` ${c.w}×${c.h}` : ""})`).join(", ") : "none";
  if (key === "channels") return v.length ? v.join(", ") : "none";
  if (key === "targeting") {
    const parts = Object.entries(v).filter(([, x]) => x !== null && !(Array.isArray(x) && !x.length))
      .map(([k, x]) => `${k.replace(/_/g, " ")}: ${Array.isArray(x) ? x.join(", ") : x}`);
    return parts.length ? parts.join("; ") : "anywhere, any device";
  }
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** The changes under review to a running campaign: a table of field, running value, proposed value. */
export function pendingTable(c, captionText = `Changes to ${c.name} waiting for approval`) {
  const p = c.pending;
  const rows = Object.keys(FIELD_LABELS).filter((k) => p[k] !== null && p[k] !== undefined).map((k) => h("tr", {},
    h("th", { scope: "row" }, FIELD_LABELS[k]), h("td", {}, fieldText(k, c[k])), h("td", { class: "proposed" }, fieldText(k, p[k]))));
  return h("div", { class: "table-wrap" }, h("table", { class: "pending-table" },
    h("caption", { class: "visually-hidden" }, captionText),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Running now"),
      h("th", { scope: "col" }, "Proposed"))),
    h("tbody", {}, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No field changes listed."))]))));
}

// ---- the offer-selection policy: read defensively (the endpoint's shape may still move) ----
const first = (o, keys) => { for (const k of keys) if (o && o[k] !== undefined && o[k] !== null) return o[k]; return undefined; };
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : typeof v === "string" && v !== "" && !Number.isNaN(Number(v)) ? Number(v) : null);

/** The arms of a policy answer, whatever it calls them: [{name, mean, lower, upper, pulls}]. */
export function readArms(body) {
  const policy = (body && typeof body.policy === "object" && body.policy) || body || {};
  let arms = [policy.posterior, policy.arms, policy.items].find((x) => Array.isArray(x) ||
    (x && typeof x === "object")) || [];
  if (!Array.isArray(arms) && typeof arms === "object") arms = Object.entries(arms).map(([k, v]) => ({ id: k, ...v }));
  if (!Array.isArray(arms)) arms = [];
  return arms.map((a, i) => {
    const post = first(a, ["posterior", "estimate", "stats"]) || {};
    const interval = first(a, ["interval", "ci", "credible_interval"]) || first(post, ["interval", "ci"]);
    return {
      retired: a.in_campaign === false,
      name: String(first(a, ["arm", "name", "arm_id", "id", "offer_id", "creative_id", "label"]) ?? `arm ${i + 1}`),
      mean: num(first(a, ["mean", "posterior_mean", "expected", "value"]) ?? first(post, ["mean", "expected"])),
      lower: num(first(a, ["lower", "low", "ci_lower", "lower_bound"]) ?? (Array.isArray(interval) ? interval[0] : first(interval, ["lower", "low"])) ?? first(post, ["lower", "low"])),
      upper: num(first(a, ["upper", "high", "ci_upper", "upper_bound"]) ?? (Array.isArray(interval) ? interval[1] : first(interval, ["upper", "high"])) ?? first(post, ["upper", "high"])),
      pulls: num(first(a, ["pulls", "n", "count", "trials", "plays", "impressions"]) ?? first(post, ["pulls", "n"])),
    };
  });
}

const estimate = (v) => (v === null ? "–" : Math.abs(v) < 1 ? v.toFixed(3) : v.toFixed(2));

/** The policy's arms: a table with each arm's mean and interval (and a bar drawing them) and its pulls.
 *
 * Most campaigns have no policy, and nothing the page has says which do: the server answers 409 (no_policy) for
 * those, which the browser logs as a failed request. So the arms are read when asked for (`load`: the button, or
 * the policy form once saved), and then kept up to date (`refresh`) only while there is a policy to show. */
export function policyPanel(id) {
  const ask = (label) => h("button", { type: "button", class: "secondary", onclick: () => load() }, label);
  const content = h("div", {}, h("p", { class: "muted" }, "Each arm's posterior mean, interval and pulls, once the ",
    "campaign has a policy."), h("div", { class: "actions" }, ask("Show the policy")));
  const note = h("p", { class: "muted small", role: "status", "aria-live": "polite" });
  const el = h("section", { class: "card policy", "aria-labelledby": "policy-heading" },
    h("h2", { id: "policy-heading" }, "Offer-selection policy"), note, content);
  let shown = "";
  let found = false;  // a policy was read: refreshing it asks nothing the server has to refuse
  async function load() {
    let body;
    try {
      body = await api("GET", `/v1/admin/campaigns/${enc(id)}/policy`);
    } catch (err) {
      const none = err instanceof ApiError && (err.status === 404 || err.status === 409 || err.status === 405);
      found = false;
      const text = none ? "No offer-selection policy for this campaign." : `The policy is not available: ${err.message}`;
      if (shown !== text) {
        shown = text;
        content.replaceChildren(h("p", { class: none ? "muted" : "error" }, text),
          h("div", { class: "actions" }, ask("Check again")));
      }
      note.textContent = "";
      return;
    }
    found = true;
    const arms = readArms(body);
    const sig = JSON.stringify(arms);
    if (sig === shown) return;
    shown = sig;
    const policyObj = (body && typeof body.policy === "object" && body.policy) || body || {};
    const kind = first(policyObj, ["kind", "algorithm", "type"]);
    const over = typeof policyObj.arms === "string" ? ` over the campaign's ${policyObj.arms}` : "";
    const ctx = Array.isArray(policyObj.context) && policyObj.context.length ? `, per ${policyObj.context.join(", ")}` : "";
    note.textContent = `${kind ? String(kind).replace(/_/g, " ") : "Policy"}${over}${ctx}: ${arms.length} arm${
      arms.length === 1 ? "" : "s"}. Each bar shows the arm's interval, its tick the mean.`;
    if (!arms.length) { content.replaceChildren(h("p", { class: "muted" }, "The policy has no arms yet.")); return; }
    const buckets = Array.isArray(policyObj.buckets) ? policyObj.buckets.filter((x) => x && Array.isArray(x.arms)) : [];
    content.replaceChildren(armsTable(arms, "The policy's arms with their posterior mean, interval and pulls"),
      ...buckets.map((bk) => h("details", { class: "bucket" }, h("summary", {}, `Context ${bk.bucket}`),
        armsTable(readArms({ posterior: bk.arms }), `Arms for context ${bk.bucket}`))));
  }
  return { el, load, refresh: () => (found ? load() : undefined) };
}

function armsTable(arms, caption) {
  {
    const top = Math.max(1e-9, ...arms.map((a) => Math.max(a.upper ?? 0, a.mean ?? 0)));
    const best = arms.some((a) => a.pulls > 0) ?
      arms.reduce((b, a) => (a.mean !== null && (b === null || a.mean > b.mean) ? a : b), null) : null;
    const scale = (v) => `${Math.max(0, Math.min(100, (v / top) * 100)).toFixed(1)}%`;
    return h("div", { class: "table-wrap" }, h("table", { class: "arms-table", "aria-label": caption },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Arm"), h("th", { scope: "col", class: "num" }, "Mean"),
        h("th", { scope: "col" }, "Interval"), h("th", { scope: "col", class: "num" }, "Pulls"))),
      h("tbody", {}, ...arms.map((a) => h("tr", { "data-arm": a.name },
        h("th", { scope: "row" }, h("code", {}, a.name), a === best ? h("span", { class: "badge ok best" }, "best") : null,
          a.retired ? h("span", { class: "badge muted best", title: "no longer one of the campaign's arms" }, "retired") : null),
        h("td", { class: "num" }, estimate(a.mean)),
        h("td", {}, h("span", { class: "arm" },
          h("span", { class: "arm-bar", "aria-hidden": "true" },
            a.lower !== null && a.upper !== null ? h("span", { class: "arm-ci", style: `left:${scale(a.lower)};width:calc(${scale(a.upper)} - ${scale(a.lower)})` }) : null,
            a.mean !== null ? h("span", { class: "arm-mean", style: `left:${scale(a.mean)}` }) : null),
          h("span", { class: "nowrap" }, a.lower !== null && a.upper !== null ? `${estimate(a.lower)} – ${estimate(a.upper)}` : "–"))),
        h("td", { class: "num" }, a.pulls === null ? "–" : count(a.pulls)))))));
  }
}
