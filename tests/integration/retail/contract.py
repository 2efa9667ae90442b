"""The search contract worked out on its own, from the documented formulas (fares, room, bundles, scores):
check_contract asserts it of the offers a search returned."""

from app.demo import DEMO_PRODUCTS
from app.retail.offers import BUNDLES, SearchQuery, rule_bundles, summary
from app.retail.pricing import fare_cents, percent_of
from app.retail.ranking import MARGIN_RATES, SearchContext, rule_probability
from state.catalog import Flight, Product

LIMITED = {kind: capacity for _, kind, _, _, capacity in DEMO_PRODUCTS if capacity is not None}
PRODUCT_ID = {kind: pid for pid, kind, _, _, _ in DEMO_PRODUCTS}
SEGMENTS = ("economy", "premium", "corporate", "leisure")


async def put_products(platform) -> None:
    for pid, kind, name, price, capacity in DEMO_PRODUCTS:
        await platform.catalog.put_product("test", Product(pid, kind, name, price, capacity_per_flight=capacity),
                                           audit=False)


def flight_only_total(platform, flight: Flight, cabin: str, passengers: int, segment: str) -> int:
    """The flight-only offer's total, worked out from the documented formula."""
    cfg = platform.config.retail
    c = flight.cabins[cabin]
    held = platform.order_store.held.get(f"{flight.id}/{cabin}", 0)
    fare = fare_cents(c.base_fare_cents, held / c.capacity, (flight.departure_at - platform.clock.now()) / 3600,
                      segment)
    subtotal = fare * passengers
    return subtotal + percent_of(subtotal, cfg.tax_percent) + cfg.booking_fee_cents


def has_room(platform, flight: Flight, cabin: str, passengers: int) -> bool:
    c = flight.cabins.get(cabin)
    return (flight.departure_at > platform.clock.now() and c is not None
            and c.capacity - platform.order_store.held.get(f"{flight.id}/{cabin}", 0) >= passengers)


def bundles_with_room(platform, flight: Flight, passengers: int, segment: str) -> int:
    """How many bundles can be made for the party: those whose limited products have room for it."""
    count = 0
    for name in ("flight_only", "comfort", "premium", *rule_bundles(segment, passengers)):
        limited = [kind for kind, _ in BUNDLES[name] if kind in LIMITED]
        if all(LIMITED[kind] - platform.order_store.held.get(f"{flight.id}/{PRODUCT_ID[kind]}", 0) >= passengers
               for kind in limited):
            count += 1
    return count


def score(platform, offer, q: SearchQuery) -> float:
    """score = P(accept) (the rules, before the model is trained) × margin, as documented."""
    ctx = SearchContext("u", False, "", q.origin, q.destination, q.departure_date, q.passengers, q.cabin, q.segment)
    margin = offer.booking_fee_cents + sum(round(i.total_cents * MARGIN_RATES[i.kind]) for i in offer.items)
    return rule_probability(ctx, summary(offer)) * margin


def check_contract(platform, q: SearchQuery, flights: list[Flight], offers) -> None:
    max_offers = platform.config.retail.max_offers
    roomy = [f for f in flights if has_room(platform, f, q.cabin, q.passengers)]
    assert {o.flight_id for o in offers} <= {f.id for f in roomy}, "a flight without room showed an offer"
    if not roomy:
        assert offers == []
        return
    available = sum(bundles_with_room(platform, f, q.passengers, q.segment) for f in roomy)
    assert len(offers) == min(max_offers, available)
    if available >= 3:
        assert 3 <= len(offers) <= max_offers
    cheapest = min(flight_only_total(platform, f, q.cabin, q.passengers, q.segment) for f in roomy)
    fares = [o.total_cents for o in offers if o.bundle == "flight_only"]
    assert fares and min(fares) == cheapest, "the cheapest flight-only fare of the day is missing"
    scores = [score(platform, o, q) for o in offers]
    assert scores == sorted(scores, reverse=True), "offers are not best score first"
    assert len({o.id for o in offers}) == len(offers)
