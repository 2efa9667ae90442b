// Models (admin): every learned model's versions with their held-out metrics, which version is live (and what
// really serves), the last retrain, "Train now", putting a kept version back live, held-out AUC and log-loss
// over the trained versions, the live version's calibration (reliability) curve, and canaries: the running one
// with its comparison (models-canary.js), the last one's decision, and "Start canary" on a kept version. Every
// model the server lists (bidnet, acceptance, reco, ltv) renders the same way. docs/learning.md.
//
//   GET  /v1/admin/models                          each model: live, serving, newest 20 versions, last_run,
//                                                  canary, last_canary
//   GET  /v1/admin/models/{name}?limit=&after=     older versions (next_cursor)
//   POST /v1/admin/models/{name}/train             the run (409 while one runs)
//   POST /v1/admin/models/{name}/rollback          {"version"}: the version now live (404/409 with a message)
//   POST /v1/admin/models/{name}/canary            {"version"}: 201 the canary (409 when one runs, with a message)
import { api, every, h, showError, useStyle, when } from "../api.js";
import { loadUplot } from "../charts.js";
import { canaryPanel, share } from "./models-canary.js";

const POLL_MS = 5000;
const enc = encodeURIComponent;
const alertBox = () => h("p", { class: "error", role: "alert", hidden: true });
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const fixed = (v, digits) => (isNum(v) ? v.toFixed(digits) : "–");
const count = (v) => (isNum(v) ? new Intl.NumberFormat().format(v) : "–");
/** A probability as a percentage, with more digits when it is small (click rates are around 1 %). */
const pct = (v) => (isNum(v) ? `${(v * 100).toFixed(Math.abs(v) < 0.1 ? 2 : 1)} %` : "–");
const seconds = (v) => (isNum(v) ? `${v < 10 ? v.toFixed(2) : Math.round(v)} s` : "–");
const clock = () => new Date().toLocaleTimeString();

const STATUS = {
  live: ["live", "ok", "Serves now"],
  retired: ["retired", "muted", "Was live; replaced by a newer version"],
  rejected: ["rejected", "bad", "Trained, but not better than the live version on held-out rows"],
  rolled_back: ["rolled back", "warn", "Was live and an admin put an earlier version back, or a canary that ended " +
                "without going live"],
  canary: ["canary", "canary", "Serves a share of the traffic beside the live version until it is promoted or " +
           "rolled back"],
};
const RUN = {
  promoted: ["promoted", "ok", "Better than the live version on held-out rows: it went live"],
  canary: ["canary", "canary", "Better than the live version on held-out rows: it went out as a canary " +
           "(canary.on_retrain)"],
  recorded: ["recorded", "warn", "Better than the live version, kept for an admin to make live (learning.auto_promote " +
             "is off, or another canary was running)"],
  rejected: ["rejected", "bad", "Not better than the live version on held-out rows: kept, not live"],
  skipped: ["skipped", "muted", "Not enough logged outcomes to train on yet"],
};
const SOURCE = {
  config: "The model file the server was configured with",
  file: "A weights file an admin reloaded (POST /v1/admin/model/reload)",
  trained: "Trained here from the logged outcomes",
};
// What a model learns from, for its empty states; another model gets the generic words.
const LEARNS = {
  bidnet: "the bid model trains from won bids and clicks once learning.min_rows are logged; run " +
          "python -m app simulate or press Train now",
  acceptance: "the offer-acceptance model trains from searches and paid orders once ranking.min_training_offers " +
              "offers with a known outcome are logged; press Train now",
};
const learnsFrom = (name) => LEARNS[name] || "it trains from the logged outcomes once enough are logged; press " +
  "Train now";

const badge = (label, cls, title) => h("span", { class: `badge ${cls}`, title }, label);
const statusBadge = (s) => { const [label, cls, title] = STATUS[s] || [s, "muted", ""]; return badge(label, cls, title); };
const runBadge = (s) => { const [label, cls, title] = RUN[s] || [s, "muted", ""]; return badge(label, cls, title); };
const holdout = (v) => (v.metrics && v.metrics.holdout) || null;
// Reco and LTV are not click models: their versions carry their own holdout figures as `evaluation`.
const EVALUATION = [["hr@10", "HR@10", 3], ["ndcg@10", "NDCG@10", 3], ["mae", "MAE", 3], ["rmse", "RMSE", 3]];
const evaluation = (v) => {
  const e = v && v.metrics && v.metrics.evaluation;
  if (!e) return null;
  const parts = EVALUATION.filter(([key]) => isNum(e[key])).map(([key, label, d]) => `${label} ${fixed(e[key], d)}`);
  if (isNum(e.accuracy)) parts.push(`accuracy ${fixed(100 * e.accuracy, 1)}%`);
  return parts.length ? parts.join(", ") : null;
};
const trained = (versions) => versions.filter((v) => holdout(v) && isNum(holdout(v).auc))
  .sort((a, b) => a.created_at - b.created_at || a.sequence - b.sequence);

export function render(root) {
  useStyle("models");
  root.classList.add("models-view");
  let gone = false;
  const cards = new Map(); // model name -> its card
  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" }, "Loading the models…");
  const error = alertBox();
  const list = h("div", { class: "models-list wide" });
  const empty = h("p", { class: "muted", hidden: true },
    "The server has no learned model: learning is configured in config.toml's [learning] section.");
  root.append(h("section", { class: "card wide models-head", "aria-labelledby": "models-h1" },
    h("h1", { id: "models-h1" }, "Models"),
    h("p", { class: "muted" }, "Each learned model's versions with their held-out metrics, which one is live, and the ",
      "last retrain. A retrained candidate goes live only when it beats the live version on held-out rows; any ",
      "version whose weights file is kept can be put back live, or sent out as a canary beside the live one."),
    status, error, empty), list);

  async function load() {
    let answer;
    try {
      answer = await api("GET", "/v1/admin/models");
    } catch (err) {
      if (!gone) { showError(error, err); status.textContent = ""; }
      return;
    }
    if (gone) return;
    error.hidden = true;
    const names = new Set(answer.models.map((m) => m.name));
    for (const [name, card] of cards) if (!names.has(name)) { card.destroy(); card.el.remove(); cards.delete(name); }
    for (const m of answer.models) {
      let card = cards.get(m.name);
      if (!card) { card = modelCard(m.name, { refresh: load, alive: () => !gone }); cards.set(m.name, card); }
      list.append(card.el); // keeps the server's order
      card.update(m);
    }
    empty.hidden = answer.models.length > 0;
    status.textContent = `Updated ${clock()} (every ${POLL_MS / 1000} s).`;
  }

  const stop = every(POLL_MS, load);
  return () => {
    gone = true;
    stop();
    for (const card of cards.values()) card.destroy();
  };
}

/** One model's card; update(model) with each poll's view of it (the DOM is kept, only what changed is redrawn). */
function modelCard(name, { refresh, alive }) {
  const id = `model-${name.replace(/[^\w-]/g, "_")}`;
  let model = null;
  let older = [];           // versions loaded with "Show older versions", below the newest page
  let olderCursor = null;   // where the next older page starts (null: none loaded yet; "" : no more)
  let shownSig = "";
  let chartSig = "";
  let charts = [];
  let drawing = 0;

  const serving = h("p", { class: "models-warning", role: "alert", hidden: true });
  const facts = h("dl", { class: "models-facts" });
  // What the versions section last said is stale once the canary panel acts.
  const canary = canaryPanel(name, id, { badge, refresh, alive,
    acting: () => { outcome.hidden = true; actionError.hidden = true; } });
  const lastRun = h("div", { class: "models-run" });
  const trainButton = h("button", { type: "button", onclick: () => train() }, "Train now");
  const trainResult = h("div", { class: "models-train-result", "aria-live": "polite" });
  const trainError = alertBox();
  const confirmBox = h("div", { class: "models-confirm", role: "region", "aria-label": `Confirm the change to ${name}`,
                                hidden: true });
  const actionError = alertBox();
  const outcome = h("p", { class: "ok", role: "status", "aria-live": "polite", tabindex: "-1", hidden: true });
  const rows = h("tbody", {});
  const more = h("button", { type: "button", class: "secondary small", hidden: true, onclick: () => loadOlder() },
    "Show older versions");
  const historyBox = h("div", { class: "models-chart", "data-chart": "history" });
  const historyNote = h("p", { class: "muted small" });
  const calibrationBox = h("div", { class: "models-chart", "data-chart": "calibration" });
  const calibrationNote = h("p", { class: "muted small" });
  const chartError = alertBox();
  const th = (label, cls) => h("th", { scope: "col", class: cls }, label);

  const el = h("section", { class: "card wide models-card", "aria-labelledby": `${id}-h`, "data-model": name },
    h("h2", { id: `${id}-h` }, name),
    serving, facts, canary.el,
    h("h3", {}, "Last retrain"), lastRun,
    h("div", { class: "actions" }, trainButton,
      h("span", { class: "muted small" }, "Fits a candidate on the logged rows now and promotes it only if it wins.")),
    trainError, trainResult,
    h("h3", { id: `${id}-versions-h` }, "Versions"),
    confirmBox, actionError, outcome,
    h("div", { class: "table-wrap" }, h("table", { class: "models-versions", "aria-labelledby": `${id}-versions-h` },
      h("thead", {}, h("tr", {}, th("Version"), th("Status"), th("Source"), th("Created"),
        th("Holdout AUC ± SE", "num"), th("Log-loss", "num"), th("ECE", "num"), th("Rows (clicks)", "num"),
        th("Note"), th("Action"))),
      rows)),
    h("div", { class: "actions" }, more),
    h("div", { class: "models-charts" },
      h("figure", { class: "models-figure", "aria-labelledby": `${id}-history-h` },
        h("figcaption", { id: `${id}-history-h` }, "Held-out AUC and log-loss by version"),
        historyBox, historyNote),
      h("figure", { class: "models-figure", "aria-labelledby": `${id}-calibration-h` },
        h("figcaption", { id: `${id}-calibration-h` }, "Calibration of the live version"),
        calibrationBox, calibrationNote)),
    chartError);

  /** The newest page from the poll, then the older pages loaded on request (a version appears once). */
  function versions() {
    const seen = new Set(model.versions.map((v) => v.sequence));
    return [...model.versions, ...older.filter((v) => !seen.has(v.sequence))];
  }

  function update(m) {
    model = m;
    if (olderCursor === null) more.hidden = !m.next_cursor;
    canary.update(m); // each poll: its time left moves even when nothing else does
    const sig = JSON.stringify([m, older]);
    if (sig === shownSig) return;
    shownSig = sig;
    const all = versions();
    const live = all.find((v) => v.status === "live");

    serving.hidden = !m.live || m.serving === m.live;
    serving.textContent = `Serving ${m.serving}, but the registry has ${m.live} live: the live version could not ` +
      "be loaded (see the server log) or a change is under way.";
    const liveHold = live && holdout(live);
    facts.replaceChildren(
      h("div", {}, h("dt", {}, "Live version"), h("dd", { class: "models-live" },
        m.live ? h("strong", { class: "mono" }, m.live) : h("span", { class: "muted" }, "none registered yet"))),
      h("div", {}, h("dt", {}, "Serving now"), h("dd", { class: "mono" }, m.serving || "–")),
      h("div", {}, h("dt", {}, "Live since"), h("dd", {}, live && live.activated_at ? when(live.activated_at) : "–")),
      liveHold || !evaluation(live)
        ? h("div", {}, h("dt", {}, "Live holdout AUC"), h("dd", {}, liveHold
          ? `${fixed(liveHold.auc, 3)} ± ${fixed(liveHold.auc_se, 3)}` : "not measured (not trained here)"))
        : h("div", {}, h("dt", {}, "Live holdout"), h("dd", {}, evaluation(live))));

    const r = m.last_run;
    lastRun.replaceChildren(...(r ? [
      h("p", { class: "models-run-line" }, runBadge(r.status), " ", h("span", {}, r.reason || "")),
      h("p", { class: "muted small" }, `${when(r.started_at)} · ${count(r.rows)} rows, ${count(r.clicks)} clicks · ` +
        `took ${seconds(r.seconds)}${r.version ? ` · candidate ${r.version}` : ""}`),
    ] : [h("p", { class: "muted" }, "No retrain since the server started. Press Train now, or wait for the ",
      "periodic retrain (learning.retrain_interval_s).")]));

    // Rows are redrawn; a version's button that had the focus gets it back.
    const active = document.activeElement;
    const focused = active && rows.contains(active) ? active.dataset : null;
    rows.replaceChildren(...all.map((v) => versionRow(v, live)));
    if (focused && focused.version) { const b = rowButton(focused.version, focused.action); if (b) b.focus(); }

    const curve = liveHold && live.metrics.reliability;
    const points = trained(all);
    const sig2 = JSON.stringify([points.map((v) => [v.version, v.status, holdout(v)]), live && live.version,
                                 curve || null]);
    if (sig2 !== chartSig) { chartSig = sig2; drawCharts(points, live); }
  }

  const rowButton = (version, action) =>
    rows.querySelector(`button[data-version="${CSS.escape(version)}"][data-action="${action}"]`);

  /** A version row's actions: make it live, or start a canary of it (a kept version that is not live). */
  function rowActions(v, live) {
    if (v.status === "live") return h("span", { class: "ok small" }, "live");
    if (v.status === "canary") return h("span", { class: "canary small",
      title: "Serving as a canary: promote or abort it in the canary panel above" }, "canary ↑");
    if (!v.file_kept) return h("span", { class: "muted small",
      title: "Its weights file was deleted to keep within learning.keep_files" }, "file not kept");
    const label = live && v.sequence > live.sequence ? "Make live" : "Roll back";
    const button = (action, text, aria, onclick) => h("button", { type: "button", class: "secondary small nowrap",
      "data-version": v.version, "data-action": action, "aria-label": aria, onclick }, text);
    return h("div", { class: "models-row-actions" },
      button("live", label, `${label} to ${v.version}`, () => ask(v, label)),
      button("canary", "Start canary", `Start a canary of ${v.version}`, () => ask(v, "canary")));
  }

  function versionRow(v, live) {
    const hold = holdout(v);
    return h("tr", { class: v.status === "live" ? "live" : "", "data-version": v.version },
      h("th", { scope: "row", class: "mono nowrap" }, v.version),
      h("td", {}, statusBadge(v.status)),
      h("td", { title: SOURCE[v.source] || "" }, v.source),
      h("td", { class: "nowrap" }, when(v.created_at)),
      h("td", { class: "num nowrap" }, hold ? `${fixed(hold.auc, 3)} ± ${fixed(hold.auc_se, 3)}` : "–"),
      h("td", { class: "num" }, hold ? fixed(hold.log_loss, 4) : "–"),
      h("td", { class: "num" }, hold ? fixed(hold.ece, 4) : "–"),
      h("td", { class: "num", title: hold ? `held out: ${count(hold.rows)} rows, ${count(hold.clicks)} clicks` : "" },
        isNum(v.metrics && v.metrics.rows) ? `${count(v.metrics.rows)} (${count(v.metrics.clicks)})` : "–"),
      h("td", { class: "models-note" }, [v.note, evaluation(v)].filter(Boolean).join(": ")),
      h("td", {}, rowActions(v, live)));
  }

  /** Confirm first: `label` is "Make live" / "Roll back" (the rollback endpoint), or "canary" (start one). */
  function ask(v, label) {
    const from = document.activeElement;
    const action = label === "canary" ? "canary" : "live";
    actionError.hidden = true;
    outcome.hidden = true;
    const current = model.live;
    const running = model.canary;
    const body = { version: v.version };
    const [path, said, text] = action === "canary"
      ? ["canary", (c) => `${c.version} is a canary: ${share(c.share)} of the traffic until ${when(c.ends_at)}.`,
         `Confirm: start canary ${v.version}`]
      : ["rollback", (r) => `${r.version} is live${r.note ? ` (${r.note})` : ""}.`, `Confirm: make ${v.version} live`];
    const go = h("button", { type: "button", class: "danger",
      onclick: () => perform(go, () => api("POST", `/v1/admin/models/${enc(name)}/${path}`, body), said) }, text);
    confirmBox.replaceChildren(
      action === "canary"
        ? h("p", {}, h("strong", {}, `Start a canary of ${name} with ${v.version}?`),
          ` It serves canary.share of the traffic beside ${current || "the live version"} for canary.duration_s, ` +
          "then goes live if it held; it is rolled back at once if it crosses a limit.")
        : h("p", {}, h("strong", {}, `${label} ${name} to ${v.version}?`),
          current ? ` It replaces ${current} (marked rolled back); scoring switches to it at once.` : "",
          running ? ` The running canary ${running.version} is aborted first.` : ""),
      h("div", { class: "actions" }, go,
        h("button", { type: "button", class: "secondary", onclick: () => {
          confirmBox.hidden = true;
          actionError.hidden = true;
          const back = rowButton(v.version, action) || from;
          if (back && back.isConnected) back.focus();
        } },
          current && action === "live" ? `Keep ${current}` : "Cancel")));
    confirmBox.hidden = false;
    go.focus();
  }

  /** A confirmed change: request() makes the API call; said(answer) is what the user is told. */
  async function perform(button, request, said) {
    button.disabled = true;
    try {
      const answer = await request();
      if (!alive()) return;
      confirmBox.hidden = true;
      outcome.hidden = false;
      outcome.textContent = said(answer);
      outcome.focus({ preventScroll: true }); // the confirm button the focus was on is gone
      await refresh();
    } catch (err) {
      button.disabled = false;
      if (alive()) showError(actionError, err);
    }
  }

  async function train() {
    trainButton.disabled = true;
    trainError.hidden = true;
    trainResult.replaceChildren(h("p", { class: "muted" }, "Training… (it runs in a worker thread; this can take a while)"));
    try {
      const r = await api("POST", `/v1/admin/models/${enc(name)}/train`);
      if (!alive()) return;
      // A trained candidate: how it compared (the reason's words are under Last retrain); a skipped run: why.
      trainResult.replaceChildren(h("p", { class: "models-run-line" }, "This run: ", runBadge(r.status), " ",
        r.version ? `candidate ${r.version}: held-out AUC ${fixed(r.candidate.auc, 3)} vs ${fixed(r.live.auc, 3)} ` +
          `live, log-loss ${fixed(r.candidate.log_loss, 4)} vs ${fixed(r.live.log_loss, 4)}` : r.reason),
        h("p", { class: "muted small" }, `${count(r.rows)} rows, ${count(r.clicks)} clicks · took ${seconds(r.seconds)}`));
      await refresh();
    } catch (err) {
      if (!alive()) return;
      trainResult.replaceChildren();
      showError(trainError, err);
    } finally { trainButton.disabled = false; }
  }

  async function loadOlder() {
    more.disabled = true;
    try {
      const last = versions()[versions().length - 1];
      const cursor = olderCursor || model.next_cursor;
      const page = await api("GET", `/v1/admin/models/${enc(name)}?limit=50&after=${enc(cursor)}`);
      if (!alive()) return;
      older = [...older, ...page.versions.filter((v) => !last || v.sequence < last.sequence)];
      olderCursor = page.next_cursor || "";
      more.hidden = !page.next_cursor;
      update(model);
    } catch (err) {
      if (alive()) showError(actionError, err);
    } finally { more.disabled = false; }
  }

  async function drawCharts(points, live) {
    const mine = ++drawing;
    let uPlot;
    try { uPlot = await loadUplot(); } catch (err) { showError(chartError, err); return; }
    if (mine !== drawing || !alive()) return;
    chartError.hidden = true;
    charts.forEach((c) => c.destroy());
    charts = [];
    historyBox.replaceChildren();
    calibrationBox.replaceChildren();

    if (points.length) {
      charts.push(historyChart(uPlot, historyBox, points));
      historyNote.textContent = `${points.length} trained version${points.length === 1 ? "" : "s"}, oldest first; ` +
        "AUC on the left axis (higher is better), log-loss on the right (lower is better). Each is measured on " +
        "its own retrain's held-out rows.";
    } else {
      historyBox.removeAttribute("role");
      historyBox.removeAttribute("aria-label");
      historyBox.append(h("p", { class: "models-empty" }, live && evaluation(live)
        ? "AUC and log-loss are a click model's; each version's own holdout figures are in its row above."
        : `No trained version yet: ${learnsFrom(name)}.`));
      historyNote.textContent = "";
    }

    const curve = live && holdout(live) && live.metrics.reliability;
    if (curve && curve.length) {
      charts.push(calibrationChart(uPlot, calibrationBox, live, curve));
      calibrationNote.textContent = `${live.version} on its ${count(holdout(live).rows)} held-out rows, in bins of ` +
        `equal rows: mean predicted click rate against the observed rate (ECE ${fixed(holdout(live).ece, 4)}). ` +
        "Points on the dashed diagonal are perfectly calibrated.";
    } else {
      calibrationBox.removeAttribute("role");
      calibrationBox.removeAttribute("aria-label");
      calibrationBox.append(h("p", { class: "models-empty" }, live && evaluation(live)
        ? `${live.version} does not predict a click rate, so there is no calibration curve; its holdout figures: ` +
          `${evaluation(live)}.`
        : live
        ? `${live.version} was not trained here (source ${live.source}), so it has no held-out calibration. ` +
          `Make a trained version live, or train one: ${learnsFrom(name)}.`
        : `No live version yet: ${learnsFrom(name)}.`));
      calibrationNote.textContent = "";
    }
  }

  return {
    el, update,
    destroy() { drawing++; charts.forEach((c) => c.destroy()); charts = []; },
  };
}

// ---- charts (static: redrawn when the versions change) ----

const palette = () => {
  const css = getComputedStyle(document.documentElement);
  return { ink: css.getPropertyValue("--muted").trim() || "#9fb0bf", grid: css.getPropertyValue("--line").trim() || "#243140" };
};

/** A uPlot that fills its box's width and follows it; returns {destroy()}. */
function sized(uPlot, box, opts, data, height = 220) {
  let width = Math.max(220, Math.floor(box.clientWidth) || 320);
  box.classList.add("chart");
  box.setAttribute("role", "img");
  let plot = new uPlot({ ...opts, width, height }, data, box);
  let frame = 0;
  const resize = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => { // outside the observer's callback: no resize loop
      const w = Math.max(220, Math.floor(box.clientWidth));
      if (plot && Math.abs(w - width) > 2) { width = w; plot.setSize({ width, height }); }
    });
  });
  resize.observe(box);
  box.dataset.points = String(data[0].length);
  return {
    get plot() { return plot; },
    destroy() { resize.disconnect(); cancelAnimationFrame(frame); if (plot) plot.destroy(); plot = null; },
  };
}

function historyChart(uPlot, box, points) {
  const { ink, grid } = palette();
  const xs = points.map((v) => v.created_at);
  const auc = points.map((v) => (isNum(holdout(v).auc) ? holdout(v).auc : null));
  const loss = points.map((v) => (isNum(holdout(v).log_loss) ? holdout(v).log_loss : null));
  const byTime = new Map(points.map((v) => [v.created_at, v]));
  const span = xs[xs.length - 1] - xs[0];
  const pad = Math.max(300, span * 0.06);
  // Times of day within a day's span, dates and times beyond it (one label a tick: uPlot's own two-line labels
  // crowd each other over a few minutes).
  const tick = (t) => new Date(t * 1000).toLocaleString(undefined, span + 2 * pad > 86_400
    ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" } : { hour: "2-digit", minute: "2-digit" });
  const last = points[points.length - 1];
  box.setAttribute("aria-label", `Held-out AUC and log-loss of ${points.length} trained versions; the newest, ` +
    `${last.version}: AUC ${fixed(holdout(last).auc, 3)}, log-loss ${fixed(holdout(last).log_loss, 4)}`);
  const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const chart = sized(uPlot, box, {
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: true, range: () => [xs[0] - pad, xs[xs.length - 1] + pad] },
      auc: { range: (u, min, max) => [Math.min(0.5, Math.floor((min ?? 0.5) * 20) / 20), Math.min(1, Math.ceil((max ?? 1) * 20) / 20 || 1)] },
      loss: { range: (u, min, max) => [Math.max(0, (min ?? 0) * 0.9), (max ?? 0.1) * 1.1 || 0.1] },
    },
    axes: [
      { ...axis, space: 90, values: (u, s) => s.map(tick) },
      { ...axis, scale: "auc", size: 50, values: (u, s) => s.map((v) => v.toFixed(2)) },
      { ...axis, scale: "loss", side: 1, size: 58, grid: { show: false }, values: (u, s) => s.map((v) => v.toFixed(3)) },
    ],
    series: [
      { label: "version", value: (u, t) => { const v = byTime.get(t); return v ? `${v.version} (${v.status.replace("_", " ")})` : "–"; } },
      { label: "AUC", scale: "auc", stroke: "#5cc8ff", width: 2, points: { show: true, size: 7 },
        value: (u, v) => fixed(v, 3) },
      { label: "log-loss", scale: "loss", stroke: "#e3b341", width: 2, dash: [6, 4], points: { show: true, size: 7 },
        value: (u, v) => fixed(v, 4) },
    ],
  }, [xs, auc, loss]);
  // The legend shows the newest version unless the pointer is on the chart.
  const showLatest = () => { if (chart.plot) chart.plot.setLegend({ idx: xs.length - 1 }); };
  chart.plot.over.addEventListener("mouseleave", () => setTimeout(showLatest));
  requestAnimationFrame(showLatest);
  return chart;
}

function calibrationChart(uPlot, box, live, curve) {
  const { ink, grid } = palette();
  const rows = [...curve].filter((b) => isNum(b.predicted) && isNum(b.observed)).sort((a, b) => a.predicted - b.predicted);
  const top = Math.max(0.001, ...rows.map((b) => Math.max(b.predicted, b.observed))) * 1.08;
  // The diagonal spans the whole plot; the bins sit on it where they are calibrated.
  const xs = [0, ...rows.map((b) => b.predicted), top];
  const observed = [null, ...rows.map((b) => b.observed), null];
  const diagonal = xs.slice();
  const byX = new Map(rows.map((b) => [b.predicted, b]));
  box.setAttribute("aria-label", `Calibration of ${live.version}, predicted against observed click rate by bin: ` +
    rows.map((b) => `${pct(b.predicted)} predicted, ${pct(b.observed)} observed`).join("; "));
  const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const chart = sized(uPlot, box, {
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false, range: () => [0, top] }, y: { range: () => [0, top] } },
    axes: [
      { ...axis, label: "predicted", labelSize: 18, values: (u, s) => s.map((v) => pct(v)) },
      { ...axis, label: "observed", labelSize: 18, size: 58, values: (u, s) => s.map((v) => pct(v)) },
    ],
    series: [
      { label: "predicted", value: (u, x) => { const b = byX.get(x); return b ? `${pct(x)} (${count(b.count)} rows)` : "–"; } },
      { label: "observed", stroke: "#4cc764", width: 2, spanGaps: false, points: { show: true, size: 7 },
        value: (u, v) => pct(v) },
      { label: "perfect", stroke: "#9fb0bf", width: 1, dash: [4, 4], points: { show: false },
        value: (u, v) => pct(v) },
    ],
  }, [xs, observed, diagonal]);
  return chart;
}
