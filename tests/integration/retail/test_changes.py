"""Order changes after payment (app/retail/changes.py): another flight, services added, the refusals, expiry,
idempotent and concurrent confirms, and the order's history. The real app on real SQLite."""

import asyncio

import msgspec
import pytest

from adapters.payments.simulator import SLOW_CARD
from app.errors import Conflict
from app.main import PLATFORM, create_app
from app.retail.changes import ChangeRequestBody
from state.catalog import Cabin, Flight
from state.orders import LIVE
from tests.conftest import bearer, make_config
from tests.integration.retail.helpers import (
    DAY,
    DECLINED_CARD,
    PAID_CARD,
    PENDING_CARD,
    _signed,
    accept,
    customer,
    departure_date,
    pay,
    search,
    seed_catalog,
)

CARD = {"number": PAID_CARD, "exp_month": 12, "exp_year": 2099, "cvc": "123"}


@pytest.fixture
async def shop(client, clock):
    return client, await seed_with_other_days(client.app[PLATFORM], clock)


async def seed_with_other_days(platform, clock) -> Flight:
    """seed_catalog's LIS-BCN in 3 days (base fare 100.00), and in 4 days a cheaper and a dearer one."""
    flight = await seed_catalog(platform, clock)
    noon = (int(clock.now() // DAY) + 4) * DAY + 12 * 3600
    later = Flight(id="CT105-test", airline="CT", number="CT105", origin="LIS", destination="BCN",
                   departure_at=noon, arrival_at=noon + 7_500,
                   cabins={"economy": Cabin(150, 6_000), "premium": Cabin(12, 25_000)})
    dearer = Flight(id="CT107-test", airline="CT", number="CT107", origin="LIS", destination="BCN",
                    departure_at=noon + 3_600, arrival_at=noon + 11_100, cabins={"economy": Cabin(150, 30_000)})
    await platform.catalog.put_flights("test", [later, dearer], audit=False)
    return flight


async def paid_order(client, headers, clock, bundle: str = "flight_only", passengers: int = 1) -> dict:
    offers = await search(client, headers, clock, passengers=passengers)
    offer = next(o for o in offers if o["bundle"] == bundle)
    resp = await accept(client, headers, offer["id"])
    assert resp.status == 201, await resp.text()
    resp = await pay(client, headers, (await resp.json())["id"])
    assert resp.status == 200, await resp.text()
    return await resp.json()


def to_day(clock, days: int = 4) -> dict:
    return {"slices": [{"remove": ["CT101-test"], "add": {"origin": "LIS", "destination": "BCN",
                                                          "departure_date": departure_date(clock, days)}}]}


async def ask(client, headers, order_id: str, body: dict, status: int = 201) -> dict:
    resp = await client.post(f"/v1/orders/{order_id}/change-requests", json=body, headers=headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def confirm(client, headers, order_id: str, offer_id: str, card: dict | None = None, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/v1/orders/{order_id}/change-offers/{offer_id}/confirm",
                             json={"card": card} if card else None, headers={**headers, **extra})


def held_matches_live_orders(platform) -> None:
    """Seats and limited products held are exactly those of live orders (and changes being paid for)."""
    expected: dict[str, int] = {}
    for order in platform.order_store.live():
        if order.state in LIVE:
            extra = order.pending_change.added if order.pending_change else ()
            for item in (*order.items, *extra):
                if item.resource is not None:
                    expected[item.resource] = expected.get(item.resource, 0) + item.quantity
    held = {r: n for r, n in platform.order_store.held.items() if n}
    assert held == expected


async def test_a_date_change_onto_a_cheaper_flight_refunds_the_difference(shop, clock, admin_headers):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "change-refund")
    order = await paid_order(client, headers, clock, "premium")
    assert order["state"] == "FULFILLED" and order["version"] == 1
    change = await ask(client, headers, order["id"], to_day(clock))
    offers = change["change_offers"]
    assert 1 <= len(offers) <= 5 and {o["flight_id"] for o in offers} == {"CT105-test", "CT107-test"}
    cheaper = next(o for o in offers if o["flight_id"] == "CT105-test")
    old_fare = next(i for i in order["items"] if i["kind"] == "Flight")["total_cents"]
    new_fare = next(i for i in cheaper["items"] if i["kind"] == "Flight")["total_cents"]
    assert cheaper["fare_difference_cents"] == new_fare - old_fare < 0
    assert cheaper["penalty_cents"] == order["conditions"]["change_penalty_cents"] == 0
    assert cheaper["total_cents"] == cheaper["fare_difference_cents"] + cheaper["taxes_cents"] < 0
    assert cheaper["expires_at"] == clock.now() + platform.config.retail.change_offer_ttl_s
    resp = await client.get(f"/v1/orders/{order['id']}/change-offers/{cheaper['id']}", headers=headers)
    assert resp.status == 200 and (await resp.json())["id"] == cheaper["id"]
    resp = await client.get(f"/v1/orders/{order['id']}/change-requests/{change['id']}", headers=headers)
    assert resp.status == 200 and [o["id"] for o in (await resp.json())["change_offers"]] == [o["id"] for o in offers]

    resp = await confirm(client, headers, order["id"], cheaper["id"])
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert changed["flight_id"] == "CT105-test" and changed["version"] == 2 and changed["state"] == "FULFILLED"
    assert changed["total_cents"] == order["total_cents"] + cheaper["total_cents"]
    assert platform.order_store.held.get("CT101-test/economy", 0) == 0
    assert platform.order_store.held["CT105-test/economy"] == 1
    assert platform.order_store.held.get("CT101-test/lounge-pass", 0) == 0
    assert platform.order_store.held["CT105-test/lounge-pass"] == 1
    old_codes = {b["kind"]: b["code"] for b in order["barcodes"]}
    new_codes = {b["kind"]: b["code"] for b in changed["barcodes"]}
    assert new_codes["Flight"] != old_codes["Flight"] and new_codes["Lounge"] != old_codes["Lounge"]
    assert new_codes["Bag"] == old_codes["Bag"]  # not tied to a flight's inventory: kept
    admin = admin_headers
    resp = await client.post(f"/v1/fulfillment/{old_codes['Flight']}/consume", headers=admin)
    assert resp.status == 404  # the replaced barcode no longer works
    resp = await client.post(f"/v1/fulfillment/{new_codes['Flight']}/consume", headers=admin)
    assert resp.status == 200
    held_matches_live_orders(platform)

    resp = await client.get(f"/v1/orders/{order['id']}/history", headers=headers)
    history = (await resp.json())["versions"]
    assert [v["version"] for v in history] == [1, 2]
    assert history[0]["order"]["flight_id"] == "CT101-test" and history[0]["change_offer_id"] is None
    assert history[1]["change_offer_id"] == cheaper["id"] and history[1]["order"]["flight_id"] == "CT105-test"
    # the other change offers of the request were priced against version 1
    other = next(o for o in offers if o["id"] != cheaper["id"])
    resp = await confirm(client, headers, order["id"], other["id"], card=CARD)
    assert resp.status == 409, await resp.text()


async def test_money_owed_goes_through_payment_and_a_decline_leaves_the_order_untouched(shop, clock):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "change-owed")
    order = await paid_order(client, headers, clock)
    change = await ask(client, headers, order["id"], to_day(clock))
    dearer = next(o for o in change["change_offers"] if o["flight_id"] == "CT107-test")
    assert dearer["penalty_cents"] == 7_500 and dearer["total_cents"] > dearer["fare_difference_cents"] > 0
    resp = await confirm(client, headers, order["id"], dearer["id"])
    assert resp.status == 422 and (await resp.json())["error"]["details"]["reason"] == "payment_required"

    resp = await confirm(client, headers, order["id"], dearer["id"], card={**CARD, "number": DECLINED_CARD})
    assert resp.status == 402, await resp.text()
    current = platform.order_store.get(order["id"])
    assert current.state == "FULFILLED" and current.version == 1 and current.flight_id == "CT101-test"
    assert [b.code for b in current.barcodes] == [b["code"] for b in order["barcodes"]]
    assert platform.order_store.held.get("CT107-test/economy", 0) == 0
    held_matches_live_orders(platform)

    resp = await confirm(client, headers, order["id"], dearer["id"], card=CARD)
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert changed["flight_id"] == "CT107-test" and changed["version"] == 2
    assert changed["payment"]["amount_cents"] == dearer["total_cents"] and changed["payment"]["status"] == "approved"
    assert platform.order_store.held["CT107-test/economy"] == 1
    held_matches_live_orders(platform)


async def test_adding_a_bag_and_a_lounge_pass_after_payment(shop, clock):
    client, flight = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "change-bag")
    order = await paid_order(client, headers, clock, passengers=2)
    change = await ask(client, headers, order["id"], {"add_services": ["bag-23kg", "lounge-pass"]})
    (offer,) = change["change_offers"]
    assert offer["flight_id"] == flight.id and offer["penalty_cents"] == 0 and offer["fare_difference_cents"] == 0
    assert offer["services_cents"] == 2 * (3_500 + 3_900)
    assert offer["total_cents"] == offer["services_cents"] + offer["taxes_cents"] > 0
    resp = await confirm(client, headers, order["id"], offer["id"], card=CARD)
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert sorted(i["kind"] for i in changed["items"]) == ["Bag", "Flight", "Lounge"]
    flight_codes = [b["code"] for b in order["barcodes"] if b["kind"] == "Flight"]
    assert [b["code"] for b in changed["barcodes"] if b["kind"] == "Flight"] == flight_codes  # unchanged: kept
    assert sum(b["kind"] == "Bag" for b in changed["barcodes"]) == 2
    assert platform.order_store.held[f"{flight.id}/lounge-pass"] == 2
    held_matches_live_orders(platform)
    # What the change bought counts as bought for recommendations: it is never offered to them again.
    await platform.bus.idle()
    user_id = order["owner"].partition(":")[2]
    activity = await (await client.get(f"/v1/reco/users/{user_id}", headers=headers)).json()
    assert {"bag-23kg", "lounge-pass", "dest-BCN"} <= set(activity["bought_or_dismissed"]), activity
    await ask(client, headers, order["id"], {"add_services": ["bag-23kg"]}, status=422)  # already has one
    await ask(client, headers, order["id"], {"add_services": ["no-such-thing"]}, status=422)


async def test_refusals(shop, clock):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "change-refused")
    offers = await search(client, headers, clock)
    resp = await accept(client, headers, offers[0]["id"])
    unpaid = await resp.json()
    body = await ask(client, headers, unpaid["id"], to_day(clock), status=409)
    assert "not paid" in body["error"]["message"]
    order = await paid_order(client, headers, clock)
    await ask(client, headers, order["id"], {}, status=400)
    wrong = {"slices": [{"remove": ["CT999"], "add": to_day(clock)["slices"][0]["add"]}]}
    await ask(client, headers, order["id"], wrong, status=422)
    await ask(client, headers, order["id"], {"remove_services": ["bag-23kg"]}, status=422)  # not on the order
    other = await customer(client, "change-stranger")
    await ask(client, other, order["id"], to_day(clock), status=404)
    resp = await client.get(f"/v1/orders/{order['id']}/change-offers/cho_nothing", headers=headers)
    assert resp.status == 404
    # fare conditions that forbid changing the flight (services may still be added)
    stored = platform.order_store.get(order["id"])
    platform.order_store.remember(msgspec.structs.replace(
        stored, conditions=msgspec.structs.replace(stored.conditions, changeable=False)))
    body = await ask(client, headers, order["id"], to_day(clock), status=422)
    assert body["error"]["details"]["reason"] == "not_changeable"
    await ask(client, headers, order["id"], {"add_services": ["bag-23kg"]})
    platform.order_store.remember(stored)
    # expired: 410
    change = await ask(client, headers, order["id"], to_day(clock))
    clock.advance(platform.config.retail.change_offer_ttl_s + 1)
    offer_id = change["change_offers"][0]["id"]
    resp = await client.get(f"/v1/orders/{order['id']}/change-offers/{offer_id}", headers=headers)
    assert (await resp.json())["state"] == "EXPIRED"
    resp = await confirm(client, headers, order["id"], offer_id, card=CARD)
    assert resp.status == 410, await resp.text()
    # cancelled
    resp = await client.post(f"/v1/orders/{order['id']}/cancellations", headers=headers)
    quote = await resp.json()
    resp = await client.post(f"/v1/orders/{order['id']}/cancellations/{quote['id']}/confirm", headers=headers)
    assert resp.status == 200
    await ask(client, headers, order["id"], to_day(clock), status=409)
    # departed
    late = await paid_order(client, headers, clock)
    clock.advance(late["departure_at"] - clock.now() + 1)  # (the shopper's token has expired by then)
    with pytest.raises(Conflict) as departed:
        await platform.orders.request_change(late["id"], None, ChangeRequestBody(add_services=["bag-23kg"]))
    assert departed.value.details == {"reason": "departed"}


async def test_confirm_is_idempotent(shop, clock):
    client, _ = shop
    headers = await customer(client, "change-twice")
    order = await paid_order(client, headers, clock, "premium")
    change = await ask(client, headers, order["id"], to_day(clock))
    offer = next(o for o in change["change_offers"] if o["total_cents"] <= 0)
    first = await confirm(client, headers, order["id"], offer["id"], key="chg-1")
    again = await confirm(client, headers, order["id"], offer["id"], key="chg-1")
    assert first.status == again.status == 200 and await first.json() == await again.json()
    resp = await confirm(client, headers, order["id"], offer["id"])
    assert resp.status == 409 and (await resp.json())["error"]["details"]["state"] == "CONFIRMED"
    resp = await client.get(f"/v1/orders/{order['id']}/history", headers=headers)
    assert [v["version"] for v in (await resp.json())["versions"]] == [1, 2]


async def test_two_confirms_of_one_change_offer_at_once_apply_it_once(shop, clock):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "change-racing-self")
    order = await paid_order(client, headers, clock, "premium")
    change = await ask(client, headers, order["id"], to_day(clock))
    offer = next(o for o in change["change_offers"] if o["total_cents"] <= 0)
    answers = await asyncio.gather(*(confirm(client, headers, order["id"], offer["id"]) for _ in range(2)))
    assert sorted(r.status for r in answers) == [200, 409]
    resp = await client.get(f"/v1/orders/{order['id']}/history", headers=headers)
    assert [v["version"] for v in (await resp.json())["versions"]] == [1, 2]
    held_matches_live_orders(platform)


async def test_change_offers_never_confirmed_are_deleted_after_the_retention(shop, clock):
    client, _ = shop
    platform = client.app[PLATFORM]
    headers = await customer(client, "change-retention")
    order = await paid_order(client, headers, clock, "premium")
    unused = await ask(client, headers, order["id"], to_day(clock))
    used = await ask(client, headers, order["id"], {"remove_services": ["lounge-pass"]})
    (removal,) = used["change_offers"]
    resp = await confirm(client, headers, order["id"], removal["id"])
    assert resp.status == 200, await resp.text()
    clock.advance(platform.config.retail.change_offer_ttl_s + 1)
    assert (await platform.purge_retained_once())["change_offers"] == 0  # expired, not yet past the retention
    clock.advance(platform.config.retail.offer_retention_days * DAY)
    headers = await customer(client, "change-retention")  # signed in again: the first token has expired
    assert (await platform.purge_retained_once())["change_offers"] == len(unused["change_offers"])
    resp = await client.get(f"/v1/orders/{order['id']}/change-requests/{unused['id']}", headers=headers)
    assert resp.status == 404
    resp = await client.get(f"/v1/orders/{order['id']}/change-requests/{used['id']}", headers=headers)
    assert resp.status == 200 and (await resp.json())["change_offers"][0]["state"] == "CONFIRMED"
    resp = await client.get(f"/v1/orders/{order['id']}/history", headers=headers)
    assert (await resp.json())["versions"][-1]["change_offer_id"] == removal["id"]


async def test_concurrent_changes_onto_the_last_seat(shop, clock):
    client, _ = shop
    platform = client.app[PLATFORM]
    noon = (int(clock.now() // DAY) + 5) * DAY + 12 * 3600
    await platform.catalog.put_flights("test", [Flight(
        id="CT109-test", airline="CT", number="CT109", origin="LIS", destination="BCN", departure_at=noon,
        arrival_at=noon + 7_500, cabins={"economy": Cabin(1, 5_000)})], audit=False)
    shoppers = [await customer(client, f"change-race-{n}") for n in range(2)]
    orders = [await paid_order(client, h, clock, "premium") for h in shoppers]
    offers = [(await ask(client, h, o["id"], to_day(clock, 5)))["change_offers"][0]
              for h, o in zip(shoppers, orders, strict=True)]
    assert all(o["flight_id"] == "CT109-test" and o["total_cents"] < 0 for o in offers)
    answers = await asyncio.gather(*(confirm(client, h, o["id"], c["id"])
                                     for h, o, c in zip(shoppers, orders, offers, strict=True)))
    assert sorted(r.status for r in answers) == [200, 409]
    assert platform.order_store.held["CT109-test/economy"] == 1
    flights = sorted(platform.order_store.get(o["id"]).flight_id for o in orders)
    assert flights == ["CT101-test", "CT109-test"]  # each holds exactly one itinerary
    held_matches_live_orders(platform)


async def test_a_change_payment_pending_across_a_restart_settles_by_webhook(aiohttp_client, config, clock):
    """While a change's payment is pending the order holds its itinerary and what the change adds; after a
    restart exactly that is held again, and the gateway's webhook applies the change (approved) or returns the
    order as it was (declined)."""
    client = await aiohttp_client(create_app(config, clock=clock))
    await seed_with_other_days(client.app[PLATFORM], clock)
    headers = await bearer(client, "change-restart@example.com", "correct horse battery", "customer")
    pending = []
    for _ in range(2):
        order = await paid_order(client, headers, clock)
        change = await ask(client, headers, order["id"], to_day(clock))
        dearer = next(o for o in change["change_offers"] if o["flight_id"] == "CT107-test")
        resp = await confirm(client, headers, order["id"], dearer["id"], card={**CARD, "number": PENDING_CARD})
        assert resp.status == 202, await resp.text()
        body = await resp.json()
        assert body["state"] == "PAYMENT_PENDING" and body["flight_id"] == "CT101-test"
        pending.append((body, dearer))
    held_matches_live_orders(client.app[PLATFORM])
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    headers = await bearer(client, "change-restart@example.com", "correct horse battery", "customer")
    assert platform.order_store.held["CT101-test/economy"] == 2 and platform.order_store.held["CT107-test/economy"] == 2
    held_matches_live_orders(platform)
    (approved, offer), (declined, _) = pending
    resp = await client.get(f"/v1/orders/{approved['id']}/change-offers/{offer['id']}", headers=headers)
    assert resp.status == 200 and (await resp.json())["state"] == "ACTIVE"
    secret = platform.config.payments.webhook_secret
    for n, (order, status) in enumerate(((approved, "approved"), (declined, "declined"))):
        raw, signed = _signed({"id": f"evt-change-{n}", "payment_id": order["payment"]["id"],
                               "order_id": order["id"], "status": status}, secret)
        resp = await client.post("/v1/webhooks/payments", data=raw, headers=signed)
        assert resp.status == 200, await resp.text()
    changed, unchanged = platform.order_store.get(approved["id"]), platform.order_store.get(declined["id"])
    assert changed.state == "FULFILLED" and changed.flight_id == "CT107-test" and changed.version == 2
    assert unchanged.state == "FULFILLED" and unchanged.flight_id == "CT101-test" and unchanged.version == 1
    assert [b.code for b in unchanged.barcodes] == [b["code"] for b in declined["barcodes"]]
    assert platform.order_store.held["CT101-test/economy"] == 1 and platform.order_store.held["CT107-test/economy"] == 1
    held_matches_live_orders(platform)
    resp = await client.get(f"/v1/orders/{approved['id']}/history", headers=headers)
    assert [v["change_offer_id"] for v in (await resp.json())["versions"]] == [None, offer["id"]]


async def test_a_change_payment_left_pending_is_reconciled_by_the_sweep(aiohttp_client, tmp_path, clock):
    """No restart and no webhook: a change's payment the gateway did not answer in time (approved meanwhile) or
    left pending is settled by the sweep once it is past payments.pending_timeout_s: approved applies the change;
    still pending retail.change_offer_ttl_s after that, the payment is given up: the order returns as it was and
    lets go of what the change held."""
    config = make_config(tmp_path, payments__gateway_timeout_s=0.2, payments__simulator_settle_s=100_000)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    await seed_with_other_days(platform, clock)
    headers = await customer(client, "change-reconciled")
    confirmed = []
    for card in (SLOW_CARD, PENDING_CARD):
        order = await paid_order(client, headers, clock)
        change = await ask(client, headers, order["id"], to_day(clock))
        dearer = next(o for o in change["change_offers"] if o["flight_id"] == "CT107-test")
        resp = await confirm(client, headers, order["id"], dearer["id"], card={**CARD, "number": card})
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["state"] == "PAYMENT_PENDING"
        confirmed.append(order)
    (timed_out, pending) = confirmed
    assert platform.order_store.held["CT107-test/economy"] == 2
    held_matches_live_orders(platform)

    clock.advance(config.payments.pending_timeout_s)
    assert (await platform.sweep_retail_once())["reconciled"] == 2
    changed = platform.order_store.get(timed_out["id"])
    assert changed.state == "FULFILLED" and changed.flight_id == "CT107-test" and changed.version == 2
    assert platform.order_store.get(pending["id"]).state == "PAYMENT_PENDING"  # the gateway has not answered yet
    clock.advance(platform.config.retail.change_offer_ttl_s - 1)
    assert (await platform.sweep_retail_once())["reconciled"] == 1
    assert platform.order_store.get(pending["id"]).state == "PAYMENT_PENDING"
    clock.advance(1)  # the change offer's time to live and the pending timeout after the payment started: given up
    assert (await platform.sweep_retail_once())["reconciled"] == 1
    unchanged = platform.order_store.get(pending["id"])
    assert unchanged.state == "FULFILLED" and unchanged.flight_id == "CT101-test" and unchanged.version == 1
    assert [b.code for b in unchanged.barcodes] == [b["code"] for b in pending["barcodes"]]
    assert platform.order_store.held["CT107-test/economy"] == 1 and platform.order_store.held["CT101-test/economy"] == 1
    held_matches_live_orders(platform)


async def test_a_members_stars_follow_what_the_changed_order_costs(shop, clock):
    """Loyalty hears OrderChanged: the earn standing for the order is reversed and the new total earned, once each.
    A change that moves no money earns nothing, so the earn before it still stands: the next change and a
    cancellation take back that one, and the member never holds stars for two versions at once."""
    client, platform, headers, order, user_id = await member_with_a_premium_order(shop, clock, "change-stars")
    await platform.bus.idle()
    first = platform.loyalty.balance(user_id)["balance"]
    assert first > 0

    async def entries() -> list[tuple[str, str]]:
        await platform.bus.idle()
        ledger, _ = await platform.loyalty.ledger(user_id, None, 1_000)
        return [(e.kind, e.transaction_id) for e in ledger if e.transaction_id.startswith("order:")]

    # A day later at the same fares: no money moves, so no stars move.
    assert (await change_at_the_same_fares(client, headers, order["id"], clock))["version"] == 2
    earn = f"order:{order['id']}"
    assert await entries() == [("earn", earn)]
    assert platform.loyalty.balance(user_id)["balance"] == first

    # A cheaper flight: the first payment's earn is taken back and the new total earned.
    moved = {"slices": [{"remove": ["CT109-test"], "add": to_day(clock)["slices"][0]["add"]}]}
    cheaper = next(o for o in (await ask(client, headers, order["id"], moved))["change_offers"]
                   if o["flight_id"] == "CT105-test")
    resp = await confirm(client, headers, order["id"], cheaper["id"])
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert await entries() == [("earn", earn), ("reverse", earn), ("earn", f"{earn}:v3")]
    ledger, _ = await platform.loyalty.ledger(user_id, None, 1_000)
    v3 = next(e for e in ledger if e.transaction_id == f"{earn}:v3")
    assert v3.details["amount_cents"] == changed["total_cents"] < order["total_cents"]
    assert platform.loyalty.balance(user_id)["balance"] == v3.stars < first

    # A dearer flight after that: paid with the card, and the stars follow the new total again.
    second = {"slices": [{"remove": ["CT105-test"], "add": to_day(clock)["slices"][0]["add"]}]}
    dearer = next(o for o in (await ask(client, headers, order["id"], second))["change_offers"]
                  if o["flight_id"] == "CT107-test")
    assert dearer["total_cents"] > 0
    resp = await confirm(client, headers, order["id"], dearer["id"], card=CARD)
    assert resp.status == 200, await resp.text()
    again = await resp.json()
    assert (await entries())[3:] == [("reverse", f"{earn}:v3"), ("earn", f"{earn}:v4")]
    ledger, _ = await platform.loyalty.ledger(user_id, None, 1_000)
    v4 = next(e for e in ledger if e.transaction_id == f"{earn}:v4")
    assert v4.details["amount_cents"] == again["total_cents"]
    assert platform.loyalty.balance(user_id)["balance"] == v4.stars > v3.stars

    # Cancelled: the standing earn goes, and the member is back where they were before the order.
    await cancel(client, headers, order["id"])
    assert (await entries())[5:] == [("reverse", f"{earn}:v4")]
    assert platform.loyalty.balance(user_id)["balance"] == 0


async def test_cancelling_after_a_change_that_moved_no_money_takes_back_the_first_earn(shop, clock):
    client, platform, headers, order, user_id = await member_with_a_premium_order(shop, clock, "change-cancel")
    await change_at_the_same_fares(client, headers, order["id"], clock)
    await platform.bus.idle()
    assert platform.loyalty.balance(user_id)["balance"] > 0

    await cancel(client, headers, order["id"])
    await platform.bus.idle()
    ledger, _ = await platform.loyalty.ledger(user_id, None, 1_000)
    assert [(e.kind, e.transaction_id) for e in ledger] == [
        ("earn", f"order:{order['id']}"), ("reverse", f"order:{order['id']}")]
    assert platform.loyalty.balance(user_id)["balance"] == 0


async def member_with_a_premium_order(shop, clock, name: str):
    """(client, platform, headers, the paid premium order, its member's id), with CT109 on sale: seed_catalog's
    flight five days from now at its fares, so that a change onto it moves no money."""
    client, _ = shop
    platform = client.app[PLATFORM]
    noon = (int(clock.now() // DAY) + 5) * DAY + 12 * 3600
    flight = Flight(id="CT109-test", airline="CT", number="CT109", origin="LIS", destination="BCN",
                    departure_at=noon, arrival_at=noon + 7_500,
                    cabins={"economy": Cabin(150, 10_000), "premium": Cabin(12, 25_000)})
    await platform.catalog.put_flights("test", [flight], audit=False)
    headers = await customer(client, name)
    order = await paid_order(client, headers, clock, "premium")
    return client, platform, headers, order, order["owner"].partition(":")[2]


async def change_at_the_same_fares(client, headers, order_id: str, clock) -> dict:
    """Move the order onto CT109, which costs nothing; the changed order."""
    same = next(o for o in (await ask(client, headers, order_id, to_day(clock, 5)))["change_offers"]
                if o["flight_id"] == "CT109-test")
    assert same["total_cents"] == 0
    resp = await confirm(client, headers, order_id, same["id"])
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def cancel(client, headers, order_id: str) -> None:
    quote = await (await client.post(f"/v1/orders/{order_id}/cancellations", headers=headers)).json()
    resp = await client.post(f"/v1/orders/{order_id}/cancellations/{quote['id']}/confirm", headers=headers)
    assert resp.status == 200, await resp.text()


async def test_anyone_lists_the_products_on_sale(shop):
    client, _ = shop
    platform = client.app[PLATFORM]
    listed = (await (await client.get("/v1/products")).json())["items"]
    active = [p for p in platform.catalog.products() if p.status == "active"]
    assert listed and [p["id"] for p in listed] == [p.id for p in active]
    assert all(p["price_cents"] > 0 and p["status"] == "active" for p in listed)
    await platform.catalog.update_product("test", active[0].id, status="retired")
    listed = (await (await client.get("/v1/products")).json())["items"]
    assert active[0].id not in [p["id"] for p in listed] and len(listed) == len(active) - 1
