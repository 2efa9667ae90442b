"""Orders through the real app: accept, pay, fulfil and consume; holds that expire; archiving; the last seats
under concurrent accepts; cancellations; listing; guests; a restart."""

import asyncio
import json

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import bearer
from tests.integration.retail.helpers import accept, booked, customer, pay, search, seats_left, seed_catalog


async def test_accept_pay_fulfil_consume(shop, clock, customer_headers, admin_headers):
    client, flight = shop
    offers = await search(client, customer_headers, clock, passengers=2)
    comfort = next(o for o in offers if o["bundle"] == "comfort")
    before = await seats_left(client, clock)
    resp = await accept(client, customer_headers, comfort["id"], key="accept-1")
    order = await resp.json()
    assert resp.status == 201 and order["state"] == "PROPOSED"
    assert order["hold_expires_at"] == pytest.approx(clock.now() + 1800)
    assert await seats_left(client, clock) == before - 2
    replay = await accept(client, customer_headers, comfort["id"], key="accept-1")
    assert replay.status == 201 and (await replay.json())["id"] == order["id"]  # the first answer, replayed
    assert (await accept(client, customer_headers, comfort["id"])).status == 409

    resp = await pay(client, customer_headers, order["id"], key="pay-1")
    paid = await resp.json()
    assert resp.status == 200 and paid["state"] == "FULFILLED" and paid["payment"]["status"] == "approved"
    assert paid["payment"]["card_last4"] == "4242" and "4242424242424242" not in json.dumps(paid)
    fulfilment = await (await client.get(f"/v1/orders/{order['id']}/fulfillment", headers=customer_headers)).json()
    codes = [b["code"] for b in fulfilment["barcodes"]]
    assert len(codes) == 2 * 4 and len(set(codes)) == 8  # 2 passengers x (flight, seat, bag, meal)
    assert all(len(c) >= 24 for c in codes)
    assert (await client.post(f"/v1/fulfillment/{codes[0]}/consume", headers=customer_headers)).status == 403
    used = await client.post(f"/v1/fulfillment/{codes[0]}/consume", headers=admin_headers)
    assert used.status == 200 and (await used.json())["barcode"]["consumed_at"] is not None
    again = await client.post(f"/v1/fulfillment/{codes[0]}/consume", headers=admin_headers)
    assert again.status == 409
    assert (await client.post("/v1/fulfillment/not-a-code/consume", headers=admin_headers)).status == 404
    resp = await pay(client, customer_headers, order["id"])
    assert resp.status == 409 and (await resp.json())["error"]["details"]["state"] == "FULFILLED"
    await client.app[PLATFORM].event_log.flush()
    types = [e.type for e in await client.app[PLATFORM].event_log.query(None, None, 0, 1000)]
    assert {"OfferGenerated", "OfferAccepted", "OrderPaid"} <= set(types)


async def test_unpaid_hold_expires_once_and_releases_the_seats(shop, clock, customer_headers):
    client, _ = shop
    before = await seats_left(client, clock)
    order = await booked(client, customer_headers, clock, passengers=3)
    assert await seats_left(client, clock) == before - 3
    clock.advance(1801)
    platform = client.app[PLATFORM]
    assert (await platform.sweep_retail_once())["expired"] == 1
    assert (await platform.sweep_retail_once())["expired"] == 0
    assert await seats_left(client, clock) == before
    resp = await pay(client, customer_headers, order["id"])
    assert resp.status == 410
    state = await platform.records_db.fetchone("SELECT state FROM orders WHERE id=?", (order["id"],))
    assert state == ("EXPIRED",)


async def test_flown_orders_are_archived_once_a_week_after_departure(shop, clock, customer_headers):
    client, _ = shop
    order = await booked(client, customer_headers, clock)
    assert (await pay(client, customer_headers, order["id"])).status == 200
    platform = client.app[PLATFORM]
    departs = platform.order_store.get(order["id"]).departure_at
    clock.advance(departs - clock.now() + 6 * 86_400)
    assert (await platform.sweep_retail_once())["archived"] == 0
    clock.advance(86_400)
    assert (await platform.sweep_retail_once())["archived"] == 1
    assert (await platform.sweep_retail_once())["archived"] == 0
    state = await platform.records_db.fetchone("SELECT state FROM orders WHERE id=?", (order["id"],))
    assert state == ("ARCHIVED",)


async def test_200_concurrent_accepts_for_the_last_10_seats(aiohttp_client, tmp_path, clock):
    from app.main import create_app
    from tests.conftest import bearer, make_config
    # 200 shoppers arrive from one test address: lift the per-address and per-account limits.
    config = make_config(tmp_path, ratelimit__ip_per_s=100_000, ratelimit__ip_burst=100_000,
                         ratelimit__principal_per_s=100_000, ratelimit__principal_burst=100_000)
    client = await aiohttp_client(create_app(config, clock=clock))
    customer_headers = await bearer(client, "crowd@example.com", "correct horse battery", "customer")
    await seed_catalog(client.app[PLATFORM], clock, economy=10)
    offers = []
    for _ in range(200):
        found = await search(client, customer_headers, clock)
        offers.append(next(o["id"] for o in found if o["bundle"] == "flight_only"))
    responses = await asyncio.gather(*(accept(client, customer_headers, o) for o in offers))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) == 10 and statuses.count(409) == 190
    for r in responses:
        if r.status == 409:
            assert "inventory" in (await r.json())["error"]["message"]
    assert await seats_left(client, clock) == 0
    rows = await client.app[PLATFORM].records_db.fetchall("SELECT COUNT(*) FROM orders WHERE state='PROPOSED'")
    assert rows == [(10,)]


async def test_cancellation_quotes_refund_by_the_conditions(shop, clock, customer_headers):
    client, _ = shop
    before = await seats_left(client, clock)
    offers = await search(client, customer_headers, clock)
    comfort = next(o for o in offers if o["bundle"] == "comfort")
    order = await (await accept(client, customer_headers, comfort["id"])).json()
    assert (await pay(client, customer_headers, order["id"])).status == 200
    resp = await client.post(f"/v1/orders/{order['id']}/cancellations", headers=customer_headers)
    quote = await resp.json()
    penalty = comfort["conditions"]["refund_penalty_cents"]
    assert resp.status == 201 and quote["refund_cents"] == comfort["total_cents"] - penalty > 0
    clock.advance(901)
    late = await client.post(f"/v1/orders/{order['id']}/cancellations/{quote['id']}/confirm", headers=customer_headers)
    assert late.status == 410
    quote = await (await client.post(f"/v1/orders/{order['id']}/cancellations", headers=customer_headers)).json()
    resp = await client.post(f"/v1/orders/{order['id']}/cancellations/{quote['id']}/confirm", headers=customer_headers)
    cancelled = await resp.json()
    assert resp.status == 200 and cancelled["state"] == "CANCELLED"
    assert cancelled["refund_cents"] == quote["refund_cents"]
    assert await seats_left(client, clock) == before
    again = await client.post(f"/v1/orders/{order['id']}/cancellations", headers=customer_headers)
    assert again.status == 409 and (await again.json())["error"]["details"]["state"] == "CANCELLED"
    # Unpaid: refund 0. Flight-only (non-refundable) and paid: refund 0 too.
    unpaid = await booked(client, customer_headers, clock)
    quote = await (await client.post(f"/v1/orders/{unpaid['id']}/cancellations", headers=customer_headers)).json()
    assert quote["refund_cents"] == 0
    missing = await client.post(f"/v1/orders/{unpaid['id']}/cancellations/qte_nope/confirm", headers=customer_headers)
    assert missing.status == 404


async def test_orders_list_is_paginated_and_private(shop, clock, customer_headers, admin_headers):
    client, _ = shop
    mine = [(await booked(client, customer_headers, clock))["id"] for _ in range(3)]
    other = await customer(client, "other")
    theirs = (await booked(client, other, clock))["id"]
    first = await (await client.get("/v1/orders", params={"limit": 2}, headers=customer_headers)).json()
    assert [o["id"] for o in first["items"]] == mine[:2] and first["next_cursor"]
    rest = await (await client.get("/v1/orders", params={"limit": 2, "after": first["next_cursor"]},
                                   headers=customer_headers)).json()
    assert [o["id"] for o in rest["items"]] == mine[2:] and rest["next_cursor"] is None
    assert (await client.get(f"/v1/orders/{theirs}", headers=customer_headers)).status == 404
    assert (await client.get(f"/v1/orders/{theirs}/fulfillment", headers=customer_headers)).status == 404
    assert (await pay(client, customer_headers, theirs)).status == 404
    everyone = await (await client.get("/v1/orders", headers=admin_headers)).json()
    assert {o["id"] for o in everyone["items"]} == {*mine, theirs}
    bad = await client.get("/v1/orders", params={"after": "garbage!"}, headers=customer_headers)
    assert bad.status == 400
    assert (await client.get("/v1/orders")).status == 401


async def test_guests_can_shop_too(shop, clock):
    client, _ = shop
    token = (await (await client.post("/v1/auth/guest")).json())["access_token"]
    guest = {"Authorization": f"Bearer {token}"}
    order = await booked(client, guest, clock)
    assert (await pay(client, guest, order["id"])).status == 200


async def test_offers_and_holds_survive_a_restart(aiohttp_client, config, clock):
    client = await aiohttp_client(create_app(config, clock=clock))
    await seed_catalog(client.app[PLATFORM], clock, economy=20)
    headers = await bearer(client, "restart@example.com", "correct horse battery", "customer")
    order = await booked(client, headers, clock, passengers=4)
    offers = await search(client, headers, clock)
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await bearer(client, "restart@example.com", "correct horse battery", "customer")
    assert await seats_left(client, clock) == 16
    again = await (await client.get(f"/v1/orders/{order['id']}", headers=headers)).json()
    assert again["state"] == "PROPOSED"
    resp = await accept(client, headers, offers[0]["id"])
    assert resp.status == 201
    assert (await pay(client, headers, order["id"])).status == 200
