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
};
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
 * Show order `orderId` in `root`. `back` is {href, label} for the way back (to the offers, to my orders).
 * Returns a cleanup function (timers and polling stop).
 */
export function renderOrder(root, orderId, { back = null } = {}) {
  useStyle("shop");
  let order = null, polling = null, stopped = false, barcodesShown = false, quote = null;
  const path = `/v1/orders/${encodeURIComponent(orderId)}`;

  const title = h("h1", {}, "Your order");
  const badge = h("span");
  const summary = h("div");
  const hold = h("p", { class: "hold" });
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const payError = h("p", { class: "error", role: "alert", hidden: true });

  // ---- the card form (PROPOSED) ----
  const year = new Date().getFullYear();
  const number = h("input", { id: "pay-number", name: "cardnumber", autocomplete: "cc-number", inputmode: "numeric",
                               required: true, minlength: 12, maxlength: 23, placeholder: "4242 4242 4242 4242",
                               "aria-describedby": "pay-cards" });
  const month = h("select", { id: "pay-month", name: "exp-month", autocomplete: "cc-exp-month", required: true },
    Array.from({ length: 12 }, (_, i) => h("option", { value: i + 1 }, String(i + 1).padStart(2, "0"))));
  const yearSel = h("select", { id: "pay-year", name: "exp-year", autocomplete: "cc-exp-year", required: true },
    Array.from({ length: 12 }, (_, i) => h("option", { value: year + i }, String(year + i))));
  yearSel.value = String(year + 3);
  const cvc = h("input", { id: "pay-cvc", name: "cvc", autocomplete: "cc-csc", inputmode: "numeric", required: true,
                           pattern: "\\d{3,4}", maxlength: 4, size: 5, placeholder: "123" });
  const holder = h("input", { id: "pay-name", name: "ccname", autocomplete: "cc-name", required: true,
                              placeholder: "As printed on the card" });
  const payButton = h("button", { type: "submit" }, "Pay");
  const payForm = h("form", { class: "pay", onsubmit: pay, "aria-label": "Pay by card" },
    h("h2", {}, "Pay by card"),
    h("label", { for: "pay-number" }, "Card number"), number,
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "pay-month" }, "Expiry month"), month),
      h("div", {}, h("label", { for: "pay-year" }, "Expiry year"), yearSel),
      h("div", {}, h("label", { for: "pay-cvc" }, "CVC"), cvc)),
    h("label", { for: "pay-name" }, "Name on card"), holder,
    payError,
    h("div", { class: "actions" }, payButton),
    h("p", { id: "pay-cards", class: "muted small" },
      "Test cards: 4242 4242 4242 4242 is approved, 4000 0000 0000 0002 is declined, ",
      "4000 0000 0000 9995 has insufficient funds, 4000 0000 0000 0259 stays pending until the bank settles it."));

  // ---- cancellation ----
  const quoteBox = h("div", { class: "quote", hidden: true });
  const cancelButton = h("button", { type: "button", class: "secondary", onclick: askQuote }, "Cancel order…");
  const cancelBox = h("div", { class: "cancel" }, cancelButton, quoteBox);

  const barcodes = h("div", { class: "barcodes" });
  const barcodeSection = h("section", { class: "card wide", hidden: true, "aria-labelledby": "barcodes-title" },
    h("h2", { id: "barcodes-title" }, "Your barcodes"),
    h("p", { class: "muted" }, "Show these at the airport: one per passenger and product."), barcodes);

  const main = h("section", { class: "card order", "aria-labelledby": "order-title" },
    back ? h("p", { class: "back" }, h("a", { href: back.href }, `← ${back.label}`)) : null,
    h("div", { class: "order-head" }, title, badge), summary, hold, status, error, cancelBox);
  const side = h("section", { class: "card side" }, payForm);
  title.id = "order-title";
  const layout = h("div", { class: "order-view wide" }, main, side, barcodeSection);
  root.append(layout);

  function drawSummary() {
    const o = order;
    summary.replaceChildren(
      h("p", { class: "flight" }, `Departs ${dateTime(o.departure_at)} · `,
        `${o.passengers} passenger${o.passengers > 1 ? "s" : ""} · ${o.cabin}`),
      itemList(o),
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
    if (!barcodesShown && o.barcodes.length) drawBarcodes();
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
          if (next.state === "PROPOSED" && next.payment && next.payment.status === "declined") {
            showError(payError, `Payment declined: ${DECLINE_TEXT[next.payment.reason] || next.payment.reason || "declined"}. `
              + "No money was taken; try another card.");
          }
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
      order = await api("POST", `${path}/pay`, {
        card: { number: number.value.replace(/[\s-]/g, ""), exp_month: Number(month.value),
                exp_year: Number(yearSel.value), cvc: cvc.value.trim() },
      }, { headers: { "Idempotency-Key": idempotencyKey() } });
      number.value = ""; cvc.value = "";
      draw();
      if (order.state === "FULFILLED") barcodeSection.scrollIntoView({ block: "start" });
    } catch (err) {
      if (err.status === 402) {
        const reason = err.details && err.details.reason;
        showError(payError, `Payment declined: ${DECLINE_TEXT[reason] || reason || "declined"}. `
          + "No money was taken; check the details or try another card.");
        number.value = ""; cvc.value = "";
        number.focus();
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
    barcodesShown = true;
    const o = order;
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

  refresh();
  return () => { stopped = true; clearInterval(ticker); stopPolling(); };
}
