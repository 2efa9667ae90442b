"""Payments through the real app: declines, a charge that outlives the hold, pending payments settled by a
signed webhook or reconciled with the gateway."""

import asyncio

from app.main import PLATFORM, create_app
from app.retail.payments import ChargeResult
from tests.integration.retail.helpers import DECLINED_CARD, PENDING_CARD, _signed, booked, pay, seats_left


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


async def test_pending_payment_settles_by_signed_webhook_once(shop, clock, customer_headers, config):
    client, _ = shop
    order = await booked(client, customer_headers, clock)
    resp = await pay(client, customer_headers, order["id"], card=PENDING_CARD)
    pending = await resp.json()
    assert resp.status == 202 and pending["state"] == "PAYMENT_PENDING"
    clock.advance(1801)
    await client.app[PLATFORM].sweep_retail_once()  # never expires a PAYMENT_PENDING order
    event = {"id": "evt_1", "payment_id": pending["payment"]["id"], "order_id": order["id"], "status": "approved"}
    raw, headers = _signed(event, client.app[PLATFORM].config.payments.webhook_secret)
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
    raw, headers = _signed({"id": "evt_2", "payment_id": "x"}, client.app[PLATFORM].config.payments.webhook_secret)
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


async def test_a_payment_left_pending_by_another_process_is_settled_not_declined(shop, clock, customer_headers, config,
                                                                               aiohttp_client):
    # The demo's seed leaves a pending payment behind and exits; the server then reconciles it. A gateway that
    # forgot the payment with the process that charged it would decline the order as "never seen".
    client, _ = shop
    order = await booked(client, customer_headers, clock)
    assert (await pay(client, customer_headers, order["id"], card=PENDING_CARD)).status == 202
    await client.close()
    restarted = await aiohttp_client(create_app(config, clock=clock))
    clock.advance(config.payments.pending_timeout_s + 1)
    assert (await restarted.app[PLATFORM].sweep_retail_once())["reconciled"] == 1
    current = await (await restarted.get(f"/v1/orders/{order['id']}", headers=customer_headers)).json()
    assert current["state"] == "FULFILLED" and current["payment"]["status"] == "approved"
