"""Retailing through the real app: flights, offers, orders, payments, fulfilment, cancellations."""

import asyncio
import hashlib
import hmac
import json
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.offers import SqliteOfferStore
from app.keys import CONFIG
from app.main import PLATFORM, create_app
from app.retail.payments import ChargeResult
from app.runtime.clock import ManualClock
from handlers.rest.retail import OfferList
from state.offers import Conditions, Item, Offer, SharedDraft
from tests.conftest import bearer, make_config
from tests.retail_helpers import (
    DAY,
    DECLINED_CARD,
    PENDING_CARD,
    accept,
    booked,
    customer,
    departure_date,
    pay,
    ranking_of,
    search,
    search_body,
    seed_catalog,
)


@pytest.fixture
def clock() -> ManualClock:
    """The start of today (UTC): these tests move the clock on by hours and find the flight by the date the
    clock gives, so they must not cross midnight on their own. (Not later than now: tokens are issued on it.)"""
    return ManualClock(time.time() // DAY * DAY)


@pytest.fixture
async def shop(client, clock):
    flight = await seed_catalog(client.app[PLATFORM], clock)
    return client, flight


async def seats_left(client, clock, cabin="economy") -> int:
    resp = await client.get("/v1/flights", params={"origin": "LIS", "destination": "BCN",
                                                   "date": departure_date(clock)})
    assert resp.status == 200
    return (await resp.json())["items"][0]["seats_left"][cabin]


async def test_flights_are_public_and_show_seats_left(shop, clock):
    client, flight = shop
    resp = await client.get("/v1/flights", params={"origin": "LIS", "destination": "BCN",
                                                   "date": departure_date(clock)})
    body = await resp.json()
    assert resp.status == 200 and body["items"][0]["id"] == flight.id
    assert body["items"][0]["seats_left"] == {"economy": 150, "premium": 12}
    bad = await client.get("/v1/flights", params={"origin": "lisbon", "destination": "BCN", "date": "tomorrow"})
    assert bad.status == 400 and "origin" in (await bad.json())["error"]["message"]


async def test_search_prices_ranks_and_persists_bundles(shop, clock, customer_headers):
    client, _ = shop
    offers = await search(client, customer_headers, clock, passengers=3, segment="premium")
    bundles = {o["bundle"] for o in offers}
    assert 3 <= len(offers) <= 5
    assert {"flight_only", "comfort", "premium", "premium_lounge", "group_bags"} == bundles
    for o in offers:
        subtotal = sum(i["total_cents"] for i in o["items"])
        assert o["total_cents"] == subtotal + o["taxes_cents"] + o["booking_fee_cents"]
        assert o["expires_at"] == pytest.approx(clock.now() + 900)
        assert all(i["quantity"] == 3 for i in o["items"]) and o["state"] == "ACTIVE"
        # How the airline ranks an offer is its own business: no margin, probability or score.
        assert not {"margin_cents", "probability", "score"} & set(o)
    # The ranking is in the event log: best score first, score = P(accept) x margin.
    ranked = await ranking_of(client, offers)
    assert [e["rank"] for e in ranked] == list(range(1, len(offers) + 1))
    assert [e["score"] for e in ranked] == sorted((e["score"] for e in ranked), reverse=True)
    for e in ranked:
        assert e["margin_cents"] > 0 and e["score"] == pytest.approx(e["probability"] * e["margin_cents"], rel=1e-3)
    lounge = next(i for o in offers if o["bundle"] == "premium_lounge" for i in o["items"] if i["kind"] == "Lounge")
    assert lounge["discount_percent"] == 20 and lounge["unit_price_cents"] == 3_120  # 3,900 less 20%
    bags = next(i for o in offers if o["bundle"] == "group_bags" for i in o["items"] if i["kind"] == "Bag")
    assert bags["unit_price_cents"] == 2_625  # 3,500 less 25%
    corporate = await search(client, customer_headers, clock, segment="corporate")
    seat = next(i for o in corporate if o["bundle"] == "corporate_flex" for i in o["items"] if i["kind"] == "Seat")
    assert seat["unit_price_cents"] == 600  # half of 1,200
    # Offers are durable: the row is in SQLite before the response.
    rows = await client.app[PLATFORM].records_db.fetchall("SELECT id FROM offers")
    assert {o["id"] for o in offers} <= {r[0] for r in rows}
    # The response is the documented OfferList, each offer as GET /v1/offers/{id} shows it.
    resp = await client.post("/v1/offers/search", json=search_body(clock), headers=customer_headers)
    listed = msgspec.json.decode(await resp.read(), type=OfferList)
    assert listed.ranked_by == "rules" and listed.model_version == "rules" and len(listed.offers) >= 3
    raw = msgspec.json.decode(await resp.read())["offers"]
    store = client.app[PLATFORM].offer_store
    for offer, as_listed in zip(listed.offers, raw, strict=True):
        shown = await client.get(f"/v1/offers/{offer.id}", headers=customer_headers)
        assert await shown.json() == as_listed
        assert await store.fetch(offer.id) == offer == store.get(offer.id)  # SQLite holds it as shown
    # A row holds the offer's own fields and its draft's id; a draft (a priced bundle) is stored once
    # for all the offers made from it.
    again = await search(client, customer_headers, clock)
    assert {o["id"] for o in again}.isdisjoint(o.id for o in listed.offers)
    db = client.app[PLATFORM].records_db
    rows = await db.fetchall("SELECT draft_id, body FROM offers")
    (drafts_stored,), = await db.fetchall("SELECT count(*) FROM offer_drafts")
    assert all(draft is not None and body is None for draft, body in rows)
    assert drafts_stored == len({draft for draft, _ in rows}) < len(rows)


async def test_search_refuses_bad_input_with_clear_messages(shop, clock, customer_headers):
    client, _ = shop
    for overrides, fragment in (({"origin": "lis"}, "origin"), ({"departure_date": "2026-13-40"}, "calendar date"),
                                ({"passengers": 0}, "passengers"), ({"passengers": 10}, "passengers must be 1 to 9"),
                                ({"cabin": "first"}, "cabin"), ({"segment": "vip"}, "segment"),
                                ({"extra": 1}, "extra")):
        resp = await client.post("/v1/offers/search", json=search_body(clock, **overrides), headers=customer_headers)
        assert resp.status == 400, overrides
        assert fragment in (await resp.json())["error"]["message"], overrides
    resp = await client.post("/v1/offers/search", json=search_body(clock))
    assert resp.status == 401
    empty = await search(client, customer_headers, clock, destination="OPO")
    assert empty == []


async def test_offers_belong_to_whoever_searched(shop, clock, customer_headers, admin_headers):
    client, _ = shop
    offer = (await search(client, customer_headers, clock))[0]
    other = await customer(client, "someone-else")
    assert (await client.get(f"/v1/offers/{offer['id']}", headers=other)).status == 404
    assert (await accept(client, other, offer["id"])).status == 404
    assert (await client.get(f"/v1/offers/{offer['id']}", headers=admin_headers)).status == 200
    resp = await client.delete(f"/v1/offers/{offer['id']}", headers=customer_headers)
    assert resp.status == 200 and (await resp.json())["state"] == "CANCELLED"
    resp = await accept(client, customer_headers, offer["id"])
    assert resp.status == 409 and (await resp.json())["error"]["details"]["state"] == "CANCELLED"


async def test_an_expired_offer_is_gone(shop, clock, customer_headers):
    client, _ = shop
    offer = (await search(client, customer_headers, clock))[0]
    clock.advance(901)
    resp = await accept(client, customer_headers, offer["id"])
    assert resp.status == 410
    expired = await (await client.get(f"/v1/offers/{offer['id']}", headers=customer_headers)).json()
    assert expired["state"] == "EXPIRED"
    await client.app[PLATFORM].sweep_retail_once()
    # Swept out of memory, still answered from SQLite.
    resp = await client.get(f"/v1/offers/{offer['id']}", headers=customer_headers)
    assert resp.status == 200 and (await resp.json())["state"] == "EXPIRED"
    assert (await accept(client, customer_headers, offer["id"])).status == 410


async def test_the_sweep_expires_offers_a_chunk_per_commit(shop, clock, customer_headers):
    client, _ = shop
    shown = [o for _ in range(3) for o in await search(client, customer_headers, clock)]
    accepted = shown[0]
    assert (await accept(client, customer_headers, accepted["id"])).status == 201
    platform = client.app[PLATFORM]
    commits = platform.records_db.commits
    clock.advance(901)
    assert await platform.offers.expire_due(chunk=4) == len(shown) - 1  # the accepted one is not expired
    assert platform.records_db.commits - commits >= (len(shown) - 1) // 4
    rows = await platform.records_db.fetchall("SELECT state, count(*) FROM offers GROUP BY state")
    assert dict(rows)["EXPIRED"] == len(shown) - 1 and await platform.offers.expire_due(chunk=4) == 0


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


async def test_declined_payment_returns_the_order_to_proposed(shop, clock, customer_headers):
    client, _ = shop
    order = await booked(client, customer_headers, clock)
    resp = await pay(client, customer_headers, order["id"], card=DECLINED_CARD)
    body = await resp.json()
    assert resp.status == 402 and body["error"]["details"]["reason"] == "card_declined"
    current = await (await client.get(f"/v1/orders/{order['id']}", headers=customer_headers)).json()
    assert current["state"] == "PROPOSED" and current["payments_failed"] == 1
    assert (await pay(client, customer_headers, order["id"])).status == 200
    bad = await pay(client, customer_headers, order["id"], card="4242424242424241")
    assert bad.status == 400 and "Luhn" in (await bad.json())["error"]["message"]
    expired = await client.post(f"/v1/orders/{order['id']}/pay", headers=customer_headers,
                                json={"card": {"number": "4242424242424242", "exp_month": 1, "exp_year": 2001,
                                               "cvc": "123"}})
    assert expired.status == 400 and "expired" in (await expired.json())["error"]["message"]


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


async def test_a_declined_order_is_swept_when_its_hold_ends(shop, clock, customer_headers):
    client, _ = shop
    order = await booked(client, customer_headers, clock)
    declined = await pay(client, customer_headers, order["id"], card="4000000000000002")
    assert declined.status == 402  # back to PROPOSED: the sweep must still find it
    platform = client.app[PLATFORM]
    assert (await platform.sweep_retail_once())["expired"] == 0
    clock.advance(1801)
    assert (await platform.sweep_retail_once())["expired"] == 1
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


class HeldGateway:
    """A card processor stand-in whose charge completes only when the test says so."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.charging = asyncio.Event()

    async def charge(self, payment_id, amount_cents, currency, card_number):
        self.charging.set()
        await self.release.wait()
        return ChargeResult("approved")

    async def status(self, payment_id):
        return ChargeResult("pending")


async def test_payment_started_a_second_before_expiry_completes_and_keeps_the_seats(shop, clock, customer_headers):
    client, _ = shop
    platform = client.app[PLATFORM]
    gateway = platform.orders.gateway = HeldGateway()
    order = await booked(client, customer_headers, clock, passengers=2)
    held = await seats_left(client, clock)
    clock.advance(1799)
    paying = asyncio.ensure_future(pay(client, customer_headers, order["id"]))
    await asyncio.wait_for(gateway.charging.wait(), 5)
    clock.advance(60)  # the hold has now expired while the card is being charged
    assert (await platform.sweep_retail_once())["expired"] == 0
    assert await seats_left(client, clock) == held
    gateway.release.set()
    resp = await paying
    assert resp.status == 200 and (await resp.json())["state"] == "FULFILLED"
    assert await seats_left(client, clock) == held


def _signed(body: dict, secret: str) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    return raw, {"X-Contrail-Signature": "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest(),
                 "Content-Type": "application/json"}


async def test_pending_payment_settles_by_signed_webhook_once(shop, clock, customer_headers, config):
    client, _ = shop
    order = await booked(client, customer_headers, clock)
    resp = await pay(client, customer_headers, order["id"], card=PENDING_CARD)
    pending = await resp.json()
    assert resp.status == 202 and pending["state"] == "PAYMENT_PENDING"
    clock.advance(1801)
    await client.app[PLATFORM].sweep_retail_once()  # never expires a PAYMENT_PENDING order
    event = {"id": "evt_1", "payment_id": pending["payment"]["id"], "order_id": order["id"], "status": "approved"}
    raw, headers = _signed(event, client.app[CONFIG].payments.webhook_secret)
    forged = await client.post("/v1/webhooks/payments", data=raw,
                               headers={**headers, "X-Contrail-Signature": "sha256=" + "0" * 64})
    assert forged.status == 401
    resp = await client.post("/v1/webhooks/payments", data=raw, headers=headers)
    assert resp.status == 200 and await resp.json() == {"order_id": order["id"], "state": "FULFILLED",
                                                        "duplicate": False}
    resp = await client.post("/v1/webhooks/payments", data=raw, headers=headers)
    assert (await resp.json())["duplicate"] is True
    await client.app[PLATFORM].event_log.flush()
    paid = await client.app[PLATFORM].event_log.query("OrderPaid", None, 0, 10)
    assert len(paid) == 1
    raw, headers = _signed({"id": "evt_2", "payment_id": "x"}, client.app[CONFIG].payments.webhook_secret)
    assert (await client.post("/v1/webhooks/payments", data=raw, headers=headers)).status == 400


async def test_stuck_payment_is_reconciled_with_the_gateway(shop, clock, customer_headers, config):
    client, _ = shop
    platform = client.app[PLATFORM]
    order = await booked(client, customer_headers, clock)
    assert (await pay(client, customer_headers, order["id"], card=PENDING_CARD)).status == 202
    clock.advance(config.payments.pending_timeout_s - 1)
    assert (await platform.sweep_retail_once())["reconciled"] == 0
    clock.advance(2)  # past the pending timeout: ask the gateway, which has settled it by now
    assert (await platform.sweep_retail_once())["reconciled"] == 1
    current = await (await client.get(f"/v1/orders/{order['id']}", headers=customer_headers)).json()
    assert current["state"] == "FULFILLED" and current["payment"]["status"] == "approved"


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


async def test_offers_stored_before_drafts_were_shared_still_load(tmp_path):
    """An offer row written by the schema before shared drafts holds its whole body (and a ranking the
    shopper no longer sees): after the migration it loads, unchanged where it matters."""
    old = {"id": "off_old", "owner": "acct_1", "flight_id": "CT101-test", "cabin": "economy", "passengers": 2,
           "segment": "economy", "bundle": "flight_only", "items": [], "taxes_cents": 100, "booking_fee_cents": 500,
           "total_cents": 20_600, "currency": "EUR", "conditions": {"refundable": False, "refund_penalty_cents": 0,
                                                                    "changeable": True, "change_penalty_cents": 7500},
           "created_at": 1_000.0, "expires_at": 1_900.0, "departure_at": 90_000.0, "probability": 0.3,
           "margin_cents": 2_500, "score": 750.0, "discount_percent": 0.0, "state": "ACTIVE"}
    before = Database(tmp_path / "records.db", [m for m in migrations.RECORDS if m.version < 8])
    await before.open()
    await before.write([("INSERT INTO offers(id, owner, state, expires_at, body) VALUES (?, ?, ?, ?, ?)",
                         ("off_old", "acct_1", "ACTIVE", 1_900.0, msgspec.json.encode(old).decode()))])
    await before.close()
    after = Database(tmp_path / "records.db", migrations.RECORDS)
    assert 8 in await after.open()
    store = SqliteOfferStore(after)
    await store.load(now=1_500.0)
    offer = store.get("off_old")
    assert offer is not None and await store.fetch("off_old") == offer
    assert (offer.owner, offer.created_at, offer.expires_at, offer.total_cents) == ("acct_1", 1_000.0, 1_900.0, 20_600)
    assert not {"probability", "margin_cents", "score"} & set(msgspec.to_builtins(offer))
    await after.close()


@settings(max_examples=200, deadline=None)
@given(owner=st.text(max_size=40), created=st.floats(0, 4e9), ttl=st.floats(0, 1e6),
       state=st.sampled_from(["ACTIVE", "ACCEPTED", "EXPIRED", "CANCELLED"]))
def test_an_offer_made_from_a_shared_draft_is_the_json_of_the_whole_offer(owner, created, ttl, state):
    draft = Offer(id="drf_1", owner="", state="ACTIVE", created_at=0.0, expires_at=0.0, flight_id="CT1",
                  cabin="economy", passengers=2, segment="leisure", bundle="comfort",
                  items=(Item("Flight", "CT1", "CT1 LIS-BCN \"economy\"", 2, 10_000, 0, 20_000, "CT1/economy"),
                         Item("Bag", "bag", "Bag ✈", 2, 3_500, 25, 7_000)),
                  taxes_cents=1_000, booking_fee_cents=500, total_cents=28_500, currency="EUR",
                  conditions=Conditions(True, 100, True, 0), departure_at=9e5, discount_percent=12.5)
    offer = msgspec.structs.replace(draft, id="off_x", owner=owner, state=state, created_at=created,
                                    expires_at=created + ttl)
    assert SharedDraft(draft).offer_json(offer) == msgspec.json.encode(offer)


async def test_priced_bundles_kept_for_reuse_are_bounded(aiohttp_client, tmp_path, clock):
    """retail.draft_cache_size bounds the priced bundles kept for later searches: a search the cache
    has let go of prices its bundles (and stores them) again, one it still holds reuses them."""

    async def drafts_after(cache_size: int) -> int:
        client = await aiohttp_client(create_app(make_config(tmp_path / str(cache_size),
                                                             retail__draft_cache_size=cache_size), clock=clock))
        await seed_catalog(client.app[PLATFORM], clock)
        headers = await customer(client, f"cache{cache_size}")
        for passengers in (1, 2, 1):  # two parties: two cache entries, the first one asked for again
            assert len(await search(client, headers, clock, passengers=passengers)) == 3
        (count,), = await client.app[PLATFORM].records_db.fetchall("SELECT count(*) FROM offer_drafts")
        await client.close()
        return count

    assert await drafts_after(20_000) == 6  # 3 bundles per party, the first party's reused
    assert await drafts_after(1) == 9       # the first party's bundles were let go of and priced again


async def test_offers_and_their_drafts_are_deleted_after_the_retention(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, retail__offer_retention_days=1), clock=clock))
    platform = client.app[PLATFORM]
    db = platform.records_db
    await seed_catalog(platform, clock, days=40)
    day = departure_date(clock, 40)

    async def stored() -> tuple[int, int]:
        (offers,), = await db.fetchall("SELECT count(*) FROM offers")
        (drafts,), = await db.fetchall("SELECT count(*) FROM offer_drafts")
        return offers, drafts

    headers = await customer(client, "retention")
    first = await search(client, headers, clock, departure_date=day)
    assert await platform.offers.purge_expired() == (0, 0)  # nothing is old enough yet
    clock.advance(DAY + 1_000)  # a day past the offers' expiry
    await platform.sweep_retail_once()
    assert await platform.offers.purge_expired() == (3, 3) and await stored() == (0, 0)
    headers = await customer(client, "retention")  # a token on the moved clock
    assert (await client.get(f"/v1/offers/{first[0]['id']}", headers=headers)).status == 404
    # The same bundles are still priced in memory: shown again, they are stored again.
    again = await search(client, headers, clock, departure_date=day)
    assert await stored() == (3, 3)
    assert await platform.offer_store.fetch(again[0]["id"]) == platform.offer_store.get(again[0]["id"])
    # An order keeps what it took from its offer when the offer is gone.
    order = await (await accept(client, headers, again[0]["id"])).json()
    clock.advance(DAY + 1_000)
    await platform.sweep_retail_once()
    assert await platform.offers.purge_expired() == (3, 3) and await stored() == (0, 0)
    headers = await customer(client, "retention")
    kept = await (await client.get(f"/v1/orders/{order['id']}", headers=headers)).json()
    assert kept["offer_id"] == again[0]["id"] and kept["items"] == order["items"]
