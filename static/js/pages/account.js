// My account (customers): my orders (each opens the order view shared with the shop), the loyalty wallet (balance,
// tier and the way to the next, the ledger, redeeming stars for a reward) and the in-app inbox, live.
import { api, h, money, showError, stream, useStyle } from "../api.js";
import { dateTime, flightName, idempotencyKey, renderOrder, stateBadge } from "./order-view.js";

// Tier thresholds: qualifying stars in a rolling 12 months (app/config.py loyalty.gold_stars, reserve_stars).
// The programme's tiers and rewards (GET /v1/loyalty/program), loaded once.
let TIERS = [];
let CATALOGUE = [];
const RANK = { Green: 0, Gold: 1, Reserve: 2 };
const STATES = ["PROPOSED", "PAYMENT_PENDING", "PAID", "FULFILLED", "ARCHIVED", "CANCELLED", "EXPIRED"];
const ENTRY_TEXT = { earn: "Earned", redeem: "Redeemed", expire: "Expired", reverse: "Taken back" };

export async function render(root, { params, session }) {
  useStyle("shop");
  useStyle("account");
  if (!TIERS.length) {
    try {
      const program = await api("GET", "/v1/loyalty/program");
      TIERS = program.tiers.map((t) => [t.name, t.qualifying_stars]);
      CATALOGUE = program.rewards.map((r) => [r.stars, r.value_cents, r.min_tier]);
    } catch { /* the wallet shows the API's error when it loads */ }
  }
  if (!session || session.role !== "customer") {
    root.append(h("section", { class: "card narrow" }, h("h1", {}, "My account"),
      h("p", {}, "My account is for customers: ", h("a", { href: "#/signin" }, "sign in or create an account"),
        " to see your orders, stars and messages.")));
    return null;
  }
  const orderId = params.get("order");
  if (orderId) return renderOrder(root, orderId, { back: { href: "#/account", label: "My orders" } });

  const userId = session.subject;
  const stops = [];
  root.append(ordersSection(), h("div", { class: "account-grid wide" }, walletSection(userId), inboxSection(stops)));
  return () => stops.forEach((stop) => stop());
}

// ---- my orders ----
function ordersSection() {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const filter = h("select", { id: "orders-state" }, h("option", { value: "" }, "All"),
    STATES.map((s) => h("option", { value: s }, s.replace("_", " ").toLowerCase())));
  const body = h("tbody");
  const note = h("p", { class: "muted", role: "status" }, "loading…");
  const table = h("div", { class: "table-wrap" }, h("table", { class: "orders stack-on-phone" },
    h("thead", {}, h("tr", {}, h("th", {}, "Flight"), h("th", {}, "Departs"), h("th", {}, "State"),
      h("th", { class: "num" }, "Total"))), body));
  const section = h("section", { class: "card wide", "aria-labelledby": "orders-title" },
    h("div", { class: "section-head" }, h("h1", { id: "orders-title" }, "My orders"),
      h("div", { class: "filter" }, h("label", { for: "orders-state" }, "Show"), filter)),
    note, error, table);

  async function load() {
    error.hidden = true;
    try {
      const items = [];
      let after = null;
      for (let page = 0; page < 10; page++) {
        const qs = new URLSearchParams({ limit: "1000" });
        if (after) qs.set("after", after);
        if (filter.value) qs.set("state", filter.value);
        const res = await api("GET", `/v1/orders?${qs}`);
        items.push(...res.items);
        after = res.next_cursor;
        if (!after) break;
      }
      items.sort((a, b) => b.created_at - a.created_at);  // newest first
      note.replaceChildren(items.length ? `${items.length} order${items.length > 1 ? "s" : ""}, newest first.`
        : filter.value ? "No orders in this state." : h("span", {}, "No orders yet. ", h("a", { href: "#/shop" }, "Find a flight"), "."));
      table.hidden = !items.length;
      body.replaceChildren(...items.map((o) => h("tr", { "data-order": o.id },
        h("td", { "data-label": "Flight" }, h("div", {},
          h("a", { href: `#/account?order=${encodeURIComponent(o.id)}`, title: `Order ${o.id}` }, flightName(o)),
          h("br"), h("span", { class: "muted small" }, `${o.passengers} passenger${o.passengers > 1 ? "s" : ""} · ${o.cabin}`))),
        h("td", { "data-label": "Departs" }, dateTime(o.departure_at)),
        h("td", { "data-label": "State" }, stateBadge(o.state)),
        h("td", { class: "num", "data-label": "Total" }, money(o.total_cents, o.currency)))));
    } catch (err) {
      note.textContent = "";
      showError(error, err);
    }
  }
  filter.addEventListener("change", load);
  load();
  return section;
}

// ---- the loyalty wallet ----
function walletSection(userId) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const done = h("p", { class: "ok", role: "status", "aria-live": "polite" });
  const stats = h("div", { class: "wallet-stats" }, h("p", { class: "muted" }, "loading…"));
  const progress = h("div", { class: "tier-progress" });
  const choices = h("div", { class: "rewards" });
  const redeemButton = h("button", { type: "submit" }, "Redeem");
  const form = h("form", { class: "redeem", onsubmit: redeem },
    h("fieldset", {}, h("legend", {}, "Redeem stars for a reward"), choices),
    h("div", { class: "actions" }, redeemButton), done);
  const ledger = h("tbody");
  const ledgerWrap = h("div", { class: "table-wrap" }, h("table", { class: "ledger" },
    h("caption", { class: "muted" }, "Ledger, newest first"),
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "What"), h("th", { class: "num" }, "Stars"),
      h("th", { class: "num" }, "Balance after"))), ledger));
  const section = h("section", { class: "card wallet", "aria-labelledby": "wallet-title" },
    h("h1", { id: "wallet-title" }, "Loyalty wallet"), error, stats, progress, form, ledgerWrap);
  let balance = null;

  function drawChoices() {
    const have = balance ? balance.balance : 0;
    const tier = balance ? balance.tier : "Green";
    const checked = choices.querySelector("input:checked:not(:disabled)");
    choices.replaceChildren(...CATALOGUE.map(([stars, cents, minTier]) => {
      const needsGold = (RANK[tier] ?? 0) < (RANK[minTier] ?? 0);
      const short = have < stars;
      const id = `reward-${stars}`;
      const why = needsGold ? ` (needs ${minTier})` : short ? ` (${stars - have} more stars needed)` : "";
      return h("div", { class: `reward${needsGold || short ? " unavailable" : ""}` },
        h("input", { type: "radio", name: "reward", id, value: stars, disabled: needsGold || short,
                     checked: checked ? Number(checked.value) === stars : false }),
        h("label", { for: id }, `${stars} stars → ${money(cents, "USD")} reward`, h("span", { class: "muted" }, why)));
    }));
    if (!choices.querySelector("input:checked")) {
      const first = choices.querySelector("input:not(:disabled)");
      if (first) first.checked = true;
    }
    redeemButton.disabled = !choices.querySelector("input:checked");
    const pick = choices.querySelector("input:checked");
    redeemButton.textContent = pick ? `Redeem ${pick.value} stars` : "Not enough stars to redeem yet";
  }
  choices.addEventListener("change", () => {
    const pick = choices.querySelector("input:checked");
    if (pick) redeemButton.textContent = `Redeem ${pick.value} stars`;
  });

  function drawBalance() {
    if (!balance) {
      stats.replaceChildren(h("p", {}, h("b", { "data-testid": "balance" }, "0 stars"), " · Green"),
        h("p", { class: "muted" }, "No stars yet: every paid order earns stars (1.2 per dollar booked online)."));
      progress.replaceChildren(tierProgress(0, "Green"));
      return;
    }
    const b = balance;
    stats.replaceChildren(...[
      h("div", { class: "stat" }, "Balance", h("b", { "data-testid": "balance" }, `${b.balance} stars`)),
      h("div", { class: "stat" }, "Tier", h("b", { "data-testid": "tier", class: `tier-${b.tier.toLowerCase()}` }, b.tier)),
      h("div", { class: "stat" }, "Lifetime", h("b", {}, `${b.lifetime_stars} stars`)),
      b.debt_stars ? h("p", { class: "warn" }, `You owe ${b.debt_stars} stars from a refunded order: your next `
        + "stars pay it first.") : null,
      b.tier_kept_until ? h("p", { class: "muted small" }, `${b.tier} kept until ${dateTime(b.tier_kept_until)}.`) : null,
    ].filter(Boolean));
    progress.replaceChildren(tierProgress(b.qualifying_stars_12m, b.tier));
  }

  async function load() {
    try {
      balance = await api("GET", `/v1/loyalty/balance/${encodeURIComponent(userId)}`);
    } catch (err) {
      if (err.status !== 404) { showError(error, err); return; }
      balance = null;  // no loyalty account until the first stars
    }
    drawBalance();
    drawChoices();
    try {
      const entries = [];
      let after = null;
      for (let page = 0; page < 10; page++) {
        const res = await api("GET", `/v1/loyalty/ledger/${encodeURIComponent(userId)}?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`);
        entries.push(...res.items);
        after = res.next_cursor;
        if (!after) break;
      }
      ledgerWrap.hidden = !entries.length;
      // balance - debt is the running sum of the entries (app/loyalty/service.py), so each row's "after" is exact.
      let running = 0;
      const rows = entries.map((e) => {
        running += e.stars;
        return h("tr", {},
          h("td", {}, dateTime(e.at)),
          h("td", {}, entryText(e)),
          h("td", { class: `num ${e.stars >= 0 ? "ok" : "bad"}` }, e.stars > 0 ? `+${e.stars}` : String(e.stars)),
          h("td", { class: "num" }, running >= 0 ? String(running) : `owes ${-running}`));
      });
      ledger.replaceChildren(...rows.reverse());
    } catch (err) {
      if (err.status === 404) ledgerWrap.hidden = true; else showError(error, err);
    }
  }

  async function redeem(ev) {
    ev.preventDefault();
    const pick = choices.querySelector("input:checked");
    if (!pick) return;
    error.hidden = true;
    done.textContent = "";
    redeemButton.disabled = true;
    try {
      const stars = Number(pick.value);
      const res = await api("POST", "/v1/loyalty/redeem", { user_id: userId, stars },
                            { headers: { "Idempotency-Key": idempotencyKey() } });
      const value = res.entry.details && res.entry.details.value_cents;
      done.textContent = `Redeemed ${stars} stars${value ? ` for a ${money(value, "USD")} reward` : ""}. `
        + `Your balance is now ${res.balance} stars.`;
    } catch (err) {
      showError(error, err);
    }
    await load();
  }

  load();
  return section;
}

function entryText(e) {
  const d = e.details || {};
  const what = ENTRY_TEXT[e.kind] || e.kind;
  // order:<id> for the first payment, order:<id>:v<version> for a change that moved money
  const order = e.transaction_id && e.transaction_id.startsWith("order:") ? e.transaction_id.split(":")[1] : null;
  const link = order ? h("a", { href: `#/account?order=${encodeURIComponent(order)}`, title: order }, "an order") : null;
  if (e.kind === "earn" && order)
    return h("span", {}, `${what} for `, link, e.expires_at
      ? h("span", { class: "muted small" }, ` · expire ${new Date(e.expires_at * 1000).toLocaleDateString()}`) : "");
  if (e.kind === "reverse" && order)
    return h("span", {}, `${what}: `, link, d.reason === "order_changed" ? " was changed and earns for its new total"
      : " was refunded");
  if (e.kind === "redeem" && d.value_cents !== undefined) return `${what} for a ${money(d.value_cents, "USD")} reward`;
  return e.transaction_id ? `${what} (${e.transaction_id})` : what;
}

function tierProgress(qualifying, tier) {
  const i = TIERS.findIndex(([name]) => name === tier);
  const next = TIERS[i + 1];
  if (!next) return h("p", {}, `${tier}: the top tier. ${qualifying} qualifying stars in the last 12 months.`);
  const [name, need] = next;
  const id = "tier-progress";
  return h("div", {},
    h("label", { for: id }, `Progress to ${name}: ${Math.min(qualifying, need)} of ${need} qualifying stars in 12 months`),
    h("progress", { id, max: need, value: Math.min(qualifying, need) }),
    h("p", { class: "muted small" }, `${Math.max(0, need - qualifying)} more to reach ${name}.`));
}

// ---- the inbox: history, then live ----
function inboxSection(stops) {
  const state = h("span", { class: "pill", role: "status" }, "connecting…");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const list = h("ol", { class: "inbox", "aria-live": "polite" });
  const empty = h("p", { class: "muted" }, "No messages yet.");
  const section = h("section", { class: "card", "aria-labelledby": "inbox-title" },
    h("div", { class: "section-head" }, h("h1", { id: "inbox-title" }, "Inbox"), state), error, empty, list);
  const seen = new Set();
  const add = (m, fresh) => {
    if (seen.has(m.id)) return;
    seen.add(m.id);
    empty.hidden = true;
    const item = h("li", { class: fresh ? "message fresh" : "message", "data-message": m.id },
      h("div", { class: "message-head" }, h("b", {}, m.subject), h("span", { class: "muted small" }, dateTime(m.at))),
      h("p", {}, m.text), fresh ? h("span", { class: "pill ok small" }, "new") : null);
    if (fresh) list.prepend(item); else list.append(item);
  };
  api("GET", "/v1/inbox?limit=50").then((res) => {
    const newest = [...list.children];  // live ones that came while the history loaded stay on top
    res.items.forEach((m) => add(m, false));
    list.prepend(...newest);
  }).catch((err) => showError(error, err));
  const live = stream("/v1/stream/inapp", {
    onMessage: (msg) => {
      if (msg && typeof msg.type === "string" && msg.type.startsWith("inapp:") && msg.data) add(msg.data, true);
    },
    onState: (s) => {
      state.textContent = s === "open" ? "live" : s === "connecting" ? "connecting…" : s;
      state.className = `pill ${s === "open" ? "ok" : "warn"}`;
    },
  });
  stops.push(() => live.close());
  return section;
}
