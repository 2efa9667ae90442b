"""What the values bids, bands and activation read, against the real app: a customer with no purchase has no value
(not the prior the model gives a new customer), and what partners ask of the model does not move the fallback
price bids pay for a customer not valued yet."""

from __future__ import annotations

import statistics

import msgspec
from grpclib.client import Channel

from app.main import GRPC, PLATFORM
from handlers.rpc import syncvalue_grpc
from handlers.rpc import syncvalue_pb2 as pb
from tests.integration.bidding.helpers import _client, banner_request, post_bid, single_campaign
from tests.integration.ltv.helpers import shop_history

CAP = 5_000_000
BIDS = "openrtb"  # the platform bids ask values for (app/bidding/processor.py VALUE_PLATFORM)


async def valued_app(aiohttp_client, tmp_path, clock):
    """The app after 40 customers' purchases and a refit, each customer valued into the bids' cache by the
    refresher. Returns the client, the platform, an admin's headers and each customer's value."""
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[], ltv__refit_interval_s=0,
                           ltv__refit_after_purchases=0)
    platform = client.app[PLATFORM]
    counts = await shop_history(platform, clock, customers=40, days=360)
    assert (await platform.ltv.refit())["live"] is True
    values = platform.ltv_domain.values
    for c in counts:
        values.value(c, BIDS)
    while values.queue:
        assert await values.refresh() > 0
    worth = {c: values.value(c, BIDS)[0] for c in counts}
    assert all(v is not None for v in worth.values())
    _, key = await platform.api_keys.create("ops", "admin")
    return client, platform, {"X-Api-Key": key}, worth


async def price(client, request_id: str, user: str) -> float | None:
    resp = await post_bid(client, banner_request(request_id, user, floor=0.01))
    if resp.status == 204:
        return None
    assert resp.status == 200, await resp.text()
    return (await resp.json())["seatbid"][0]["bid"][0]["price"]


async def metric(client, line: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = [row for row in text.splitlines() if row.startswith(line + " ")]
    return float(found[0].split()[-1]) if found else 0.0


async def prior(client, admin) -> float:
    """What the model answers for a customer it knows no purchase of (said to be NO_HISTORY, over gRPC and REST)."""
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    try:
        reply = await syncvalue_grpc.SyncValueServiceStub(channel).PredictLTV(
            pb.LTVPredictionRequest(customer_id="stranger"), metadata={"x-api-key": admin["X-Api-Key"]})
    finally:
        channel.close()
    assert reply.status == pb.NO_HISTORY
    rest = await (await client.get("/v1/customers/stranger/ltv", headers=admin)).json()
    assert rest["status"] == "NO_HISTORY" and rest["predicted_ltv"] == reply.predicted_ltv
    return reply.predicted_ltv


async def test_a_customer_with_no_purchase_has_no_value_to_bid_with(aiohttp_client, tmp_path, clock):
    client, platform, admin, worth = await valued_app(aiohttp_client, tmp_path, clock)
    new_customer = await prior(client, admin)  # a customer who just made a first purchase: above most real ones
    assert new_customer > statistics.median(worth.values())
    # A value bidder for whom that prior is worth twice its cap: the stranger, once the refresher has asked the model
    # about them, has no value, and the bid keeps the auction's price (below the cap, not priced by value).
    share = 2 * CAP / 1e6 / new_customer
    await platform.campaigns.create("test", single_campaign(value_share=share), audit=False)
    values = platform.ltv_domain.values
    await price(client, "r1", "stranger")  # not asked yet: the heuristic prices it, and it is queued
    assert await values.refresh() == 0  # asked: no value to cache
    valued = [await metric(client, f'contrail_bid_value_priced_total{{source="{s}"}}') for s in ("model", "fallback")]
    auction = await price(client, "r2", "stranger")
    assert auction is not None and auction < CAP / 1e6
    assert [await metric(client, f'contrail_bid_value_priced_total{{source="{s}"}}')
            for s in ("model", "fallback")] == valued
    assert not values.queue  # and it is not asked again each time it is read
    high = max(worth, key=worth.get)
    assert await price(client, "r3", high) == min(CAP, int(share * worth[high] * 1e6)) / 1e6


async def test_a_customer_with_no_purchase_is_outside_every_ltv_band(aiohttp_client, tmp_path, clock):
    client, platform, admin, worth = await valued_app(aiohttp_client, tmp_path, clock)
    band = await prior(client, admin) / 2
    high = max(worth, key=worth.get)
    assert worth[high] >= band
    banded = single_campaign()
    banded = msgspec.structs.replace(banded, targeting=msgspec.structs.replace(banded.targeting, ltv_min=band))
    await platform.campaigns.create("test", banded, audit=False)
    assert await price(client, "b1", high) is not None
    assert await price(client, "b2", "stranger") is None  # not valued yet
    await platform.ltv_domain.values.refresh()
    assert await price(client, "b3", "stranger") is None  # asked: no purchase, so no value inside the band

    # Activation limited to the same band: the stranger's value is unknown, not the prior.
    resp = await client.post("/v1/channels/activate", json={
        "user_id": "stranger", "subject": "VIP", "text": "For our best customers", "channel": "in_app",
        "ltv_min": band}, headers=admin)
    assert resp.status == 201, await resp.text()
    assert {k: v for k, v in (await resp.json()).items() if k in ("status", "predicted_ltv")} == \
        {"status": "ltv_unknown", "predicted_ltv": None}
    assert await platform.ltv.value("stranger") is None and await platform.ltv.value(high) == worth[high]


async def test_what_partners_ask_does_not_move_the_fallback_price_of_a_customer_not_valued_yet(
        aiohttp_client, tmp_path, clock):
    client, platform, admin, worth = await valued_app(aiohttp_client, tmp_path, clock)
    median = statistics.median(worth.values())
    share = CAP / 1e6 / median / 4  # the fallback (the median) prices a quarter of the cap
    await platform.campaigns.create("test", single_campaign(value_share=share), audit=False)
    expected = int(share * median * 1e6) / 1e6
    assert await price(client, "r1", "newcomer-1") == expected  # the median of the values bids fetched

    # A partner values made-up prospects (big spenders) over REST and gRPC, and a real customer over ten years.
    _, partner = await platform.api_keys.create("partner", "partner")
    now_ms = int(clock.now() * 1000)
    spender = [{"timestamp_ms": now_ms - d * 86_400_000, "event_type": "purchase", "event_value": 20_000.0}
               for d in range(1, 60)]
    for n in range(60):
        resp = await client.post("/v1/ltv/predict", json={"customer_id": f"prospect-{n}", "event_history": spender},
                                 headers={"X-Api-Key": partner})
        assert (await resp.json())["status"] == "SUCCESS"
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    stub = syncvalue_grpc.SyncValueServiceStub(channel)
    try:
        for n in range(60):
            reply = await stub.PredictLTV(pb.LTVPredictionRequest(
                customer_id=f"prospect-g{n}", platform=BIDS,
                event_history=[pb.CustomerEvent(**e) for e in spender]), metadata={"x-api-key": partner})
            assert reply.status == pb.SUCCESS
        for c in worth:
            reply = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id=c, horizon_days=3650, platform=BIDS),
                                          metadata={"x-api-key": partner})
            assert reply.status == pb.SUCCESS
    finally:
        channel.close()

    await platform.ltv_domain.values.refresh()  # the pass that lets the heuristic move on (newcomer-1: no value)
    assert await price(client, "r2", "newcomer-2") == expected
