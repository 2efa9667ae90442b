// One order, as the shop and My account show it: what was bought, the hold's countdown, the card form, a pending
// payment followed until it settles, the barcodes as QR codes, and cancellation with a refund quote.
import { api, h, money, showError, useStyle } from "../api.js";

const STATE_TEXT = {
  PROPOSED: "Held, awaiting payment", PAYMENT_PENDING: "Payment pending", PAID: "Paid", FULFILLED: "Confirmed",
  ARCHIVED: "Flown", EXPIRED: "Expired", CANCELLED: "Cancelled",
};
const STATE_CLASS = {
  PROPOSED: "warn", PAYMENT_PENDING: "warn", PAID: "ok", FULFILLED: "ok", ARCHIVED: "muted", EXPIRED: "bad",
  CANCELLED: "bad",
};
const DECLINE_TEXT = {
  card_declined: "the bank declined the card",
  insufficient_funds: "the card has insufficient funds",
  payment_not_found: "the payment provider has no record of the payment",
  payment_not_settled: "the payment provider never settled it",
};
const declined = (reason, then) => `Payment declined: ${DECLINE_TEXT[reason] || reason || "declined"}. ${then}`;
/** What a held order whose last payment was declined (at once, or later by the provider) tells its traveller. */
const declinedText = (o) => declined(o.payment.reason, "No money was taken; try another card.");
const lastPaymentDeclined = (o) => o.state === "PROPOSED" && !!o.payment && o.payment.status === "declined";
const KIND_TEXT = { Flight: "Boarding pass", Seat: "Seat", Bag: "Checked bag", Meal: "Meal", Lounge: "Lounge",
                    FastTrack: "Fast track", Insurance: "Insurance", CarbonOffset: "Carbon offset" };

/** A date and time: "Dec 6, 2026, 7:00 AM" in the viewer's time zone. */
export const dateTime = (epochSeconds) =>
  new Date(epochSeconds * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });

/** "mm:ss" (or "h:mm:ss") until epochSeconds; "0:00" once past. */
export function countdown(epochSeconds) {
  const left = Math.max(0, Math.floor(epochSeconds - Date.now() / 1000));
  const hh = Math.floor(left / 3600), mm = Math.floor((left % 3600) / 60), ss = String(left % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** A fresh Idempotency-Key (crypto.randomUUID needs a secure context; getRandomValues does not). */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An order's state as a coloured badge. */
export function stateBadge(state) {
  return h("span", { class: `pill state ${STATE_CLASS[state] || ""}`, "data-state": state },
    STATE_TEXT[state] || state);
}

/** The flight an order or offer is for: its first item is the fare ("CT100 LIS-BCN economy"). */
export function flightName(thing) {
  const fare = (thing.items || []).find((i) => i.kind === "Flight");
  return fare ? fare.name : thing.flight_id;
}

/** The items of an offer or order as a list: name, quantity, price, discount. */
export function itemList(thing) {
  return h("ul", { class: "items" }, thing.items.map((i) => h("li", {},
    h("span", {}, i.name, i.quantity > 1 ? ` × ${i.quantity}` : ""),
    h("span", { class: "num" }, money(i.total_cents, thing.currency),
      i.discount_percent ? h("span", { class: "ok" }, ` (−${i.discount_percent}%)`) : ""))));
}

/** An order's items, and a line for what its total holds beyond them (taxes and the booking fee; after a change,
 * its penalties and taxes too), so that the lines add up to the total. */
function withExtras(list, order) {
  const extra = order.total_cents - order.items.reduce((sum, i) => sum + i.total_cents, 0);
  if (extra) list.append(h("li", { class: "extras" },
    h("span", {}, order.version > 1 ? "Taxes, fees and change charges" : "Taxes and booking fee"),
    h("span", { class: "num" }, money(extra, order.currency))));
  return list;
}

/** The fare rules in words. */
export function conditionsText(c, currency) {
  const refund = !c.refundable ? "Not refundable"
    : c.refund_penalty_cents ? `Refundable, less a ${money(c.refund_penalty_cents, currency)} penalty`
      : "Fully refundable";
  const change = !c.changeable ? "no changes"
    : c.change_penalty_cents ? `changes ${money(c.change_penalty_cents, currency)}` : "free changes";
  return `${refund} · ${change}`;
}

/** Insert an SVG the API sent as text: parsed inertly, scripts and handlers removed, labelled as an image. */
function svgFrom(text, label) {
  const tpl = document.createElement("template");
  tpl.innerHTML = text;
  const svg = tpl.content.querySelector("svg");
  if (!svg) throw new Error("the barcode image is not an SVG");
  svg.querySelectorAll("script, foreignObject").forEach((el) => el.remove());
  for (const el of [svg, ...svg.querySelectorAll("*")])
    for (const a of [...el.attributes]) if (/^on/i.test(a.name) || /^\s*javascript:/i.test(a.value)) el.removeAttribute(a.name);
  const w = svg.getAttribute("width"), ht = svg.getAttribute("height");
  if (!svg.getAttribute("viewBox") && w && ht) svg.setAttribute("viewBox", `0 0 ${parseFloat(w)} ${parseFloat(ht)}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  return document.importNode(svg, true);
}

/**
 * A card form: number, expiry, CVC, name, the test cards, `error` (a role=alert element) and `button` (its submit
 * button). The field ids start with `prefix` (the first payment uses "pay"). Returns {form, card(), clear(), focus()}:
 * card() is the API's {number, exp_month, exp_year, cvc}.
 */
export function cardForm({ prefix, title, button, error, onsubmit, heading = "h2" }) {
  const id = (name) => `${prefix}-${name}`;
  const year = new Date().getFullYear();
  const number = h("input", { id: id("number"), name: "cardnumber", autocomplete: "cc-number", inputmode: "numeric",
                               required: true, minlength: 12, maxlength: 23, placeholder: "4242 4242 4242 4242",
                               "aria-describedby": id("cards") });
  const month = h("select", { id: id("month"), name: "exp-month", autocomplete: "cc-exp-month", required: true },
    Array.from({ length: 12 }, (_, i) => h("option", { value: i + 1 }, String(i + 1).padStart(2, "0"))));
  const yearSel = h("select", { id: id("year"), name: "exp-year", autocomplete: "cc-exp-year", required: true },
    Array.from({ length: 12 }, (_, i) => h("option", { value: year + i }, String(year + i))));
  yearSel.value = String(year + 3);
  const cvc = h("input", { id: id("cvc"), name: "cvc", autocomplete: "cc-csc", inputmode: "numeric", required: true,
                           pattern: "\\d{3,4}", maxlength: 4, size: 5, placeholder: "123" });
  const holder = h("input", { id: id("name"), name: "ccname", autocomplete: "cc-name", required: true,
                              placeholder: "As printed on the card" });
  const form = h("form", { class: "pay", onsubmit, "aria-label": title },
    h(heading, {}, title),
    h("label", { for: id("number") }, "Card number"), number,
    h("div", { class: "row" },
      h("div", {}, h("label", { for: id("month") }, "Expiry month"), month),
      h("div", {}, h("label", { for: id("year") }, "Expiry year"), yearSel),
      h("div", {}, h("label", { for: id("cvc") }, "CVC"), cvc)),
    h("label", { for: id("name") }, "Name on card"), holder,
    error,
    h("div", { class: "actions" }, button),
    h("p", { id: id("cards"), class: "muted small" },
      "Test cards: 4242 4242 4242 4242 is approved, 4000 0000 0000 0002 is declined, ",
      "4000 0000 0000 9995 has insufficient funds, 4000 0000 0000 0259 stays pending until the bank settles it."));
  return {
    form,
    card: () => ({ number: number.value.replace(/[\s-]/g, ""), exp_month: Number(month.value),
                   exp_year: Number(yearSel.value), cvc: cvc.value.trim() }),
    clear: () => { number.value = ""; cvc.value = ""; },
    focus: () => number.focus(),
  };
}

/**
 * Show order `orderId` in `root`. `back` is {href, label} for the way back (to the offers, to my orders).
 * Returns a cleanup function (timers and polling stop).
 */
export function renderOrder(root, orderId, { back = null } = {}) {
  useStyle("shop");
  useStyle("order-change");
  // barcodesShown: the codes drawn ("" none yet); a change issues new ones, drawn again.
  let order = null, polling = null, stopped = false, barcodesShown = "", quote = null;
  let changeRequest = null, chosen = null, prefilled = null, historyVersion = null, services = null;
  let pendingFrom = null;  // the version a change's pending payment started from
  const path = `/v1/orders/${encodeURIComponent(orderId)}`;

  const title = h("h1", {}, "Your order");
  const badge = h("span");
  const summary = h("div");
  const hold = h("p", { class: "hold" });
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const payError = h("p", { class: "error", role: "alert", hidden: true });

  // ---- the card form (PROPOSED) ----
  const payButton = h("button", { type: "submit" }, "Pay");
  const payCard = cardForm({ prefix: "pay", title: "Pay by card", button: payButton, error: payError, onsubmit: pay });
  const payForm = payCard.form;

  // ---- cancellation ----
  const quoteBox = h("div", { class: "quote", hidden: true });
  const cancelButton = h("button", { type: "button", class: "secondary", onclick: askQuote }, "Cancel order…");
  const cancelBox = h("div", { class: "cancel" }, cancelButton, quoteBox);

  const barcodes = h("div", { class: "barcodes" });
  const barcodeSection = h("section", { class: "card wide", hidden: true, "aria-labelledby": "barcodes-title" },
    h("h2", { id: "barcodes-title" }, "Your barcodes"),
    h("p", { class: "muted" }, "Show these at the airport: one per passenger and product."), barcodes);

  // ---- changes (PAID or FULFILLED, before departure): ask, compare the change offers, confirm; the history ----
  const changeError = h("p", { class: "error", role: "alert", hidden: true });
  const changeStatus = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const moveFlight = h("input", { id: "change-flight", type: "checkbox", name: "move" });
  const airportInput = (id) => h("input", { id, required: true, minlength: 3, maxlength: 3, size: 4, autocomplete: "off",
                                            pattern: "[A-Za-z]{3}", title: "A three-letter airport code, e.g. LIS" });
  const newOrigin = airportInput("change-origin"), newDestination = airportInput("change-destination");
  const newDate = h("input", { id: "change-date", name: "departure_date", type: "date", required: true,
                               min: new Date().toISOString().slice(0, 10) });
  const newCabin = h("select", { id: "change-cabin", name: "cabin" },
    h("option", { value: "economy" }, "Economy"), h("option", { value: "premium" }, "Premium"),
    h("option", { value: "business" }, "Business"));
  // Editing the flight's fields means moving to another flight.
  for (const el of [newOrigin, newDestination, newDate, newCabin])
    el.addEventListener("input", () => { moveFlight.checked = true; });
  const serviceList = h("div", { class: "services" }, h("span", { class: "muted small" }, "loading…"));
  const removeList = h("div", { class: "services" });
  const findButton = h("button", { type: "submit" }, "Find options");
  const askForm = h("form", { class: "change-ask", onsubmit: findOptions, "aria-label": "What to change" },
    h("fieldset", {}, h("legend", {}, "Flight"),
      h("div", { class: "check" }, moveFlight, h("label", { for: "change-flight" }, "Move to another flight")),
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "change-origin" }, "From"), newOrigin),
        h("div", {}, h("label", { for: "change-destination" }, "To"), newDestination),
        h("div", {}, h("label", { for: "change-date" }, "New date"), newDate),
        h("div", {}, h("label", { for: "change-cabin" }, "Cabin"), newCabin))),
    h("fieldset", {}, h("legend", {}, "Add services"), serviceList),
    h("fieldset", {}, h("legend", {}, "Remove services"), removeList),
    h("div", { class: "actions" }, findButton));
  const offersNote = h("p", { class: "muted small" });
  const offersList = h("div", { class: "grid-cards offers change-offers" });
  const offersBox = h("div", { class: "change-options", role: "region", "aria-labelledby": "change-options-title",
                               hidden: true },
    h("h3", { id: "change-options-title" }, "Change options"), offersNote, offersList);
  const changePayError = h("p", { class: "error", role: "alert", hidden: true });
  const changePayButton = h("button", { type: "submit" }, "Pay and change");
  const changeCard = cardForm({ prefix: "change-pay", title: "Pay for the change", heading: "h3",
                                button: changePayButton, error: changePayError, onsubmit: payChange });
  changeCard.form.hidden = true;
  // The section joins the page once the order can be changed, and its card form once money is owed: the labels
  // "Card number"... then name one field while the order is being paid for the first time.
  const changeSection = h("section", { class: "card wide change", "aria-labelledby": "change-title", hidden: true },
    h("h2", { id: "change-title" }, "Change this order"),
    h("p", { class: "muted small" }, "Move to another flight, add services or remove them. Each option is priced now and held ",
      "for a few minutes; your barcodes are reissued for what changes."),
    askForm, changeError, offersBox, changeStatus);

  const historyList = h("ol", { class: "history" });
  const historySection = h("section", { class: "card wide", "aria-labelledby": "history-title", hidden: true },
    h("h2", { id: "history-title" }, "History"),
    h("p", { class: "muted small" }, "Every version of this order, oldest first."), historyList);

  const main = h("section", { class: "card order", "aria-labelledby": "order-title" },
    back ? h("p", { class: "back" }, h("a", { href: back.href }, `← ${back.label}`)) : null,
    h("div", { class: "order-head" }, title, badge), summary, hold, status, error, cancelBox);
  const side = h("section", { class: "card side" }, payForm);
  title.id = "order-title";
  const layout = h("div", { class: "order-view wide" }, main, side, barcodeSection, historySection);
  root.append(layout);

  function drawSummary() {
    const o = order;
    summary.replaceChildren(
      h("p", { class: "flight" }, `Departs ${dateTime(o.departure_at)} · `,
        `${o.passengers} passenger${o.passengers > 1 ? "s" : ""} · ${o.cabin}`),
      withExtras(itemList(o), o),
      h("p", { class: "total" }, "Total ", h("b", { "data-testid": "order-total" }, money(o.total_cents, o.currency))),
      h("p", { class: "muted small" }, conditionsText(o.conditions, o.currency), h("br"), `Order ${o.id}`));
  }

  function draw() {
    const o = order;
    title.textContent = `Order for ${flightName(o)}`;
    badge.replaceChildren(stateBadge(o.state));
    drawSummary();
    payButton.textContent = `Pay ${money(o.total_cents, o.currency)}`;
    const holdOpen = o.state === "PROPOSED" && o.hold_expires_at > Date.now() / 1000;
    payForm.hidden = !holdOpen;
    tick();
    if (o.state === "PAYMENT_PENDING") {
      status.className = "status warn";
      status.textContent = "Payment pending: the bank has not answered yet. This page updates by itself when it settles.";
      startPolling();
    } else if (o.state === "PAID") {
      status.className = "status ok";
      status.textContent = "Paid: issuing your barcodes…";
      startPolling();
    } else if (o.state === "FULFILLED" || o.state === "ARCHIVED") {
      const card = o.payment ? ` with the card ending ${o.payment.card_last4}` : "";
      status.className = "status ok";
      status.textContent = `Paid${card}. Your booking is confirmed.`;
      stopPolling();
    } else if (o.state === "CANCELLED") {
      status.className = "status";
      status.textContent = `Cancelled. Refund: ${money(o.refund_cents || 0, o.currency)}.`;
      stopPolling();
    } else if (o.state === "EXPIRED") {
      status.className = "status bad";
      status.textContent = "The hold expired and the seats were released: search again.";
      stopPolling();
    } else {
      stopPolling();
    }
    const cancellable = ["PROPOSED", "PAID", "FULFILLED"].includes(o.state) && o.departure_at > Date.now() / 1000
      && !o.barcodes.some((b) => b.consumed_at);
    cancelBox.hidden = !cancellable;
    if (o.state !== "PROPOSED") payError.hidden = true;
    if (!cancellable) quoteBox.hidden = true;
    cancelButton.textContent = o.state === "PROPOSED" ? "Release this hold…" : "Cancel order…";
    side.hidden = payForm.hidden;
    (side.hidden ? main : side).append(cancelBox);  // while paying, releasing the hold comes after the card form
    layout.classList.toggle("paying", !side.hidden);
    if (o.barcodes.length && o.barcodes.map((b) => b.code).join() !== barcodesShown) drawBarcodes();
    drawChange();
    barcodeSection.hidden = !o.barcodes.length || o.state === "CANCELLED";
  }

  // The hold's and the quote's countdowns, each second.
  function tick() {
    if (!order) return;
    if (order.state === "PROPOSED") {
      const left = order.hold_expires_at - Date.now() / 1000;
      hold.hidden = false;
      if (left > 0) {
        hold.className = "hold warn";
        hold.textContent = `Seats held for you for ${countdown(order.hold_expires_at)}`;
      } else {
        hold.className = "hold bad";
        hold.textContent = "The hold has expired: search again.";
        if (!payForm.hidden) { payForm.hidden = true; refresh(); }
      }
    } else {
      hold.hidden = true;
    }
    tickChange();
    if (quote && !quoteBox.hidden) {
      const left = quote.expires_at - Date.now() / 1000;
      const t = quoteBox.querySelector(".quote-left");
      if (t) t.textContent = left > 0 ? `This quote is valid for ${countdown(quote.expires_at)}.`
        : "This quote has expired: ask for a new one.";
      const confirm = quoteBox.querySelector("button.danger");
      if (confirm) confirm.disabled = left <= 0;
      if (left <= 0) cancelButton.hidden = false;  // ask for a new quote
    }
  }
  const ticker = setInterval(tick, 1000);

  async function refresh() {
    try {
      order = await api("GET", path);
      draw();
    } catch (err) {
      showError(error, err);
    }
  }

  function startPolling() {
    if (polling || stopped) return;
    polling = setInterval(async () => {
      try {
        const next = await api("GET", path);
        const changed = next.state !== order.state;
        order = next;
        if (changed) {
          if (lastPaymentDeclined(next)) showError(payError, declinedText(next));
          draw();
        }
      } catch (err) { showError(error, err); }
    }, 2000);
  }
  function stopPolling() { if (polling) { clearInterval(polling); polling = null; } }

  async function pay(ev) {
    ev.preventDefault();
    error.hidden = true;
    payError.hidden = true;
    status.textContent = "";
    payButton.disabled = true;
    const was = payButton.textContent;
    payButton.textContent = "Paying…";
    try {
      // 200: paid and fulfilled; 202: pending at the gateway (the order says PAYMENT_PENDING); 402: declined.
      order = await api("POST", `${path}/pay`, { card: payCard.card() },
                        { headers: { "Idempotency-Key": idempotencyKey() } });
      payCard.clear();
      draw();
      if (order.state === "FULFILLED") barcodeSection.scrollIntoView({ block: "start" });
    } catch (err) {
      if (err.status === 402) {
        const reason = err.details && err.details.reason;
        showError(payError, declined(reason, "No money was taken; check the details or try another card."));
        payCard.clear();
        payCard.focus();
      } else {
        showError(payError, err);
      }
      await refresh();
    } finally {
      payButton.disabled = false;
      if (payButton.textContent === "Paying…") payButton.textContent = was;
    }
  }

  async function drawBarcodes() {
    const o = order;
    barcodesShown = o.barcodes.map((b) => b.code).join();
    barcodes.replaceChildren(...o.barcodes.map((b) => {
      const label = `${KIND_TEXT[b.kind] || b.kind}, passenger ${b.passenger}`;
      const fig = h("figure", { class: "barcode", "data-code": b.code },
        h("div", { class: "qr" }, h("span", { class: "muted" }, "loading…")),
        h("figcaption", {}, h("b", {}, label), h("br"), h("code", {}, b.code),
          b.consumed_at ? h("span", { class: "muted" }, ` · used ${dateTime(b.consumed_at)}`) : ""));
      api("GET", `${path}/barcodes/${encodeURIComponent(b.code)}.svg`).then((text) => {
        fig.querySelector(".qr").replaceChildren(svgFrom(text, `QR code: ${label}, ${b.code}`));
      }).catch((err) => {
        fig.querySelector(".qr").replaceChildren(h("span", { class: "error", role: "alert" },
          `The QR code could not be loaded: ${err.message}`));
      });
      return fig;
    }));
  }

  async function askQuote() {
    error.hidden = true;
    cancelButton.disabled = true;
    try {
      quote = await api("POST", `${path}/cancellations`);
      const total = money(order.total_cents, order.currency);
      const refund = money(quote.refund_cents, quote.currency);
      const paid = ["PAID", "FULFILLED"].includes(order.state);
      quoteBox.replaceChildren(
        h("p", { class: "refund" }, paid
          ? [`Cancelling refunds `, h("b", { "data-testid": "refund" }, refund), ` of the ${total} paid.`]
          : [`Nothing was paid, so the refund is `, h("b", { "data-testid": "refund" }, refund),
             `; the seats go back on sale.`]),
        h("p", { class: "muted small quote-left" }),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "danger", onclick: confirmCancel },
            paid ? `Confirm cancellation (refund ${refund})` : "Confirm cancellation"),
          h("button", { type: "button", class: "secondary", onclick: () => {
            quoteBox.hidden = true; quote = null; cancelButton.hidden = false; cancelButton.focus();
          } }, "Keep my order")));
      quoteBox.hidden = false;
      cancelButton.hidden = true;
      tick();
      quoteBox.querySelector("button.danger").focus();
    } catch (err) {
      showError(error, err);
    } finally {
      cancelButton.disabled = false;
    }
  }

  async function confirmCancel(ev) {
    ev.target.disabled = true;
    try {
      order = await api("POST", `${path}/cancellations/${encodeURIComponent(quote.id)}/confirm`);
      quote = null;
      quoteBox.hidden = true;
      draw();
    } catch (err) {
      ev.target.disabled = false;
      showError(error, err);
    }
  }

  // ---- changes ----
  /** The order can be changed: paid, not departed, nothing used. */
  function changeable(o) {
    return ["PAID", "FULFILLED"].includes(o.state) && o.departure_at > Date.now() / 1000
      && !o.barcodes.some((b) => b.consumed_at);
  }

  function drawChange() {
    const o = order;
    const can = changeable(o);
    // A change being paid for stays in view (its status) until the payment settles.
    changeSection.hidden = !can && !(o.state === "PAYMENT_PENDING" && o.pending_change);
    askForm.hidden = !can;
    if (!changeSection.hidden && !changeSection.isConnected) layout.insertBefore(changeSection, barcodeSection);
    if (!can) { offersBox.hidden = true; changeCard.form.hidden = true; chosen = null; }
    if (pendingFrom !== null && o.state !== "PAYMENT_PENDING") {  // the bank answered the change's payment
      const done = o.version > pendingFrom;
      changeStatus.className = `status ${done ? "ok" : "bad"}`;
      changeStatus.textContent = done
        ? `Changed: ${flightName(o)}, departs ${dateTime(o.departure_at)}. Your new barcodes are below.`
        : "The change's payment was declined: no money was taken and your order is unchanged.";
      pendingFrom = null;
    }
    if (can && prefilled !== o.version) {  // each version of the order: the fields start from its flight
      prefilled = o.version;
      const route = (flightName(o) || "").match(/\b([A-Z]{3})-([A-Z]{3})\b/);
      newOrigin.value = route ? route[1] : "";
      newDestination.value = route ? route[2] : "";
      const day = o.flight_id.match(/(\d{4}-\d{2}-\d{2})$/);
      newDate.value = day ? day[1] : new Date(o.departure_at * 1000).toISOString().slice(0, 10);
      newCabin.value = o.cabin;
      moveFlight.checked = false;
      drawServices();
    }
    if (!["PROPOSED", "EXPIRED"].includes(o.state) && historyVersion !== o.version) loadHistory();
  }

  // The services to add: the products on sale (GET /v1/products); the server prices each option again and refuses
  // one no longer on sale.
  async function drawServices() {
    if (!services) {
      services = (await api("GET", "/v1/products")).items
        .map((p) => ({ id: p.id, kind: p.kind, name: p.name, price_cents: p.price_cents, currency: p.currency }));
    }
    const have = new Set(order.items.map((i) => i.product_id));
    serviceList.replaceChildren(...services.map((p) => {
      const id = `change-svc-${p.id}`;
      const on = have.has(p.id);
      const price = p.price_cents ? ` · ${money(p.price_cents, p.currency)} per passenger` : "";
      return h("div", { class: `check${on ? " unavailable" : ""}` },
        h("input", { id, type: "checkbox", name: "add_services", value: p.id, disabled: on }),
        h("label", { for: id }, p.name, h("span", { class: "muted small" }, on ? " · already on your order" : price)));
    }));
    // The services to remove: the order's own, worth what was paid (refunded when the fare is refundable).
    const mine = order.items.filter((i) => i.kind !== "Flight");
    removeList.replaceChildren(...(mine.length ? mine.map((i) => {
      const id = `change-remove-${i.product_id}`;
      return h("div", { class: "check" },
        h("input", { id, type: "checkbox", name: "remove_services", value: i.product_id }),
        h("label", { for: id }, h("span", { class: "sr-only" }, "Remove "), i.name,
          h("span", { class: "muted small" }, ` · paid ${money(i.total_cents, order.currency)}`)));
    }) : [h("span", { class: "muted small" }, "No services on this order yet.")]));
  }

  async function findOptions(ev) {
    ev.preventDefault();
    changeError.hidden = true;
    changeStatus.textContent = "";
    const add = [...serviceList.querySelectorAll("input:checked")].map((i) => i.value);
    const remove = [...removeList.querySelectorAll("input:checked")].map((i) => i.value);
    const body = {};
    if (moveFlight.checked) {
      body.slices = [{ remove: [order.flight_id],
                       add: { origin: newOrigin.value.trim().toUpperCase(), destination: newDestination.value.trim().toUpperCase(),
                              departure_date: newDate.value, cabin: newCabin.value } }];
    }
    if (add.length) body.add_services = add;
    if (remove.length) body.remove_services = remove;
    if (!body.slices && !add.length && !remove.length) {
      showError(changeError, "Nothing to change yet: tick “Move to another flight”, a service to add or one to remove.");
      return;
    }
    findButton.disabled = true;
    findButton.textContent = "Finding options…";
    try {
      changeRequest = await api("POST", `${path}/change-requests`, body);
      showChangeOffers();
      offersBox.scrollIntoView({ block: "nearest" });
    } catch (err) {
      offersBox.hidden = true;
      showError(changeError, err);
    } finally {
      findButton.disabled = false;
      findButton.textContent = "Find options";
    }
  }

  function showChangeOffers() {
    const list = changeRequest.change_offers;
    chosen = null;
    changeCard.form.hidden = true;
    offersNote.textContent = `${list.length} option${list.length > 1 ? "s" : ""}, cheapest first. `
      + "Each price is held until its countdown ends.";
    offersList.replaceChildren(...list.map(changeOfferCard));
    offersBox.hidden = false;
    tickChange();
  }

  function changeOfferCard(c) {
    const cur = c.currency;
    const signed = (cents) => `${cents > 0 ? "+" : cents < 0 ? "−" : ""}${money(Math.abs(cents), cur)}`;
    const moves = c.added.some((i) => i.kind === "Flight");  // another flight or cabin
    const lines = [["Fare difference", c.fare_difference_cents, moves], ["Services", c.services_cents, c.services_cents],
                   ["Change penalty", c.penalty_cents, moves || c.penalty_cents], ["Taxes", c.taxes_cents, true]];
    const pay = c.total_cents > 0, refund = c.total_cents < 0;
    const label = pay ? `Pay ${money(c.total_cents, cur)}…` : refund ? `Confirm (refund ${money(-c.total_cents, cur)})`
      : "Confirm (no charge)";
    const button = h("button", { type: "button", class: "accept",
                                 "aria-label": `${pay ? "Choose" : "Confirm"} ${flightName(c)} on ${dateTime(c.departure_at)}` },
      label);
    button.dataset.label = label;
    const cardError = h("p", { class: "error", role: "alert", hidden: true });
    const card = h("article", { class: "offer change-offer", "data-change-offer": c.id,
                                "aria-label": `${flightName(c)}, departs ${dateTime(c.departure_at)}` },
      h("header", {}, h("h4", {}, flightName(c))),
      h("p", { class: "flight" }, `Departs ${dateTime(c.departure_at)}`),
      h("ul", { class: "changes", "aria-label": "What changes" },
        c.removed.map((i) => h("li", { class: "removed" }, h("span", { "aria-hidden": "true" }, "− "),
          h("span", { class: "sr-only" }, "Removed: "), i.name, i.quantity > 1 ? ` × ${i.quantity}` : "")),
        c.added.map((i) => h("li", { class: "added" }, h("span", { "aria-hidden": "true" }, "+ "),
          h("span", { class: "sr-only" }, "Added: "), i.name, i.quantity > 1 ? ` × ${i.quantity}` : ""))),
      h("dl", { class: "amounts" },
        lines.filter(([, , show]) => show).flatMap(([name, cents]) => [h("dt", {}, name), h("dd", {}, signed(cents))]),
        // A non-refundable fare keeps a negative difference: it adds back, so the lines sum to the total.
        c.forfeited_cents ? [h("dt", {}, "Not refunded (fare rules)"), h("dd", {}, signed(c.forfeited_cents))] : null),
      h("p", { class: `price ${refund ? "ok" : ""}`, "data-testid": "change-total" },
        pay ? `To pay ${money(c.total_cents, cur)}` : refund ? `Refund ${money(-c.total_cents, cur)}` : "No charge"),
      h("p", { class: "expires muted small", "data-expires": c.expires_at }),
      cardError, h("div", { class: "actions" }, button));
    button.addEventListener("click", () => {
      if (!pay) { confirmChange(c, null, button, cardError); return; }
      chosen = { offer: c, button, cardError };
      for (const el of offersList.querySelectorAll(".change-offer")) el.classList.toggle("chosen", el === card);
      changePayError.hidden = true;
      changePayButton.textContent = `Pay ${money(c.total_cents, cur)} and change`;
      if (!changeCard.form.isConnected) changeSection.insertBefore(changeCard.form, changeStatus);
      changeCard.form.hidden = false;
      changeCard.form.scrollIntoView({ block: "nearest" });
      changeCard.focus();
    });
    return card;
  }

  function payChange(ev) {
    ev.preventDefault();
    if (chosen) confirmChange(chosen.offer, changeCard.card(), changePayButton, changePayError);
  }

  /** Confirm change offer `c` (with `card` when money is owed); a refusal shows in `errorBox`. */
  async function confirmChange(c, card, button, errorBox) {
    changeError.hidden = true;
    errorBox.hidden = true;
    changeStatus.textContent = "";
    button.disabled = true;
    const was = button.textContent;
    button.textContent = "Confirming…";
    try {
      // 200: changed; 202: its payment pending at the gateway (polled until it settles); 402: declined.
      order = await api("POST", `${path}/change-offers/${encodeURIComponent(c.id)}/confirm`,
                        card ? { card } : undefined, { headers: { "Idempotency-Key": idempotencyKey() } });
      changeCard.clear();
      changeRequest = null; chosen = null;
      offersBox.hidden = true;
      changeCard.form.hidden = true;
      for (const el of serviceList.querySelectorAll("input:checked")) el.checked = false;
      const cur = c.currency;
      if (order.state === "PAYMENT_PENDING") {
        pendingFrom = order.version;
        changeStatus.className = "status warn";
        changeStatus.textContent = `Payment of ${money(c.total_cents, cur)} pending: the change is made when the bank `
          + "answers. This page updates by itself.";
      } else {
        changeStatus.className = "status ok";
        const money_ = c.total_cents > 0 ? `${money(c.total_cents, cur)} paid`
          : c.total_cents < 0 ? `${money(-c.total_cents, cur)} refunded to your card` : "no charge";
        changeStatus.textContent = `Changed: ${flightName(order)}, departs ${dateTime(order.departure_at)} (${money_}). `
          + "Your new barcodes are below.";
      }
      draw();
    } catch (err) {
      if (err.status === 402) {
        const reason = err.details && err.details.reason;
        showError(errorBox, declined(reason, "No money was taken and your order is unchanged; try another card."));
        changeCard.clear();
        changeCard.focus();
      } else {
        showError(errorBox, err);
        if (err.status === 409 || err.status === 410) {  // used, expired, or the order changed: ask again
          const el = offersList.querySelector(`[data-change-offer="${CSS.escape(c.id)}"]`);
          if (el) el.dataset.refused = "true";
        }
      }
      await refresh();
    } finally {
      button.disabled = false;
      if (button.textContent === "Confirming…") button.textContent = was;
      tickChange();
    }
  }

  // Each change offer's countdown; an expired or refused one cannot be confirmed.
  function tickChange() {
    for (const el of offersList.querySelectorAll(".expires")) {
      const card = el.closest(".change-offer");
      const expired = Number(el.dataset.expires) <= Date.now() / 1000;
      const refused = card.dataset.refused === "true";
      card.classList.toggle("expired", expired || refused);
      el.className = `expires small ${expired ? "bad" : "muted"}`;
      el.textContent = expired ? "This option has expired: find options again."
        : refused ? "This option can no longer be confirmed: find options again."
          : `Price held for ${countdown(Number(el.dataset.expires))}`;
      const button = card.querySelector("button.accept");
      if (expired || refused) {
        button.disabled = true;
        button.textContent = expired ? "Expired" : "Unavailable";
        if (chosen && chosen.button === button && !changePayButton.disabled) changePayButton.disabled = true;
      }
    }
    if (!chosen) changePayButton.disabled = false;
  }

  async function loadHistory() {
    historyVersion = order.version;
    try {
      const { versions } = await api("GET", `${path}/history`);
      historyList.replaceChildren(...versions.map((v, i) => {
        const o = v.order, prev = versions[i - 1];
        const diff = prev ? o.total_cents - prev.order.total_cents : 0;
        const now = i === versions.length - 1;
        return h("li", { class: now ? "current" : "", "data-version": v.version },
          h("div", { class: "history-head" },
            h("b", {}, `Version ${v.version}`), now ? h("span", { class: "pill" }, "now") : null,
            h("span", { class: "muted small" }, v.change_offer_id ? `changed ${dateTime(v.at)}` : `booked ${dateTime(v.at)}`)),
          h("div", {}, `${flightName(o)}, departs ${dateTime(o.departure_at)}`),
          h("div", { class: "muted small" },
            `${o.items.filter((it) => it.kind !== "Flight").map((it) => it.name).join(", ") || "No services"} · `,
            `total ${money(o.total_cents, o.currency)}`,
            diff ? ` (${diff > 0 ? "+" : "−"}${money(Math.abs(diff), o.currency)})` : ""));
      }));
    } catch (err) {
      historyVersion = null;
      historyList.replaceChildren(h("li", { class: "error", role: "alert" },
        `The history could not be loaded: ${err.message}`));
    }
    historySection.hidden = false;
  }

  refresh().then(() => {  // opened after its payment was declined (a pending one the provider turned down, say)
    if (order && lastPaymentDeclined(order)) showError(payError, declinedText(order));
  });
  return () => { stopped = true; clearInterval(ticker); stopPolling(); };
}
