"""A payment that fails: declined at checkout (the shopper may try again) or definitively by the gateway's
webhook (the order is cancelled and its seats go back on sale)."""

import asyncio
import hashlib
import hmac
import json

import pytest

from app.main import PLATFORM, create_app
from app.retail.payments import ChargeResult
from tests.conftest import bearer
from tests.integration.retail.helpers import (
    DECLINED_CARD,
    PENDING_CARD,
    booked,
    departure_date,
    pay,
    search,
    seed_catalog,
)


@pytest.fixture
async def shop(client, clock):
    return client, await seed_catalog(client.app[PLATFORM], clock, economy=20)


def signed(body: dict, secret: str) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    return raw, {"X-Contrail-Signature": "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest(),
                 "Content-Type": "application/json"}


async def webhook(client, secret: str, event_id: str, order: dict, status: str, reason: str | None = None):
    body = {"id": event_id, "payment_id": order["payment"]["id"], "order_id": order["id"], "status": status}
    if reason is not None:
        body["reason"] = reason
    raw, headers = signed(body, secret)
    return await client.post("/v1/webhooks/payments", data=raw, headers=headers)


async def seats_left(client, clock) -> int:
    resp = await client.get("/v1/flights", params={"origin": "LIS", "destination": "BCN",
                                                   "date": departure_date(clock)})
    return (await resp.json())["items"][0]["seats_left"]["economy"]


async def order_of(client, headers, order_id: str) -> dict:
    resp = await client.get(f"/v1/orders/{order_id}", headers=headers)
    assert resp.status == 200
    return await resp.json()


async def pending_order(client, headers, clock, passengers: int = 3) -> dict:
    order = await booked(client, headers, clock, passengers=passengers)
    resp = await pay(client, headers, order["id"], card=PENDING_CARD)
    assert resp.status == 202
    return await resp.json()


async def test_a_failed_payment_webhook_cancels_the_order_and_releases_its_seats(aiohttp_client, config, clock):
    client = await aiohttp_client(create_app(config, clock=clock))
    await seed_catalog(client.app[PLATFORM], clock, economy=20)
    headers = await bearer(client, "fails@example.com", "correct horse battery", "customer")
    secret = client.app[PLATFORM].config.payments.webhook_secret
    order = await booked(client, headers, clock, passengers=3)
    assert await seats_left(client, clock) == 17
    resp = await pay(client, headers, order["id"], card=PENDING_CARD)
    assert resp.status == 202 and (await resp.json())["state"] == "PAYMENT_PENDING"
    pending = await resp.json()

    resp = await webhook(client, secret, "evt_fail_1", pending, "declined", "insufficient_funds")
    assert resp.status == 200
    assert await resp.json() == {"order_id": order["id"], "state": "CANCELLED", "duplicate": False}
    cancelled = await order_of(client, headers, order["id"])
    assert cancelled["state"] == "CANCELLED" and cancelled["refund_cents"] == 0
    assert cancelled["payment"]["status"] == "declined" and cancelled["payment"]["reason"] == "insufficient_funds"
    assert await seats_left(client, clock) == 20  # the hold is released
    platform = client.app[PLATFORM]
    assert not {k: v for k, v in platform.order_store.held.items() if v}
    await platform.event_log.flush()
    events = await platform.event_log.query("OrderCancelled", None, 0, 10)
    assert len(events) == 1 and json.loads(bytes(events[0].payload))["order_id"] == order["id"]
    # The same event again changes nothing; a cancelled order cannot be paid.
    again = await webhook(client, secret, "evt_fail_1", pending, "declined", "insufficient_funds")
    assert again.status == 200 and (await again.json())["duplicate"] is True
    refused = await pay(client, headers, order["id"])
    assert refused.status == 409 and (await refused.json())["error"]["details"]["state"] == "CANCELLED"
    # The sweep never brings it back, and nothing is released twice.
    clock.advance(3 * 3600)
    await platform.sweep_retail_once()
    assert await seats_left(client, clock) == 20
    await client.close()

    # After a restart the order is still cancelled and its seats are still for sale.
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await bearer(client, "fails@example.com", "correct horse battery", "customer")
    assert (await order_of(client, headers, order["id"]))["state"] == "CANCELLED"
    assert await seats_left(client, clock) == 20
    assert not {k: v for k, v in client.app[PLATFORM].order_store.held.items() if v}
    again = await webhook(client, secret, "evt_fail_1", pending, "declined")
    assert again.status == 200 and await again.json() == {"order_id": order["id"], "state": "CANCELLED",
                                                           "duplicate": True}


async def test_a_failed_webhook_releases_limited_products_too(shop, clock, customer_headers, config):
    client, flight = shop
    platform = client.app[PLATFORM]
    offers = await search(client, customer_headers, clock, passengers=2)
    comfort = next(o for o in offers if o["bundle"] == "comfort")
    resp = await client.post(f"/v1/offers/{comfort['id']}/accept", headers=customer_headers)
    assert resp.status == 201
    order = await resp.json()
    meal = f"{flight.id}/meal-hot"
    assert platform.order_store.held[meal] == 2
    resp = await pay(client, customer_headers, order["id"], card=PENDING_CARD)
    assert resp.status == 202
    secret = client.app[PLATFORM].config.payments.webhook_secret
    resp = await webhook(client, secret, "evt_meal", await resp.json(), "declined")
    assert (await resp.json())["state"] == "CANCELLED"
    assert platform.order_store.held[meal] == 0 and platform.catalog.available(meal) == 40
    assert platform.order_store.held[f"{flight.id}/economy"] == 0


async def test_a_decline_at_checkout_still_returns_the_order_to_proposed(shop, clock, customer_headers):
    client, _ = shop
    order = await booked(client, customer_headers, clock, passengers=2)
    resp = await pay(client, customer_headers, order["id"], card=DECLINED_CARD)
    body = await resp.json()
    assert resp.status == 402 and body["error"]["details"] == {
        "reason": "card_declined", "order": {"id": order["id"], "state": "PROPOSED"}}
    current = await order_of(client, customer_headers, order["id"])
    assert current["state"] == "PROPOSED" and current["payments_failed"] == 1
    assert await seats_left(client, clock) == 18  # still held: the shopper may try another card
    assert (await pay(client, customer_headers, order["id"])).status == 200


async def test_a_failed_webhook_for_an_order_already_settled_changes_nothing(shop, clock, customer_headers, config):
    client, _ = shop
    secret = client.app[PLATFORM].config.payments.webhook_secret
    # Paid (by an approving webhook): a later failure for the same payment leaves it paid.
    paid = await pending_order(client, customer_headers, clock, passengers=1)
    resp = await webhook(client, secret, "evt_ok", paid, "approved")
    assert (await resp.json())["state"] == "FULFILLED"
    resp = await webhook(client, secret, "evt_late_failure", paid, "declined")
    assert resp.status == 200 and await resp.json() == {"order_id": paid["id"], "state": "FULFILLED",
                                                        "duplicate": False}
    assert (await order_of(client, customer_headers, paid["id"]))["state"] == "FULFILLED"
    # Paid at checkout: a failure for its payment changes nothing either.
    order = await booked(client, customer_headers, clock, passengers=1)
    resp = await pay(client, customer_headers, order["id"])
    assert resp.status == 200
    checked_out = await resp.json()
    resp = await webhook(client, secret, "evt_stray", checked_out, "declined")
    assert resp.status == 200 and (await resp.json())["state"] == "FULFILLED"
    # Cancelled by a first failure: a second failure (another event id) changes nothing, says so again.
    cancelled = await pending_order(client, customer_headers, clock, passengers=2)
    assert (await (await webhook(client, secret, "evt_f1", cancelled, "declined")).json())["state"] == "CANCELLED"
    left = await seats_left(client, clock)
    resp = await webhook(client, secret, "evt_f2", cancelled, "declined")
    assert resp.status == 200 and (await resp.json())["state"] == "CANCELLED"
    resp = await webhook(client, secret, "evt_f3", cancelled, "approved")  # too late: it stays cancelled
    assert resp.status == 200 and (await resp.json())["state"] == "CANCELLED"
    assert await seats_left(client, clock) == left
    # Declined at checkout (PROPOSED): a webhook for that payment does not cancel it.
    order = await booked(client, customer_headers, clock, passengers=1)
    resp = await pay(client, customer_headers, order["id"], card=DECLINED_CARD)
    assert resp.status == 402
    current = await order_of(client, customer_headers, order["id"])
    resp = await webhook(client, secret, "evt_after_decline", current, "declined")
    assert resp.status == 200 and (await resp.json())["state"] == "PROPOSED"
    # An unknown order is answered too.
    resp = await webhook(client, secret, "evt_unknown", {"id": "ord_nope", "payment": {"id": "pay_nope"}},
                         "declined")
    assert resp.status == 200 and await resp.json() == {"order_id": "ord_nope", "state": None, "duplicate": False}
    assert (await order_of(client, customer_headers, paid["id"]))["state"] == "FULFILLED"


async def test_a_webhook_failure_during_checkout_answers_402_with_the_cancelled_order(shop, clock,
                                                                                       customer_headers, config):
    """The gateway's webhook can beat its own answer to the checkout: the order is cancelled and the shopper
    is told the payment was declined (not 200 with a cancelled order)."""
    client, _ = shop
    platform = client.app[PLATFORM]
    order = await booked(client, customer_headers, clock, passengers=2)
    charging, decide = asyncio.Event(), asyncio.Event()
    real = platform.orders.gateway

    class Slow:
        async def charge(self, payment_id, amount_cents, currency, card_number):
            charging.set()
            await decide.wait()
            return ChargeResult("declined", "card_declined")

        async def status(self, payment_id):
            return await real.status(payment_id)

    platform.orders.gateway = Slow()
    checkout = asyncio.ensure_future(pay(client, customer_headers, order["id"]))
    await charging.wait()
    pending = platform.order_store.get(order["id"])
    assert pending.state == "PAYMENT_PENDING"
    resp = await webhook(client, client.app[PLATFORM].config.payments.webhook_secret, "evt_first",
                         {"id": order["id"], "payment": {"id": pending.payment.id}}, "declined", "card_declined")
    assert (await resp.json())["state"] == "CANCELLED"
    decide.set()
    resp = await checkout
    body = await resp.json()
    assert resp.status == 402 and body["error"]["details"]["order"] == {"id": order["id"], "state": "CANCELLED"}
    assert await seats_left(client, clock) == 20
