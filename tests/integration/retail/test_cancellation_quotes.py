"""Cancellation quotes against changes and payments (app/retail/orders.py, app/retail/changes.py): a quote is for
the order as it was quoted (its version and what had been paid), so one taken before a change or a payment is
refused (409); a fresh one refunds what the order is worth now; change fees are kept and the fare's penalty rate
applies to the order as it is now; no refund ever exceeds what was paid net of earlier refunds. The real app on
real SQLite."""

import msgspec
import pytest

from app.main import PLATFORM
from tests.integration.retail.helpers import accept, customer, pay, search
from tests.integration.retail.test_changes import ask, confirm, paid_order, seed_with_other_days, to_day

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}


@pytest.fixture
async def shop(client, clock):
    return client, await seed_with_other_days(client.app[PLATFORM], clock)


async def quote(client, headers, order_id: str) -> dict:
    resp = await client.post(f"/v1/orders/{order_id}/cancellations", headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def confirm_quote(client, headers, order_id: str, quote_id: str):
    return await client.post(f"/v1/orders/{order_id}/cancellations/{quote_id}/confirm", headers=headers)


async def order_now(client, headers, order_id: str) -> dict:
    resp = await client.get(f"/v1/orders/{order_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def to_cheaper_flight(client, headers, clock, order: dict) -> tuple[dict, dict]:
    """Move a paid order onto the cheaper flight in 4 days: (the change offer, the changed order)."""
    change = await ask(client, headers, order["id"], to_day(clock))
    cheaper = next(o for o in change["change_offers"] if o["flight_id"] == "CT105-test")
    assert cheaper["total_cents"] < 0  # a refund
    resp = await confirm(client, headers, order["id"], cheaper["id"], key=f"cheaper-{order['id']}")
    assert resp.status == 200, await resp.text()
    return cheaper, await resp.json()


def rate_penalty(order: dict, value: int) -> int:
    """The fare's penalty rate (its conditions' penalty of the price it was sold at) on `value`, halves up."""
    penalty, sold_at = order["conditions"]["refund_penalty_cents"], order["total_cents"]
    return (penalty * value * 2 + sold_at) // (2 * sold_at)


async def cancellations(platform) -> list[dict]:
    await platform.event_log.flush()
    return [msgspec.json.decode(e.payload) for e in await platform.event_log.query("OrderCancelled", None, 0, 10_000)]


async def test_a_quote_taken_before_a_change_is_refused_after_it(shop, clock):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "stale-quote")
    order = await paid_order(client, headers, clock, "premium")
    old = await quote(client, headers, order["id"])
    assert old["refund_cents"] == order["total_cents"] - order["conditions"]["refund_penalty_cents"] > 0
    cheaper, changed = await to_cheaper_flight(client, headers, clock, order)
    assert changed["version"] == 2 and changed["total_cents"] == order["total_cents"] + cheaper["total_cents"]

    resp = await confirm_quote(client, headers, order["id"], old["id"])
    assert resp.status == 409, await resp.text()
    error = (await resp.json())["error"]
    assert error["details"]["reason"] == "order_changed" and error["details"]["version"] == 2
    assert "ask for a new quote" in error["message"]
    now = await order_now(client, headers, order["id"])
    assert now["state"] == "FULFILLED" and now["version"] == 2 and now["refund_cents"] is None
    assert now["total_cents"] == changed["total_cents"]
    # the quote the order moved on from has ended: it shows as expired, not as a refund on offer
    assert now["quote"]["id"] == old["id"] and now["quote"]["expires_at"] <= clock.now()
    assert now["quote"]["order_version"] == 1 and now["quote"]["paid_cents"] == order["total_cents"]
    assert platform.order_store.get(order["id"]).state == "FULFILLED"
    assert not [e for e in await cancellations(platform) if e["order_id"] == order["id"]]


async def test_a_quote_taken_before_payment_is_refused_once_the_order_is_paid(shop, clock):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "unpaid-quote")
    offers = await search(client, headers, clock)
    comfort = next(o for o in offers if o["bundle"] == "comfort")
    assert comfort["conditions"]["refundable"]
    order = await (await accept(client, headers, comfort["id"])).json()
    unpaid = await quote(client, headers, order["id"])
    assert unpaid["refund_cents"] == 0
    resp = await pay(client, headers, order["id"])
    assert resp.status == 200, await resp.text()
    paid = await resp.json()

    resp = await confirm_quote(client, headers, order["id"], unpaid["id"])
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["error"]["details"]["reason"] == "order_changed"
    now = await order_now(client, headers, order["id"])
    assert now["state"] == "FULFILLED" and now["refund_cents"] is None
    assert not [e for e in await cancellations(platform) if e["order_id"] == order["id"]]
    # a quote for the paid order refunds what the conditions say
    fresh = await quote(client, headers, order["id"])
    assert fresh["refund_cents"] == paid["total_cents"] - paid["conditions"]["refund_penalty_cents"] > 0
    resp = await confirm_quote(client, headers, order["id"], fresh["id"])
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["refund_cents"] == fresh["refund_cents"]


async def test_a_fresh_quote_after_a_change_refunds_what_the_order_is_worth_now(shop, clock):
    client, _ = shop
    headers = await customer(client, "fresh-quote")
    order = await paid_order(client, headers, clock, "premium")
    assert order["conditions"]["change_penalty_cents"] == 0
    cheaper, changed = await to_cheaper_flight(client, headers, clock, order)
    fresh = await quote(client, headers, order["id"])
    value = changed["total_cents"]  # no change fee on a premium fare
    penalty = rate_penalty(order, value)  # 10% of what the order is worth now, not of what it was sold at
    assert abs(penalty - value // 10) <= 1
    assert fresh["refund_cents"] == value - penalty
    assert fresh["order_version"] == 2 and fresh["paid_cents"] == value
    assert fresh["change_fees_cents"] == 0 and fresh["penalty_cents"] == penalty
    resp = await confirm_quote(client, headers, order["id"], fresh["id"])
    assert resp.status == 200, await resp.text()
    cancelled = await resp.json()
    assert cancelled["state"] == "CANCELLED" and cancelled["refund_cents"] == fresh["refund_cents"]
    assert -cheaper["total_cents"] + cancelled["refund_cents"] < order["total_cents"]


async def test_refunds_never_exceed_what_was_paid(shop, clock):
    """A refunding change, then a cancellation by whichever quote goes through first (the one taken before the
    change, else a fresh one): what goes back altogether stays within what was paid, less the penalty."""
    client, _ = shop
    headers = await customer(client, "refund-sum")
    order = await paid_order(client, headers, clock, "premium")
    before = await quote(client, headers, order["id"])
    cheaper, _ = await to_cheaper_flight(client, headers, clock, order)
    refunded = [-cheaper["total_cents"]]
    resp = await confirm_quote(client, headers, order["id"], before["id"])
    if resp.status != 200:
        fresh = await quote(client, headers, order["id"])
        resp = await confirm_quote(client, headers, order["id"], fresh["id"])
    assert resp.status == 200, await resp.text()
    refunded.append((await resp.json())["refund_cents"])
    assert sum(refunded) <= order["total_cents"] - rate_penalty(order, order["total_cents"] + cheaper["total_cents"])


async def test_a_change_refunding_more_than_was_paid_is_refused(shop, clock):
    """The one guard on money going back: a change offer that would refund more than the order's paid total (a
    pricing fault) is refused with 409 and the order stays as it was."""
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "over-refund")
    order = await paid_order(client, headers, clock, "premium")
    change = await ask(client, headers, order["id"], to_day(clock))
    cheaper = next(o for o in change["change_offers"] if o["flight_id"] == "CT105-test")
    stored = await platform.retail.change_store.fetch(cheaper["id"])
    faulty = msgspec.structs.replace(stored, total_cents=-(order["total_cents"] + 1_000))
    await platform.records_db.write([("UPDATE change_offers SET body=? WHERE id=?",
                                      (msgspec.json.encode(faulty).decode(), faulty.id))])
    resp = await confirm(client, headers, order["id"], cheaper["id"], key="over-refund")
    assert resp.status == 409, await resp.text()
    error = (await resp.json())["error"]
    assert error["details"]["reason"] == "refund_exceeds_paid"
    assert error["details"]["paid_cents"] == order["total_cents"]
    now = await order_now(client, headers, order["id"])
    assert now["version"] == 1 and now["total_cents"] == order["total_cents"] and now["flight_id"] == "CT101-test"
    assert platform.order_store.held.get("CT105-test/economy", 0) == 0


async def test_cancelling_a_changed_order_keeps_the_change_fee_and_the_penalty_follows_the_order(shop, clock):
    """A comfort fare (refundable less 25%, changes 25.00): a service added and a flight change later, the
    cancellation keeps the 25.00 change fee and takes 25% of the rest of what was paid."""
    client, _ = shop
    headers = await customer(client, "changed-penalty")
    order = await paid_order(client, headers, clock, "comfort")
    assert order["conditions"]["change_penalty_cents"] == 2_500
    (offset,) = (await ask(client, headers, order["id"], {"add_services": ["carbon-offset"]}))["change_offers"]
    resp = await confirm(client, headers, order["id"], offset["id"], card=CARD, key="offset")
    assert resp.status == 200, await resp.text()
    change = await ask(client, headers, order["id"], to_day(clock))
    dearer = next(o for o in change["change_offers"] if o["flight_id"] == "CT107-test")
    assert dearer["penalty_cents"] == 2_500
    resp = await confirm(client, headers, order["id"], dearer["id"], card=CARD, key="dearer")
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert changed["version"] == 3
    assert changed["total_cents"] == order["total_cents"] + offset["total_cents"] + dearer["total_cents"]

    q = await quote(client, headers, order["id"])
    value = changed["total_cents"] - 2_500
    penalty = rate_penalty(order, value)
    assert abs(penalty - value / 4) <= 1  # 25% of what the order is worth now, less the change fee
    assert q["refund_cents"] == changed["total_cents"] - 2_500 - penalty
    assert q["order_version"] == 3 and q["paid_cents"] == changed["total_cents"]
    assert q["change_fees_cents"] == 2_500 and q["penalty_cents"] == penalty
    resp = await confirm_quote(client, headers, order["id"], q["id"])
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["refund_cents"] == q["refund_cents"]
