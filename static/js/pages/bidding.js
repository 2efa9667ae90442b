// Live bidding (admin): bids, wins, losses and no-bids per second from the server's own counters (GET /metrics,
// polled every second, per-second differences), latency percentiles and batch sizes from its histograms, spend and
// win rate per campaign (GET /v1/admin/spend), the inference provider and model (GET /v1/inference/providers), and
// an inspector over the admin event stream (/v1/stream/events).
import { api, every, h, micros, parseMetrics, showError, stream, useStyle } from "../api.js";
import { rollingChart } from "../charts.js";

const POLL_MS = 1000;
const WINDOW_S = 10;        // latency percentiles, win rate and batch sizes cover the last 10 s
const MAX_LINES = 300;      // the inspector keeps the newest 300 events
const EVENT_GROUPS = [
  ["Bidding", ["Bid", "NoBid", "Win", "Loss", "Billing"]],
  ["Retail", ["OfferGenerated", "OfferAccepted", "OrderPaid", "OrderCancelled", "OrderExpired"]],
  ["Loyalty", ["StarsEarned", "StarsRedeemed", "StarsReversed"]],
  ["Channels", ["ChannelEvent", "Activation", "EmailSent", "RewardSignal"]],
  ["Admin", ["AdminAction"]],
];
const EVENT_TYPES = EVENT_GROUPS.flatMap(([, types]) => types);

// ---- reading the Prometheus exposition ----

/** The samples of a metric, whichever way the exposition names a counter (with or without _total). */
const samples = (m, name) => m[name] || m[`${name}_total`] || [];
const matches = (labels, where) => Object.entries(where).every(([k, v]) => labels[k] === v);
const total = (m, name, where = {}) =>
  samples(m, name).filter((s) => matches(s.labels, where)).reduce((a, s) => a + s.value, 0);

/** Sum of a counter by one label: {labelValue: total}. */
function byLabel(m, name, label) {
  const out = {};
  for (const s of samples(m, name)) out[s.labels[label]] = (out[s.labels[label]] || 0) + s.value;
  return out;
}

/** A histogram's cumulative buckets summed over its other labels: [[upperBound, count]] by bound (+Inf last). */
function buckets(m, name) {
  const acc = new Map();
  for (const s of m[`${name}_bucket`] || []) {
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    acc.set(le, (acc.get(le) || 0) + s.value);
  }
  return [...acc.entries()].sort((a, b) => a[0] - b[0]);
}

const minus = (a, b) => a.map(([le, c], i) => [le, c - ((b && b[i] && b[i][0] === le) ? b[i][1] : 0)]);

/** The q-quantile of cumulative buckets, interpolated within its bucket as Prometheus does; null without data. */
export function quantile(bks, q) {
  const n = bks.length ? bks[bks.length - 1][1] : 0;
  if (!n) return null;
  const rank = q * n;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of bks) {
    if (count >= rank) {
      if (le === Infinity) return prevLe; // above the highest bound: the bound is all we know
      return prevLe + (le - prevLe) * (count === prevCount ? 1 : (rank - prevCount) / (count - prevCount));
    }
    prevLe = le; prevCount = count;
  }
  return prevLe;
}

function snapshot(m, t) {
  const nobids = byLabel(m, "contrail_bid_nobids", "reason");
  for (const [reason, v] of Object.entries(byLabel(m, "contrail_bid_invalid", "reason"))) nobids[`invalid: ${reason}`] = v;
  return {
    t,
    bids: total(m, "contrail_bid_requests", { outcome: "bid" }),
    nobids: total(m, "contrail_bid_requests", { outcome: "nobid" }) + total(m, "contrail_bid_requests", { outcome: "invalid" }),
    reasons: nobids,
    wins: total(m, "contrail_bid_notices", { kind: "win", result: "ok" }),
    losses: total(m, "contrail_bid_notices", { kind: "loss", result: "ok" }),
    latency: buckets(m, "contrail_bid_seconds"),
    batch: buckets(m, "contrail_inference_batch_calls"),
    batchSum: total(m, "contrail_inference_batch_calls_sum"),
    batchWait: buckets(m, "contrail_inference_batch_wait_seconds"),
    model: (samples(m, "contrail_model_info")[0] || { labels: {} }).labels.version,
  };
}

// ---- formatting ----
const rate = (v) => (v === null || v === undefined ? "–" : v >= 100 ? Math.round(v).toString() : v.toFixed(1));
/** A price in USD micros, with more digits when it is under ten cents. */
const price = (m) => (m === null || m === undefined ? "–" : Math.abs(m) < 100_000 && m !== 0 ?
  new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 }).format(m / 1e6) :
  micros(m));
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`);
const ms = (seconds) => (seconds === null || seconds === undefined ? "–" :
  seconds * 1000 >= 10 ? `${Math.round(seconds * 1000)} ms` : `${(seconds * 1000).toFixed(2)} ms`);
const clock = (epochS) => {
  const d = new Date(epochS * 1000);
  return `${d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })}` +
         `.${String(d.getMilliseconds()).padStart(3, "0")}`;
};

const FIRST = ["campaign_id", "price", "price_micros", "reason", "nbr", "action", "order_id", "user_id"];
const rank = (k) => (FIRST.includes(k) ? FIRST.indexOf(k) : k.endsWith("_id") ? 100 : 50);

/** One line's text: the event's plain fields, the telling ones first and the long ids last. */
function summary(data) {
  if (!data || typeof data !== "object") return String(data ?? "");
  return Object.entries(data).filter(([, v]) => v !== null && v !== undefined && typeof v !== "object")
    .sort(([a], [b]) => rank(a) - rank(b)).map(([k, v]) => `${k}=${v}`).join("  ");
}

function stat(label, title) {
  const value = h("b", {}, "–");
  return { el: h("div", { class: "stat", title }, value, h("span", {}, label)), value };
}

export function render(root) {
  useStyle("bidding");  // (app.js opens it only for the roles PAGES names)
  const stops = [];
  const charts = [];
  let alive = true;

  // ---- the numbers at the top ----
  const stats = {
    bids: stat("bids/s", "Bids answered per second"),
    wins: stat("wins/s", "Win notices per second"),
    losses: stat("losses/s", "Loss notices per second"),
    nobids: stat("no-bids/s", "No-bids and invalid requests per second"),
    winRate: stat("win rate (10 s)", "Wins / (wins + losses) over the last 10 seconds"),
    p50: stat("p50 latency", "Median bid latency over the last 10 seconds"),
    p95: stat("p95 latency", "95th percentile bid latency over the last 10 seconds"),
    p99: stat("p99 latency", "99th percentile bid latency over the last 10 seconds"),
  };
  const updated = h("p", { class: "muted", role: "status", "aria-live": "off" }, "Waiting for the first sample…");
  const metricsError = h("p", { class: "error", role: "alert", hidden: true });
  root.append(h("section", { class: "card wide bidding-head" },
    h("h1", {}, "Live bidding"),
    h("div", { class: "stats", "aria-label": "Live figures" }, ...Object.values(stats).map((s) => s.el)),
    updated, metricsError));

  // ---- charts ----
  const chartBox = (title, note) => {
    const box = h("div", { class: "chart-box" });
    root.append(h("section", { class: "card chart-card" }, h("h2", {}, title), box,
      note ? h("p", { class: "muted small" }, note) : null));
    return box;
  };
  const trafficBox = chartBox("Bids, wins, losses per second");
  const reasonBox = chartBox("No-bids per second by reason");
  const latencyBox = chartBox("Bid latency", `p50, p95 and p99 over the last ${WINDOW_S} s, from the histogram buckets`);

  // ---- spend per campaign ----
  const spendBody = h("tbody");
  const spendError = h("p", { class: "error", role: "alert", hidden: true });
  const spendDay = h("span", { class: "muted" });
  root.append(h("section", { class: "card spend-card" },
    h("h2", {}, "Campaigns today ", spendDay),
    spendError,
    h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { class: "visually-hidden" }, "Win rate, spend and average clearing price per campaign"),
      h("thead", {}, h("tr", {}, h("th", {}, "Campaign"), h("th", {}, "Status"), h("th", { class: "num" }, "Wins"),
        h("th", { class: "num" }, "Losses"), h("th", { class: "num" }, "Win rate"),
        h("th", { class: "num" }, "Spend"), h("th", { class: "num" }, "Avg clearing CPM"))),
      spendBody)),
    h("p", { class: "muted small" }, h("a", { href: "#/campaigns" }, "Manage campaigns"))));

  // ---- inference ----
  const model = h("b", {}, "–");
  const provider = h("b", {}, "–");
  const batchStats = {
    size: stat("calls per batch (10 s)", "Mean scoring calls per inference batch"),
    p95: stat("p95 batch size", "95th percentile of calls per batch over the last 10 seconds"),
    rate: stat("batches/s", "Inference batches flushed per second"),
    wait: stat("p95 batch wait", "How long the oldest call of a batch waited, 95th percentile"),
  };
  const providersBody = h("tbody");
  const providerCounts = h("p", { class: "muted small" });
  const providerError = h("p", { class: "error", role: "alert", hidden: true });
  root.append(h("section", { class: "card inference-card" },
    h("h2", {}, "Inference"),
    h("dl", { class: "facts" }, h("dt", {}, "Model version"), h("dd", {}, model),
      h("dt", {}, "Active provider"), h("dd", {}, provider)),
    h("div", { class: "stats" }, ...Object.values(batchStats).map((s) => s.el)),
    providerError, providerCounts,
    h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { class: "visually-hidden" }, "Inference providers"),
      h("thead", {}, h("tr", {}, h("th", {}, "Provider"), h("th", {}, "Precision"), h("th", { class: "num" }, "Max batch"),
        h("th", { class: "num" }, "Calls"), h("th", { class: "num" }, "Rows"))),
      providersBody))));

  // ---- the event inspector ----
  const inspector = buildInspector();
  root.append(inspector.el);
  stops.push(inspector.stop);

  // The charts need the library (loaded once); the rest of the page works meanwhile.
  const chartError = h("p", { class: "error", role: "alert", hidden: true });
  trafficBox.before(chartError);
  let traffic = null, reasons = null, latency = null;
  Promise.all([
    rollingChart(trafficBox, { title: "Bids, wins, losses and no-bids per second", unit: "/s",
                               series: ["bids", "wins", "losses", "no-bids"],
                               colors: { bids: "#5cc8ff", wins: "#4cc764", losses: "#ff7b72", "no-bids": "#e3b341" } }),
    rollingChart(reasonBox, { title: "No-bids per second by reason", unit: "/s", series: [] }),
    rollingChart(latencyBox, { title: "Bid latency percentiles", unit: " ms", digits: 2, series: ["p50", "p95", "p99"],
                               colors: { p50: "#4cc764", p95: "#e3b341", p99: "#ff7b72" } }),
  ]).then((made) => {
    if (!alive) { made.forEach((c) => c.destroy()); return; }
    charts.push(...made);
    [traffic, reasons, latency] = made;
  }, (err) => showError(chartError, err));

  // ---- polling /metrics ----
  const history = [];
  stops.push(every(POLL_MS, async () => {
    let m;
    try {
      m = parseMetrics(await api("GET", "/metrics"));
      metricsError.hidden = true;
    } catch (err) { showError(metricsError, err); return; }
    if (!alive) return;
    const now = snapshot(m, Date.now() / 1000);
    const prev = history[history.length - 1];
    history.push(now);
    while (history.length > WINDOW_S + 3) history.shift();
    if (now.model) model.textContent = now.model;
    if (!prev) { updated.textContent = "First sample taken; rates start with the next one."; return; }
    const dt = now.t - prev.t;
    const per = (a, b) => Math.max(0, (a - b) / dt);
    if (now.bids < prev.bids) { history.splice(0, history.length - 1); return; } // the server restarted
    const r = { bids: per(now.bids, prev.bids), wins: per(now.wins, prev.wins), losses: per(now.losses, prev.losses),
                nobids: per(now.nobids, prev.nobids) };
    const reasonRates = {};
    for (const [k, v] of Object.entries(now.reasons)) reasonRates[k] = per(v, prev.reasons[k] || 0);

    // the window: the oldest sample no older than WINDOW_S
    const base = history.find((s) => s.t >= now.t - WINDOW_S - 0.5) || prev;
    const lat = minus(now.latency, base.latency);
    const p = [0.5, 0.95, 0.99].map((q) => quantile(lat, q));
    const wins = now.wins - base.wins, losses = now.losses - base.losses;
    const batch = minus(now.batch, base.batch);
    const batches = batch.length ? batch[batch.length - 1][1] : 0;
    const wait = minus(now.batchWait, base.batchWait);

    stats.bids.value.textContent = rate(r.bids);
    stats.wins.value.textContent = rate(r.wins);
    stats.losses.value.textContent = rate(r.losses);
    stats.nobids.value.textContent = rate(r.nobids);
    stats.winRate.value.textContent = wins + losses ? pct(wins / (wins + losses)) : "–";
    stats.p50.value.textContent = ms(p[0]);
    stats.p95.value.textContent = ms(p[1]);
    stats.p99.value.textContent = ms(p[2]);
    batchStats.size.value.textContent = batches ? (now.batchSum - base.batchSum > 0 ?
      ((now.batchSum - base.batchSum) / batches).toFixed(2) : "–") : "–";
    batchStats.p95.value.textContent = batches ? String(Math.ceil(quantile(batch, 0.95))) : "–";
    batchStats.rate.value.textContent = rate(batches / Math.max(0.001, now.t - base.t));
    batchStats.wait.value.textContent = ms(quantile(wait, 0.95));
    updated.textContent = `Updated ${clock(now.t)} (every ${POLL_MS / 1000} s from the server's counters)`;

    if (traffic) traffic.push(now.t, { bids: r.bids, wins: r.wins, losses: r.losses, "no-bids": r.nobids });
    if (reasons) reasons.push(now.t, reasonRates);
    if (latency) latency.push(now.t, { p50: p[0] === null ? null : p[0] * 1000, p95: p[1] === null ? null : p[1] * 1000,
                                       p99: p[2] === null ? null : p[2] * 1000 });
  }));

  // ---- polling spend and providers ----
  stops.push(every(2000, async () => {
    let report;
    try { report = await api("GET", "/v1/admin/spend"); spendError.hidden = true; }
    catch (err) { showError(spendError, err); return; }
    spendDay.textContent = `(UTC ${report.day})`;
    spendBody.replaceChildren(...report.items.map((c) => h("tr", {},
      h("td", {}, h("a", { href: `#/campaigns?id=${encodeURIComponent(c.campaign_id)}` }, c.name)),
      h("td", { class: c.state === "live" ? "ok" : "warn" }, c.state),
      h("td", { class: "num" }, c.wins), h("td", { class: "num" }, c.losses),
      h("td", { class: "num" }, pct(c.win_rate)),
      h("td", { class: "num" }, micros(c.spent_micros)),
      h("td", { class: "num" }, price(c.avg_clearing_price_micros)))));
  }));
  stops.push(every(5000, async () => {
    let view;
    try { view = await api("GET", "/v1/inference/providers"); providerError.hidden = true; }
    catch (err) { showError(providerError, err); return; }
    model.textContent = view.model_version;
    const active = view.providers.find((p) => p.active);
    provider.textContent = active ? `${active.name} (${active.precision}, batches up to ${active.max_batch})` : "none";
    providerCounts.textContent = `${view.batches} batches, ${view.overloaded} overloaded, ${view.timeouts} timed out since start`;
    providersBody.replaceChildren(...view.providers.map((p) => h("tr", { class: p.active ? "active" : "" },
      h("td", {}, p.name, p.active ? h("span", { class: "ok" }, " · active") : null),
      h("td", {}, p.precision), h("td", { class: "num" }, p.max_batch),
      h("td", { class: "num" }, p.calls), h("td", { class: "num" }, p.rows))));
  }));

  return () => {
    alive = false;
    stops.forEach((stop) => stop());
    charts.forEach((c) => c.destroy());
  };
}

// ---- the inspector: pause, event types, search, a line's full JSON ----
function buildInspector() {
  const selected = new Set(EVENT_TYPES);
  const hello = { type: "subscribe", events: [...selected] };
  const buffer = [];          // newest last, at most MAX_LINES
  let pending = [];           // received, not yet drawn
  let heldWhilePaused = 0;
  let paused = false;
  let chosen = null;
  let flushTimer = null;
  let received = 0;
  let frozen = [];            // what was kept when the inspector was paused

  const state = h("span", { class: "pill" }, "connecting…");
  const pause = h("button", { type: "button", class: "secondary", "aria-pressed": "false" }, "Pause");
  const search = h("input", { id: "inspector-search", type: "search", placeholder: "e.g. demo-lis-bcn or below_floor",
                              autocomplete: "off" });
  const clear = h("button", { type: "button", class: "secondary" }, "Clear");
  const counts = h("p", { class: "muted small", role: "status", "aria-live": "off" });
  const lines = h("ol", { class: "lines", "aria-label": "Events, newest first", tabindex: "-1" });
  const detailTitle = h("h3", {}, "Event details");
  const detail = h("pre", { class: "event-json", tabindex: "0", "aria-label": "The chosen event's JSON" },
    "Click an event line to see its full JSON.");

  const conn = stream("/v1/stream/events", {
    hello,
    onState: (s) => {
      state.textContent = s === "open" ? "live" : s;
      state.className = `pill ${s === "open" ? "ok" : s === "connecting" ? "" : "bad"}`;
    },
    onMessage: (msg) => {
      if (msg.type === "subscribed" || msg.type === "pong") return;
      if (msg.type === "error") { state.textContent = `stream: ${msg.message}`; state.className = "pill bad"; return; }
      if (!selected.has(msg.type)) return; // sent before an unsubscribe reached the server
      received += 1;
      buffer.push(msg);
      if (buffer.length > MAX_LINES) buffer.shift();
      if (paused) heldWhilePaused += 1; else pending.push(msg);
      if (!flushTimer) flushTimer = setTimeout(flush, 200);
    },
  });

  let applied = "";           // the search the lines are filtered by (the box's text once its pause to type passed)
  const needle = () => applied.toLowerCase();
  const haystack = (msg) => (msg._text ||= `${msg.type} ${clock(msg.at)} ${JSON.stringify(msg.data)}`.toLowerCase());
  const line = (msg) => {
    const b = h("button", { type: "button", class: "line", "data-type": msg.type },
      h("time", { datetime: new Date(msg.at * 1000).toISOString() }, clock(msg.at)),
      h("span", { class: `etype t-${msg.type}` }, msg.type),
      h("span", { class: "esum" }, summary(msg.data)));
    if (msg === chosen) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => choose(msg, b));
    return h("li", {}, b);
  };
  const choose = (msg, button) => {
    chosen = msg;
    for (const el of lines.querySelectorAll("[aria-current]")) el.removeAttribute("aria-current");
    button.setAttribute("aria-current", "true");
    detailTitle.textContent = `${msg.type} at ${new Date(msg.at * 1000).toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
      fractionalSecondDigits: 3 })} (local time)`;
    const { _text, ...plain } = msg;
    detail.textContent = JSON.stringify(plain, null, 2);
  };
  const describe = () => {
    const shown = lines.children.length;
    counts.textContent = `${shown} line${shown === 1 ? "" : "s"} shown` +
      (applied ? ` matching “${applied}”` : "") +
      ` · ${received} events received, the newest ${MAX_LINES} kept` +
      (paused ? ` · paused: ${heldWhilePaused} new event${heldWhilePaused === 1 ? "" : "s"} held back` : "");
  };
  function flush() {
    flushTimer = null;
    if (paused) { describe(); return; }
    const q = needle();
    const fresh = pending.filter((m) => !q || haystack(m).includes(q));
    pending = [];
    if (fresh.length) lines.prepend(...fresh.reverse().map(line));
    while (lines.children.length > MAX_LINES) lines.lastElementChild.remove();
    describe();
  }
  // While paused the lines stay frozen (a new search still filters what was shown); resuming shows the newest.
  function redraw() {
    clearTimeout(flushTimer); flushTimer = null; pending = [];
    applied = search.value.trim();
    const q = needle();
    lines.replaceChildren(...(paused ? frozen : buffer).filter((m) => !q || haystack(m).includes(q)).reverse().map(line));
    describe();
  }

  pause.addEventListener("click", () => {
    if (!paused) flush(); // draw what arrived just before the click: the frozen lines are what was received
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (paused) { frozen = buffer.slice(); describe(); } else { heldWhilePaused = 0; frozen = []; redraw(); }
  });
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(redraw, 150);
  });
  clear.addEventListener("click", () => {
    buffer.length = 0; frozen = []; received = 0; heldWhilePaused = 0; redraw();
  });

  const boxes = EVENT_GROUPS.map(([group, types]) => h("div", { class: "type-group" },
    h("span", { class: "group-name" }, group),
    ...types.map((type) => {
      const id = `evt-${type}`;
      const box = h("input", { type: "checkbox", id, checked: true, value: type });
      box.addEventListener("change", () => setType(type, box.checked));
      return h("label", { for: id, class: "check" }, box, ` ${type}`);
    })));
  const setType = (type, on) => {
    if (on === selected.has(type)) return;
    if (on) selected.add(type); else selected.delete(type);
    conn.send({ type: on ? "subscribe" : "unsubscribe", events: [type] });
    hello.type = selected.size ? "subscribe" : "ping"; // an empty subscribe means every type
    hello.events = [...selected];
  };
  const setAll = (on) => {
    for (const box of typeFields.querySelectorAll("input[type=checkbox]")) {
      if (box.checked !== on) { box.checked = on; setType(box.value, on); }
    }
  };
  const typeFields = h("fieldset", { class: "types" },
    h("legend", {}, "Event types"),
    h("div", { class: "actions tight" },
      h("button", { type: "button", class: "secondary small", onclick: () => setAll(true) }, "All types"),
      h("button", { type: "button", class: "secondary small", onclick: () => setAll(false) }, "No types")),
    ...boxes);

  const el = h("section", { class: "card wide inspector" },
    h("div", { class: "inspector-head" }, h("h2", {}, "Event inspector"), state),
    h("div", { class: "row controls" },
      pause,
      h("div", { class: "search" }, h("label", { for: "inspector-search" }, "Search events"), search),
      clear),
    typeFields,
    counts,
    h("div", { class: "inspector-body" },
      h("div", { class: "lines-wrap" }, lines),
      h("div", { class: "detail" }, detailTitle, detail)));
  describe();
  return { el, stop: () => { conn.close(); clearTimeout(flushTimer); clearTimeout(searchTimer); } };
}
