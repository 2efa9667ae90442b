"""What a search promises a shopper: 3 to 5 ranked, priced offers whenever a flight has room for the party
(as many as can be made when fewer bundles have room), always with the flight-only fare, and across the
day's flights the cheapest flight-only fare among those with room; a flight without room shows nothing."""

import asyncio
import itertools
import string
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.demo import DEMO_PRODUCTS, demo_schedule
from app.main import PLATFORM
from app.platform import Platform
from app.retail.offers import BUNDLES, SearchQuery, rule_bundles, summary
from app.retail.pricing import fare_cents, percent_of
from app.retail.ranking import MARGIN_RATES, SearchContext, rule_probability
from app.runtime.clock import ManualClock
from state.catalog import Cabin, Flight, Product
from state.offers import Item
from tests.conftest import make_config
from tests.retail_helpers import DAY, accept, booked, customer, departure_date, ranking_of, search, seed_catalog

LIMITED = {kind: capacity for _, kind, _, _, capacity in DEMO_PRODUCTS if capacity is not None}
PRODUCT_ID = {kind: pid for pid, kind, _, _, _ in DEMO_PRODUCTS}
SEGMENTS = ("economy", "premium", "corporate", "leisure")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time() // DAY * DAY)  # the start of today: the tests never cross midnight


async def put_products(platform) -> None:
    for pid, kind, name, price, capacity in DEMO_PRODUCTS:
        await platform.catalog.put_product(Product(pid, kind, name, price, capacity_per_flight=capacity))


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


# ---- the demo catalogue ----

async def test_a_busy_route_shows_the_cheapest_flight_only_fare_of_the_day(client, clock):
    platform = client.app[PLATFORM]
    await put_products(platform)
    await platform.catalog.put_flights(demo_schedule(clock.now(), days=3))
    date = departure_date(clock, 2)
    flights = platform.catalog.flights_on("LIS", "OPO", date)
    assert len(flights) == 4
    # The first departure fills up (so it is dearer): the cheapest fare is on a later one.
    platform.order_store.hold([Item("Flight", flights[0].id, "held", 120, 0, 0, 0, f"{flights[0].id}/economy")])
    for passengers, segment, cabin in itertools.product((1, 2, 3, 9), SEGMENTS, ("economy", "premium")):
        q = SearchQuery("LIS", "OPO", date, passengers, cabin, segment)
        offers, _, _ = await platform.offers.search(q, "user:busy", is_guest=False)
        check_contract(platform, q, flights, offers)
        assert 3 <= len(offers) <= 5 and "flight_only" in {o.bundle for o in offers}
    q = SearchQuery("LIS", "OPO", date, 1, "economy", "economy")
    offers, _, _ = await platform.offers.search(q, "user:busy", is_guest=False)
    bare = next(o for o in offers if o.bundle == "flight_only")
    assert bare.flight_id != flights[0].id and bare.total_cents == min(
        flight_only_total(platform, f, "economy", 1, "economy") for f in flights)
    # Otherwise the best scores, best first: the fare takes the last place.
    assert [o.bundle for o in offers[:4]] == ["comfort"] * 4 and offers[-1] is bare


async def test_busy_route_search_through_the_api(client, clock):
    platform = client.app[PLATFORM]
    await put_products(platform)
    await platform.catalog.put_flights(demo_schedule(clock.now(), days=3))
    headers = await customer(client, "busy")
    offers = await search(client, headers, clock, origin="LIS", destination="OPO",
                          departure_date=departure_date(clock, 2))
    assert 3 <= len(offers) <= 5
    bare = [o for o in offers if o["bundle"] == "flight_only"]
    assert len(bare) == 1 and offers[-1] is bare[0]
    ranked = await ranking_of(client, offers)
    assert [e["rank"] for e in ranked] == list(range(1, len(offers) + 1))
    assert [e["score"] for e in ranked] == sorted((e["score"] for e in ranked), reverse=True)
    # The guaranteed fare can be bought like any other offer.
    assert (await accept(client, headers, bare[0]["id"])).status == 201


# ---- a nearly full flight ----

async def test_a_nearly_full_flight_still_shows_three_to_five_offers_with_the_fare(client, clock):
    platform = client.app[PLATFORM]
    flight = await seed_catalog(platform, clock, economy=6)
    headers = await customer(client, "nearly-full")
    await booked(client, headers, clock, passengers=4)  # 2 economy seats left
    for passengers, segment in itertools.product((1, 2), SEGMENTS):
        offers = await search(client, headers, clock, passengers=passengers, segment=segment)
        assert 3 <= len(offers) <= 5 and "flight_only" in {o["bundle"] for o in offers}
    assert await search(client, headers, clock, passengers=3) == []  # no room for three
    await booked(client, headers, clock, passengers=2)  # economy is full; premium has room
    assert await search(client, headers, clock) == []
    offers = await search(client, headers, clock, cabin="premium", passengers=2)
    assert 3 <= len(offers) <= 5 and "flight_only" in {o["bundle"] for o in offers}
    assert all(o["cabin"] == "premium" and o["flight_id"] == flight.id for o in offers)


async def test_fewer_bundles_with_room_are_all_shown_with_the_fare(client, clock):
    platform = client.app[PLATFORM]
    flight = await seed_catalog(platform, clock, economy=10)
    date = departure_date(clock)
    # One meal left: comfort and premium (which include a meal each) have room for one passenger only.
    platform.order_store.hold([Item("Meal", "meal-hot", "held", 39, 0, 0, 0, f"{flight.id}/meal-hot")])
    for passengers, segment in itertools.product((1, 2, 3), SEGMENTS):
        q = SearchQuery("LIS", "BCN", date, passengers, "economy", segment)
        offers, _, _ = await platform.offers.search(q, "user:few", is_guest=False)
        check_contract(platform, q, [flight], offers)
        if passengers >= 2:
            assert "comfort" not in {o.bundle for o in offers}
    q = SearchQuery("LIS", "BCN", date, 3, "economy", "corporate")  # fare, corporate_flex and group_bags
    offers, _, _ = await platform.offers.search(q, "user:few", is_guest=False)
    assert sorted(o.bundle for o in offers) == ["corporate_flex", "flight_only", "group_bags"]


async def test_a_flight_without_room_for_the_party_shows_none_of_its_offers(client, clock):
    platform = client.app[PLATFORM]
    await put_products(platform)
    noon = (int(clock.now() // DAY) + 3) * DAY + 12 * 3600
    cheap = Flight(id="CT1-cheap", airline="CT", number="CT1", origin="LIS", destination="BCN", departure_at=noon,
                   arrival_at=noon + 7_000, cabins={"economy": Cabin(4, 2_000)})
    dear = Flight(id="CT2-dear", airline="CT", number="CT2", origin="LIS", destination="BCN",
                  departure_at=noon + 3600, arrival_at=noon + 10_600, cabins={"economy": Cabin(150, 20_000)})
    await platform.catalog.put_flights([cheap, dear])
    platform.order_store.hold([Item("Flight", cheap.id, "held", 3, 0, 0, 0, f"{cheap.id}/economy")])
    date = departure_date(clock)
    for passengers in (1, 2, 5):
        q = SearchQuery("LIS", "BCN", date, passengers, "economy", "economy")
        offers, _, _ = await platform.offers.search(q, "user:room", is_guest=False)
        check_contract(platform, q, [cheap, dear], offers)
        assert (cheap.id in {o.flight_id for o in offers}) == (passengers == 1)


# ---- any catalogue ----

class _Shop:
    """One platform for every example (each on an airport pair of its own), with its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = ManualClock(time.time() // DAY * DAY)
        self.platform = Platform(make_config(Path(self.tmp.name)), self.clock)
        self.run(self.platform.open_storage())
        self.run(put_products(self.platform))
        self.airports = ("".join(c) for c in itertools.product(string.ascii_uppercase, repeat=3))

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.platform.close_storage())
        self.loop.close()
        self.tmp.cleanup()


@pytest.fixture(scope="module")
def any_shop():
    shop = _Shop()
    yield shop
    shop.close()


flight_plans = st.lists(st.fixed_dictionaries({
    "hour": st.integers(0, 23),
    "economy": st.integers(1, 30), "economy_fare": st.integers(1_000, 40_000),
    "premium": st.integers(0, 12), "premium_fare": st.integers(5_000, 90_000),
    "seats_taken": st.floats(0, 1), "premium_taken": st.floats(0, 1),
    "meals": st.integers(0, 40), "lounge": st.integers(0, 20), "fasttrack": st.integers(0, 30),
}), min_size=1, max_size=6)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=flight_plans, passengers=st.integers(1, 9), segment=st.sampled_from(SEGMENTS),
       cabin=st.sampled_from(["economy", "premium"]), days=st.integers(0, 40))
def test_the_search_contract_holds_on_any_catalogue(any_shop, plans, passengers, segment, cabin, days):
    shop, platform = any_shop, any_shop.platform
    origin = next(shop.airports)
    day = int(shop.clock.now() // DAY) + days
    date = time.strftime("%Y-%m-%d", time.gmtime(day * DAY))
    flights, holds = [], []
    for n, plan in enumerate(plans):
        departs = day * DAY + plan["hour"] * 3600 + n  # some may have left already (today)
        cabins = {"economy": Cabin(plan["economy"], plan["economy_fare"])}
        if plan["premium"]:
            cabins["premium"] = Cabin(plan["premium"], plan["premium_fare"])
        flight = Flight(id=f"{origin}{n}-{date}", airline="CT", number=f"CT{n}", origin=origin, destination="ZZZ",
                        departure_at=departs, arrival_at=departs + 3600, cabins=cabins)
        flights.append(flight)
        for name, taken in (("economy", plan["seats_taken"]), ("premium", plan["premium_taken"])):
            if name in cabins and int(cabins[name].capacity * taken):
                holds.append(Item("Flight", flight.id, "held", int(cabins[name].capacity * taken), 0, 0, 0,
                                  f"{flight.id}/{name}"))
        for kind, key in (("Meal", "meals"), ("Lounge", "lounge"), ("FastTrack", "fasttrack")):
            if plan[key]:
                holds.append(Item(kind, PRODUCT_ID[kind], "held", plan[key], 0, 0, 0,
                                  f"{flight.id}/{PRODUCT_ID[kind]}"))
    shop.run(platform.catalog.put_flights(flights))
    platform.order_store.hold(holds)
    q = SearchQuery(origin, "ZZZ", date, passengers, cabin, segment)
    offers, _, _ = shop.run(platform.offers.search(q, "user:any", is_guest=False))
    check_contract(platform, q, flights, offers)
