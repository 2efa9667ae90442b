"""What bidding spends and remembers, through the real app: the loyalty boost and privacy, frequency caps,
win/billing/loss notices, budgets and pacing, the campaign and model admin APIs, exchange rate limits,
the event log."""

import pytest

from app.main import PLATFORM, create_app
from state.campaigns import FrequencyCaps
from tests.conftest import make_config
from tests.integration.bidding.helpers import _admin, _client, _price, banner_request, post_bid, single_campaign


async def test_reserve_tier_boosts_the_bid_but_not_without_consent(bidder, tmp_path):
    from ml.model import make_default
    net = make_default(version="no-loyalty-weights")
    net.w1[128:136] = 0.0  # the tier then changes the price only through the boost
    net.save(tmp_path / "m.npz")
    cap = single_campaign(bid_cap_micros=100_000_000)
    platform = bidder.app[PLATFORM]
    await platform.bid_model.reload("test", str(tmp_path / "m.npz"))
    for c in platform.campaigns.list():
        await platform.workflow.pause("test", c.id)
    await platform.campaigns.create("test", cap)
    await bidder.put("/v1/profiles/vip", json={"loyalty": [1.0, 0.5, 0, 0, 0, 0, 0, 0]},
                     headers=await _admin(bidder))
    await bidder.put("/v1/profiles/plain", json={"loyalty": [0.0, 0.5, 0, 0, 0, 0, 0, 0]},
                     headers=await _admin(bidder))
    vip = await _price(bidder, banner_request(user_id="vip"))
    plain = await _price(bidder, banner_request(user_id="plain"))
    assert vip == pytest.approx(min(100.0, plain * 1.30), rel=1e-3)
    no_consent = await _price(bidder, banner_request(user_id="vip", regs={"gdpr": 1}))
    with_consent = await _price(bidder, banner_request(user_id="vip", regs={"gdpr": 1},
                                                       user={"id": "vip", "consent": "CPXxRfAPXxRfAAfKABENB"}))
    coppa = await _price(bidder, banner_request(user_id="vip", regs={"coppa": 1}))
    anonymous = await _price(bidder, banner_request(user_id="nobody-known"))
    assert no_consent == coppa == anonymous != vip
    assert with_consent == vip


async def test_profile_validation(bidder):
    headers = await _admin(bidder)
    bad = await bidder.put("/v1/profiles/u", json={"interests": [2.0]}, headers=headers)
    assert bad.status == 400
    bad = await bidder.put("/v1/profiles/u", json={"segments": [64]}, headers=headers)
    assert bad.status == 400
    assert (await bidder.put("/v1/profiles/u", json={}, headers=bidder.headers)).status == 403


async def test_win_charges_once_and_caps_frequency_across_a_restart(aiohttp_client, tmp_path, clock):
    capped = single_campaign(id="capped", frequency_caps=FrequencyCaps(hour=1))
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[capped])
    bid = (await (await post_bid(client, banner_request())).json())["seatbid"][0]["bid"][0]
    base = f"http://127.0.0.1:{client.port}"  # notice URLs follow the port the server really listens on
    assert bid["nurl"].startswith(base) and bid["burl"].startswith(base)
    win_url = bid["nurl"].removeprefix(base).replace("${AUCTION_PRICE}", "2.5")
    first = await (await client.get(win_url)).json()
    again = await (await client.get(win_url)).json()
    billing = await (await client.get(bid["burl"].removeprefix(base).replace("${AUCTION_PRICE}", "2.5"))).json()
    assert first == {"bid_id": bid["id"], "recorded": True, "charged": True}
    assert again["charged"] is False and billing["charged"] is False
    platform = client.app[PLATFORM]
    from app.bidding.campaigns import utc_day
    assert platform.delivery.spent("capped", utc_day(clock.now())) == 2500  # 2.50 CPM = 2500 micros per imp
    assert (await post_bid(client, banner_request())).status == 204  # capped for this user
    assert (await post_bid(client, banner_request(user_id="someone-else"))).status == 200
    await client.close()
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    client.headers = {"X-Api-Key": (await client.app[PLATFORM].api_keys.create("e2", "exchange"))[1]}
    assert (await post_bid(client, banner_request())).status == 204  # still capped after restart
    clock.advance(3601)
    assert (await post_bid(client, banner_request())).status == 200
    # A stored impression is deleted once no cap window can count it (a day), not before; so is the memory of
    # the user it was shown to (the node holds a day's users, not every user ever shown an ad).
    platform = client.app[PLATFORM]
    assert (await platform.purge_retained_once())["impressions"] == 0
    assert "u1" in platform.delivery.impressions
    clock.advance(86_400)
    assert (await platform.purge_retained_once())["impressions"] == 1
    assert await platform.records_db.fetchall("SELECT count(*) FROM impressions") == [(0,)]
    assert "u1" not in platform.delivery.impressions
    assert "contrail_delivery_users 0.0" in await (await client.get("/metrics")).text()


async def test_notices_reject_unknown_and_bad_input(bidder):
    assert (await bidder.get("/v1/notices/win", params={"bid": "nope", "price": "1"})).status == 404
    bid = (await (await post_bid(bidder, banner_request())).json())["seatbid"][0]["bid"][0]
    for price in ("${AUCTION_PRICE}", "abc", "-1", "nan", str(bid["price"] + 1)):
        resp = await bidder.get("/v1/notices/win", params={"bid": bid["id"], "price": price})
        assert resp.status == 400, price
    above = await bidder.get("/v1/notices/billing", params={"bid": bid["id"], "price": str(bid["price"] + 1)})
    assert above.status == 400 and "above our bid" in (await above.json())["error"]["message"]
    loss = await bidder.get("/v1/notices/loss", params={"bid": bid["id"], "reason": "102"})
    assert (await loss.json())["recorded"] is True
    assert (await bidder.get("/v1/notices/loss", params={"bid": bid["id"], "reason": "x"})).status == 400
    metrics = await (await bidder.get("/metrics")).text()
    assert 'contrail_bid_notices_total{kind="win",result="unknown_bid"} 1.0' in metrics


async def test_expired_bids_cannot_be_won(bidder, clock):
    bid = (await (await post_bid(bidder, banner_request())).json())["seatbid"][0]["bid"][0]
    clock.advance(301)
    assert (await bidder.get("/v1/notices/win", params={"bid": bid["id"], "price": "1"})).status == 404


async def test_budget_stops_bidding_and_pacing_holds_back_early_spend(aiohttp_client, tmp_path, clock):
    """A campaign bids while its spend, what its live bids may still cost and one more impression at its cap fit the
    paced budget: on one node as on several (tests/integration/scaleout/test_two_nodes_bidding.py)."""
    import time as _time
    midnight = (int(_time.time()) // 86_400 + 1) * 86_400
    clock._now = midnight + 3600  # 01:00 UTC: the paced share is 1/24 + 5% of the budget
    tiny = single_campaign(id="tiny", daily_budget_micros=48_000, bid_cap_micros=2_000_000)  # 2,000 an impression
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[tiny])
    platform = client.app[PLATFORM]
    from app.bidding.campaigns import utc_day

    def spent() -> int:
        return platform.delivery.spent("tiny", utc_day(clock.now()))

    async def win_until_refused(prefix: str, most: int) -> int:
        """Bid for new users and bill each win at its price until the bidder stops."""
        for i in range(most):
            resp = await post_bid(client, banner_request(request_id=f"{prefix}{i}", user_id=f"{prefix}-u{i}"))
            if resp.status != 200:
                return i
            bid = (await resp.json())["seatbid"][0]["bid"][0]
            notice = await client.get("/v1/notices/billing", params={"bid": bid["id"], "price": str(bid["price"])})
            assert (await notice.json())["charged"] is True
        return most

    wins = await win_until_refused("r", 10)
    # paced share at 01:00 = 48000 * (1/24 + 0.05) = 4400 micros: it stopped once another 2,000 would not fit
    assert wins >= 2 and spent() <= 4400 < spent() + 2000
    # It opens again when the paced share reaches its spend and one more impression at its cap.
    opens = midnight + 86_400 * ((spent() + 2000) / 48_000 - 0.05)
    clock._now = opens - 1
    assert (await post_bid(client, banner_request(request_id="early", user_id="early"))).status == 204
    clock._now = opens + 1
    early = await post_bid(client, banner_request(request_id="late", user_id="late"))
    assert early.status == 200
    # A bid not billed holds what it may cost until it expires: with it live the budget has no room for another.
    held = (await early.json())["seatbid"][0]["bid"][0]
    assert spent() + held["price"] * 1000 + 2000 > 48_000 * ((opens + 1 - midnight) / 86_400 + 0.05)
    assert (await post_bid(client, banner_request(request_id="late2", user_id="late2"))).status == 204
    clock._now = midnight + 86_400 - 1  # 23:59:59, the whole budget is open (the live bid expired)
    more = await win_until_refused("s", 40)
    assert wins + more >= 23 and spent() <= 48_000 < spent() + 2000  # never beyond the daily budget


async def test_a_spent_campaign_drops_out_while_the_others_keep_bidding_within_their_caps(aiohttp_client, tmp_path,
                                                                                           clock):
    from app.bidding.campaigns import utc_day
    campaigns = [single_campaign(id="spent", bid_cap_micros=9_000_000, daily_budget_micros=1_000),
                 single_campaign(id="low", bid_cap_micros=1_000_000),
                 single_campaign(id="mid", bid_cap_micros=2_000_000)]
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=campaigns)
    platform = client.app[PLATFORM]
    await platform.delivery.charge("earlier", "spent", "u0", 1_000, utc_day(clock.now()), clock.now())
    caps = {c.id: c.bid_cap_micros / 1e6 for c in campaigns}
    seen = set()
    for i in range(12):
        resp = await post_bid(client, banner_request(request_id=f"r{i}", user_id=f"u{i}", floor=0.1,
                                                     device={"devicetype": 1 + i % 3}))
        assert resp.status == 200
        bid = (await resp.json())["seatbid"][0]["bid"][0]
        assert bid["adid"] != "spent" and 0.1 <= bid["price"] <= caps[bid["adid"]]
        seen.add(bid["adid"])
    assert seen <= {"low", "mid"}


async def test_admin_campaign_api(bidder):
    headers = await _admin(bidder)
    body = {"name": "Winter", "advertiser_domain": "contrail.example", "bid_cap_micros": 3_000_000,
            "daily_budget_micros": 100_000_000,
            "creatives": [{"id": "w1", "format": "banner", "markup": "<b>", "w": 728, "h": 90}]}
    resp = await bidder.post("/v1/admin/campaigns", json=body, headers=headers)
    assert resp.status == 201
    created = await resp.json()
    got = await (await bidder.get(f"/v1/admin/campaigns/{created['id']}", headers=headers)).json()
    assert got["creatives"][0]["w"] == 728
    resp = await bidder.post(f"/v1/admin/campaigns/{created['id']}/creatives",
                             json={"id": "w2", "format": "video", "markup": "<VAST/>", "mimes": ["video/mp4"]},
                             headers=headers)
    assert resp.status == 201 and len((await resp.json())["creatives"]) == 2
    assert created["state"] == "draft"  # nothing bids before it is approved
    resp = await bidder.patch(f"/v1/admin/campaigns/{created['id']}", json={"daily_budget_micros": 5_000_000},
                              headers=headers)
    assert (await resp.json())["daily_budget_micros"] == 5_000_000
    resp = await bidder.post(f"/v1/admin/campaigns/{created['id']}/pause", headers=headers)
    assert resp.status == 409 and "it is draft" in (await resp.json())["error"]["message"]
    bad = await bidder.post("/v1/admin/campaigns", json={**body, "bid_cap_micros": 0}, headers=headers)
    assert bad.status == 400
    bad = await bidder.post("/v1/admin/campaigns", json={**body, "creatives": [{"id": "b", "format": "banner",
                                                                                 "markup": "<b>"}]}, headers=headers)
    assert bad.status == 400 and "w and h" in (await bad.json())["error"]["message"]
    assert (await bidder.get("/v1/admin/campaigns/nope", headers=headers)).status == 404
    assert (await bidder.get("/v1/admin/campaigns", headers=bidder.headers)).status == 403


async def test_model_reload_and_providers_endpoint(bidder, tmp_path):
    from ml.model import make_default
    headers = await _admin(bidder)
    path = tmp_path / "v2.npz"
    make_default(version="retrained-v2", seed=7).save(path)
    await post_bid(bidder, banner_request())
    resp = await bidder.post("/v1/admin/model/reload", json={"path": str(path)}, headers=headers)
    assert (await resp.json()) == {"version": "retrained-v2"}
    assert (await post_bid(bidder, banner_request(request_id="after"))).status in (200, 204)
    metrics = await (await bidder.get("/metrics")).text()
    assert 'contrail_model_info{version="retrained-v2"} 1.0' in metrics
    assert 'contrail_model_info{version="default-v1"}' not in metrics  # the replaced version leaves no series
    assert "contrail_inference_batch_calls_count" in metrics
    assert "contrail_inference_batch_wait_seconds_bucket" in metrics
    bad = await bidder.post("/v1/admin/model/reload", json={"path": str(tmp_path / "missing.npz")}, headers=headers)
    assert bad.status == 400
    view = await (await bidder.get("/v1/inference/providers", headers=headers)).json()
    assert view["model_version"] == "retrained-v2"
    names = {p["name"]: p for p in view["providers"]}
    assert set(names) == {"cpu", "groq", "inferentia2", "inferentia3", "ampere", "tenstorrent"}
    assert names["cpu"]["active"] and names["cpu"]["rows"] > 0


async def test_exchange_keys_have_their_own_rate_limit(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, bidding__exchange_per_s="1",
                           bidding__exchange_burst="2")
    statuses = [(await post_bid(client, banner_request(request_id=f"r{i}"))).status for i in range(3)]
    assert statuses[:2] == [200, 200] and statuses[2] == 429


async def test_bids_and_nobids_reach_the_event_log(bidder):
    await post_bid(bidder, banner_request())
    await post_bid(bidder, banner_request(floor=10_000))
    log = bidder.app[PLATFORM].event_log
    await log.flush()
    types = [e.type for e in await log.query(None, None, 0, 100)]
    assert "Bid" in types and "NoBid" in types
