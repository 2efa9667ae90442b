"""A reversal never takes a balance below zero: it takes what is left, the rest becomes the member's debt, and
later earns pay the debt before the balance grows; all of it survives a restart."""

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import bearer, make_config
from tests.integration.loyalty.helpers import balance, earn
from tests.integration.retail.helpers import accept, pay, search, seed_catalog


@pytest.fixture
async def loyalty_client(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("pos", "partner")
    return client, {"X-Api-Key": key}


async def redeem(client, headers, user_id, stars):
    return await client.post("/v1/loyalty/redeem", json={"user_id": user_id, "stars": stars}, headers=headers)


async def reverse(client, headers, transaction_id):
    return await client.post("/v1/loyalty/reverse", json={"transaction_id": transaction_id}, headers=headers)


async def ledger(client, headers, user_id) -> list[dict]:
    resp = await client.get(f"/v1/loyalty/ledger/{user_id}", params={"limit": 100}, headers=headers)
    return (await resp.json())["items"]


async def test_reversing_spent_stars_leaves_a_debt_that_later_earns_pay(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("pos", "partner")
    staff = {"X-Api-Key": key}
    assert (await earn(client, staff, "max", 5_000, "T")).status == 201  # 50 stars
    assert [(await redeem(client, staff, "max", 25)).status for _ in range(2)] == [201, 201]

    first = await reverse(client, staff, "T")
    entry = await first.json()
    assert first.status == 200 and entry["stars"] == -50  # the entry takes back the whole earn...
    assert entry["details"]["reversed"] == 0 and entry["details"]["shortfall"] == 50  # ...of which 50 is owed
    assert (await (await reverse(client, staff, "T")).json())["id"] == entry["id"]  # once
    assert {k: v for k, v in (await balance(client, staff, "max")).items() if k in ("balance", "debt_stars")} == {
        "balance": 0, "debt_stars": 50}
    assert (await redeem(client, staff, "max", 25)).status == 422

    paid = await (await earn(client, staff, "max", 3_000, "T2")).json()  # 30 stars, all to the debt
    assert (paid["stars_earned"], paid["debt_paid"], paid["debt_stars"], paid["balance"]) == (30, 30, 20, 0)
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))  # the debt is rebuilt from the ledger
    view = await balance(client, staff, "max")
    assert (view["balance"], view["debt_stars"]) == (0, 20)
    replay = await earn(client, staff, "max", 3_000, "T2")
    assert replay.status == 200 and (await replay.json()) == {**paid, "replayed": True}
    more = await (await earn(client, staff, "max", 10_000, "T3")).json()  # 100 stars: 20 to the debt, 80 kept
    assert (more["debt_paid"], more["debt_stars"], more["balance"]) == (20, 0, 80)
    assert client.app[PLATFORM].loyalty.debt("max") == 0
    items = await ledger(client, staff, "max")
    assert [e["kind"] for e in items] == ["earn", "redeem", "redeem", "reverse", "earn", "earn"]
    assert sum(e["stars"] for e in items) == 80  # balance - debt is the ledger's sum
    assert (await redeem(client, staff, "max", 60)).status == 201


async def test_cancelling_a_paid_order_after_spending_its_stars_leaves_a_debt(aiohttp_client, config, clock):
    client = await aiohttp_client(create_app(config, clock=clock))
    await seed_catalog(client.app[PLATFORM], clock)
    headers = await bearer(client, "rae@example.com", "correct horse battery", "customer")
    user_id = (await (await client.get("/v1/me", headers=headers)).json())["id"]
    comfort = next(o for o in await search(client, headers, clock) if o["bundle"] == "comfort")
    order = await (await accept(client, headers, comfort["id"])).json()
    assert (await pay(client, headers, order["id"])).status == 200
    earned = (await balance(client, headers, user_id))["balance"]
    assert earned >= 150
    assert [(await redeem(client, headers, user_id, 25)).status for _ in range(6)] == [201] * 6

    quote = await (await client.post(f"/v1/orders/{order['id']}/cancellations", headers=headers)).json()
    assert quote["refund_cents"] > 0
    done = await client.post(f"/v1/orders/{order['id']}/cancellations/{quote['id']}/confirm", headers=headers)
    assert done.status == 200 and (await done.json())["state"] == "CANCELLED"
    assert (await balance(client, headers, user_id))["balance"] == 0
    assert client.app[PLATFORM].loyalty.debt(user_id) == 150
    reversal = (await ledger(client, headers, user_id))[-1]
    assert reversal["kind"] == "reverse" and reversal["stars"] == -earned
    assert (reversal["details"]["reversed"], reversal["details"]["shortfall"]) == (earned - 150, 150)
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))
    headers = await bearer(client, "rae@example.com", "correct horse battery", "customer")
    assert (await balance(client, headers, user_id))["balance"] == 0
    assert client.app[PLATFORM].loyalty.debt(user_id) == 150
    again = next(o for o in await search(client, headers, clock) if o["bundle"] == "comfort")
    second = await (await accept(client, headers, again["id"])).json()
    assert (await pay(client, headers, second["id"])).status == 200  # its stars pay the debt first
    stars = (await ledger(client, headers, user_id))[-1]["stars"]
    assert (await balance(client, headers, user_id))["balance"] == max(0, stars - 150)
    assert client.app[PLATFORM].loyalty.debt(user_id) == max(0, 150 - stars)


async def test_a_refunded_purchase_takes_back_the_tier_only_it_reached(loyalty_client):
    client, staff = loyalty_client
    await earn(client, staff, "nia", 49_900, "n1")                       # 499: Green
    assert (await (await earn(client, staff, "nia", 100, "n2")).json())["tier"] == "Gold"
    assert (await reverse(client, staff, "n2")).status == 200
    view = await balance(client, staff, "nia")
    assert (view["tier"], view["qualifying_stars_12m"], view["tier_kept_until"]) == ("Green", 499, None)
    await earn(client, staff, "oli", 60_000, "o1")                       # 600: Gold on its own
    await earn(client, staff, "oli", 1_000, "o2")
    assert (await reverse(client, staff, "o2")).status == 200
    assert (await balance(client, staff, "oli"))["tier"] == "Gold"      # reached without the refunded one

