"""Loyalty through the real app: earn formula, tiers, idempotency, redeem, reverse, expiry, birthday."""

import asyncio
import time

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import bearer, make_config
from tests.integration.loyalty.helpers import balance, earn

DAY = 86_400


@pytest.fixture
async def loyalty(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, ratelimit__principal_per_s=10_000,
                                                         ratelimit__principal_burst=10_000), clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("pos", "partner")
    return client, {"X-Api-Key": key}


async def test_earn_formula_in_exact_decimals(loyalty):
    client, staff = loyalty
    cases = [(1050, {}, 11),                                          # ceil(10.5) = 11 x 1.0
             (1000, {"is_digital": True}, 12),                       # 10 x 1.2 = 12 exactly (a float says 12.000...02)
             (1050, {"is_digital": True}, 14),                       # 11 x 1.2 = 13.2 -> 14
             (1050, {"is_referral": True, "is_digital": True}, 27),  # 11 x 2 x 1.2 = 26.4 -> 27
             (1050, {"channel": "mobile_app"}, 13),                  # 11 x (1.0 + 0.1 app bonus) = 12.1 -> 13
             (1, {}, 1), (0, {}, 0)]
    for n, (amount, extra, stars) in enumerate(cases):
        resp = await earn(client, staff, f"m{n}", amount, f"t{n}", **extra)
        assert resp.status == 201 and (await resp.json())["stars_earned"] == stars, (amount, extra)


async def test_tiers_rise_are_kept_for_a_year_and_multiply_earning(loyalty, clock):
    client, staff = loyalty
    first = await (await earn(client, staff, "ana", 49_900, "a1")).json()
    assert first["tier"] == "Green" and not first["tier_changed"] and first["balance"] == 499
    clock.advance(180 * DAY)
    second = await (await earn(client, staff, "ana", 100, "a2")).json()
    assert second["tier"] == "Gold" and second["tier_changed"] and second["balance"] == 500
    third = await (await earn(client, staff, "ana", 1_000, "a3")).json()
    assert third["stars_earned"] == 12  # 10 x 1.2 as Gold
    clock.advance(200 * DAY)  # a1 has left the rolling 12 months: 13 qualifying stars
    assert (await balance(client, staff, "ana"))["tier"] == "Gold"  # a tier reached is kept for 12 months
    clock.advance(166 * DAY)
    assert (await balance(client, staff, "ana"))["tier"] == "Green"
    big = await (await earn(client, staff, "bo", 250_000, "b1")).json()
    assert big["tier"] == "Reserve" and big["tier_changed"]
    assert (await (await earn(client, staff, "bo", 1_000, "b2")).json())["stars_earned"] == 17  # 10 x 1.7


async def test_earn_is_idempotent_under_concurrent_replays(loyalty):
    client, staff = loyalty
    responses = await asyncio.gather(*(earn(client, staff, "cy", 5_000, "same-tx") for _ in range(20)))
    bodies = [await r.json() for r in responses]
    assert sorted(r.status for r in responses) == [200] * 19 + [201]
    assert {(b["stars_earned"], b["balance"]) for b in bodies} == {(50, 50)}
    assert (await balance(client, staff, "cy"))["balance"] == 50
    ledger = await (await client.get("/v1/loyalty/ledger/cy", headers=staff)).json()
    assert len(ledger["items"]) == 1
    other = await earn(client, staff, "dee", 5_000, "same-tx")
    assert other.status == 422


async def test_redeem_rules_and_who_may_see_what(loyalty):
    client, staff = loyalty
    platform = client.app[PLATFORM]
    customer = await bearer(client, "eve@example.com", "correct horse battery", "customer")
    eve = platform.account_store.by_email("eve@example.com").id
    assert (await earn(client, customer, eve, 100_000, "x")).status == 403  # customers do not earn for themselves
    assert (await earn(client, staff, eve, 45_000, "e1")).status == 201  # 450 stars, Green
    too_much = await client.post("/v1/loyalty/redeem", json={"user_id": eve, "stars": 500}, headers=customer)
    assert too_much.status == 422 and "Gold" in (await too_much.json())["error"]["message"]
    ok = await client.post("/v1/loyalty/redeem", json={"user_id": eve, "stars": 400}, headers=customer)
    assert ok.status == 201 and (await ok.json())["balance"] == 50
    short = await client.post("/v1/loyalty/redeem", json={"user_id": eve, "stars": 60}, headers=customer)
    assert short.status == 422 and (await short.json())["error"]["details"] == {"balance": 50, "needed": 60}
    odd = await client.post("/v1/loyalty/redeem", json={"user_id": eve, "stars": 42}, headers=customer)
    assert odd.status == 400
    assert (await client.get(f"/v1/loyalty/balance/{eve}", headers=customer)).status == 200
    assert (await client.get("/v1/loyalty/balance/someone-else", headers=customer)).status == 403
    assert (await client.get("/v1/loyalty/balance/nobody", headers=staff)).status == 404
    page = await (await client.get(f"/v1/loyalty/ledger/{eve}", params={"limit": 1}, headers=customer)).json()
    assert [e["kind"] for e in page["items"]] == ["earn"] and page["next_cursor"]


async def test_reverse_takes_back_once(loyalty):
    client, staff = loyalty
    await earn(client, staff, "fay", 10_000, "f1")
    first = await client.post("/v1/loyalty/reverse", json={"transaction_id": "f1"}, headers=staff)
    again = await client.post("/v1/loyalty/reverse", json={"transaction_id": "f1"}, headers=staff)
    assert first.status == again.status == 200 and (await first.json())["id"] == (await again.json())["id"]
    assert (await balance(client, staff, "fay"))["balance"] == 0
    assert (await client.post("/v1/loyalty/reverse", json={"transaction_id": "nope"}, headers=staff)).status == 404


async def test_green_stars_expire_six_months_after_their_month(loyalty, clock):
    client, staff = loyalty
    platform = client.app[PLATFORM]
    await earn(client, staff, "gil", 20_000, "g1")       # 200 stars as Green
    await client.post("/v1/loyalty/redeem", json={"user_id": "gil", "stars": 25}, headers=staff)
    earned_at = time.gmtime(clock.now())
    clock.advance(6 * 30 * DAY)
    await platform.loyalty.expire_due()
    if time.gmtime(clock.now()).tm_mon == (earned_at.tm_mon + 6 - 1) % 12 + 1:
        assert (await balance(client, staff, "gil"))["balance"] == 175  # still inside the sixth month
    clock.advance(62 * DAY)
    assert await platform.loyalty.expire_due() == 175
    assert (await balance(client, staff, "gil"))["balance"] == 0
    kinds = [e["kind"] for e in (await (await client.get("/v1/loyalty/ledger/gil", headers=staff)).json())["items"]]
    assert kinds == ["earn", "redeem", "expire"]


async def test_birthday_reward_window_and_promotions(loyalty, clock):
    client, staff = loyalty
    _, admin_key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    admin_headers = {"X-Api-Key": admin_key}
    today = time.strftime("%m-%d", time.gmtime(clock.now()))
    await earn(client, staff, "hal", 1_000, "h1")
    assert (await client.put("/v1/loyalty/members/hal", json={"birthday": today}, headers=staff)).status == 200
    assert (await client.put("/v1/loyalty/members/hal", json={"birthday": "13-45"}, headers=staff)).status == 400
    claimed = await client.post("/v1/loyalty/birthday", json={"user_id": "hal"}, headers=staff)
    assert claimed.status == 200 and (await claimed.json())["stars_earned"] == 50
    again = await (await client.post("/v1/loyalty/birthday", json={"user_id": "hal"}, headers=staff)).json()
    assert again["replayed"] and (await balance(client, staff, "hal"))["balance"] == 60
    two_days_ago = time.strftime("%m-%d", time.gmtime(clock.now() - 2 * DAY))
    await earn(client, staff, "ivy", 1_000, "i1")
    await client.put("/v1/loyalty/members/ivy", json={"birthday": two_days_ago}, headers=staff)
    late = await client.post("/v1/loyalty/birthday", json={"user_id": "ivy"}, headers=staff)
    assert late.status == 422  # Green members have a one-day window
    promo = {"id": "double", "name": "Winter bonus", "bonus_rate": 1.0, "starts_at": clock.now() - 10,
             "ends_at": clock.now() + DAY, "channels": ["pos"]}
    assert (await client.post("/v1/admin/loyalty/promotions", json=promo, headers=admin_headers)).status == 200
    assert (await (await earn(client, staff, "jo", 1_000, "j1")).json())["stars_earned"] == 20  # (1.0 + 1.0) x 10
    assert (await (await earn(client, staff, "jo", 1_000, "j2", channel="web")).json())["stars_earned"] == 10
    signal = await client.post("/v1/loyalty/reward-signal", headers=staff,
                               json={"offer_id": "off_1", "user_id": "jo", "signal_type": "ignored"})
    assert (await signal.json())["reward"] == -0.1


async def test_the_ledger_survives_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("pos", "partner")
    staff = {"X-Api-Key": key}
    first = await (await earn(client, staff, "kim", 60_000, "k1")).json()
    await client.post("/v1/loyalty/redeem", json={"user_id": "kim", "stars": 100}, headers=staff)
    await client.close()
    client = await aiohttp_client(create_app(config, clock=clock))
    after = await balance(client, staff, "kim")
    assert after["balance"] == 500 and after["tier"] == "Gold"
    replay = await earn(client, staff, "kim", 60_000, "k1")
    body = await replay.json()
    assert replay.status == 200 and body["stars_earned"] == first["stars_earned"] and body["balance"] == 600


async def test_bidding_reads_the_loyalty_tier(aiohttp_client, tmp_path, clock):
    from ml.model import make_default
    from tests.integration.bidding.helpers import _client, _price, banner_request, single_campaign
    bidder = await _client(aiohttp_client, tmp_path, clock, campaigns=[single_campaign(bid_cap_micros=100_000_000)])
    platform = bidder.app[PLATFORM]
    net = make_default(version="no-loyalty-weights")
    net.w1[128:136] = 0.0  # the tier then changes the price only through the boost
    net.save(tmp_path / "m.npz")
    await platform.bid_model.reload("test", str(tmp_path / "m.npz"))
    await platform.loyalty.earn("gold-member", 60_000, "pos", "g")       # 600 stars: Gold
    await platform.loyalty.earn("reserve-member", 300_000, "pos", "r")   # 3,000 stars: Reserve
    assert platform.loyalty.features("reserve-member")[0] == 1.0 and platform.loyalty.features("nobody") is None
    plain = await _price(bidder, banner_request(user_id="nobody"))
    assert await _price(bidder, banner_request(user_id="gold-member")) == pytest.approx(plain * 1.15, rel=1e-3)
    assert await _price(bidder, banner_request(user_id="reserve-member")) == pytest.approx(plain * 1.30, rel=1e-3)
    coppa = await _price(bidder, banner_request(user_id="reserve-member", regs={"coppa": 1}))
    assert coppa == plain


async def test_paid_orders_earn_stars_and_cancelled_ones_give_them_back(client, clock, customer_headers):
    from tests.integration.retail.helpers import accept, pay, search, seed_catalog
    platform = client.app[PLATFORM]
    await seed_catalog(platform, clock)
    user_id = (await (await client.get("/v1/me", headers=customer_headers)).json())["id"]
    offers = await search(client, customer_headers, clock)
    comfort = next(o for o in offers if o["bundle"] == "comfort")
    order = await (await accept(client, customer_headers, comfort["id"])).json()
    assert (await pay(client, customer_headers, order["id"])).status == 200
    stars = -(-comfort["total_cents"] // 100)  # ceil(total / 100)
    expected = -(-stars * 12 // 10)  # ceil(stars x 1.2, digital)
    assert (await balance(client, customer_headers, user_id))["balance"] == expected
    quote = await (await client.post(f"/v1/orders/{order['id']}/cancellations", headers=customer_headers)).json()
    await client.post(f"/v1/orders/{order['id']}/cancellations/{quote['id']}/confirm", headers=customer_headers)
    assert (await balance(client, customer_headers, user_id))["balance"] == 0
