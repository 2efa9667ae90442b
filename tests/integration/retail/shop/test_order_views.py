"""What the console reads about orders: a state filter, barcodes as QR codes, and the confirmation email."""

from app.main import PLATFORM
from tests.conftest import CUSTOMER
from tests.integration.retail.helpers import booked, customer, pay, search


async def _paid(client, headers, clock) -> dict:
    order = await booked(client, headers, clock)
    resp = await pay(client, headers, order["id"])
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_orders_filter_by_state_for_their_owner_and_for_staff(shop, clock, customer_headers, admin_headers):
    client, _ = shop
    paid = await _paid(client, customer_headers, clock)
    proposed = await booked(client, customer_headers, clock)
    other = await booked(client, await customer(client, "bo"), clock)

    async def ids(headers, **params) -> list[str]:
        resp = await client.get("/v1/orders", params=params, headers=headers)
        assert resp.status == 200, await resp.text()
        return [o["id"] for o in (await resp.json())["items"]]
    assert await ids(customer_headers, state="FULFILLED") == [paid["id"]]
    assert await ids(customer_headers, state="PROPOSED") == [proposed["id"]]
    assert await ids(admin_headers, state="PROPOSED") == [proposed["id"], other["id"]]
    assert await ids(admin_headers, state="CANCELLED") == []
    bad = await client.get("/v1/orders", params={"state": "LOST"}, headers=customer_headers)
    assert bad.status == 400 and "state" in (await bad.json())["error"]["message"]


async def test_a_barcode_is_a_qr_code_for_its_owner_and_staff_only(shop, clock, customer_headers, admin_headers):
    client, _ = shop
    order = await _paid(client, customer_headers, clock)
    code = order["barcodes"][0]["code"]
    path = f"/v1/orders/{order['id']}/barcodes/{code}.svg"
    for headers in (customer_headers, admin_headers):
        resp = await client.get(path, headers=headers)
        assert resp.status == 200 and resp.content_type == "image/svg+xml"
        svg = await resp.text()
        assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and f"Barcode {code}" in svg
        assert "<path" in svg
    assert (await client.get(path, headers=await customer(client, "eve"))).status == 404
    assert (await client.get(path)).status == 401
    unknown = await client.get(f"/v1/orders/{order['id']}/barcodes/nope.svg", headers=customer_headers)
    assert unknown.status == 404 and "no barcode" in (await unknown.json())["error"]["message"]


async def test_a_paid_order_sends_its_buyer_one_confirmation(shop, clock, customer_headers):
    client, _ = shop
    outbox = client.app[PLATFORM].outbox_store
    order = await _paid(client, customer_headers, clock)
    mail = await outbox.get(f"msg_conf_{order['id']}")
    assert mail is not None and mail.to == CUSTOMER[0]
    assert order["id"] in mail.subject and str(len(order["barcodes"])) in mail.text
    guest = {"Authorization": f"Bearer {(await (await client.post('/v1/auth/guest')).json())['access_token']}"}
    guest_order = await _paid(client, guest, clock)
    assert await outbox.get(f"msg_conf_{guest_order['id']}") is None  # a guest gave no address


async def test_the_routes_flown_are_public(shop, clock):
    client, flight = shop
    routes = (await (await client.get("/v1/routes")).json())["items"]
    assert {"origin": flight.origin, "destination": flight.destination} in routes
    assert routes == sorted(routes, key=lambda r: (r["origin"], r["destination"]))


async def test_the_fare_now_is_what_a_search_prices(shop, clock, customer_headers, admin_headers):
    client, flight = shop
    for _ in range(4):
        await booked(client, customer_headers, clock, passengers=9)  # demand moves the fare
    listed = await (await client.get("/v1/flights", params={"origin": flight.origin, "destination": flight.destination,
                                                            "date": flight.departure_date})).json()
    fare_now = listed["items"][0]["fares_now"]["economy"]
    offers = await search(client, customer_headers, clock)
    item = next(o for o in offers if o["bundle"] == "flight_only")["items"][0]
    assert fare_now == item["unit_price_cents"] > flight.cabins["economy"].base_fare_cents
    staff = await (await client.get("/v1/admin/flights", headers=admin_headers)).json()
    mine = next(f for f in staff["items"] if f["id"] == flight.id)
    assert mine["fares_now"]["economy"] == fare_now and mine["seats_left"]["economy"] == 150 - 36
    assert mine["cabins"]["economy"]["capacity"] == 150  # still the flight's own definition
