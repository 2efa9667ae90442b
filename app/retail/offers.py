"""Offer search: price the day's flights into 3 to 5 ranked bundles that expire.

Bundles per flight with room for the party:
- flight_only: the fare
- comfort: fare + Seat + Bag + Meal
- premium: fare + Seat + Bag + Meal + Lounge + FastTrack + Insurance
- rule bundles: premium segment → premium_lounge (Lounge 20% off + FastTrack);
  corporate segment → corporate_flex (Bag + Seat 50% off); 3+ passengers → group_bags (Bag 25% off)
Every ancillary is per passenger. A bundle is only offered if its limited products have room.
The best `retail.max_offers` by score are shown, and always the cheapest flight-only fare among the
flights with room for the party (bundles outscore it, so on a busy route it would otherwise be dropped).

Comfort and premium each have one optional ancillary, the last of their list (comfort's Meal, premium's
Insurance). For a signed-in customer with recommendations it is the recommended ancillary ranked highest
among the optional kinds the bundle does not already hold (CHOICES), when that product has room; everyone
else, and a customer whose recommendations rank the default first, gets the bundle as listed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from typing import Annotated, Literal, NamedTuple, Protocol

import msgspec

from app import ids
from app.config import RetailConfig
from app.errors import Conflict, Gone, InvalidInput, NotFound
from app.persist import atomically
from app.retail.catalog import CatalogService, product_resource, seat_resource
from app.retail.pricing import SEGMENTS, day_start, discounted, fare_cents, percent_of, time_multiplier
from app.retail.ranking import MARGIN_RATES, OfferSummary, Ranker, SearchContext, features
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from state.catalog import Flight, Product, ProductKind
from state.offers import Conditions, Item, Offer, SharedDraft
from state.ports import OfferStore, UnitOfWork
from state.text import whole

log = logging.getLogger("contrail.retail")

CABINS = ("economy", "premium", "business")
_DATE_PATTERN = whole(r"\d{4}-\d{2}-\d{2}")
_AIRPORT_PATTERN = whole(r"[A-Z]{3}")
_DATE = re.compile(_DATE_PATTERN)
_AIRPORT = re.compile(_AIRPORT_PATTERN)
Airport = Annotated[str, msgspec.Meta(pattern=_AIRPORT_PATTERN)]
Day = Annotated[str, msgspec.Meta(pattern=_DATE_PATTERN, extra_json_schema={"format": "date"})]

# bundle -> [(kind, discount percent)]; the Flight item comes first in every bundle.
BUNDLES: dict[str, list[tuple[ProductKind, int]]] = {
    "flight_only": [],
    "comfort": [("Seat", 0), ("Bag", 0), ("Meal", 0)],
    "premium": [("Seat", 0), ("Bag", 0), ("Meal", 0), ("Lounge", 0), ("FastTrack", 0), ("Insurance", 0)],
    "premium_lounge": [("Lounge", 20), ("FastTrack", 0)],
    "corporate_flex": [("Bag", 0), ("Seat", 50)],
    "group_bags": [("Bag", 25)],
}
# The bundles with an optional ancillary: bundle -> (the kind in BUNDLES whose place it takes, the kinds that
# may take it: the optional kinds the bundle does not hold otherwise). Seat and Bag are never swapped out.
OPTIONAL_KINDS: tuple[ProductKind, ...] = ("Meal", "Lounge", "FastTrack", "Insurance", "CarbonOffset")
CHOICES: dict[str, tuple[ProductKind, frozenset[str]]] = {
    name: (BUNDLES[name][-1][0],
           frozenset(k for k in OPTIONAL_KINDS if k not in {kind for kind, _ in BUNDLES[name][:-1]}))
    for name in ("comfort", "premium")
}
RECOMMENDED_N = 10  # recommended ancillaries read per search (a catalog has a handful)
# The recommended choice for each bundle that differs from BUNDLES: ((bundle, product id), ...), () for none.
Choice = tuple[tuple[str, str], ...]


class Recommendations(Protocol):
    """What offer search needs of the recommendation engine (app.reco.service.RecoService is one)."""

    async def recommend(self, user_id: str, strategy: str = "personalized", n: int = 10,
                        categories: list[str] | None = None, exclude: list[str] | None = None) -> dict: ...


class SearchQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A search, as the API takes it. Decoding checks its shape; OfferService.check the rest (a calendar
    date, the configured most passengers) for callers that build one directly."""
    origin: Airport
    destination: Airport
    departure_date: Day
    passengers: Annotated[int, msgspec.Meta(ge=1, le=50)] = 1
    cabin: Literal["economy", "premium", "business"] = "economy"
    segment: Literal["premium", "corporate", "economy", "leisure"] = "economy"


class Draft(NamedTuple):
    """A priced bundle before it is shown: the offer without its own id, owner or times, what the
    ranker sees of it, its margin (which ranks it and never leaves the airline), and its JSON as
    stored once for every offer made from it."""
    offer: Offer
    summary: OfferSummary
    margin_cents: int
    shared: SharedDraft


def rule_bundles(segment: str, passengers: int) -> list[str]:
    names = []
    if segment == "premium":
        names.append("premium_lounge")
    if segment == "corporate":
        names.append("corporate_flex")
    if passengers >= 3:
        names.append("group_bags")
    return names


def conditions_for(bundle: str, total_cents: int) -> Conditions:
    """Fare rules: the flight-only fare is not refundable; bundles refund less a penalty."""
    if bundle == "flight_only":
        return Conditions(refundable=False, refund_penalty_cents=total_cents, changeable=True,
                          change_penalty_cents=7_500)
    if bundle == "premium":
        return Conditions(refundable=True, refund_penalty_cents=percent_of(total_cents, 10), changeable=True,
                          change_penalty_cents=0)
    return Conditions(refundable=True, refund_penalty_cents=percent_of(total_cents, 25), changeable=True,
                      change_penalty_cents=2_500)


class OfferGenerated(msgspec.Struct, gc=False):
    """The event log's record of an offer shown: how it was ranked, and the features the ranker saw."""
    offer_id: str
    owner: str
    flight_id: str
    bundle: str
    total_cents: int
    rank: int
    probability: float
    margin_cents: int
    score: float
    features: list[float]
    at: float  # when it was shown: the acceptance model's time split and label delay (app/learning/acceptance.py)


class OfferService:
    def __init__(self, config: RetailConfig, catalog: CatalogService, offers: OfferStore, ranker: Ranker,
                 clock: Clock, log_events, metrics, uow: UnitOfWork,
                 recommendations: Recommendations | None = None) -> None:
        self._config = config
        self._recommendations = recommendations
        self._uow = uow
        self._catalog = catalog
        self._offers = offers
        self._ranker = ranker
        self._clock = clock
        self._log_events = log_events
        self._metrics = metrics
        self.drafts: LRU[tuple, tuple[tuple, list[Draft]]] = LRU(config.draft_cache_size, "offer_drafts")
        # Drafts in the cache that are stored, by id: the retention sweep marks one unstored before it
        # deletes the row, so the next search that shows it stores it again.
        self._stored: weakref.WeakValueDictionary[str, SharedDraft] = weakref.WeakValueDictionary()

    def check(self, q: SearchQuery) -> None:
        problems = []
        if not _AIRPORT.match(q.origin) or not _AIRPORT.match(q.destination):
            problems.append("origin and destination must be 3-letter IATA airport codes, upper case")
        if not _DATE.match(q.departure_date):
            problems.append("departure_date must be YYYY-MM-DD")
        elif day_start(q.departure_date) is None:
            problems.append("departure_date is not a calendar date")
        if not 1 <= q.passengers <= self._config.max_passengers:
            problems.append(f"passengers must be 1 to {self._config.max_passengers}")
        if q.cabin not in CABINS:
            problems.append(f"cabin must be one of {', '.join(CABINS)}")
        if q.segment not in SEGMENTS:
            problems.append(f"segment must be one of {', '.join(SEGMENTS)}")
        if problems:
            raise InvalidInput("; ".join(problems), {"problems": problems})

    async def search(self, q: SearchQuery, owner: str, *, is_guest: bool, session_id: str = ""
                     ) -> tuple[list[Offer], str]:
        """Price, rank and persist the offers for a search: the best `max_offers`, best first, always with
        the cheapest flight-only fare among the flights with room for the party (see shortlist); who
        ranked them (remote, model or rules)."""
        self.check(q)
        choice = await self.recommended_choice(owner) if not is_guest else ()
        now = self._clock.now()
        drafts: list[Draft] = []
        cheapest = -1  # the index of the cheapest flight-only draft among the flights with room
        for flight in self._catalog.flights_on(q.origin, q.destination, q.departure_date):
            if flight.departure_at > now and self._catalog.seats_left(flight, q.cabin) >= q.passengers:
                bundles = self._priced_bundles(flight, q, now, choice)
                # A flight's first draft is its flight-only fare, which needs nothing but the seats.
                if bundles and bundles[0].offer.bundle == "flight_only" and (
                        cheapest < 0 or bundles[0].offer.total_cents < drafts[cheapest].offer.total_cents):
                    cheapest = len(drafts)
                drafts += bundles
        if not drafts:
            return [], "none"
        ctx = SearchContext(owner, is_guest, session_id, q.origin, q.destination, q.departure_date, q.passengers,
                            q.cabin, q.segment)
        probabilities, source = await self._ranker.probabilities(ctx, [d.summary for d in drafts])
        scores = [p * d.margin_cents for p, d in zip(probabilities, drafts, strict=True)]
        shown = shortlist(drafts, scores, self._config.max_offers, cheapest)
        expires_at = now + self._config.offer_ttl_s
        chosen = [msgspec.structs.replace(drafts[i].offer, id=offer_id, owner=owner, created_at=now,
                                          expires_at=expires_at)
                  for i, offer_id in zip(shown, ids.ordered_hexes(len(shown), prefix="off_"), strict=True)]
        for offer in chosen:
            self._offers.remember(offer)
        shared = [drafts[i].shared for i in shown]

        def undo() -> None:
            for o in chosen:
                self._offers.forget(o.id)
        # New offers survive kill -9 and restarts; a power cut may lose the last moments' quotes
        # (unless configured otherwise), which spares every search an fsync.
        async with atomically(self._uow, undo, power_safe=self._config.offers_power_safe) as tx:
            tx.offers.insert(chosen, shared)
        for draft in shared:
            if not draft.written:
                draft.written = True
                self._stored[draft.id] = draft
        self._metrics.offers_generated.inc(len(chosen))
        # How each offer was ranked goes to the event log only: the acceptance model trains on the
        # features the ranker saw, and analysts see probability, margin and score. Shoppers never do.
        seen = features(ctx, [drafts[i].summary for i in shown], now)
        self._log_events("OfferGenerated", [
            OfferGenerated(offer.id, owner, offer.flight_id, offer.bundle, offer.total_cents, rank,
                           round(probabilities[i], 6), drafts[i].margin_cents, round(scores[i], 3), x, now)
            for rank, (offer, i, x) in enumerate(zip(chosen, shown, seen, strict=True), 1)])
        return chosen, source

    async def recommended_choice(self, owner: str) -> Choice:
        """The optional ancillaries a signed-in customer's recommendations choose ((bundle, product id) for each
        bundle whose choice is not its listed one); () for anyone else, a customer without history (whose list
        is only what is popular), and whenever the engine fails (search goes on with the listed bundles)."""
        kind, _, user_id = owner.partition(":")
        if kind != "user" or not user_id or self._recommendations is None:
            return ()
        try:
            answer = await self._recommendations.recommend(user_id, "personalized", RECOMMENDED_N, ["ancillary"])
        except Exception as exc:  # recommendations are an extra: a search never fails for them
            log.warning("no recommendations for offer search", extra={"error": repr(exc)[:200]})
            return ()
        if answer.get("model") == "popular":
            return ()
        return choose(self._catalog, [i["item_id"] for i in answer.get("items", ())])

    def _priced_bundles(self, flight: Flight, q: SearchQuery, now: float, choice: Choice = ()) -> list[Draft]:
        """The flight's draft offers for this party, re-priced only when its inventory, the catalog or the
        time-to-departure band has changed since they were last priced. Drafts with a recommended choice are
        cached per choice beside the listed ones (there are only as many choices as optional products), and
        share the listed drafts of every bundle the choice leaves alone."""
        key = (flight.id, q.cabin, q.passengers, q.segment, choice)
        stamp = (*self._catalog.pricing_stamp(flight.id), time_multiplier((flight.departure_at - now) / 3600))
        cached = self.drafts.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if choice:
            listed = {d.offer.bundle: d for d in self._priced_bundles(flight, q, now)}
            drafts = self._bundles(flight, q, now, dict(choice), listed)
        else:
            drafts = self._bundles(flight, q, now)
        self.drafts.put(key, (stamp, drafts))
        return drafts

    def _has_room(self, flight: Flight, product: Product, passengers: int) -> bool:
        return (product.capacity_per_flight is None
                or self._catalog.available(product_resource(flight.id, product.id)) >= passengers)

    def _bundles(self, flight: Flight, q: SearchQuery, now: float, chosen: dict[str, str] | None = None,
                 listed_drafts: dict[str, Draft] | None = None) -> list[Draft]:
        """The flight's bundles; with `chosen` ({bundle: product id}), those bundles' optional ancillary is that
        product where it has room, and every other bundle is its draft in `listed_drafts` (absent: not offered)."""
        cabin = flight.cabins[q.cabin]
        fare = fare_cents(cabin.base_fare_cents, self._catalog.utilisation(flight, q.cabin),
                          (flight.departure_at - now) / 3600, q.segment)
        flight_item = Item("Flight", flight.id, f"{flight.number} {flight.origin}-{flight.destination} {q.cabin}",
                           q.passengers, fare, 0, fare * q.passengers, seat_resource(flight.id, q.cabin))
        out = []
        for name in ["flight_only", "comfort", "premium", *rule_bundles(q.segment, q.passengers)]:
            if chosen is not None and listed_drafts is not None and name not in chosen:
                if name in listed_drafts:
                    out.append(listed_drafts[name])
                continue
            items, listed = [flight_item], flight_item.total_cents
            for kind, discount in BUNDLES[name]:
                product = self._catalog.product_of_kind(kind)
                if chosen and name in chosen and kind == CHOICES[name][0]:
                    alternative = self._catalog.find_product(chosen[name])
                    if alternative is not None and self._has_room(flight, alternative, q.passengers):
                        product = alternative  # else the listed product, as for everyone
                if product is None:
                    break
                resource = product_resource(flight.id, product.id) if product.capacity_per_flight is not None else None
                if resource is not None and self._catalog.available(resource) < q.passengers:
                    break
                unit = discounted(product.price_cents, discount)
                items.append(Item(product.kind, product.id, product.name, q.passengers, unit, discount,
                                  unit * q.passengers, resource))
                listed += product.price_cents * q.passengers
            else:
                out.append(self._priced(name, flight, q, items, listed))
        return out

    def _priced(self, bundle: str, flight: Flight, q: SearchQuery, items: list[Item], listed: int) -> Draft:
        """A draft offer: id, owner and times are given to the offers that are shown."""
        cfg = self._config
        subtotal = sum(i.total_cents for i in items)
        taxes = percent_of(subtotal, cfg.tax_percent)
        total = subtotal + taxes + cfg.booking_fee_cents
        margin = cfg.booking_fee_cents + sum(round(i.total_cents * MARGIN_RATES[i.kind]) for i in items)
        offer = Offer(id=ids.ordered_hex(prefix="drf_"), owner="", state="ACTIVE", created_at=0.0, expires_at=0.0,
                      flight_id=flight.id, cabin=q.cabin, passengers=q.passengers, segment=q.segment, bundle=bundle,
                      items=tuple(items), taxes_cents=taxes, booking_fee_cents=cfg.booking_fee_cents,
                      total_cents=total, currency=cfg.currency, conditions=conditions_for(bundle, total),
                      departure_at=flight.departure_at,
                      discount_percent=round(100 * (listed - subtotal) / listed, 3) if listed else 0.0)
        return Draft(offer, summary(offer), margin, SharedDraft(offer))

    async def purge_expired(self, chunk: int = 5_000, retention_share: float = 1.0) -> tuple[int, int]:
        """Delete up to `chunk` offers that expired more than retail.offer_retention_days ago (times
        `retention_share`: less to keep within a disk budget), then up to `chunk` drafts no offer is made from any
        more: (offers, drafts) deleted."""
        cutoff = self._clock.now() - self._config.offer_retention_days * 86_400 * retention_share
        offers = await self._offers.purge(cutoff, chunk)
        unused = await self._offers.unused_drafts(cutoff, chunk)
        if not unused:
            return offers, 0
        # No await from here until the delete is queued: a search that already queued offers made from
        # one of these drafts commits first (and the delete spares that draft); any later search stores
        # the draft again, because it is marked unstored.
        for draft_id in unused:
            draft = self._stored.pop(draft_id, None)
            if draft is not None:
                draft.written = False
        return offers, await self._offers.drop_drafts(unused)

    # ---- one offer ----
    async def visible(self, offer_id: str, owner: str | None) -> Offer:
        """The offer as its owner (or an admin, owner None) sees it; 404 for anyone else."""
        offer = self._offers.get(offer_id)
        if offer is None and len(offer_id) <= 64:
            offer = await self._offers.fetch(offer_id)
            if offer is not None and offer.state == "ACTIVE" and self._clock.now() < offer.expires_at:
                # It left memory for retail.max_offers_in_memory: held again, so it can be accepted.
                offer = self._offers.readmit(offer)
        if offer is None or (owner is not None and offer.owner != owner):
            raise NotFound(f"no offer {offer_id}")
        if offer.state == "ACTIVE" and self._clock.now() >= offer.expires_at:
            return msgspec.structs.replace(offer, state="EXPIRED")
        return offer

    async def acceptable(self, offer_id: str, owner: str | None) -> Offer:
        """The offer if it can be accepted now: 404 unknown, 410 expired, 409 accepted or cancelled."""
        offer = await self.visible(offer_id, owner)
        if offer.state == "EXPIRED":
            raise Gone(f"offer {offer_id} has expired; search again", {"state": "EXPIRED"})
        if offer.state != "ACTIVE" or self._offers.get(offer_id) is not offer:
            raise Conflict(f"offer {offer_id} is {offer.state}", {"state": offer.state})
        return offer

    async def cancel(self, offer_id: str, owner: str | None) -> Offer:
        offer = await self.acceptable(offer_id, owner)
        cancelled = msgspec.structs.replace(offer, state="CANCELLED")
        self._offers.remember(cancelled)
        async with atomically(self._uow, lambda: self._offers.remember(offer)) as tx:
            tx.offers.change_state(cancelled, "ACTIVE")
        return cancelled

    async def expire_due(self, chunk: int = 500) -> int:
        """Mark ACTIVE offers past their expiry EXPIRED, and let go of finished offers that have expired.

        A chunk per commit: at thousands of searches a second, thousands of offers fall due each
        second, and one pass over all of them would hold the loop for tens of milliseconds."""
        now = self._clock.now()
        total = 0
        while due := self._offers.due(now, chunk):
            expired = []
            for offer in due:
                self._offers.forget(offer.id)
                if offer.state == "ACTIVE":
                    expired.append(msgspec.structs.replace(offer, state="EXPIRED"))
            if expired:
                def undo(expired: list[Offer] = expired) -> None:  # bound now: the loop rebinds `expired`
                    for o in expired:
                        self._offers.remember(msgspec.structs.replace(o, state="ACTIVE"))
                async with atomically(self._uow, undo) as tx:
                    for o in expired:
                        tx.offers.change_state(o, "ACTIVE")
            else:
                await asyncio.sleep(0)
            total += len(expired)
        return total


def choose(catalog: CatalogService, ranked: list[str]) -> Choice:
    """Each choice bundle's optional ancillary from a customer's recommended items, best first: the first one that
    is an active catalog product of a kind the bundle may take. Only choices that differ from the listed product
    are returned, so a customer whose recommendations agree with the listed bundles shares their cached drafts."""
    out = []
    for bundle, (listed_kind, kinds) in CHOICES.items():
        for item_id in ranked:
            product = catalog.find_product(item_id)
            if product is not None and product.kind in kinds:
                listed = catalog.product_of_kind(listed_kind)
                if listed is None or product.id != listed.id:
                    out.append((bundle, product.id))
                break
    return tuple(out)


def shortlist(drafts: list[Draft], scores: list[float], size: int, cheapest: int) -> list[int]:
    """The drafts shown, best score first: the `size` best, except that the cheapest flight-only fare
    (drafts[cheapest]) is always among them. Bundles score higher than the bare fare (their ancillaries
    carry most of the margin), so on a route with several flights the best scores are all bundles; the
    shopper must still see the cheapest way to fly. When no flight-only fare that cheap made the cut, it
    takes the last place: it scores no higher than what it replaces, so the order stays by score."""
    shown = sorted(range(len(drafts)), key=lambda i: -scores[i])[:size]
    if cheapest >= 0:
        fare = drafts[cheapest].offer.total_cents
        if not any(drafts[i].offer.bundle == "flight_only" and drafts[i].offer.total_cents <= fare for i in shown):
            shown[-1] = cheapest
    return shown


def summary(offer: Offer) -> OfferSummary:
    return OfferSummary(offer.id, offer.total_cents, tuple(dict.fromkeys(i.kind for i in offer.items)),
                        offer.discount_percent)
