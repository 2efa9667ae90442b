"""Admin changes to flights and products racing shoppers and each other, through the real app: a cabin or a
product never ends up sold beyond its capacity, and two changes to one flight or product both land."""

import asyncio

import msgspec
import pytest

from adapters.sqlite.catalog import _CABIN_CAPACITY, _PRODUCT_CAPACITY, _PRODUCT_DEFAULT
from adapters.sqlite.uow import product_default
from app.main import PLATFORM, create_app
from state.catalog import _encode
from tests.conftest import ADMIN, bearer, make_config
from tests.integration.retail.helpers import accept, search, seats_left, seed_catalog

# The seeded flight's cabins with economy shrunk from 100 seats to 10.
ECONOMY = {"economy": {"capacity": 10, "base_fare_cents": 10_000},
           "premium": {"capacity": 12, "base_fare_cents": 25_000}}


@pytest.fixture
async def app(aiohttp_client, tmp_path, clock):
    """A shop whose admin and shopper may send as many requests at once as a test needs."""
    config = make_config(tmp_path, ratelimit__ip_per_s=100_000, ratelimit__ip_burst=100_000,
                         ratelimit__principal_per_s=100_000, ratelimit__principal_burst=100_000)
    client = await aiohttp_client(create_app(config, clock=clock))
    flight = await seed_catalog(client.app[PLATFORM], clock, economy=100)
    admin = await bearer(client, *ADMIN, "admin")
    shopper = await bearer(client, "crowd@example.com", "correct horse battery", "customer")
    return client, flight, admin, shopper


async def offers_of(client, shopper, clock, bundle: str, n: int, passengers: int = 1) -> list[str]:
    return [next(o["id"] for o in await search(client, shopper, clock, passengers=passengers) if o["bundle"] == bundle)
            for _ in range(n)]


async def test_a_cabin_shrunk_while_shoppers_accept_is_never_oversold(app, clock):
    client, flight, admin, shopper = app
    offers = await offers_of(client, shopper, clock, "flight_only", 30, passengers=2)  # 60 seats asked for
    shrink, *accepts = await asyncio.gather(
        client.patch(f"/v1/admin/flights/{flight.id}", headers=admin, json={"cabins": ECONOMY}),
        *(accept(client, shopper, o) for o in offers))
    sold = 2 * sum(r.status == 201 for r in accepts)
    assert all(r.status in (201, 409) for r in accepts)
    if shrink.status == 200:
        assert sold <= 10 and await seats_left(client, clock) == 10 - sold
    else:  # the shoppers got there first: the cabin keeps its 100 seats
        assert shrink.status == 409 and sold > 10 and await seats_left(client, clock) == 100 - sold
    assert await seats_left(client, clock) >= 0


async def test_a_cancellation_and_a_resize_at_once_both_land(app, clock):
    client, flight, admin, shopper = app
    platform = client.app[PLATFORM]
    # Several flights changed at once, so that two changes of one overlap whatever the order they run in.
    ids = [flight.id, *(f"{flight.id}-{n}" for n in range(4))]
    await platform.catalog.put_flights("test", [msgspec.structs.replace(flight, id=i) for i in ids[1:]], audit=False)
    responses = await asyncio.gather(*(
        client.patch(f"/v1/admin/flights/{i}", headers=admin, json=change)
        for i in ids for change in ({"status": "cancelled"}, {"cabins": ECONOMY})))
    assert [r.status for r in responses] == [200] * len(responses)
    for i in ids:
        stored = platform.catalog.flight(i)
        assert stored.status == "cancelled" and stored.cabins["economy"].capacity == 10, i
    assert await search(client, shopper, clock) == []  # none is sold again


async def test_a_retirement_and_a_new_price_at_once_both_land(app, clock):
    client, _, admin, shopper = app
    ids = ["meal-hot", *(f"meal-{n}" for n in range(4))]
    for i in ids[1:]:
        resp = await client.post("/v1/admin/products", headers=admin,
                                 json={"id": i, "kind": "Meal", "name": "Meal", "price_cents": 1_000})
        assert resp.status == 201
    responses = await asyncio.gather(*(
        client.patch(f"/v1/admin/products/{i}", headers=admin, json=change)
        for i in ids for change in ({"status": "retired"}, {"price_cents": 2_000})))
    assert [r.status for r in responses] == [200] * len(responses)
    listed = {p["id"]: p for p in (await (await client.get("/v1/admin/products", headers=admin)).json())["items"]}
    for i in ids:
        assert listed[i]["status"] == "retired" and listed[i]["price_cents"] == 2_000, i
    offers = await search(client, shopper, clock)
    assert all(item["kind"] != "Meal" for o in offers for item in o["items"])  # no retired meal is sold


async def test_a_product_cannot_shrink_below_the_units_held(app, clock):
    client, flight, admin, shopper = app
    for offer in await offers_of(client, shopper, clock, "comfort", 3, passengers=2):  # comfort holds a hot meal
        assert (await accept(client, shopper, offer)).status == 201
    resp = await client.patch("/v1/admin/products/meal-hot", headers=admin, json={"capacity_per_flight": 5})
    assert resp.status == 409
    assert "6" in (await resp.json())["error"]["message"] and flight.id in (await resp.json())["error"]["message"]
    assert client.app[PLATFORM].catalog.product("meal-hot").capacity_per_flight == 40
    assert (await client.patch("/v1/admin/products/meal-hot", headers=admin,
                               json={"capacity_per_flight": 6})).status == 200
    platform = client.app[PLATFORM]
    if platform.config.storage.backend == "postgres":  # several nodes: the held rows carry it for the others
        assert await platform.records_db.fetchone("SELECT held, capacity FROM inventory WHERE resource = ?",
                                                  (f"{flight.id}/meal-hot",)) == (6, 6)


async def test_a_product_shrunk_while_shoppers_accept_is_never_oversold(app, clock):
    client, flight, admin, shopper = app
    offers = await offers_of(client, shopper, clock, "comfort", 20, passengers=2)  # 40 hot meals asked for
    shrink, *accepts = await asyncio.gather(
        client.patch("/v1/admin/products/meal-hot", headers=admin, json={"capacity_per_flight": 6}),
        *(accept(client, shopper, o) for o in offers))
    meals = 2 * sum(r.status == 201 for r in accepts)
    catalog = client.app[PLATFORM].catalog
    assert meals <= catalog.product("meal-hot").capacity_per_flight
    assert catalog.available(f"{flight.id}/meal-hot") >= 0
    assert (shrink.status == 200) == (meals <= 6)


async def test_a_shrink_is_refused_when_another_node_holds_the_seats(app, clock):
    """Several nodes: seats another node holds are in the shared inventory before this node hears of them."""
    client, flight, admin, _ = app
    platform = client.app[PLATFORM]
    await platform.records_db.write([("INSERT INTO inventory(resource, held) VALUES (?, ?) ON CONFLICT(resource) "
                                      "DO UPDATE SET held = excluded.held", (f"{flight.id}/economy", 50))])
    resp = await client.patch(f"/v1/admin/flights/{flight.id}", headers=admin, json={"cabins": ECONOMY})
    assert resp.status == 409 and "economy" in (await resp.json())["error"]["message"]
    assert platform.catalog.flight(flight.id).cabins["economy"].capacity == 100  # nothing changed
    await platform.records_db.write([("INSERT INTO inventory(resource, held) VALUES (?, ?) ON CONFLICT(resource) "
                                      "DO UPDATE SET held = excluded.held", (f"{flight.id}/meal-hot", 30))])
    resp = await client.patch("/v1/admin/products/meal-hot", headers=admin, json={"capacity_per_flight": 20})
    assert resp.status == 409 and platform.catalog.product("meal-hot").capacity_per_flight == 40


async def test_a_node_that_has_not_heard_of_a_shrink_sells_no_seat_beyond_it(app, clock):
    """Several nodes: another node shrank economy to 10 seats; this one, not told yet, still has 100 in memory, and
    its shoppers get 10 seats, not 100. A capacity raised again here opens the seats again."""
    client, flight, admin, shopper = app
    platform = client.app[PLATFORM]
    if platform.config.storage.backend != "postgres":
        pytest.skip("one node has no other to hear from: runs with --storage=scaleout (PostgreSQL)")
    resource = f"{flight.id}/economy"
    shrunk = msgspec.structs.replace(flight, cabins={**flight.cabins, "economy": msgspec.structs.replace(
        flight.cabins["economy"], capacity=10)})
    await platform.records_db.write([  # what the other node's change wrote, before its notice reaches this one
        ("UPDATE flights SET body = ? WHERE id = ?", (_encode(shrunk).decode(), flight.id)),
        (_CABIN_CAPACITY, (resource, 10), 1)])
    assert platform.catalog.flight(flight.id).cabins["economy"].capacity == 100
    offers = await offers_of(client, shopper, clock, "flight_only", 8, passengers=2)
    accepts = await asyncio.gather(*(accept(client, shopper, o) for o in offers))
    assert sorted(r.status for r in accepts) == [201] * 5 + [409] * 3
    assert await platform.records_db.fetchone("SELECT held, capacity FROM inventory WHERE resource = ?",
                                              (resource,)) == (10, 10)
    await platform.catalog_store.refresh("flight", [flight.id])  # the notice arrives
    resp = await client.patch(f"/v1/admin/flights/{flight.id}", headers=admin,
                              json={"cabins": {**ECONOMY, "economy": {"capacity": 12, "base_fare_cents": 10_000}}})
    assert resp.status == 200, await resp.text()
    [offer] = await offers_of(client, shopper, clock, "flight_only", 1, passengers=2)
    assert (await accept(client, shopper, offer)).status == 201
    assert await platform.records_db.fetchone("SELECT held, capacity FROM inventory WHERE resource = ?",
                                              (resource,)) == (12, 12)


async def test_a_node_that_has_not_heard_of_a_smaller_product_sells_no_unit_beyond_it(app, clock):
    """Several nodes: on a flight where hot meals are held, another node lowered meal-hot to 6 a flight; this node,
    not told yet (40 in memory), sells the 2 meals left, not 36."""
    client, flight, admin, shopper = app
    platform = client.app[PLATFORM]
    if platform.config.storage.backend != "postgres":
        pytest.skip("one node has no other to hear from: runs with --storage=scaleout (PostgreSQL)")
    for offer in await offers_of(client, shopper, clock, "comfort", 2, passengers=2):  # comfort holds a hot meal
        assert (await accept(client, shopper, offer)).status == 201
    smaller = msgspec.structs.replace(platform.catalog.product("meal-hot"), capacity_per_flight=6)
    suffix = "/meal-hot"
    await platform.records_db.write([  # what the other node's change wrote, before its notice reaches this one
        ("UPDATE products SET body = ? WHERE id = ?", (_encode(smaller).decode(), "meal-hot")),
        (_PRODUCT_CAPACITY, (6, len(suffix), suffix))])
    assert platform.catalog.product("meal-hot").capacity_per_flight == 40
    accepts = await asyncio.gather(*(accept(client, shopper, o)
                                     for o in await offers_of(client, shopper, clock, "comfort", 4, passengers=2)))
    assert sorted(r.status for r in accepts) == [201] + [409] * 3
    assert await platform.records_db.fetchone("SELECT held, capacity FROM inventory WHERE resource = ?",
                                              (f"{flight.id}{suffix}",)) == (6, 6)


async def test_a_flight_with_none_of_a_smaller_product_held_yet_sells_no_unit_beyond_it(app, clock):
    """Several nodes: another node lowered meal-hot to 2 a flight; on a flight where none is held yet (no row of its
    own), this node, not told yet (40 in memory), sells 2 meals, not 40: the product's own row gives the capacity."""
    client, flight, admin, shopper = app
    platform = client.app[PLATFORM]
    if platform.config.storage.backend != "postgres":
        pytest.skip("one node has no other to hear from: runs with --storage=scaleout (PostgreSQL)")
    smaller = msgspec.structs.replace(platform.catalog.product("meal-hot"), capacity_per_flight=2)
    suffix = "/meal-hot"
    await platform.records_db.write([  # what the other node's change wrote, before its notice reaches this one
        ("UPDATE products SET body = ? WHERE id = ?", (_encode(smaller).decode(), "meal-hot")),
        (_PRODUCT_DEFAULT, (product_default("meal-hot"), 2)), (_PRODUCT_CAPACITY, (2, len(suffix), suffix))])
    assert platform.catalog.product("meal-hot").capacity_per_flight == 40
    accepts = await asyncio.gather(*(accept(client, shopper, o)  # comfort holds a hot meal a passenger
                                     for o in await offers_of(client, shopper, clock, "comfort", 4, passengers=2)))
    assert sorted(r.status for r in accepts) == [201] + [409] * 3
    assert await platform.records_db.fetchone("SELECT held, capacity FROM inventory WHERE resource = ?",
                                              (f"{flight.id}{suffix}",)) == (2, 2)
    await platform.catalog_store.refresh("product", ["meal-hot"])  # the notice arrives; raised again here
    resp = await client.patch("/v1/admin/products/meal-hot", headers=admin, json={"capacity_per_flight": 4})
    assert resp.status == 200, await resp.text()
    [offer] = await offers_of(client, shopper, clock, "comfort", 1, passengers=2)
    assert (await accept(client, shopper, offer)).status == 201
    assert await platform.records_db.fetchall("SELECT resource, held, capacity FROM inventory WHERE resource LIKE ? "
                                              "ORDER BY resource", (f"%{suffix}",)) == [
        ("*/meal-hot", 0, 4), (f"{flight.id}{suffix}", 4, 4)]


async def test_a_change_another_node_made_first_is_not_overwritten(app, clock):
    client, flight, admin, _ = app
    platform = client.app[PLATFORM]
    cancelled = msgspec.structs.replace(flight, status="cancelled")
    await platform.records_db.write([("UPDATE flights SET body = ? WHERE id = ?",
                                      (_encode(cancelled).decode(), flight.id))])  # another node cancelled it
    resp = await client.patch(f"/v1/admin/flights/{flight.id}", headers=admin, json={"cabins": ECONOMY})
    assert resp.status == 409
    assert platform.catalog.flight(flight.id).status == "cancelled"  # read back: the next try builds on it
    resp = await client.patch(f"/v1/admin/flights/{flight.id}", headers=admin, json={"cabins": ECONOMY})
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"


async def test_a_row_stored_in_other_words_is_still_the_same_flight(app, clock):
    """A body stored in other words (another version of the code's spacing, field order or defaults) guards as the
    flight it decodes to: the change is not refused as if another node had made one."""
    client, flight, admin, _ = app
    platform = client.app[PLATFORM]
    (body,), = await platform.records_db.fetchall("SELECT body FROM flights WHERE id = ?", (flight.id,))
    await platform.records_db.write([("UPDATE flights SET body = ? WHERE id = ?", (" " + body, flight.id))])
    resp = await client.patch(f"/v1/admin/flights/{flight.id}", headers=admin, json={"status": "cancelled"})
    assert resp.status == 200 and platform.catalog.flight(flight.id).status == "cancelled"
