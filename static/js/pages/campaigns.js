// Campaigns (admin): every campaign with its workflow state, creatives, bid cap, daily budget, today's spend,
// budget used and pacing (GET /v1/admin/campaigns, GET /v1/admin/spend), the bids each places right now (Bid events
// on /v1/stream/events), its workflow steps (POST /v1/admin/campaigns/{id}/submit, approve, reject, schedule,
// pause, resume, archive, each with an optional comment), the approval queue (GET /v1/admin/approvals; a tab,
// #/campaigns?view=approvals) and one campaign's detail (#/campaigns?id=<campaign id>): its report charts, totals,
// history, pending changes, offer-selection policy and creatives (js/pages/campaign-report.js). Admins create
// campaigns, add creatives and configure policies with the forms of js/pages/campaign-forms.js.
//
// Extending: a new state is one entry in STATUS, a new action one entry in ACTIONS (who may do it, in which
// state, what it calls, what it says when done); both views pick them up.
import { api, every, h, micros, showError, stream, useStyle, when } from "../api.js";
import { tabs } from "../tabs.js";
import { creativeForm, newCampaignForm, policyForm } from "./campaign-forms.js";
import { actorText, assetsPanel, historyPanel, pendingTable, policyPanel, reportPanel, tasksPanel } from "./campaign-report.js";

const LIVE_WINDOW_S = 5;

/** How each workflow state reads. */
const STATUS = {
  draft: { label: "Draft", cls: "muted", note: "being prepared; not bidding" },
  in_review: { label: "In review", cls: "warn", note: "waiting for approvers" },
  approved: { label: "Approved", cls: "ok", note: "goes live at its start or when scheduled" },
  scheduled: { label: "Scheduled", cls: "ok", note: "goes live at its start" },
  live: { label: "Live", cls: "ok", note: "bidding" },
  paused: { label: "Paused", cls: "warn", note: "not bidding" },
  completed: { label: "Completed", cls: "muted", note: "ended" },
  archived: { label: "Archived", cls: "muted", note: "kept for the record" },
  rejected: { label: "Rejected", cls: "error", note: "edit it to send it back to draft" },
};

const step = (action) => (c, comment = "") =>
  api("POST", `/v1/admin/campaigns/${encodeURIComponent(c.id)}/${action}`, comment ? { comment } : {});

/** What a user may do with a campaign: shown as buttons where `when` holds and the role is listed. */
const ACTIONS = [
  { name: "Submit", roles: ["admin"], when: (c) => c.state === "draft" || c.state === "rejected",
    run: step("submit"), done: (c) => `Submitted ${c.name} for approval.` },
  { name: "Approve", roles: ["admin"], when: (c) => c.state === "in_review" || !!c.pending, run: step("approve"),
    done: (c) => (c.state === "in_review" || c.pending ? `Approved ${c.name}: ${approvalCount(c)} so far.` :
      `Approved ${c.name}: it is now ${(STATUS[c.state] || { label: c.state }).label.toLowerCase()}.`) },
  { name: "Reject", roles: ["admin"], when: (c) => c.state === "in_review" || !!c.pending, run: step("reject"),
    cls: "secondary", done: (c) => `Rejected ${c.name}${c.state === "rejected" ? "" : " (its changes)"}.` },
  { name: "Schedule", roles: ["admin"], when: (c) => c.state === "approved", run: step("schedule"),
    done: (c) => `Scheduled ${c.name}.` },
  { name: "Pause", roles: ["admin"], when: (c) => c.state === "live", run: step("pause"),
    cls: "secondary", done: (c) => `Paused ${c.name}: it places no more bids until resumed.` },
  { name: "Resume", roles: ["admin"], when: (c) => c.state === "paused", run: step("resume"),
    done: (c) => `Resumed ${c.name}: it bids again.` },
  { name: "Archive", roles: ["admin"], when: (c) => c.state === "completed", run: step("archive"),
    cls: "secondary", done: (c) => `Archived ${c.name}.` },
];

/** A price in USD micros, with more digits when it is under ten cents. */
const price = (m) => (m === null || m === undefined ? "–" : Math.abs(m) < 100_000 && m !== 0 ?
  new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 }).format(m / 1e6) :
  micros(m));
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`);
const cpm = (m) => `${price(m)} CPM`;
const list = (xs, empty = "none") => (xs && xs.length ? xs.join(", ") : empty);
const APPROVED_STATES = new Set(["approved", "scheduled", "live", "paused", "completed", "archived"]);

/** "1 of 2 approvals" for what is under review (the campaign or its pending changes). */
function approvalCount(c) {
  const p = c.pending;
  const got = p ? p.approvals.length : c.approvals.length;
  const need = p ? p.approvals_required : c.approvals_required;
  return `${got} of ${need} approval${need === 1 ? "" : "s"}`;
}
const DEVICE_TYPES = { 1: "mobile/tablet", 2: "PC", 3: "TV", 4: "phone", 5: "tablet", 6: "connected device", 7: "set-top box" };

function statusBadge(status) {
  const s = STATUS[status] || { label: status, cls: "muted", note: "" };
  return h("span", { class: `badge ${s.cls}`, title: s.note }, s.label);
}

/** What the campaign's live bids hold of its budget until they are billed or expire ("" when nothing). */
function heldText(item) {
  if (!item) return "";
  if (item.reserved_micros === null) return "live bids' holds unknown (shared store unreachable)";
  return item.reserved_micros ? `+ ${micros(item.reserved_micros)} held by live bids` : "";
}

// The server's verdict (spend, live bids' holds and one more impression at the bid cap within what pacing allows
// by now) when it has one; while the shared store is unreachable, spend alone.
function pacing(item) {
  if (!item) return { text: "–", cls: "muted", detail: "" };
  // Pacing is about spending: only a campaign that bids (live) or may again (paused) has any.
  if (item.state !== "live" && item.state !== "paused") return { text: "not bidding", cls: "muted", detail: "" };
  const held = item.within_pace === null || item.within_pace === undefined
    ? item.spent_micros >= item.paced_micros : !item.within_pace;
  return { text: held ? "held by pacing" : "within pace", cls: held ? "warn" : "ok",
           detail: `${micros(item.paced_micros)} allowed by now` };
}

function budgetBar(item) {
  if (!item) return h("span", { class: "muted" }, "–");
  const used = Math.min(1, item.budget_used || 0);
  const paced = item.daily_budget_micros ? Math.min(1, item.paced_micros / item.daily_budget_micros) : 0;
  return h("span", { class: "budget" },
    h("span", { class: "bar", "aria-hidden": "true" },
      h("span", { class: "fill", style: `width:${(used * 100).toFixed(1)}%` }),
      h("span", { class: "pace", style: `left:${(paced * 100).toFixed(1)}%`, title: "What pacing allows by now" })),
    h("span", { class: "num" }, pct(item.budget_used)));
}

export function render(root, { params, role, session }) {
  useStyle("campaigns");  // (app.js opens it only for the roles PAGES names)
  const detailId = params.get("id");
  const me = session && session.subject ? `user:${session.subject}` : null;  // the principal's scope
  const stops = [];
  const campaigns = new Map();  // id -> campaign
  const spend = new Map();      // id -> today's spend line
  let day = "";
  const live = new Map();       // id -> receipt times (ms) of its Bid events in the last LIVE_WINDOW_S
  let liveSince = null;         // when the stream opened: the window is shorter until it has run for a while

  const result = h("p", { class: "result", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const spendError = h("p", { class: "error", role: "alert", hidden: true });
  const loadError = h("p", { class: "error", role: "alert", hidden: true });
  let queue = [];               // what waits for an approver (GET /v1/admin/approvals)
  let withArchived = false;     // archived campaigns are read from the store: loaded only when asked for

  const liveRate = (id) => {
    if (liveSince === null) return null;
    const now = performance.now();
    const times = (live.get(id) || []).filter((t) => t >= now - LIVE_WINDOW_S * 1000);
    live.set(id, times);
    const span = Math.min(LIVE_WINDOW_S, Math.max(1, (now - liveSince) / 1000));
    return times.length / span;
  };
  const liveText = (id) => { const r = liveRate(id); return r === null ? "–" : r.toFixed(1); };

  async function act(action, c, button, comment = "") {
    error.hidden = true;
    result.textContent = `${action.name}: ${c.name}…`;
    result.className = "result";
    if (button) button.disabled = true;
    let ok = false;
    try {
      const updated = await action.run(c, comment);
      ok = true;
      if (updated && updated.id) campaigns.set(updated.id, updated);
      result.textContent = action.done(updated && updated.id ? updated : c);
      result.className = "result ok";
      await refresh();
    } catch (err) {
      result.textContent = "";
      if (err.status === 403) {
        showError(error, `You cannot ${action.name.toLowerCase()} ${c.name}: you created it or made its latest ` +
          `changes, so another admin has to approve it. (${err.message})`);
      } else {
        showError(error, `${action.name} ${c.name} failed: ${err.message}`);
      }
      await refresh();
    } finally {
      if (button && button.isConnected) button.disabled = false;
    }
    view.redraw(c.id);
    return ok;
  }

  // `comment`: a field whose text goes with the step (emptied once the step is taken).
  // The server refuses an approval from whoever created the campaign or last changed it: offered, it could only fail.
  // (the server's rule: its creator, its last editor, and everyone whose changes wait for approval in `pending`)
  const authoredByMe = (c) => !!me && (c.created_by === me || c.edited_by === me || (c.editors || []).includes(me) ||
    (!!c.pending && (c.pending.editors && c.pending.editors.length ? c.pending.editors : [c.pending.submitted_by])
      .includes(me)));
  const actionButtons = (c, comment = null) => ACTIONS.filter((a) => a.roles.includes(role) && a.when(c)).map((a) => {
    const b = h("button", { type: "button", class: a.cls || "", "aria-label": `${a.name} ${c.name}`, "data-action": a.name },
      a.name);
    if (a.name === "Approve" && authoredByMe(c)) {
      b.disabled = true;
      b.title = "You created or changed this campaign: another admin has to approve it";
    }
    b.addEventListener("click", async () => {
      if (await act(a, c, b, comment ? comment.value.trim() : "") && comment) comment.value = "";
    });
    return b;
  });

  const view = detailId ? detailView(detailId) : listView();

  async function loadCampaigns() {
    if (detailId) {
      const c = await api("GET", `/v1/admin/campaigns/${encodeURIComponent(detailId)}`);
      campaigns.set(c.id, c);
    } else {
      const all = [];
      const archived = withArchived;  // what this load asks for: a load begun before a toggle does not count
      let after = "";
      do {  // a page of up to 1,000 at a time, by id
        const query = new URLSearchParams(archived ? {} : { archived: "false" });
        if (after) query.set("after", after);
        const qs = query.toString();
        const body = await api("GET", `/v1/admin/campaigns${qs ? `?${qs}` : ""}`);
        all.push(...body.items);
        after = body.next_cursor;
      } while (after);
      if (archived !== withArchived) return;
      campaigns.clear();
      for (const c of all) campaigns.set(c.id, c);
    }
  }
  async function loadSpend() {
    try {
      const report = await api("GET", "/v1/admin/spend");
      day = report.day;
      spend.clear();
      for (const item of report.items) spend.set(item.campaign_id, item);
      spendError.hidden = true;
    } catch (err) {
      showError(spendError, `Today's spend is not available: ${err.message}`);
    }
  }
  async function refresh() {
    try {
      await loadCampaigns();
      view.loaded && view.loaded();
      if (!detailId) queue = (await api("GET", "/v1/admin/approvals")).items;
      loadError.hidden = true;
    } catch (err) { showError(loadError, err); }
    view.update();
  }

  root.append(view.el);
  stops.push(every(10_000, refresh));
  stops.push(every(2000, async () => { await loadSpend(); view.update(); }));
  if (role === "admin") {
    const conn = stream("/v1/stream/events", {
      hello: { type: "subscribe", events: ["Bid"] },
      onState: (s) => {
        if (s === "open" && liveSince === null) liveSince = performance.now();
        view.streamState(s);
      },
      onMessage: (msg) => {
        if (msg.type !== "Bid" || !msg.data) return;
        const id = msg.data.campaign_id;
        if (!live.has(id)) live.set(id, []);
        live.get(id).push(performance.now());
      },
    });
    stops.push(() => conn.close());
    const tick = setInterval(() => view.updateLive(), 1000);
    stops.push(() => clearInterval(tick));
  }
  return () => stops.forEach((stop) => stop());

  // ---- the list: one row per campaign; live cells update in place so focus and reading position stay ----
  function listView() {
    const body = h("tbody");
    const rows = new Map(); // id -> {tr, sig, cells}
    const liveState = h("span", { class: "muted small" });
    const dayNote = h("span", { class: "muted" });
    const th = (text, cls) => h("th", { class: cls || null, scope: "col" }, text);
    const queueCount = h("span", { class: "count" });
    const archivedCount = h("span", { class: "muted" });
    const showArchived = h("input", { type: "checkbox", onchange: () => {
      withArchived = showArchived.checked;
      refresh();
    } });
    let loaded = false;
    const approvals = approvalsPanel();
    const listPanel = { el: h("section", { class: "card wide campaigns" },
      h("h2", { class: "visually-hidden" }, "All campaigns"),
      h("p", { class: "muted small" }, "Spend, budget and pacing are for the current UTC day. Each live bid holds "
        + "what it may cost until it is billed or expires; a campaign is held by pacing once its spend, those holds "
        + "and one more impression at its bid cap pass what pacing allows by now. ",
        `Bids/s counts the Bid events each campaign placed in the last ${LIVE_WINDOW_S} seconds. `, liveState),
      h("label", { class: "inline small" }, showArchived, " Show archived campaigns ", archivedCount),
      h("div", { class: "table-wrap" }, h("table", { class: "campaign-table stack-on-phone" },
        h("caption", { class: "visually-hidden" }, "Campaigns with today's spend and live bids"),
        h("thead", {}, h("tr", {}, th("Campaign"), th("Status"), th("Creatives", "num"), th("Bid cap", "num"),
          th("Daily budget", "num"), th("Spent today", "num"), th("Budget used"), th("Pacing"), th("Wins", "num"),
          th("Win rate", "num"), th("Bids/s", "num"), th("Actions"))),
        body))) };
    const tablist = tabs("Campaign sections", [["list", "All campaigns"],
      ["approvals", h("span", {}, "Approval queue ", queueCount)]],
      { list: listPanel, approvals }, params.get("view") === "approvals" ? "approvals" : "list", (id) => {
        history.replaceState(null, "", id === "approvals" ? "#/campaigns?view=approvals" : "#/campaigns");
      });
    const el = h("div", { class: "campaigns-page wide" },
      h("section", { class: "card campaigns-top" },
        h("div", { class: "campaigns-head" }, h("h1", {}, "Campaigns"), dayNote),
        result, error, loadError, spendError, tablist),
      ...(role === "admin" ? [newCampaignForm((c) => { location.hash = `#/campaigns?id=${encodeURIComponent(c.id)}`; })]
        : []),
      listPanel.el, approvals.el);

    const makeRow = (c) => {
      const cell = (label, cls, ...kids) => h("td", { class: cls || null, "data-label": label }, ...kids);
      const cells = {
        spent: cell("Spent today", "num"), used: cell("Budget used"), pacing: cell("Pacing"),
        wins: cell("Wins", "num"), winRate: cell("Win rate", "num"),
        live: cell("Bids/s", "num live-rate"),
      };
      const tr = h("tr", { "data-campaign": c.id },
        h("th", { scope: "row", "data-label": "Campaign" },
          h("a", { href: `#/campaigns?id=${encodeURIComponent(c.id)}` }, c.name), h("br"),
          h("code", { class: "muted" }, c.id)),
        cell("State", "state", statusBadge(c.state), ...reviewNote(c)),
        cell("Creatives", "num", c.creatives.length),
        cell("Bid cap", "num", cpm(c.bid_cap_micros)),
        cell("Daily budget", "num", micros(c.daily_budget_micros)),
        cells.spent, cells.used, cells.pacing, cells.wins, cells.winRate, cells.live,
        cell("Actions", "row-actions", ...actionButtons(c)));
      return { tr, sig: JSON.stringify(c), cells };
    };
    // A line under a figure wraps, if it must, only before its words: "+ $1,234.56" / "held by live bids".
    const breakBefore = (text, words) => (text.endsWith(words)
      ? [text.slice(0, -words.length), h("span", { class: "nowrap" }, words)] : [text]);
    const fill = (id, row) => {
      const item = spend.get(id);
      const heldNote = heldText(item);
      row.cells.spent.replaceChildren(item ? micros(item.spent_micros) : "–",
        ...(heldNote ? [h("br"), h("small", { class: "muted" }, ...breakBefore(heldNote, "held by live bids"))] : []));
      row.cells.used.replaceChildren(budgetBar(item));
      const p = pacing(item);
      row.cells.pacing.replaceChildren(h("span", {}, h("span", { class: `${p.cls} nowrap` }, p.text),
        ...(p.detail ? [h("br"), h("small", { class: "muted" }, ...breakBefore(p.detail, "allowed by now"))] : [])));
      row.cells.wins.textContent = item ? item.wins.toLocaleString() : "–";
      row.cells.winRate.textContent = item ? pct(item.win_rate) : "–";
      row.cells.live.textContent = role === "admin" ? liveText(id) : "–";
    };
    const update = () => {
      dayNote.textContent = day ? `UTC day ${day}` : "";
      const archived = [...campaigns.values()].filter((c) => c.state === "archived").length;
      archivedCount.textContent = withArchived ? `(${archived})` : "";
      const ids = [...campaigns.keys()].filter((id) => withArchived || campaigns.get(id).state !== "archived");
      for (const id of [...rows.keys()]) if (!ids.includes(id)) { rows.get(id).tr.remove(); rows.delete(id); }
      for (const tr of [...body.querySelectorAll("tr.empty")]) tr.remove();
      ids.forEach((id, i) => {
        const c = campaigns.get(id);
        let row = rows.get(id);
        if (!row || row.sig !== JSON.stringify(c)) {
          const fresh = makeRow(c);
          const hadFocus = row && row.tr.contains(document.activeElement);
          if (row) row.tr.replaceWith(fresh.tr);
          rows.set(id, fresh);
          row = fresh;
          if (hadFocus) { const b = row.tr.querySelector("button"); if (b) b.focus(); }
        }
        if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
        fill(id, row);
      });
      if (!ids.length) body.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: 12, class: "muted" },
        !loaded ? "Loading campaigns…" : withArchived ? "No campaigns yet." :
          "No campaigns running or in preparation: tick “Show archived campaigns” for the earlier ones.")));
      queueCount.textContent = `(${queue.length})`;
      approvals.update();
    };
    return {
      el, update,
      loaded: () => { loaded = true; },
      redraw: () => update(),
      updateLive: () => { for (const [id, row] of rows) row.cells.live.textContent = liveText(id); },
      streamState: (s) => { liveState.textContent = s === "open" ? "" : `Live bids: ${s}.`; },
    };
  }

  // ---- what waits for approval under a campaign's state badge ----
  function reviewNote(c) {
    if (c.state === "in_review") return [h("br"), h("small", { class: "muted" }, approvalCount(c))];
    if (c.pending) return [h("br"), h("small", { class: "warn" }, `changes in review: ${approvalCount(c)}`)];
    return [];
  }

  // ---- the approval queue: each waiting campaign with its rule, approvals so far, changes, approve / reject ----
  function approvalsPanel() {
    const queueEl = h("div", { class: "queue" });
    const items = new Map(); // id -> {el, sig, comment}
    const empty = h("p", { class: "muted" }, "Nothing waits for approval.");
    const el = h("section", { class: "card wide approvals", "aria-labelledby": "approvals-heading" },
      h("h2", { id: "approvals-heading" }, "Waiting for approval"),
      h("p", { class: "muted small" }, "Campaigns in review, and running campaigns with changes under review. ",
        "Whoever created a campaign or made its latest changes cannot approve it; the last approval its rule needs ",
        "approves it. A comment is kept in the campaign's history."),
      empty, queueEl);

    const makeItem = (c, oldComment) => {
      const p = c.pending;
      const commentId = `comment-${c.id}`;
      const comment = h("textarea", { id: commentId, rows: 2, maxlength: 2000, class: "comment-field" });
      if (oldComment) comment.value = oldComment;
      const mine = authoredByMe(c);
      const approvedBy = p ? p.approvals : c.approvals;
      const item = h("article", { class: "queue-item", "data-campaign": c.id, "aria-labelledby": `queue-${c.id}` },
        h("div", { class: "campaigns-head" },
          h("h3", { id: `queue-${c.id}` }, h("a", { href: `#/campaigns?id=${encodeURIComponent(c.id)}` }, c.name)),
          statusBadge(c.state), p ? h("span", { class: "badge warn" }, "changes under review") : null),
        h("dl", { class: "facts" },
          h("dt", {}, "Rule"), h("dd", {}, h("code", {}, (p ? p.rule : c.approval_rule) || "–")),
          h("dt", {}, "Approvals"), h("dd", { class: "approvals-count" }, approvalCount(c),
            approvedBy.length ? ` (by ${approvedBy.map((a) => actorText(a, me)).join(", ")})` : ""),
          h("dt", {}, p ? "Changes by" : "Created by"), h("dd", {}, h("code", {}, actorText(p ? p.submitted_by : c.created_by, me)),
            p ? ` at ${when(p.submitted_at)}` : ""),
          ...(!p && c.edited_by && c.edited_by !== c.created_by ?
            [h("dt", {}, "Last edited by"), h("dd", {}, h("code", {}, actorText(c.edited_by, me)))] : []),
          h("dt", {}, "Daily budget"), h("dd", {}, micros(c.daily_budget_micros)),
          h("dt", {}, "Bid cap"), h("dd", {}, cpm(c.bid_cap_micros)),
          h("dt", {}, "Channels"), h("dd", {}, list(c.channels, "display")),
          h("dt", {}, "Flight"), h("dd", {}, c.starts_at ? when(c.starts_at) : "when scheduled", " → ",
            c.ends_at ? when(c.ends_at) : "until paused or archived")),
        p ? h("div", {}, h("h4", {}, "Pending changes"), pendingTable(c)) : null,
        mine ? h("p", { class: "warn small" }, "You created or changed this campaign: another admin has to approve it.") : null,
        h("label", { for: commentId }, `Comment on ${c.name} (optional)`), comment,
        h("div", { class: "actions" }, ...actionButtons(c, comment).filter((b) => ["Approve", "Reject"].includes(b.dataset.action))));
      return { el: item, sig: JSON.stringify(c), comment };
    };
    const update = () => {
      const ids = queue.map((c) => c.id);
      for (const [id, it] of [...items]) if (!ids.includes(id)) { it.el.remove(); items.delete(id); }
      queue.forEach((c, i) => {
        let it = items.get(c.id);
        if (!it || it.sig !== JSON.stringify(c)) {
          const hadFocus = it && it.el.contains(document.activeElement);
          const fresh = makeItem(c, it ? it.comment.value : "");
          if (it) it.el.replaceWith(fresh.el);
          items.set(c.id, fresh);
          it = fresh;
          if (hadFocus) it.comment.focus();
        }
        if (queueEl.children[i] !== it.el) queueEl.insertBefore(it.el, queueEl.children[i] || null);
      });
      empty.hidden = queue.length > 0;
    };
    return { el, update };
  }

  // ---- one campaign: its figures, settings and creatives ----
  function detailView(id) {
    const title = h("h1", {}, id);
    const badge = h("span");
    const actions = h("div", { class: "actions" });
    const figures = h("dl", { class: "facts" });
    const settings = h("dl", { class: "facts" });
    const creatives = h("tbody");
    const liveValue = h("b", { class: "live-rate" }, "–");
    const liveState = h("span", { class: "muted small" });
    const review = h("p", { class: "small" });
    const comment = h("input", { id: "step-comment", type: "text", maxlength: 2000, class: "comment-field",
                                 autocomplete: "off" });
    const commentBox = h("div", { class: "step-comment" },
      h("label", { for: "step-comment" }, "Comment (optional, kept in the history)"), comment);
    const report = reportPanel(id);
    const historyBox = historyPanel(id, me);
    const tasks = tasksPanel(id);
    const assets = assetsPanel(id);
    const policy = policyPanel(id);
    const pending = h("section", { class: "card pending", "aria-labelledby": "pending-heading", hidden: true });
    const addCreative = h("div", {});   // the form, while the campaign can still be edited (admins)
    const configure = h("div", {});     // the policy's form, until the campaign is archived (admins)
    let formsFor = "";                  // the state the forms were made for
    policy.el.append(configure);
    let shownSig = "";
    const el = h("div", { class: "campaign-detail wide" },
      h("p", {}, h("a", { href: "#/campaigns" }, "← All campaigns"), " · ",
        h("a", { href: "#/campaigns?view=approvals" }, "Approval queue")),
      h("section", { class: "card" },
        h("div", { class: "campaigns-head" }, title, badge), review,
        h("div", { class: "step-row" }, actions, commentBox),
        result, error, loadError, spendError,
        h("div", { class: "detail-grid" },
          h("div", {}, h("h2", {}, "Today"), figures),
          h("div", {}, h("h2", {}, "Settings"), settings))),
      pending, report.el,
      historyBox.el, tasks.el, assets.el, policy.el,
      h("section", { class: "card" }, h("h2", {}, "Creatives"), addCreative,
        h("div", { class: "table-wrap" }, h("table", { class: "creative-table" },
          h("caption", { class: "visually-hidden" }, "The campaign's creatives"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Creative"), h("th", { scope: "col" }, "Format"),
            h("th", { scope: "col" }, "Size"), h("th", { scope: "col" }, "MIME types"),
            h("th", { scope: "col" }, "Markup"))),
          creatives))));
    const facts = (dl, pairs) => dl.replaceChildren(...pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));

    const update = () => {
      const c = campaigns.get(id);
      if (!c) return;
      const item = spend.get(id);
      const p = pacing(item);
      facts(figures, [
        [`Bids/s now (last ${LIVE_WINDOW_S} s)`, role === "admin" ? h("span", {}, liveValue, " ", liveState) : "–"],
        ["Spent", item ? `${micros(item.spent_micros)} of ${micros(c.daily_budget_micros)}` : "–"],
        ["Held by live bids", item ? (item.reserved_micros === null ? "unknown (shared store unreachable)"
          : micros(item.reserved_micros)) : "–"],
        ["Budget used", budgetBar(item)],
        ["Pacing", item ? h("span", {}, h("span", { class: p.cls }, p.text), p.detail ? ` (${p.detail})` : "") : "–"],
        ["Wins / losses", item ? `${item.wins} / ${item.losses}` : "–"],
        ["Win rate", item ? pct(item.win_rate) : "–"],
        ["Avg clearing price", item && item.avg_clearing_price_micros !== null ? cpm(item.avg_clearing_price_micros) : "–"],
        ["Day (UTC)", day || "–"],
      ]);
      const sig = JSON.stringify(c);
      if (sig === shownSig) return;
      shownSig = sig;
      document.title = `${c.name} · Campaigns · Contrail console`;
      title.textContent = c.name;
      badge.replaceChildren(statusBadge(c.state));
      const rule = c.pending ? c.pending.rule : c.approval_rule;
      review.replaceChildren(...(c.state === "in_review" || c.pending ? [
        h("span", { class: "warn" }, c.pending ? "Changes under review" : "In review"),
        `: rule ${rule || "–"}, ${approvalCount(c)}.`] : rule && APPROVED_STATES.has(c.state) ? [h("span", { class: "muted" },
        `Approved under rule ${rule} (${c.approvals.length} of ${c.approvals_required}).`)] :
        c.state === "rejected" ? [h("span", { class: "muted" }, "Rejected: edit it, or submit it again for approval.")] : []));
      pending.hidden = !c.pending;
      if (c.pending) {
        pending.replaceChildren(h("h2", { id: "pending-heading" }, "Pending changes"),
          h("p", { class: "muted small" }, `Submitted by ${actorText(c.pending.submitted_by, me)} at ${
            when(c.pending.submitted_at)}; rule ${c.pending.rule}, ${approvalCount(c)}. The running version keeps `,
            "serving until they are approved."),
          pendingTable(c));
      }
      historyBox.load();
      tasks.load();
      assets.load();
      const hadFocus = actions.contains(document.activeElement);
      actions.replaceChildren(...actionButtons(c, comment));
      commentBox.hidden = !actions.children.length;
      if (hadFocus && actions.querySelector("button")) actions.querySelector("button").focus();
      const t = c.targeting || {};
      const f = c.frequency_caps || {};
      const caps = ["minute", "hour", "day"].filter((k) => f[k]).map((k) => `${f[k]} per ${k}`);
      facts(settings, [
        ["ID", h("code", {}, c.id)],
        ["Advertiser", c.advertiser_domain],
        ["Bid cap", cpm(c.bid_cap_micros)],
        ["Daily budget", micros(c.daily_budget_micros)],
        ["Categories", list(c.categories)],
        ["App bundle", c.app_bundle || "none"],
        ["Deals", list(c.deal_ids, "open auction only")],
        ["Offers", list(c.offer_ids)],
        ["DSP line items", list((c.dsp_line_items || []).map((i) => `${i.platform}: ${i.cid}`))],
        ["Countries", list(t.countries, "anywhere")],
        ["Devices", list((t.device_types || []).map((d) => DEVICE_TYPES[d] || `type ${d}`), "any")],
        ["Formats", list(t.formats, "any")],
        ["Frequency caps", caps.length ? caps.join(", ") : "none"],
        ["Created", c.created_at ? when(c.created_at) : "–"],
      ]);
      const forms = c.state;
      if (role === "admin" && forms !== formsFor) {  // made again when the state changes what they may do
        formsFor = forms;
        const editable = !["in_review", "completed", "archived"].includes(c.state);
        addCreative.replaceChildren(...(editable ? [creativeForm(c, (updated) => {
          campaigns.set(updated.id, updated);
          update();
        })] : []));
        configure.replaceChildren(...(c.state !== "archived" ? [policyForm(c, () => policy.load())] : []));
      }
      creatives.replaceChildren(...(c.creatives.length ? c.creatives.map((cr) => h("tr", {},
        h("th", { scope: "row" }, h("code", {}, cr.id)),
        h("td", {}, cr.format),
        h("td", {}, cr.w && cr.h ? `${cr.w}×${cr.h}` : "any"),
        h("td", {}, list(cr.mimes, "any")),
        h("td", {}, h("details", {}, h("summary", {}, "Show markup"), h("pre", {}, cr.markup)))))
        : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No creatives yet."))]));
    };
    stops.push(every(60_000, () => report.load()), every(15_000, () => policy.refresh()),
      every(10_000, () => { tasks.load(); assets.load(); }), () => report.destroy());
    return {
      el, update,
      redraw: () => { shownSig = ""; update(); },
      updateLive: () => { liveValue.textContent = liveText(id); },
      streamState: (s) => { liveState.textContent = s === "open" ? "" : `(live bids: ${s})`; },
    };
  }
}

export { ACTIONS, STATUS };
