"""A paid order rewards the offer-selection decision that came before it: the arm shown to the customer learns a
conversion once per order, only when the order is for that offer (offer arms) and within the window."""

from __future__ import annotations

import msgspec

from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative
from tests.conftest import make_config
from tests.integration.retail.helpers import booked, customer, pay, seed_catalog


async def routes_policy(client) -> dict[str, str]:
    """A live campaign over two routes with a Thompson policy over them; an admin's headers."""
    platform = client.app[PLATFORM]
    await platform.campaigns.create("test", Campaign(
        id="routes", name="Routes", advertiser_domain="contrail.example", bid_cap_micros=1_000_000,
        daily_budget_micros=10**9, state="live", creatives=[Creative("c", "banner", "<b>", w=300, h=250)],
        offer_ids=["LIS-BCN", "OPO-LHR"]), audit=False)
    _, key = await platform.api_keys.create("ops", "admin")
    admin = {"X-Api-Key": key}
    resp = await client.put("/v1/admin/campaigns/routes/policy", json={"kind": "thompson", "arms": "offers"},
                            headers=admin)
    assert resp.status == 200, await resp.text()
    return admin


def arms(view: dict) -> dict[str, dict]:
    return {a["arm"]: a for a in view["posterior"]}


async def test_a_paid_order_teaches_the_decision_that_preceded_it(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    admin = await routes_policy(client)
    await seed_catalog(platform, clock)  # a LIS-BCN flight
    buyer = await customer(client, "ana")
    account = platform.account_store.by_email("ana@example.com").id

    shown = set()
    for _ in range(20):  # until the policy has shown LIS-BCN to her (its last decision is what an order rewards)
        resp = await client.post("/v1/campaigns/routes/decide", json={"user_id": account, "context": {}},
                                 headers=admin)
        arm = (await resp.json())["arm"]
        shown.add(arm)
        if arm == "LIS-BCN":
            break
    assert arm == "LIS-BCN", shown
    order = await booked(client, buyer, clock)
    assert (await pay(client, buyer, order["id"])).status == 200
    await platform.bus.idle()
    view = await (await client.get("/v1/admin/campaigns/routes/policy", headers=admin)).json()
    assert arms(view)["LIS-BCN"]["pulls"] == 1 and arms(view)["OPO-LHR"]["pulls"] == 0
    assert arms(view)["LIS-BCN"]["mean"] > arms(view)["OPO-LHR"]["mean"]
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_policy_rewards_total{outcome="learned"} 1.0' in metrics

    # Shown OPO-LHR last, she buys LIS-BCN again: an offer arm learns only from orders for its offer.
    await platform.policies.remember(account, "routes", "OPO-LHR", {})
    second = await booked(client, buyer, clock)
    assert (await pay(client, buyer, second["id"])).status == 200
    # A week later, a decision's order no longer counts.
    await platform.policies.remember(account, "routes", "LIS-BCN", {})
    clock.advance(8 * 86_400)
    later = platform.catalog.flight("CT101-test")
    noon = later.departure_at + 8 * 86_400
    await platform.catalog.put_flights("test", [msgspec.structs.replace(later, id="CT101-later", departure_at=noon,
                                                                        arrival_at=noon + 7_500)], audit=False)
    buyer = await customer(client, "ana")  # signed in again: a week later her token has expired
    third = await booked(client, buyer, clock)
    assert (await pay(client, buyer, third["id"])).status == 200
    await platform.bus.idle()
    view = await (await client.get("/v1/admin/campaigns/routes/policy", headers=admin)).json()
    assert arms(view)["LIS-BCN"]["pulls"] == 1 and arms(view)["OPO-LHR"]["pulls"] == 0


async def test_a_click_on_a_decided_creative_teaches_it_once_and_a_click_without_a_decision_does_not(
        aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    await platform.campaigns.create("test", Campaign(
        id="ads", name="Ads", advertiser_domain="contrail.example", bid_cap_micros=1_000_000,
        daily_budget_micros=10**9, state="live", creatives=[Creative("only", "banner", "<b>", w=300, h=250)]),
        audit=False)
    _, key = await platform.api_keys.create("ops", "admin")
    _, exchange = await platform.api_keys.create("exchange", "exchange")
    admin = {"X-Api-Key": key}
    resp = await client.put("/v1/admin/campaigns/ads/policy", json={"kind": "thompson", "arms": "creatives"},
                            headers=admin)
    assert resp.status == 200, await resp.text()

    async def bid_for(user: str) -> str:
        resp = await client.post("/v1/bid", headers={"X-Api-Key": exchange}, json={
            "id": f"r-{user}", "imp": [{"id": "1", "bidfloor": 0.1, "banner": {"w": 300, "h": 250}}],
            "site": {"id": "s", "domain": "news.example"}, "user": {"id": user}, "tmax": 200})
        assert resp.status == 200, await resp.text()
        return (await resp.json())["seatbid"][0]["bid"][0]["id"]

    decided = await client.post("/v1/campaigns/ads/decide", json={"user_id": "u-decided", "context": {}},
                                headers=admin)
    assert (await decided.json())["arm"] == "only"
    for user in ("u-decided", "u-other"):  # the second was never shown anything by the policy
        bid_id = await bid_for(user)
        for _ in range(2):  # the click tracker called twice: one click
            assert (await client.get("/v1/notices/click", params={"bid": bid_id})).status == 200
    await platform.bus.idle()
    view = await (await client.get("/v1/admin/campaigns/ads/policy", headers=admin)).json()
    assert arms(view)["only"]["pulls"] == 1 and arms(view)["only"]["reward_sum"] == 1.0


async def test_a_decision_before_a_restart_is_credited_with_the_order_paid_after_it_and_erasure_forgets_it(
        aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    admin = await routes_policy(client)
    await seed_catalog(platform, clock)
    buyer = await customer(client, "ana")
    account = platform.account_store.by_email("ana@example.com").id
    for _ in range(40):
        resp = await client.post("/v1/campaigns/routes/decide", json={"user_id": account, "context": {}},
                                 headers=admin)
        if (await resp.json())["arm"] == "LIS-BCN":
            break
    order = await booked(client, buyer, clock)
    await client.close()

    again = await aiohttp_client(create_app(config, clock=clock))
    platform = again.app[PLATFORM]
    assert (await pay(again, buyer, order["id"])).status == 200
    await platform.bus.idle()
    view = await (await again.get("/v1/admin/campaigns/routes/policy", headers=admin)).json()
    assert arms(view)["LIS-BCN"]["pulls"] == 1  # the decision made before the restart was credited

    await platform.policies.remember(account, "routes", "OPO-LHR", {})
    resp = await again.delete(f"/v1/customers/{account}", headers=admin)
    assert resp.status == 200, await resp.text()
    rows = await platform.records_db.fetchall("SELECT user_id FROM policy_decisions")
    assert rows == []  # an erased customer's decisions go with them
