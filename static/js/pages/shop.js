// The shop: search a route and day, compare the priced offers (each with its own expiry), accept one into a held
// order, pay by card, get the barcodes. Guests get a guest token on their first search; #/shop?order=<id> shows an
// order (order-view.js, shared with My account).
import { api, ensureGuest, h, money, session, showError, useStyle } from "../api.js";
import { conditionsText, countdown, dateTime, flightName, idempotencyKey, itemList, renderOrder } from "./order-view.js";

// Airport names for the pick lists; the routes themselves come from GET /v1/routes.
const AIRPORTS = {
  LIS: "Lisbon", OPO: "Porto", FAO: "Faro", FNC: "Funchal (Madeira)", PDL: "Ponta Delgada (Azores)",
  BCN: "Barcelona", LHR: "London Heathrow", CDG: "Paris Charles de Gaulle", AMS: "Amsterdam", MAD: "Madrid",
  DUB: "Dublin",
};

/** Origin -> the destinations flown from it, from the catalogue. */
async function destinations() {
  const found = {};
  for (const { origin, destination } of (await api("GET", "/v1/routes")).items)
    (found[origin] ||= []).push(destination);
  return found;
}
const BUNDLES = {
  flight_only: "Flight only", comfort: "Comfort", premium: "Premium", premium_lounge: "Premium lounge",
  corporate_flex: "Corporate flex", group_bags: "Group bags",
};
const SAVED = "contrail.shop.search";

const airportLabel = (code) => `${AIRPORTS[code] || code} (${code})`;
const utcDay = (ms) => new Date(ms).toISOString().slice(0, 10);

function saved() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SAVED) || "null");
    const me = session();
    return s && me && s.subject === me.subject ? s : null;
  } catch { return null; }
}

export async function render(root, { params, navigate }) {
  useStyle("shop");
  const orderId = params.get("order");
  if (orderId) {
    const me = session();
    const back = me && me.role === "customer" ? { href: "#/account", label: "My orders" }
      : { href: "#/shop", label: "Back to the offers" };
    return renderOrder(root, orderId, { back });
  }

  const last = saved();
  const q = last ? last.query : {};
  let DESTINATIONS = {};
  try {
    DESTINATIONS = await destinations();
  } catch (err) {
    root.append(h("p", { class: "error", role: "alert" }, `The routes could not be loaded: ${err.message}`));
  }
  const origins = Object.keys(DESTINATIONS).sort((a, b) => airportLabel(a).localeCompare(airportLabel(b)));
  const origin = h("select", { id: "shop-origin", name: "origin", required: true },
    origins.map((c) => h("option", { value: c }, airportLabel(c))));
  const destination = h("select", { id: "shop-destination", name: "destination", required: true });
  const today = utcDay(Date.now());
  const date = h("input", { id: "shop-date", name: "date", type: "date", required: true, min: today,
                            value: q.departure_date && q.departure_date >= today ? q.departure_date
                              : utcDay(Date.now() + 86_400_000) });
  const passengers = h("input", { id: "shop-passengers", name: "passengers", type: "number", min: 1, max: 9,
                                  required: true, value: q.passengers || 1, inputmode: "numeric" });
  const cabin = h("select", { id: "shop-cabin", name: "cabin" },
    h("option", { value: "economy" }, "Economy"), h("option", { value: "premium" }, "Premium"),
    h("option", { value: "business" }, "Business"));
  origin.value = q.origin || "LIS";
  cabin.value = q.cabin || "economy";
  const fillDestinations = (keep) => {
    const list = (DESTINATIONS[origin.value] || []).slice().sort((a, b) => airportLabel(a).localeCompare(airportLabel(b)));
    destination.replaceChildren(...list.map((c) => h("option", { value: c }, airportLabel(c))));
    destination.value = list.includes(keep) ? keep : list.includes("BCN") ? "BCN" : list[0];
  };
  // A link from a message (`#/shop?destination=BCN`) picks the destination, from an origin that flies there.
  const wanted = params.get("destination");
  if (wanted && !(DESTINATIONS[origin.value] || []).includes(wanted)) {
    const from = Object.keys(DESTINATIONS).find((o) => DESTINATIONS[o].includes(wanted));
    if (from) origin.value = from;
  }
  fillDestinations(wanted || q.destination);

  const flights = h("p", { class: "muted small flights", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const searchButton = h("button", { type: "submit" }, "Search offers");
  const me = session();
  const form = h("form", { class: "card wide search", onsubmit: search, "aria-labelledby": "shop-title" },
    h("h1", { id: "shop-title" }, "Find a flight"),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "shop-origin" }, "From"), origin),
      h("div", {}, h("label", { for: "shop-destination" }, "To"), destination),
      h("div", {}, h("label", { for: "shop-date" }, "Date"), date),
      h("div", {}, h("label", { for: "shop-passengers" }, "Passengers"), passengers),
      h("div", {}, h("label", { for: "shop-cabin" }, "Cabin"), cabin),
      h("div", {}, searchButton)),
    flights, error,
    !me || me.role === "guest" ? h("p", { class: "muted small" }, "Shopping as a guest. ",
      h("a", { href: "#/signin" }, "Sign in"), " to earn stars on your booking.") : null);

  const results = h("div", { class: "grid-cards offers" });
  const resultsTitle = h("h2", { id: "offers-title" }, "Offers");
  const resultsNote = h("p", { class: "muted", role: "status" });
  const resultsSection = h("section", { class: "card wide", hidden: true, "aria-labelledby": "offers-title" },
    resultsTitle, resultsNote, results);
  root.append(form, resultsSection);

  // ---- the day's flights on the chosen route (public, no token) ----
  let seq = 0;
  async function preview() {
    const n = ++seq;
    const route = `${origin.value} → ${destination.value}`;
    if (!date.value) { flights.textContent = ""; return; }
    try {
      const qs = new URLSearchParams({ origin: origin.value, destination: destination.value, date: date.value });
      const body = await api("GET", `/v1/flights?${qs}`);
      if (n !== seq) return;
      const scheduled = body.items.filter((f) => f.status === "scheduled");
      flights.replaceChildren(scheduled.length
        ? `${route} on ${date.value}: ` + scheduled.map((f) =>
          `${f.number} at ${new Date(f.departure_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`
          + ` (${f.seats_left[cabin.value] ?? 0} ${cabin.value} seats left)`).join(" · ")
        : `No flights ${route} on ${date.value}.`);
    } catch (err) {
      if (n === seq) flights.textContent = `Flights could not be listed: ${err.message}`;
    }
  }
  origin.addEventListener("change", () => { fillDestinations(destination.value); preview(); });
  for (const el of [destination, date, cabin]) el.addEventListener("change", preview);
  preview();

  // ---- search ----
  async function search(ev) {
    ev.preventDefault();
    error.hidden = true;
    searchButton.disabled = true;
    searchButton.textContent = "Searching…";
    const query = { origin: origin.value, destination: destination.value, departure_date: date.value,
                    passengers: Number(passengers.value), cabin: cabin.value };
    try {
      const who = await ensureGuest();
      const body = await api("POST", "/v1/offers/search", query);
      sessionStorage.setItem(SAVED, JSON.stringify({ subject: who.subject, query, offers: body.offers }));
      showOffers(query, body.offers);
    } catch (err) {
      showError(error, err);
    } finally {
      searchButton.disabled = false;
      searchButton.textContent = "Search offers";
    }
  }

  function showOffers(query, offers) {
    resultsSection.hidden = false;
    const route = `${airportLabel(query.origin)} → ${airportLabel(query.destination)}`;
    resultsTitle.textContent = `Offers: ${route}`;
    const party = `${query.passengers} passenger${query.passengers > 1 ? "s" : ""}, ${query.cabin}`;
    resultsNote.textContent = offers.length
      ? `${offers.length} offers for ${query.departure_date}, ${party}. Prices are held until each offer expires.`
      : `No flight has room for ${party} on ${query.departure_date}. Try another day or cabin.`;
    results.replaceChildren(...offers.map(offerCard));
    tick();
  }

  function offerCard(o) {
    const name = BUNDLES[o.bundle] || o.bundle;
    const status = h("p", { class: "expires", "data-expires": o.expires_at });
    const choose = h("button", { type: "button", class: "accept",
                                 "aria-label": `Choose ${name} on ${flightName(o)} for ${money(o.total_cents, o.currency)}` },
      "Choose");
    const cardError = h("p", { class: "error", role: "alert", hidden: true });
    const card = h("article", { class: "offer", "data-offer": o.id, "aria-label": `${name}, ${flightName(o)}` },
      h("header", {}, h("h3", {}, name), o.discount_percent >= 1
        ? h("span", { class: "pill ok" }, `save ${Math.round(o.discount_percent)}%`) : null),
      h("p", { class: "flight" }, h("b", {}, flightName(o)), h("br"), `Departs ${dateTime(o.departure_at)}`),
      h("p", { class: "price" }, money(o.total_cents, o.currency),
        h("span", { class: "muted small" }, o.passengers > 1 ? ` for ${o.passengers} passengers` : " total")),
      itemList(o),
      h("p", { class: "muted small" }, `Includes taxes ${money(o.taxes_cents, o.currency)} and booking fee `,
        money(o.booking_fee_cents, o.currency)),
      h("p", { class: "conditions small" }, conditionsText(o.conditions, o.currency)),
      status, cardError, h("div", { class: "actions" }, choose));
    choose.addEventListener("click", async () => {
      cardError.hidden = true;
      choose.disabled = true;
      choose.textContent = "Holding seats…";
      try {
        const order = await api("POST", `/v1/offers/${encodeURIComponent(o.id)}/accept`, undefined,
                                { headers: { "Idempotency-Key": idempotencyKey() } });
        navigate(`shop?order=${encodeURIComponent(order.id)}`);
      } catch (err) {
        if (err.status === 410) card.dataset.expired = "true";
        showError(cardError, err);
        choose.textContent = "Choose";
        choose.disabled = err.status === 410;
        tick();
      }
    });
    return card;
  }

  // Every offer's countdown, each second; an expired offer says so and cannot be chosen.
  function tick() {
    for (const el of results.querySelectorAll(".expires")) {
      const card = el.closest(".offer");
      const expired = card.dataset.expired === "true" || Number(el.dataset.expires) <= Date.now() / 1000;
      card.classList.toggle("expired", expired);
      el.className = `expires ${expired ? "bad" : "muted"}`;
      el.textContent = expired ? "This offer has expired: search again for current prices."
        : `Price held for ${countdown(Number(el.dataset.expires))}`;
      const button = card.querySelector("button.accept");
      if (expired) { button.disabled = true; button.textContent = "Expired"; }
    }
  }
  const ticker = setInterval(tick, 1000);

  if (last) showOffers(last.query, last.offers);
  return () => clearInterval(ticker);
}
