"""What the console reads about orders: a state filter, barcodes as QR codes, and the confirmation email."""

from app.main import PLATFORM
from tests.conftest import CUSTOMER
from tests.integration.retail.helpers import booked, customer, pay


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
        assert svg.startswith("<svg") and f"Barcode {code}" in svg and "<path" in svg
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
