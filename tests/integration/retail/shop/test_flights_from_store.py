"""Departed flights leave memory: a carrier's schedule grows by its flights every day for years, and memory holds only
those still to fly and those departed within retail.archive_after_days (as their orders are archived). The ones let
go are still listed, changed and read from the store, and a restart holds what the live process held."""

import base64
import time

from app.main import PLATFORM, create_app
from handlers.rest.common import encode_cursor
from state.catalog import Cabin, Flight
from state.offers import Item
from tests.conftest import bearer
from tests.integration.retail.helpers import DAY, search

ADMIN = ("ops@example.com", "correct horse battery")


def _flight(n: int, departs: float) -> Flight:
    return Flight(id=f"CT{n}-x", airline="CT", number=f"CT{n}", origin="LIS", destination="BCN",
                  departure_at=departs, arrival_at=departs + 7_500, cabins={"economy": Cabin(30, 9_000)})


async def _every_flight(client, admin, limit: int) -> list[dict]:
    listed, after = [], None
    while True:
        params = {"limit": str(limit), **({"after": after} if after else {})}
        resp = await client.get("/v1/admin/flights", params=params, headers=admin)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        assert len(page["items"]) <= limit
        listed += page["items"]
        after = page["next_cursor"]
        if after is None:
            return listed


async def _in_memory(client) -> float:
    metrics = await (await client.get("/metrics")).text()
    line = next(x for x in metrics.splitlines() if x.startswith('contrail_queue_depth{queue="flights_in_memory"}'))
    return float(line.split()[-1])


async def test_departed_flights_leave_memory_and_are_still_listed_changed_and_not_loaded_again(
        shop, clock, config, aiohttp_client):
    client, recent = shop  # departs in 3 days: still held a week later
    platform = client.app[PLATFORM]
    start = clock.now()
    flights = [_flight(200 + n, start + (n + 1) * 3_600) for n in range(6)]  # depart over the next 6 hours
    ahead = _flight(300, start + 20 * DAY)
    await platform.catalog.put_flights("test", [*flights, ahead], audit=False)
    ids = [f.id for f in flights] + [recent.id, ahead.id]
    assert await _in_memory(client) == len(platform.catalog_store) == 8

    clock.advance(8 * 3_600 + config.retail.archive_after_days * DAY)  # a week after all 6, before `later`
    assert (await platform.sweep_retail_once())["flights_let_go"] == 6
    assert [f.id for f in platform.catalog_store.flights()] == [recent.id, ahead.id]
    assert await _in_memory(client) == 2
    assert all(platform.catalog_store.flight(f.id) is None for f in flights)
    assert platform.order_store.flight_versions.keys() <= {recent.id, ahead.id}
    seat = Item("Flight", flights[0].id, "economy", 1, 9_000, 0, 9_000, resource=f"{flights[0].id}/economy")
    platform.order_store.hold([seat])  # an order on a flight let go of, released late (another node's change)
    platform.order_store.release([seat])
    assert flights[0].id in platform.order_store.flight_versions
    await platform.sweep_retail_once()
    assert platform.order_store.flight_versions.keys() <= {recent.id, ahead.id}
    admin = await bearer(client, *ADMIN, "admin")

    # The admin list reads the store: every flight once, in departure order, whatever the page size.
    for limit in (1, 4, 100):
        assert [f["id"] for f in await _every_flight(client, admin, limit)] == ids
    start_at = flights[3].departure_at  # from a time on: those departing then or later, then onwards by cursor
    resp = await client.get("/v1/admin/flights", params={"departs_after": str(start_at), "limit": "2"}, headers=admin)
    page = await resp.json()
    assert [f["id"] for f in page["items"]] == ids[3:5]
    rest = await client.get("/v1/admin/flights", params={"departs_after": str(start_at), "after": page["next_cursor"]},
                            headers=admin)
    assert [f["id"] for f in (await rest.json())["items"]] == ids[5:]
    for bad in ("-1", "soon", "1e400"):
        resp = await client.get("/v1/admin/flights", params={"departs_after": bad}, headers=admin)
        assert resp.status == 400 and "departs_after" in (await resp.json())["error"]["message"]
    old_cursor = encode_cursor({"id": flights[2].id})  # a cursor from before keyset pages names an id
    resp = await client.get("/v1/admin/flights", params={"after": old_cursor}, headers=admin)
    assert [f["id"] for f in (await resp.json())["items"]] == ids[3:]
    huge = [base64.urlsafe_b64encode(b'{"at":%s,"id":"x"}' % at).decode() for at in (b"1" + b"0" * 400, b"1e400")]
    for bad in (encode_cursor({"id": "CT999-nowhere"}), encode_cursor({"at": "soon", "id": 4}), *huge):
        resp = await client.get("/v1/admin/flights", params={"after": bad}, headers=admin)
        assert resp.status == 400 and "cursor" in (await resp.json())["error"]["message"]

    # A change to a departed flight is made and stored; it leaves memory again at the next sweep.
    resp = await client.patch(f"/v1/admin/flights/{flights[0].id}", json={"status": "cancelled"}, headers=admin)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "cancelled"
    assert (await platform.sweep_retail_once())["flights_let_go"] == 1
    listed = {f["id"]: f["status"] for f in await _every_flight(client, admin, 100)}
    assert listed[flights[0].id] == "cancelled" and listed[flights[1].id] == "scheduled"
    missing = await client.patch("/v1/admin/flights/CT999-nowhere", json={"status": "cancelled"}, headers=admin)
    assert missing.status == 404
    again = {"id": flights[1].id, "airline": "CT", "number": "CT201", "origin": "LIS", "destination": "BCN",
             "departure_at": clock.now() + DAY, "arrival_at": clock.now() + DAY + 7_500,
             "cabins": {"economy": {"capacity": 30, "base_fare_cents": 9_000}}}
    resp = await client.post("/v1/admin/flights", json=again, headers=admin)  # its id is taken, in the store
    assert resp.status == 409, await resp.text()

    customer = await bearer(client, "flyer@example.com", "correct horse battery", "customer")
    date = time.strftime("%Y-%m-%d", time.gmtime(ahead.departure_at))
    assert await search(client, customer, clock, departure_date=date)  # the flight to come still sells
    held = [f.id for f in platform.catalog_store.flights()]
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    assert [f.id for f in platform.catalog_store.flights()] == held == [recent.id, ahead.id]
    assert await _in_memory(client) == 2
    admin = await bearer(client, *ADMIN, "admin")
    assert [f["id"] for f in await _every_flight(client, admin, 3)] == ids
