"""What a search promises a shopper: 3 to 5 ranked, priced offers whenever a flight has room for the party
(as many as can be made when fewer bundles have room), always with the flight-only fare, and across the
day's flights the cheapest flight-only fare among those with room; a flight without room shows nothing."""

import itertools

from app.demo import demo_schedule
from app.main import PLATFORM
from app.retail.offers import SearchQuery
from state.catalog import Cabin, Flight
from state.offers import Item
from tests.integration.retail.contract import SEGMENTS, check_contract, flight_only_total, put_products
from tests.integration.retail.helpers import (
    DAY,
    accept,
    booked,
    customer,
    departure_date,
    ranking_of,
    search,
    seed_catalog,
)


# ---- the demo catalogue ----
async def test_a_busy_route_shows_the_cheapest_flight_only_fare_of_the_day(client, clock):
    platform = client.app[PLATFORM]
    await put_products(platform)
    await platform.catalog.put_flights("test", demo_schedule(clock.now(), days=3), audit=False)
    date = departure_date(clock, 2)
    flights = platform.catalog.flights_on("LIS", "OPO", date)
    assert len(flights) == 4
    # The first departure fills up (so it is dearer): the cheapest fare is on a later one.
    platform.order_store.hold([Item("Flight", flights[0].id, "held", 120, 0, 0, 0, f"{flights[0].id}/economy")])
    for passengers, segment, cabin in itertools.product((1, 2, 3, 9), SEGMENTS, ("economy", "premium")):
        q = SearchQuery("LIS", "OPO", date, passengers, cabin, segment)
        offers, _ = await platform.offers.search(q, "user:busy", is_guest=False)
        check_contract(platform, q, flights, offers)
        assert 3 <= len(offers) <= 5 and "flight_only" in {o.bundle for o in offers}
    q = SearchQuery("LIS", "OPO", date, 1, "economy", "economy")
    offers, _ = await platform.offers.search(q, "user:busy", is_guest=False)
    bare = next(o for o in offers if o.bundle == "flight_only")
    assert bare.flight_id != flights[0].id and bare.total_cents == min(
        flight_only_total(platform, f, "economy", 1, "economy") for f in flights)
    # Otherwise the best scores, best first: the fare takes the last place.
    assert [o.bundle for o in offers[:4]] == ["comfort"] * 4 and offers[-1] is bare


async def test_busy_route_search_through_the_api(client, clock):
    platform = client.app[PLATFORM]
    await put_products(platform)
    await platform.catalog.put_flights("test", demo_schedule(clock.now(), days=3), audit=False)
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
        offers, _ = await platform.offers.search(q, "user:few", is_guest=False)
        check_contract(platform, q, [flight], offers)
        if passengers >= 2:
            assert "comfort" not in {o.bundle for o in offers}
    q = SearchQuery("LIS", "BCN", date, 3, "economy", "corporate")  # fare, corporate_flex and group_bags
    offers, _ = await platform.offers.search(q, "user:few", is_guest=False)
    assert sorted(o.bundle for o in offers) == ["corporate_flex", "flight_only", "group_bags"]


async def test_a_flight_without_room_for_the_party_shows_none_of_its_offers(client, clock):
    platform = client.app[PLATFORM]
    await put_products(platform)
    noon = (int(clock.now() // DAY) + 3) * DAY + 12 * 3600
    cheap = Flight(id="CT1-cheap", airline="CT", number="CT1", origin="LIS", destination="BCN", departure_at=noon,
                   arrival_at=noon + 7_000, cabins={"economy": Cabin(4, 2_000)})
    dear = Flight(id="CT2-dear", airline="CT", number="CT2", origin="LIS", destination="BCN",
                  departure_at=noon + 3600, arrival_at=noon + 10_600, cabins={"economy": Cabin(150, 20_000)})
    await platform.catalog.put_flights("test", [cheap, dear], audit=False)
    platform.order_store.hold([Item("Flight", cheap.id, "held", 3, 0, 0, 0, f"{cheap.id}/economy")])
    date = departure_date(clock)
    for passengers in (1, 2, 5):
        q = SearchQuery("LIS", "BCN", date, passengers, "economy", "economy")
        offers, _ = await platform.offers.search(q, "user:room", is_guest=False)
        check_contract(platform, q, [cheap, dear], offers)
        assert (cheap.id in {o.flight_id for o in offers}) == (passengers == 1)
