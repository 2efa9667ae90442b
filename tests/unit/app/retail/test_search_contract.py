"""The search contract holds on any catalogue (hypothesis): random flights, fares and holds on one platform
with real SQLite, searched without a server. The contract itself is in tests/integration/retail/contract.py."""

import asyncio
import itertools
import string
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.platform import Platform
from app.retail.offers import SearchQuery
from app.runtime.clock import ManualClock
from state.catalog import Cabin, Flight
from state.offers import Item
from tests.conftest import make_config
from tests.integration.retail.contract import PRODUCT_ID, SEGMENTS, check_contract, put_products
from tests.integration.retail.helpers import DAY


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
    shop.run(platform.catalog.put_flights("test", flights, audit=False))
    platform.order_store.hold(holds)
    q = SearchQuery(origin, "ZZZ", date, passengers, cabin, segment)
    offers, _ = shop.run(platform.offers.search(q, "user:any", is_guest=False))
    check_contract(platform, q, flights, offers)
