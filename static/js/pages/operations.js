// Operations (admin): the orders console with the gate check, flights and their inventory, loyalty members and
// promotions. Three tabs (arrow keys move between them); the shown tab is kept in the address (?tab=...).
import { ApiError, api, every, h, money, showError, useStyle, when } from "../api.js";
import { tabs } from "../tabs.js";

const STATES = ["PROPOSED", "PAYMENT_PENDING", "PAID", "FULFILLED", "CANCELLED", "EXPIRED", "ARCHIVED"];
const CANCELLABLE = new Set(["PROPOSED", "PAID", "FULFILLED"]);
const EARN_CHANNELS = ["mobile_app", "pos", "kiosk", "web", "call_center", "partner_api", "iot"];
const TABS = [["orders", "Orders"], ["flights", "Flights and inventory"], ["loyalty", "Loyalty"]];
const enc = encodeURIComponent;

export function render(root, { params }) {
  useStyle("operations");
  const stops = [];
  const panels = { orders: ordersPanel(stops), flights: flightsPanel(stops), loyalty: loyaltyPanel() };
  const tablist = tabs("Operations sections", TABS, panels, params.get("tab"), (id) => {
    history.replaceState(null, "", `#/operations?tab=${id}`);
  });
  root.append(h("section", { class: "card wide ops-head" },
    h("h1", {}, "Operations"),
    h("p", { class: "muted" }, "Orders and the gate, flights and seats, loyalty members and promotions."),
    tablist), ...Object.values(panels).map((p) => p.el));
  return () => { for (const stop of stops) stop(); for (const p of Object.values(panels)) p.hide && p.hide(); };
}

// Long ids, shortened in tables (the whole id is the cell's title and the order view's heading).
const shortId = (id) => (id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id);
const stateLabel = (s) => s.replace("_", " ").toLowerCase();
const stateBadge = (s) => h("span", { class: `badge state-${s.toLowerCase()}` }, stateLabel(s));
const alertBox = () => h("p", { class: "error", role: "alert", hidden: true });
const statusBox = () => h("p", { role: "status", "aria-live": "polite", class: "muted" });
const th = (text, cls) => h("th", { scope: "col", class: cls }, text);
const num = (v) => h("td", { class: "num" }, v);

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
}

// ---- orders ----
function ordersPanel(stops) {
  const el = h("div", { class: "wide ops-panel" });
  const error = alertBox();
  const status = statusBox();
  const state = h("select", { id: "ops-order-state", name: "state" },
    h("option", { value: "" }, "Any state"), STATES.map((s) => h("option", { value: s }, stateLabel(s))));
  const lookup = h("input", { id: "ops-order-id", name: "order_id", autocomplete: "off", spellcheck: "false",
                              placeholder: "ord_…" });
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(true) }, "Load more");
  const detail = h("section", { class: "card wide order-detail", "aria-label": "Order details", hidden: true });
  const gate = gateCard((orderId) => { if (shownOrder === orderId) openOrder(orderId); });
  let cursor = null, shownOrder = null, loaded = false, latest = 0;

  async function load(append = false) {
    const mine = ++latest; // only the newest request's answer is shown
    error.hidden = true;
    const q = new URLSearchParams({ limit: "100" });
    if (state.value) q.set("state", state.value);
    if (append && cursor) q.set("after", cursor);
    status.textContent = "Loading orders…";
    try {
      const page = await api("GET", `/v1/orders?${q}`);
      if (mine !== latest) return;
      cursor = page.next_cursor;
      const built = page.items.map(orderRow);
      if (append) rows.append(...built); else rows.replaceChildren(...built);
      more.hidden = !cursor;
      const n = rows.children.length;
      const which = state.value ? ` ${stateLabel(state.value)}` : "";
      status.textContent = n ? `${n} order${n === 1 ? "" : "s"}${which}${cursor ? " so far" : ""} (oldest first)`
        : `No orders${which}.`;
      loaded = true;
    } catch (err) { if (mine === latest) { status.textContent = ""; showError(error, err); } }
  }

  function orderRow(o) {
    return h("tr", { "data-order": o.id },
      h("td", {}, h("button", { type: "button", class: "linkish mono nowrap", onclick: () => openOrder(o.id),
                                "aria-label": `Open order ${o.id}`, title: o.id }, shortId(o.id))),
      h("td", { class: "mono nowrap", title: o.owner }, shortId(o.owner)),
      h("td", {}, o.flight_id, h("br"), h("span", { class: "muted" }, `${o.cabin} · ${o.passengers} pax`)),
      num(money(o.total_cents, o.currency)),
      h("td", {}, stateBadge(o.state)),
      h("td", {}, when(o.created_at)));
  }

  async function openOrder(id) {
    shownOrder = id;
    detail.hidden = false;
    try {
      const order = await api("GET", `/v1/orders/${enc(id)}`);
      detail.replaceChildren(...orderDetail(order, { refresh: () => { openOrder(id); load(); } }).filter(Boolean));
    } catch (err) {
      const box = alertBox();
      detail.replaceChildren(h("h2", {}, `Order ${id}`), box);
      showError(box, err);
    }
    for (const tr of rows.children) tr.classList.toggle("selected", tr.dataset.order === id);
    detail.scrollIntoView({ block: "nearest" });
  }

  const filter = h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); load(); } },
    h("div", {}, h("label", { for: "ops-order-state" }, "State"), state),
    h("button", { type: "submit" }, "Show orders"));
  state.addEventListener("change", () => load());
  const find = h("form", { class: "row find", onsubmit: (ev) => {
    ev.preventDefault();
    if (lookup.value.trim()) openOrder(lookup.value.trim());
  } }, h("div", { class: "grow" }, h("label", { for: "ops-order-id" }, "Order id"), lookup),
  h("button", { type: "submit", class: "secondary" }, "Open order"));

  el.append(
    h("section", { class: "card orders-list" },
      h("h2", {}, "Orders"),
      h("div", { class: "row spread" }, filter, find),
      error, status,
      h("div", { class: "table-wrap" }, h("table", { class: "orders" },
        h("caption", { class: "sr-only" }, "Orders, oldest first"),
        h("thead", {}, h("tr", {}, th("Order"), th("Owner"), th("Flight"), th("Total", "num"), th("State"),
                                  th("Created"))),
        rows)),
      h("div", { class: "actions" }, more)),
    gate, detail);
  stops.push(() => { shownOrder = null; });
  return { el, show: () => { if (!loaded) load(); } };
}

function orderDetail(order, { refresh }) {
  const error = alertBox();
  const cancelBox = h("div", { class: "quote", role: "region", "aria-label": "Cancellation", hidden: true });
  const outcome = statusBox();
  const cur = order.currency;

  async function quote() {
    error.hidden = true;
    try {
      const q = await api("POST", `/v1/orders/${enc(order.id)}/cancellations`);
      const penalty = order.total_cents - q.refund_cents;
      const confirm = h("button", { type: "button", class: "danger", onclick: async () => {
        confirm.disabled = true;
        try {
          const done = await api("POST", `/v1/orders/${enc(order.id)}/cancellations/${enc(q.id)}/confirm`);
          cancelBox.hidden = true;
          outcome.className = "ok";
          outcome.textContent = `Order cancelled. Refunded ${money(done.refund_cents ?? q.refund_cents, cur)}.`;
          setTimeout(refresh, 1200);
        } catch (err) { confirm.disabled = false; showError(error, err); }
      } }, `Confirm: cancel and refund ${money(q.refund_cents, cur)}`);
      cancelBox.replaceChildren(
        h("h3", {}, "Cancellation quote"),
        h("p", {}, h("strong", { class: "refund" }, `Refund ${money(q.refund_cents, cur)}`),
          ` of ${money(order.total_cents, cur)} paid`,
          order.state === "PROPOSED" ? " (never paid: nothing to refund)"
            : !order.conditions.refundable ? " (this fare is not refundable)"
              : penalty > 0 ? ` (cancellation penalty ${money(penalty, cur)})` : ""),
        h("p", { class: "muted" }, `Quote ${q.id}, valid until ${when(q.expires_at)}.`),
        h("div", { class: "actions" }, confirm,
          h("button", { type: "button", class: "secondary", onclick: () => { cancelBox.hidden = true; } },
            "Keep the order")));
      cancelBox.hidden = false;
      confirm.focus();
    } catch (err) { showError(error, err); }
  }

  const p = order.payment;
  const items = h("table", {}, h("caption", { class: "sr-only" }, "Items"),
    h("thead", {}, h("tr", {}, th("Item"), th("Qty", "num"), th("Unit", "num"), th("Discount", "num"),
                              th("Total", "num"))),
    h("tbody", {}, order.items.map((i) => h("tr", {},
      h("td", {}, i.name, h("br"), h("span", { class: "muted" }, i.kind)),
      num(i.quantity), num(money(i.unit_price_cents, cur)),
      num(i.discount_percent ? `${i.discount_percent}%` : "—"), num(money(i.total_cents, cur))))),
    h("tfoot", {}, h("tr", {}, h("th", { colspan: 4, scope: "row" }, "Order total (taxes and fee included)"),
                     num(money(order.total_cents, cur)))));

  const history = [[order.created_at, `Created (offer ${order.offer_id})`]];
  if (p) {
    history.push([p.started_at, `Payment ${p.id} started (card •••• ${p.card_last4})`]);
    if (p.updated_at !== p.started_at || p.status !== "pending")
      history.push([p.updated_at, `Payment ${p.status}${p.reason ? `: ${p.reason}` : ""}`]);
  }
  if (order.quote)
    history.push([order.quote.created_at, `Cancellation quoted: refund ${money(order.quote.refund_cents, cur)}`]);
  for (const b of order.barcodes) if (b.consumed_at)
    history.push([b.consumed_at, `Barcode ${b.code} used (${b.kind}, passenger ${b.passenger})`]);
  history.push([order.updated_at, `Last change: now ${stateLabel(order.state)}`]);
  history.sort((a, b) => a[0] - b[0]);

  const barcodes = order.barcodes.length ? h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "sr-only" }, "Barcodes"),
    h("thead", {}, h("tr", {}, th("Code"), th("Passenger", "num"), th("For"), th("Use"), th("QR code"))),
    h("tbody", {}, order.barcodes.map((b) => h("tr", {},
      h("td", { class: "mono" }, b.code), num(b.passenger),
      h("td", {}, b.kind === "Flight" ? "Boarding" : b.kind, h("br"), h("span", { class: "muted" }, b.product_id)),
      h("td", { class: b.consumed_at ? "warn" : "" }, b.consumed_at ? `used ${when(b.consumed_at)}` : "not used"),
      h("td", {}, qrButton(order.id, b.code))))))) : h("p", { class: "muted" }, "No barcodes (issued once paid).");

  return [
    h("div", { class: "row spread" },
      h("h2", {}, `Order ${order.id}`), stateBadge(order.state)),
    facts([
      ["Owner", h("span", { class: "mono wrap" }, order.owner)],
      ["Flight", `${order.flight_id} · ${order.cabin}`], ["Departs", when(order.departure_at)],
      ["Passengers", String(order.passengers)], ["Total", money(order.total_cents, cur)],
      ["Created", when(order.created_at)], ["Updated", when(order.updated_at)],
      ["Hold expires", order.state === "PROPOSED" ? when(order.hold_expires_at) : null],
      ["Conditions", order.conditions.refundable
        ? `refundable less ${money(order.conditions.refund_penalty_cents, cur)}` : "not refundable"],
      ["Refunded", order.refund_cents !== null && order.refund_cents !== undefined ? money(order.refund_cents, cur) : null],
    ]),
    h("h3", {}, "Items"), h("div", { class: "table-wrap" }, items),
    h("h3", {}, "Payment"),
    p ? facts([["Status", h("span", { class: p.status === "approved" ? "ok" : p.status === "declined" ? "bad" : "warn" },
                            p.status)],
               ["Amount", money(p.amount_cents, p.currency)], ["Card", `•••• ${p.card_last4}`],
               ["Payment id", h("span", { class: "mono" }, p.id)], ["Reason", p.reason],
               ["Failed attempts", order.payments_failed ? String(order.payments_failed) : null]])
      : h("p", { class: "muted" },
        `Not paid${order.payments_failed ? ` (${order.payments_failed} failed attempts)` : ""}.`),
    h("h3", {}, "Barcodes"), barcodes,
    h("h3", {}, "History"),
    h("ol", { class: "history" }, history.map(([t, text]) => h("li", {}, h("time", {}, when(t)), " ", text))),
    error, outcome,
    cancelAction(order, quote),
    cancelBox,
  ];
}

function cancelAction(order, quote) {
  if (!CANCELLABLE.has(order.state)) return null;
  const why = order.departure_at <= Date.now() / 1000 ? "The flight has departed: the order can no longer be cancelled."
    : order.barcodes.some((b) => b.consumed_at) ? "Part of this order has been used: it can no longer be cancelled."
      : null;
  return why ? h("p", { class: "muted" }, why)
    : h("div", { class: "actions" },
      h("button", { type: "button", class: "danger", onclick: quote }, "Cancel and refund…"));
}

function qrButton(orderId, code) {
  const holder = h("div", { class: "qr", hidden: true });
  let url = null;
  const button = h("button", { type: "button", class: "secondary small", "aria-expanded": "false",
                               "aria-label": `QR code of ${code}`, onclick: async () => {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    holder.hidden = open;
    if (open || url) return;
    try {
      const svg = await api("GET", `/v1/orders/${enc(orderId)}/barcodes/${enc(code)}.svg`);
      // As an image: the SVG renders without ever becoming part of the page's own document.
      url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
      holder.replaceChildren(h("img", { src: url, alt: `QR code of barcode ${code}`, width: 132, height: 132 }));
    } catch (err) {
      const box = alertBox();
      holder.replaceChildren(box);
      showError(box, err);
    }
  } }, "Show");
  return h("div", {}, button, holder);
}

function gateCard(onUsed) {
  const input = h("input", { id: "ops-gate-code", name: "barcode", autocomplete: "off", spellcheck: "false",
                             autocapitalize: "off", required: true, class: "mono" });
  const result = h("div", { class: "gate-result", role: "status", "aria-live": "assertive" });
  const log = h("ol", { class: "gate-log", "aria-label": "Recent gate checks" });
  const button = h("button", { type: "submit" }, "Board");

  function show(kind, headline, detail, code) {
    result.className = `gate-result ${kind}`;
    result.replaceChildren(h("strong", {}, headline), h("span", {}, detail));
    log.prepend(h("li", { class: kind }, h("time", {}, new Date().toLocaleTimeString()), ` ${headline}: `,
                  h("span", { class: "mono" }, code)));
    while (log.children.length > 6) log.lastChild.remove();
  }

  async function consume(ev) {
    ev.preventDefault();
    const code = input.value.trim();
    if (!code) return;
    button.disabled = true;
    try {
      const done = await api("POST", `/v1/fulfillment/${enc(code)}/consume`);
      const b = done.barcode;
      show("ok", b.kind === "Flight" ? "Boarded" : `Accepted: ${b.kind}`,
           `Passenger ${b.passenger} · ${b.product_id} · order ${done.order_id}`, code);
      onUsed(done.order_id);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && err.details && err.details.consumed_at)
        show("bad", "Already used", `This barcode was used at ${when(err.details.consumed_at)}. Do not board.`, code);
      else if (err instanceof ApiError && err.status === 409)
        show("bad", "Refused", err.message, code);
      else if (err instanceof ApiError && err.status === 404)
        show("bad", "Unknown barcode", "No order has this barcode. Check the code and scan again.", code);
      else show("bad", "Not checked", err.message, code);
    } finally {
      button.disabled = false;
      input.value = "";
      input.focus();
    }
  }

  return h("section", { class: "card gate", "aria-labelledby": "ops-gate-title" },
    h("h2", { id: "ops-gate-title" }, "Gate check"),
    h("form", { class: "row", onsubmit: consume },
      h("div", { class: "grow" }, h("label", { for: "ops-gate-code" }, "Barcode (type it or scan it)"), input),
      button),
    result, log);
}

// ---- flights and inventory ----
function flightsPanel(stops) {
  const el = h("div", { class: "wide ops-panel" });
  const error = alertBox();
  const status = statusBox();
  const table = h("div", { class: "table-wrap" });
  const prev = h("button", { type: "button", class: "secondary", disabled: true,
                             onclick: () => { cursors.pop(); load(); } }, "Earlier flights");
  const next = h("button", { type: "button", class: "secondary", disabled: true,
                             onclick: () => { cursors.push(nextCursor); load(); } }, "Later flights");
  const size = h("select", { id: "ops-flight-size", onchange: () => { cursors = [null]; load(); } },
    ["20", "50", "100"].map((n) => h("option", { value: n }, n)));
  // From today on by default: years of flown schedule stay in the list, a date back.
  const today = new Date();
  const from = h("input", { id: "ops-flight-from", type: "date",
                            value: `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, "0")}-` +
                                   `${String(today.getDate()).padStart(2, "0")}`,
                            onchange: () => { cursors = [null]; load(); } });
  let cursors = [null], nextCursor = null, stop = null, latest = 0;

  async function load() {
    const mine = ++latest; // only the newest request's answer is shown
    error.hidden = true;
    const q = new URLSearchParams({ limit: size.value });
    const after = cursors[cursors.length - 1];
    if (after) q.set("after", after);
    else if (from.value) q.set("departs_after", String(new Date(`${from.value}T00:00`).getTime() / 1000));
    try {
      const page = await api("GET", `/v1/admin/flights?${q}`);
      nextCursor = page.next_cursor;
      if (mine !== latest) return;
      const cabins = [...new Set(page.items.flatMap((f) => Object.keys(f.cabins)))];
      const now = Date.now() / 1000;
      table.replaceChildren(h("table", { class: "flights" },
        h("caption", { class: "sr-only" }, "Flights by departure, with seats left and fares per cabin"),
        h("thead", {}, h("tr", {}, th("Flight"), th("Route"), th("Departs"), th("Status"),
                                  cabins.map((c) => th(c[0].toUpperCase() + c.slice(1))))),
        h("tbody", {}, page.items.map((f) => h("tr", {},
          h("td", {}, h("strong", {}, f.number), h("br"), h("span", { class: "muted mono" }, f.id)),
          h("td", {}, `${f.origin} → ${f.destination}`),
          h("td", {}, when(f.departure_at)),
          h("td", { class: f.status === "cancelled" ? "bad" : f.departure_at <= now ? "muted" : "ok" },
            f.status === "cancelled" ? "cancelled" : f.departure_at <= now ? "departed" : "scheduled"),
          cabins.map((c) => cabinCell(f, c, now)))))));
      status.textContent = page.items.length
        ? `${page.items.length} flights from ${when(page.items[0].departure_at)}; ` +
          `updated ${new Date().toLocaleTimeString()}`
        : "No flights.";
      prev.disabled = cursors.length < 2;
      next.disabled = !nextCursor;
    } catch (err) { if (mine === latest) showError(error, err); }
  }

  function cabinCell(f, cabin, now) {
    const c = f.cabins[cabin];
    if (!c) return h("td", { class: "muted" }, "—");
    const left = f.seats_left[cabin];
    const known = typeof left === "number";
    const fare = f.status !== "cancelled" && f.departure_at > now ? f.fares_now[cabin] ?? null : null;
    return h("td", { class: "cabin" },
      h("div", {}, known ? h("strong", {}, String(left)) : "?", ` of ${c.capacity} left`),
      known ? h("meter", { min: 0, max: c.capacity, low: c.capacity * 0.2, high: c.capacity * 0.9,
                           optimum: c.capacity, value: left, "aria-label": `${cabin} seats left on ${f.number}` }) : null,
      h("div", { class: "muted" }, `base fare ${money(c.base_fare_cents, f.currency)}`),
      fare !== null ? h("div", {}, `fare now ${money(fare, f.currency)}`) : null);
  }

  el.append(h("section", { class: "card" },
    h("h2", {}, "Flights and inventory"),
    h("p", { class: "muted" }, "Seats left per cabin, the base fare, and the fare now: what a search prices one ",
      "economy-segment passenger at this moment (base fare × demand × time to departure, before taxes and the ",
      "booking fee; bundles add products). Refreshed every 15 seconds."),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "ops-flight-from" }, "Departing from"), from),
      h("div", {}, h("label", { for: "ops-flight-size" }, "Flights per page"), size),
      prev, next, h("button", { type: "button", class: "secondary", onclick: load }, "Refresh")),
    error, status, table));
  const show = () => { if (!stop) stop = every(15000, load); };
  const hide = () => { if (stop) { stop(); stop = null; } };
  stops.push(hide);
  return { el, show, hide };
}

// ---- loyalty ----
function loyaltyPanel() {
  const el = h("div", { class: "wide ops-panel loyalty" });
  const error = alertBox();
  const status = statusBox();
  const q = h("input", { id: "ops-member-q", name: "q", autocomplete: "off", spellcheck: "false", placeholder: "usr_…" });
  const rows = h("tbody");
  const member = h("section", { class: "card member", "aria-label": "Member" },
    h("h2", {}, "Member"), h("p", { class: "muted" }, "Choose a member to see their balance, tier and ledger."));
  const promos = promotionsCard();
  const value = valueCard();
  let loaded = false;

  async function search(ev) {
    if (ev) ev.preventDefault();
    error.hidden = true;
    status.textContent = "Searching…";
    try {
      const query = new URLSearchParams({ q: q.value.trim(), limit: "50" });
      const found = await api("GET", `/v1/admin/loyalty/members?${query}`);
      rows.replaceChildren(...found.items.map((m) => h("tr", { "data-user": m.user_id },
        h("td", {}, h("button", { type: "button", class: "linkish mono", onclick: () => openMember(m.user_id),
                                  "aria-label": `Open member ${m.user_id}` }, m.user_id)),
        h("td", {}, tierBadge(m.tier)), num(m.balance.toLocaleString()), num(m.lifetime_stars.toLocaleString()),
        num(m.qualifying_stars_12m.toLocaleString()))));
      const n = found.items.length;
      status.textContent = n ? `${n} member${n === 1 ? "" : "s"}${n === 50 ? " (the first 50)" : ""}` : "No members match.";
      loaded = true;
    } catch (err) { status.textContent = ""; showError(error, err); }
  }

  async function openMember(userId) {
    for (const tr of rows.children) tr.classList.toggle("selected", tr.dataset.user === userId);
    const box = alertBox();
    try {
      const [b, ledger] = await Promise.all([api("GET", `/v1/loyalty/balance/${enc(userId)}`), wholeLedger(userId)]);
      const entries = [...ledger.items].reverse();
      member.replaceChildren(
        h("div", { class: "row spread" }, h("h2", {}, `Member ${userId}`), tierBadge(b.tier)),
        h("div", {},
          h("span", { class: "stat" }, h("b", {}, b.balance.toLocaleString()), "stars to spend"),
          h("span", { class: "stat" }, h("b", {}, b.tier), "tier"),
          h("span", { class: "stat" }, h("b", {}, b.qualifying_stars_12m.toLocaleString()), "qualifying, 12 months"),
          h("span", { class: "stat" }, h("b", {}, b.lifetime_stars.toLocaleString()), "lifetime stars")),
        facts([["Tier kept until", b.tier_kept_until ? when(b.tier_kept_until) : null],
               ["Birthday reward", b.birthday_eligible ? "can be claimed now" : "not now"],
               ["Owes", b.debt_stars ? `${b.debt_stars} stars (reversed after they were spent)` : null]]),
        h("h3", {}, `Ledger (${ledger.items.length}${ledger.next_cursor ? "+" : ""} entries, newest first)`),
        entries.length ? h("div", { class: "table-wrap" }, h("table", {},
          h("caption", { class: "sr-only" }, "Ledger"),
          h("thead", {}, h("tr", {}, th("When"), th("Kind"), th("Stars", "num"), th("Transaction"), th("Expires"),
                                    th("Details"))),
          h("tbody", {}, entries.map((e) => h("tr", {},
            h("td", {}, when(e.at)),
            h("td", {}, e.kind, e.qualifying ? h("span", { class: "muted" }, " · qualifying") : ""),
            h("td", { class: `num ${e.stars < 0 ? "bad" : "ok"}` }, e.stars > 0 ? `+${e.stars}` : String(e.stars)),
            h("td", { class: "mono wrap" }, e.transaction_id || "—"),
            h("td", {}, e.expires_at ? when(e.expires_at) : "—"),
            h("td", { class: "muted wrap" }, ledgerDetails(e.details || {})))))))
          : h("p", { class: "muted" }, "No ledger entries."),
        await memberValue(userId));
    } catch (err) {
      member.replaceChildren(h("h2", {}, `Member ${userId}`), box);
      showError(box, err);
    }
    member.scrollIntoView({ block: "nearest" });
  }

  el.append(
    h("section", { class: "card" },
      h("h2", {}, "Loyalty members"),
      h("form", { class: "row", onsubmit: search },
        h("div", { class: "grow" }, h("label", { for: "ops-member-q" }, "User id (or its beginning)"), q),
        h("button", { type: "submit" }, "Search members")),
      error, status,
      h("div", { class: "table-wrap" }, h("table", { class: "members" },
        h("caption", { class: "sr-only" }, "Members"),
        h("thead", {}, h("tr", {}, th("Member"), th("Tier"), th("Balance", "num"), th("Lifetime", "num"),
                                  th("Qualifying 12 m", "num"))),
        rows))),
    member, value.el, promos.el);
  return { el, show: () => { if (!loaded) { search(); promos.load(); value.load(); } } };
}

// ---- lifetime value ----
const amount = (v, currency) => `${currency} ${v.toLocaleString(undefined, { maximumFractionDigits: 0 })}`;
const FEATURES = { frequency: "Repeat purchases", recency: "Days from first to last purchase",
                   age: "Days since first purchase", monetary: "Average repeat purchase",
                   digital_share: "Share bought on the web or app", channels: "Channels used" };

// A feature's value for one customer: a share (digital_share) as a percentage, other figures to two decimals.
const featureValue = (name, v) => (typeof v !== "number" || !Number.isFinite(v) ? "–"
  : name.endsWith("_share") ? `${Math.round(v * 100)}%` : Number(v.toFixed(2)).toLocaleString());

// A member's predicted lifetime value with its interval and the features behind it.
async function memberValue(userId) {
  const section = h("section", { "aria-label": "Lifetime value" }, h("h3", {}, "Lifetime value"));
  try {
    const v = await api("GET", `/v1/customers/${enc(userId)}/ltv`);
    const largest = Math.max(...v.top_features.map((f) => Math.abs(f.importance)), 1e-9);
    section.append(
      h("p", {}, h("b", { class: "ltv-value" }, amount(v.predicted_ltv, v.currency)), ` over ${v.horizon_days} days `,
        v.ltv_upper_bound > 0
          ? `(80% between ${amount(v.ltv_lower_bound, v.currency)} and ${amount(v.ltv_upper_bound, v.currency)})`
          : "(at least 80% likely to buy nothing in that time: the value is what the rest is worth)"),
      facts([["Expected purchases", v.expected_purchases.toFixed(2)],
             ["Still buying (P alive)", `${Math.round(v.probability_alive * 100)}%`],
             ["Confidence", `${Math.round(v.confidence * 100)}%`], ["Model", v.model_version],
             ["Status", v.status === "SUCCESS" ? null : `${v.status}: ${v.message}`]]),
      v.top_features.length ? h("table", { class: "ltv-reasons" },
        h("caption", {}, "Why: each feature's share of the value against an average customer"),
        h("thead", {}, h("tr", {}, th("Feature"), th("Their value", "num"), th("Contribution", "num"), th(""))),
        h("tbody", {}, v.top_features.map((f) => {
          // Shown rounded, so the sign, colour and bar follow the rounded figure: a -2e-16 is a plain 0, no bar.
          const shown = Math.round(f.importance) || 0;
          return h("tr", { "data-feature": f.name },
            h("td", {}, FEATURES[f.name] || f.name), num(featureValue(f.name, f.value)),
            h("td", { class: `num ${shown < 0 ? "bad" : shown > 0 ? "ok" : "muted"}` },
              `${shown > 0 ? "+" : ""}${shown.toLocaleString()}`),
            h("td", { class: "bar-cell" }, shown ? h("span", { class: `bar ${shown < 0 ? "neg" : "pos"}`,
              style: `width:${(Math.abs(f.importance) / largest * 100).toFixed(1)}%` }) : null));
        }))) : null);
  } catch (err) {
    section.append(h("p", { class: "muted" }, err instanceof ApiError && err.status === 404
      ? "No lifetime-value model has been fitted yet." : `Lifetime value unavailable: ${err.message}`));
  }
  return section;
}

// Every customer's predicted value: the model serving, the distribution and the most valuable customers.
function valueCard() {
  const el = h("section", { class: "card wide customer-value", "aria-labelledby": "ops-value-h" },
    h("h2", { id: "ops-value-h" }, "Customer value"));
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const error = alertBox();
  const refit = h("button", { type: "button", class: "secondary", onclick: async () => {
    refit.disabled = true;
    error.hidden = true;
    try {
      const r = await api("POST", "/v1/admin/ltv/refit");
      if (!r.live) showError(error, `Kept out: ${r.reason}`);
      await load();
    } catch (err) { showError(error, err); } finally { refit.disabled = false; }
  } }, "Refit now");
  el.append(h("p", { class: "muted" }, "Each customer's predicted value over the horizon, from their purchases ",
    "(orders, loyalty and ingested purchases), by the model fitted on the carrier's own history."), error, body, refit);

  async function load() {
    try {
      const m = await api("GET", "/v1/admin/ltv/model");
      if (!m.model_version) { body.replaceChildren(h("p", { class: "muted" }, "No model fitted yet: refit once purchases are in.")); return; }
      const d = await api("GET", "/v1/admin/ltv/distribution");
      const most = Math.max(...d.bins.map((b) => b.customers), 1);
      body.replaceChildren(
        facts([["Model", `${m.model_version}${m.is_healthy ? "" : " (below its target accuracy)"}`],
               ["Holdout accuracy (total purchases)", `${(m.current_accuracy * 100).toFixed(1)}% (target ${(m.target_accuracy * 100).toFixed(0)}%)`],
               ["Holdout error per customer", `MAE ${m.holdout_mae.toFixed(3)}, RMSE ${m.holdout_rmse.toFixed(3)} purchases (${m.holdout_customers.toLocaleString()} customers)`],
               ["Predictions today", m.predictions_today.toLocaleString()],
               ["Latency", m.avg_latency_us ? `p95 ${Math.round(m.p95_latency_us)} µs, p99 ${Math.round(m.p99_latency_us)} µs`
                 : "no predictions yet"],
               ["Customers", d.customers.toLocaleString()],
               ["Median value", amount(d.quantiles.p50, d.currency)], ["Total value", amount(d.total, d.currency)]]),
        h("div", { class: "row top" },
          h("table", { class: "ltv-bins" },
            h("caption", {}, `Customers by predicted value over ${d.horizon_days} days (${d.currency})`),
            h("thead", {}, h("tr", {}, th("Value"), th("Customers", "num"), th(""))),
            h("tbody", {}, d.bins.map((b) => h("tr", {},
              h("td", {}, b.upper === null ? `${Math.round(b.lower).toLocaleString()} and more`
                : `${Math.round(b.lower).toLocaleString()}–${Math.round(b.upper).toLocaleString()}`),
              num(b.customers.toLocaleString()),
              h("td", { class: "bar-cell" }, h("span", { class: "bar pos", style: `width:${Math.round(b.customers / most * 100)}%` })))))),
          h("table", { class: "ltv-top" },
            h("caption", {}, "The most valuable customers"),
            h("thead", {}, h("tr", {}, th("Customer"), th("Value", "num"), th("80% interval", "num"), th("P alive", "num"))),
            h("tbody", {}, d.top.map((c) => h("tr", {},
              h("td", { class: "mono" }, c.customer_id), num(amount(c.predicted_ltv, d.currency)),
              num(`${Math.round(c.ltv_lower_bound).toLocaleString()}–${Math.round(c.ltv_upper_bound).toLocaleString()}`),
              num(`${Math.round(c.probability_alive * 100)}%`)))))));
    } catch (err) { body.replaceChildren(); showError(error, err); }
  }
  return { el, load };
}

// A member's ledger, oldest first: every page up to 10,000 entries (next_cursor says there are more).
async function wholeLedger(userId) {
  const items = [];
  let after = null;
  for (let n = 0; n < 10; n++) {
    const page = await api("GET", `/v1/loyalty/ledger/${enc(userId)}?limit=1000${after ? `&after=${enc(after)}` : ""}`);
    items.push(...page.items);
    after = page.next_cursor;
    if (!after) break;
  }
  return { items, next_cursor: after };
}

// A ledger entry's details in words: what it was for, at which rate, and whether the tier changed.
function ledgerDetails(d) {
  const out = [];
  if (d.amount_cents !== undefined) out.push(`${money(d.amount_cents, "USD")} spent`);
  if (d.value_cents !== undefined) out.push(`reward worth ${money(d.value_cents, "USD")}`);
  if (d.channel) out.push(`via ${String(d.channel).replace("_", " ")}`);
  if (d.rate !== undefined) out.push(`×${d.rate}`);
  if (d.referral === true) out.push("referral");
  if (d.reversed !== undefined) out.push(`${d.reversed} stars taken back`);
  if (d.shortfall) out.push(`${d.shortfall} owed`);
  if (d.tier_changed === true && d.tier_after) out.push(`now ${d.tier_after}`);
  if (d.balance_after !== undefined) out.push(`balance ${d.balance_after}`);
  const known = new Set(["amount_cents", "value_cents", "channel", "rate", "referral", "digital", "reversed", "shortfall",
                         "tier_changed", "tier_after", "balance_after", "earn_entry", "debt_after"]);
  for (const [k, v] of Object.entries(d)) if (!known.has(k) && v !== false && v !== null) out.push(`${k}: ${v}`);
  return out.join(" · ") || "—";
}

const tierBadge = (tier) => h("span", { class: `badge tier-${String(tier).toLowerCase()}` }, tier);

function toLocalInput(epoch) {
  const d = new Date(epoch * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function promotionsCard() {
  const error = alertBox();
  const status = statusBox();
  const rows = h("tbody");
  const now = Date.now() / 1000;
  const field = (id, label, attrs) => {
    const input = h("input", { id, name: id.replace("promo-", ""), ...attrs });
    return [input, h("div", {}, h("label", { for: id }, label), input)];
  };
  const [pid, pidField] = field("promo-id", "Id", { required: true, maxlength: 64, pattern: "[A-Za-z0-9_\\-]+",
                                                    autocomplete: "off", placeholder: "summer-double" });
  const [name, nameField] = field("promo-name", "Name", { required: true, maxlength: 200, autocomplete: "off" });
  const [rate, rateField] = field("promo-rate", "Bonus earn rate (stars per dollar, added)",
                                  { type: "number", required: true, min: "0.1", max: "10", step: "0.1", value: "1" });
  const [starts, startsField] = field("promo-starts", "Starts", { type: "datetime-local", required: true,
                                                                  value: toLocalInput(now) });
  const [ends, endsField] = field("promo-ends", "Ends", { type: "datetime-local", required: true,
                                                          value: toLocalInput(now + 7 * 86400) });
  const boxes = EARN_CHANNELS.map((c) => h("input", { type: "checkbox", id: `promo-ch-${c}`, value: c }));
  const channels = h("fieldset", { class: "channels" }, h("legend", {}, "Channels (none ticked: every channel)"),
    EARN_CHANNELS.map((c, i) => h("label", { for: `promo-ch-${c}`, class: "check" }, boxes[i], c.replace("_", " "))));

  async function load() {
    try {
      const list = await api("GET", "/v1/admin/loyalty/promotions");
      const t = Date.now() / 1000;
      const items = [...list.items].sort((a, b) => b.starts_at - a.starts_at);
      rows.replaceChildren(...items.map((p) => h("tr", { "data-promo": p.id },
        h("td", { class: "mono" }, p.id), h("td", {}, p.name), num(`+${p.bonus_rate}`),
        h("td", {}, when(p.starts_at)), h("td", {}, when(p.ends_at)),
        h("td", {}, p.channels.length ? p.channels.join(", ") : "all"),
        h("td", { class: p.ends_at <= t ? "muted" : p.starts_at <= t ? "ok" : "warn" },
          p.ends_at <= t ? "ended" : p.starts_at <= t ? "active" : "upcoming"))));
      if (!items.length) rows.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No promotions yet.")));
    } catch (err) { showError(error, err); }
  }

  async function create(ev) {
    ev.preventDefault();
    error.hidden = true;
    const body = { id: pid.value.trim(), name: name.value.trim(), bonus_rate: Number(rate.value),
                   starts_at: new Date(starts.value).getTime() / 1000, ends_at: new Date(ends.value).getTime() / 1000,
                   channels: boxes.filter((b) => b.checked).map((b) => b.value) };
    try {
      const saved = await api("POST", "/v1/admin/loyalty/promotions", body);
      status.className = "ok";
      status.textContent = `Promotion ${saved.id} saved.`;
      await load();
    } catch (err) { showError(error, err); }
  }

  const el = h("section", { class: "card wide promotions" },
    h("h2", {}, "Promotions"),
    h("div", { class: "promo-grid" },
    h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { class: "sr-only" }, "Promotions"),
      h("thead", {}, h("tr", {}, th("Id"), th("Name"), th("Bonus", "num"), th("Starts"), th("Ends"), th("Channels"),
                                th("Now"))),
      rows)),
    h("form", { class: "promo-form", onsubmit: create, "aria-labelledby": "promo-new" },
      h("h3", { id: "promo-new" }, "New promotion"),
      h("div", { class: "form-grid" }, pidField, nameField, rateField, startsField, endsField),
      channels,
      h("p", { class: "muted" }, "Saving with an existing id replaces that promotion."),
      error, status,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Create promotion")))));
  return { el, load };
}
