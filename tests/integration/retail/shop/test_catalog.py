"""Flights and the catalog through the real app: the public flight list, the admin flight and product API."""

from tests.integration.retail.helpers import DAY, accept, booked, departure_date, search


async def test_flights_are_public_and_show_seats_left(shop, clock):
    client, flight = shop
    resp = await client.get("/v1/flights", params={"origin": "LIS", "destination": "BCN",
                                                   "date": departure_date(clock)})
    body = await resp.json()
    assert resp.status == 200 and body["items"][0]["id"] == flight.id
    assert body["items"][0]["seats_left"] == {"economy": 150, "premium": 12}
    bad = await client.get("/v1/flights", params={"origin": "lisbon", "destination": "BCN", "date": "tomorrow"})
    assert bad.status == 400 and "origin" in (await bad.json())["error"]["message"]


async def test_catalog_admin(shop, clock, admin_headers, customer_headers):
    client, flight = shop
    body = {"id": "CT201-x", "airline": "CT", "number": "CT201", "origin": "LIS", "destination": "FNC",
            "departure_at": clock.now() + DAY, "arrival_at": clock.now() + DAY + 6000,
            "cabins": {"economy": {"capacity": 100, "base_fare_cents": 5000}}}
    assert (await client.post("/v1/admin/flights", json=body, headers=customer_headers)).status == 403
    resp = await client.post("/v1/admin/flights", json=body, headers=admin_headers)
    assert resp.status == 201
    assert (await client.post("/v1/admin/flights", json=body, headers=admin_headers)).status == 409
    for change, fragment in (({"arrival_at": 0}, "arrival_at"), ({"destination": "LIS"}, "differ"),
                             ({"cabins": {"first": {"capacity": 1, "base_fare_cents": 1}}}, "cabin first"),
                             ({"cabins": {"economy": {"capacity": 1, "base_fare_cents": 0}}}, "base_fare_cents")):
        resp = await client.post("/v1/admin/flights", json={**body, "id": "CT202-x", **change}, headers=admin_headers)
        assert resp.status == 400 and fragment in (await resp.json())["error"]["message"], change
    await booked(client, customer_headers, clock, passengers=5)
    shrink = await client.patch(f"/v1/admin/flights/{flight.id}", headers=admin_headers,
                                json={"cabins": {"economy": {"capacity": 4, "base_fare_cents": 10000}}})
    assert shrink.status == 409
    before = (await search(client, customer_headers, clock))[0]
    cancel = await client.patch(f"/v1/admin/flights/{flight.id}", headers=admin_headers, json={"status": "cancelled"})
    assert cancel.status == 200
    assert await search(client, customer_headers, clock) == []
    late = await accept(client, customer_headers, before["id"])
    assert late.status == 409 and "cancelled" in (await late.json())["error"]["message"]
    product = {"id": "wifi", "kind": "Insurance", "name": "Trip cover plus", "price_cents": 2500}
    assert (await client.post("/v1/admin/products", json=product, headers=admin_headers)).status == 201
    assert (await client.post("/v1/admin/products", json={**product, "id": "x", "kind": "Flight"},
                              headers=admin_headers)).status == 400
    resp = await client.patch("/v1/admin/products/wifi", json={"price_cents": 2600}, headers=admin_headers)
    assert (await resp.json())["price_cents"] == 2600
    listed = await (await client.get("/v1/admin/flights", params={"limit": 1}, headers=admin_headers)).json()
    assert len(listed["items"]) == 1 and listed["next_cursor"]
