"""Value bidding through the real app and REST /v1/bid: a campaign with a value_share bids that share of the
customer's predicted lifetime value (learnt by the in-process model from purchases earned through loyalty), never
above its cap, and drops a bid its value prices below the floor; campaigns without one are unaffected; users whose
personal data may not be used are not looked up; raises above the auction's price draw on a burst budget per
window; an out-of-range share is refused."""

from __future__ import annotations

import json
import math

import msgspec
import pytest

from app.errors import InvalidInput
from app.main import PLATFORM
from state.loyalty import Member
from tests.integration.bidding.helpers import _client, banner_request, post_bid, single_campaign
from tests.integration.ltv.helpers import shop_history

CAP = 5_000_000
CUSTOMERS = 40
VALUED = "openrtb"  # the platform bids ask values for (app/bidding/processor.py VALUE_PLATFORM)


async def valued_app(aiohttp_client, tmp_path, clock, **overrides):
    """The app after a purchase history and a refit, every customer valued into the bids' cache; no campaigns.
    Returns the client, the platform and each customer's value."""
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[], ltv__refit_interval_s=0,
                           ltv__refit_after_purchases=0, **overrides)
    platform = client.app[PLATFORM]
    counts = await shop_history(platform, clock, customers=CUSTOMERS, days=360)
    fitted = await platform.ltv.refit()
    assert fitted["live"] is True, fitted
    values = platform.ltv_domain.values
    customers = sorted(counts)
    for c in customers:
        values.value(c, VALUED)  # not yet valued: queued for the refresher
    while values.queue:
        assert await values.refresh() > 0
    worth = {}
    for c in customers:
        value, source = values.value(c, VALUED)
        assert source == "model" and value is not None
        worth[c] = value
    return client, platform, worth


async def metric(client, line: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = [row for row in text.splitlines() if row.startswith(line + " ")]
    return float(found[0].split()[-1]) if found else 0.0


async def price(client, body) -> float | None:
    resp = await post_bid(client, body)
    if resp.status == 204:
        return None
    assert resp.status == 200, await resp.text()
    bids = (await resp.json())["seatbid"][0]["bid"]
    assert len(bids) == 1
    return bids[0]["price"]


def served(platform) -> int:
    return sum(platform.ltv_domain.values.stats.served.values())


async def test_a_value_bidder_bids_a_low_value_customer_down_and_a_high_value_one_up_to_its_cap(
        aiohttp_client, tmp_path, clock):
    client, platform, worth = await valued_app(aiohttp_client, tmp_path, clock)
    high = max(worth, key=worth.get)
    share = min(1.0, 2 * CAP / 1e6 / worth[high])  # the high-value customer is worth twice the cap
    # A low-value customer: worth less than any auction price (at least a quarter of the cap), above a floor.
    low = min((c for c in worth if 50_000 <= share * worth[c] * 1e6 < CAP / 4), key=worth.get)
    low_price = int(share * worth[low] * 1e6)
    await platform.campaigns.create("test", single_campaign(value_share=share), audit=False)

    assert await price(client, banner_request("r1", high, floor=0.01)) == CAP / 1e6
    assert await price(client, banner_request("r2", low, floor=0.01)) == low_price / 1e6
    # The low-value customer's worth does not clear a floor above it: no bid.
    resp = await post_bid(client, banner_request("r3", low, floor=round(low_price / 1e6 + 0.01, 2)))
    assert resp.status == 204
    # Several impressions (the per-impression choice): each bid priced by value.
    body = banner_request("r4", high, floor=0.01)
    body["imp"].append({"id": "2", "bidfloor": 0.01, "banner": {"w": 300, "h": 250}})
    resp = await post_bid(client, body)
    assert [b["price"] for b in (await resp.json())["seatbid"][0]["bid"]] == [CAP / 1e6, CAP / 1e6]
    # A customer not valued yet is priced by the platform heuristic (the median of the recent values): counted.
    heuristic = platform.ltv.heuristic(VALUED)
    assert heuristic is not None
    expected = min(CAP, int(share * heuristic * 1e6))
    assert await price(client, banner_request("r5", "stranger", floor=0.01)) == expected / 1e6

    assert await metric(client, 'contrail_bid_value_priced_total{source="model"}') == 4
    assert await metric(client, 'contrail_bid_value_priced_total{source="fallback"}') == 1
    assert await metric(client, 'contrail_bid_value_dropped_total{source="model"}') == 1
    assert await metric(client, 'contrail_bid_nobids_total{reason="value_below_floor"}') == 1


async def test_a_campaign_without_value_share_and_a_user_without_consent_are_not_valued(
        aiohttp_client, tmp_path, clock):
    client, platform, worth = await valued_app(aiohttp_client, tmp_path, clock)
    high = max(worth, key=worth.get)
    await platform.campaigns.create("test", single_campaign(), audit=False)
    before = served(platform)
    plain = await price(client, banner_request("r1", high, floor=0.01))
    assert plain is not None and CAP / 4e6 <= plain <= CAP / 1e6
    refused = ({"gdpr": 1}, {"ext": {"gdpr": 1}}, {"coppa": 1})  # GDPR without a consent string, or COPPA
    private = [await price(client, banner_request("r1", high, floor=0.01, regs=regs)) for regs in refused]
    assert served(platform) == before  # no value read for a campaign that does not bid on value

    await platform.workflow.edit("test", "only", {"value_share": 1.0})
    assert await price(client, banner_request("r2", high, floor=0.01)) == CAP / 1e6
    assert served(platform) == before + 1
    # A user whose personal data may not be used: the auction's price, and no value is read.
    assert [await price(client, banner_request("r3", high, floor=0.01, regs=regs)) for regs in refused] == private
    assert served(platform) == before + 1
    consented = banner_request("r4", high, floor=0.01, regs={"gdpr": 1})
    consented["user"]["consent"] = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"
    assert await price(client, consented) == CAP / 1e6
    assert served(platform) == before + 2
    # No user, no value.
    anonymous = banner_request("r5", high, floor=0.01)
    del anonymous["user"]
    assert await price(client, anonymous) is not None and served(platform) == before + 2


async def test_the_burst_budget_stops_raises_when_spent_and_refills_next_window(aiohttp_client, tmp_path, clock):
    client, platform, worth = await valued_app(aiohttp_client, tmp_path, clock,
                                               bidding__value_burst_micros=CAP, bidding__value_burst_window_s=60)
    # A customer whose auction price is below the cap, so that valuing them at the cap raises the bid.
    await platform.campaigns.create("test", single_campaign(), audit=False)
    auction = {}
    for c in sorted(worth, key=worth.get, reverse=True)[:10]:
        auction[c] = round(await price(client, banner_request("a", c, floor=0.01)) * 1e6)
    high = next(c for c in auction if auction[c] < CAP and worth[c] >= CAP / 1e6)
    raise_ = CAP - auction[high]
    fits = CAP // raise_  # raises the window's budget covers
    await platform.workflow.edit("test", "only", {"value_share": 1.0})

    clock.advance(60 - clock.now() % 60 + 1)  # early in a window
    prices = [await price(client, banner_request(f"r{k}", high, floor=0.01)) for k in range(fits + 2)]
    assert prices == [CAP / 1e6] * fits + [auction[high] / 1e6] * 2  # then the auction's price
    assert await metric(client, "contrail_bid_value_burst_refused_total") == 2
    assert await metric(client, 'contrail_bid_value_priced_total{source="model"}') == fits

    clock.advance(60)  # the next window: the budget is whole again
    assert await price(client, banner_request("n", high, floor=0.01)) == CAP / 1e6
    assert await metric(client, "contrail_bid_value_burst_refused_total") == 2


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5, math.nan])
async def test_an_out_of_range_value_share_is_refused_with_a_clear_message(aiohttp_client, tmp_path, clock, share):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[])
    campaigns = client.app[PLATFORM].campaigns
    with pytest.raises(InvalidInput) as err:
        await campaigns.create("test", single_campaign(value_share=share), audit=False)
    assert err.value.message == "value_share must be greater than 0 and at most 1 (or null: no value bidding)"
    await campaigns.create("test", single_campaign(value_share=1.0), audit=False)
    with pytest.raises(InvalidInput, match="value_share must be greater than 0 and at most 1"):
        await client.app[PLATFORM].workflow.edit("test", "only", {"value_share": share})
    assert campaigns.get("only").value_share == 1.0


async def test_the_value_share_is_set_changed_and_cleared_over_rest(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[])
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    admin = {"X-Api-Key": key}
    body = {"id": "valued", "name": "Valued", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
            "daily_budget_micros": 10**9, "value_share": 0.3,
            "creatives": [{"id": "c", "format": "banner", "markup": "<a>ad</a>", "w": 300, "h": 250}]}
    created = await client.post("/v1/admin/campaigns", json=body, headers=admin)
    assert created.status == 201 and (await created.json())["value_share"] == 0.3
    changed = await client.patch("/v1/admin/campaigns/valued", json={"value_share": 0.5}, headers=admin)
    assert (await changed.json())["value_share"] == 0.5
    cleared = await client.patch("/v1/admin/campaigns/valued", json={"value_share": 0}, headers=admin)
    assert (await cleared.json())["value_share"] is None  # 0: the campaign bids the auction's price again
    for bad, where in (({"value_share": 1.5}, "PATCH"), ({**body, "id": "v2", "value_share": 0}, "POST")):
        resp = await (client.patch("/v1/admin/campaigns/valued", json=bad, headers=admin) if where == "PATCH"
                      else client.post("/v1/admin/campaigns", json=bad, headers=admin))
        assert resp.status == 400 and "value_share" in (await resp.json())["error"]["message"], (where, bad)


async def test_a_campaign_targeting_an_ltv_band_bids_only_on_customers_valued_inside_it(
        aiohttp_client, tmp_path, clock):
    client, platform, worth = await valued_app(aiohttp_client, tmp_path, clock)
    middle = sorted(worth.values())[len(worth) // 2]
    high, low = max(worth, key=worth.get), min(worth, key=worth.get)
    banded = single_campaign()
    banded = msgspec.structs.replace(banded, targeting=msgspec.structs.replace(banded.targeting, ltv_min=middle))
    await platform.campaigns.create("test", banded, audit=False)

    assert await price(client, banner_request("b1", high, floor=0.01)) is not None
    assert await price(client, banner_request("b2", low, floor=0.01)) is None  # valued below the band
    assert await price(client, banner_request("b3", "stranger", floor=0.01)) is None  # not valued yet
    no_consent = banner_request("b4", high, floor=0.01)
    no_consent["regs"] = {"gdpr": 1}
    assert await price(client, no_consent) is None  # their value may not be used: outside every band

    _, key = await platform.api_keys.create("ops", "admin")
    resp = await client.post(f"/v1/admin/campaigns/{banded.id}/pause", headers={"X-Api-Key": key})
    assert resp.status == 200 and (await resp.json())["state"] == "paused"
    body = {"id": "bad-band", "name": "Bad", "advertiser_domain": "contrail.example", "bid_cap_micros": 1_000_000,
            "daily_budget_micros": 10**9, "targeting": {"ltv_min": 500, "ltv_max": 100}}
    resp = await client.post("/v1/admin/campaigns", json=body, headers={"X-Api-Key": key})
    assert resp.status == 400 and "ltv_min must not be above ltv_max" in (await resp.json())["error"]["message"]


async def test_value_prices_are_the_same_over_grpc_and_the_websocket(aiohttp_client, tmp_path, clock):
    from grpclib.client import Channel

    from app.main import GRPC
    from handlers.rpc import bidding_grpc, bidding_pb2
    client, platform, worth = await valued_app(aiohttp_client, tmp_path, clock)
    high = max(worth, key=worth.get)
    low = min(worth, key=worth.get)
    share = min(1.0, 2 * CAP / 1e6 / worth[high])
    await platform.campaigns.create("test", single_campaign(value_share=share), audit=False)
    expected = {user: await price(client, banner_request(f"rest-{user}", user, floor=0.0)) for user in (high, low)}
    assert expected[high] == CAP / 1e6 and expected[low] < expected[high]

    channel = Channel("127.0.0.1", client.app[GRPC].port)
    try:
        stub = bidding_grpc.BiddingServiceStub(channel)
        for user in (high, low):
            reply = await stub.ProcessBid(bidding_pb2.BidRequestProto(
                openrtb_json=json.dumps(banner_request(f"grpc-{user}", user, floor=0.0))),
                metadata={"x-api-key": client.headers["X-Api-Key"]})
            assert reply.has_bid and json.loads(reply.openrtb_json)["seatbid"][0]["bid"][0]["price"] == expected[user]
    finally:
        channel.close()
    async with client.ws_connect(f"/v1/stream/bids?api_key={client.headers['X-Api-Key']}") as ws:
        await ws.send_str(json.dumps([banner_request(f"ws-{user}", user, floor=0.0) for user in (high, low)]))
        got = await ws.receive_json(timeout=5)
    assert [g["response"]["seatbid"][0]["bid"][0]["price"] for g in got] == [expected[high], expected[low]]


async def test_a_value_price_below_its_deals_floor_drops_the_bid_in_a_private_auction(aiohttp_client, tmp_path, clock):
    client, platform, worth = await valued_app(aiohttp_client, tmp_path, clock)
    high = max(worth, key=worth.get)
    share = min(1.0, 2 * CAP / 1e6 / worth[high])
    low = min((c for c in worth if 50_000 <= share * worth[c] * 1e6 < CAP / 4), key=worth.get)
    low_price = int(share * worth[low] * 1e6) / 1e6
    await platform.campaigns.create("test", single_campaign(value_share=share, deal_ids=["d1"]), audit=False)

    def private(request_id: str, user: str, deal_floor: float) -> dict:
        body = banner_request(request_id, user, floor=0.01)
        body["imp"][0]["pmp"] = {"private_auction": 1, "deals": [{"id": "d1", "bidfloor": deal_floor}]}
        return body
    resp = await post_bid(client, private("d-ok", low, deal_floor=round(low_price / 2, 4)))
    bid = (await resp.json())["seatbid"][0]["bid"][0]
    assert bid["dealid"] == "d1" and bid["price"] == low_price  # priced by value inside the deal
    dropped = await metric(client, 'contrail_bid_value_dropped_total{source="model"}')
    resp = await post_bid(client, private("d-low", low, deal_floor=round(low_price + 0.5, 2)))
    # The auction's price cleared the deal's floor; what the customer is worth does not: dropped.
    assert resp.status == 204
    assert await metric(client, 'contrail_bid_value_dropped_total{source="model"}') == dropped + 1
    resp = await post_bid(client, private("d-high", high, deal_floor=round(low_price + 0.5, 2)))
    assert (await resp.json())["seatbid"][0]["bid"][0]["price"] == CAP / 1e6


async def test_a_node_configured_with_a_remote_syncvalue_prices_its_bids_from_it(aiohttp_client, tmp_path, clock):
    """ltv.remote (host:port) and ltv.remote_api_key: the values bids read come from another SyncValueService (here a
    second Contrail node, whose model learnt the purchases), not from this node's own model, which has none."""
    from app.main import GRPC
    valuer, valuer_platform, worth = await valued_app(aiohttp_client, tmp_path / "valuer", clock)
    _, key = await valuer_platform.api_keys.create("bidder-node", "partner")
    client = await _client(aiohttp_client, tmp_path / "bidder", clock, campaigns=[],
                           ltv__remote=f"127.0.0.1:{valuer.app[GRPC].port}", ltv__remote_api_key=key)
    platform = client.app[PLATFORM]
    assert platform.ltv.model is None  # nothing of its own to value with
    values = platform.ltv_domain.values
    customer = max(worth, key=worth.get)
    assert values.value(customer, VALUED) == (None, "none")  # not asked yet: queued for the refresher
    assert await values.refresh() == 1
    value, source = values.value(customer, VALUED)
    assert source == "remote" and value == pytest.approx(worth[customer], rel=1e-9)

    share = min(1.0, CAP / 2 / 1e6 / worth[customer])  # half the cap
    await platform.campaigns.create("test", single_campaign(value_share=share), audit=False)
    assert await price(client, banner_request("r1", customer, floor=0.01)) == pytest.approx(
        int(share * worth[customer] * 1e6) / 1e6)
    assert await metric(client, 'contrail_bid_value_priced_total{source="remote"}') == 1.0

    # Activation's LTV bands read the remote too: this node has no model, and the customer is reached.
    _, crm = await platform.api_keys.create("crm", "admin")
    await platform.loyalty.put_member(Member(customer, preferred_channel="in_app"))
    resp = await client.post("/v1/channels/activate", json={
        "user_id": customer, "subject": "Winter fares", "text": "Madeira", "channel": "in_app",
        "ltv_min": worth[customer] / 2}, headers={"X-Api-Key": crm})
    activated = await resp.json()
    assert (activated["status"], activated["predicted_ltv"]) == ("delivered", pytest.approx(worth[customer]))
