"""OpenRTB bidding through the real app: conformance, validation, privacy, caps, notices, budgets."""

import gzip
import json

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.bidding.auction import NO_FLOOR, Terms, settle
from app.demo import demo_campaigns
from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative, FrequencyCaps
from tests.conftest import CONFORMANCE, make_config

REQUESTS = sorted((CONFORMANCE / "openrtb").glob("ortb26_req_*.json"))
RATES = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}


def banner_request(request_id="r1", user_id="u1", floor=0.5, **extra):
    body = {"id": request_id, "imp": [{"id": "1", "bidfloor": floor, "banner": {"w": 300, "h": 250}}],
            "site": {"id": "s", "domain": "news.example"}, "user": {"id": user_id}, "tmax": 200}
    body.update(extra)
    return body


async def _client(aiohttp_client, tmp_path, clock, campaigns=None, **overrides):
    client = await aiohttp_client(create_app(make_config(tmp_path, **overrides), clock=clock))
    platform = client.app[PLATFORM]
    for campaign in demo_campaigns() if campaigns is None else campaigns:
        await platform.campaigns.create(campaign)
    _, key = await platform.api_keys.create("exchange", "exchange")
    client.headers = {"X-Api-Key": key}
    return client


@pytest.fixture
async def bidder(aiohttp_client, tmp_path, clock):
    return await _client(aiohttp_client, tmp_path, clock)


async def post_bid(client, body, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await client.post("/v1/bid", data=data, headers={**client.headers, **headers})


def check_response(request: dict, response: dict) -> None:
    """The OpenRTB 2.6 rules a bid response must satisfy for its request."""
    assert response["id"] == request["id"]
    assert response["cur"] == "USD" and response["bidid"]
    imps = {imp["id"]: imp for imp in request["imp"]}
    for seatbid in response["seatbid"]:
        assert seatbid["seat"] and seatbid["bid"]
        for bid in seatbid["bid"]:
            imp = imps[bid["impid"]]
            assert bid["id"] and bid["price"] > 0 and bid["adid"] and bid["crid"] and bid["adm"]
            assert bid["adomain"] == ["contrail.example"]
            for url in ("nurl", "burl", "lurl"):
                assert "${AUCTION_PRICE}" in bid[url]
            floor = imp.get("bidfloor", 0) * RATES[imp.get("bidfloorcur", "USD")]
            if "dealid" in bid:
                deal = next(d for d in imp["pmp"]["deals"] if d["id"] == bid["dealid"])
                floor = deal.get("bidfloor", 0) * RATES[deal.get("bidfloorcur", "USD")]
            else:
                assert imp.get("pmp", {}).get("private_auction", 0) == 0
            assert bid["price"] >= floor - 1e-6
            if "banner" in imp and bid["mtype"] == 1:
                b = imp["banner"]
                sizes = [(f["w"], f["h"]) for f in b.get("format", [])] + ([(b["w"], b["h"])] if "w" in b else [])
                assert not sizes or (bid["w"], bid["h"]) in sizes
            assert bid["mtype"] in (1, 2, 3, 4)


def test_conformance_data_is_present():
    assert len(REQUESTS) >= 7, f"OpenRTB conformance requests missing under {CONFORMANCE}"


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
async def test_every_conformance_request_gets_a_valid_answer(bidder, path):
    raw = path.read_bytes()
    resp = await post_bid(bidder, raw, **{"x-openrtb-version": "2.6"})
    assert resp.status in (200, 204), await resp.text()
    assert resp.headers["x-openrtb-version"] == "2.6"
    if resp.status == 200:
        check_response(json.loads(raw), await resp.json())


async def test_conformance_requests_mostly_bid(bidder):
    statuses = [(await post_bid(bidder, p.read_bytes())).status for p in REQUESTS]
    assert statuses.count(200) >= 4, statuses


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not_json"),
    (b"[]", "invalid_field"),
    (json.dumps({"imp": [{"id": "1", "banner": {}}]}), "missing_id"),
    (json.dumps({"id": "x", "imp": []}), "no_imp"),
    (json.dumps({"id": "x"}), "no_imp"),
    (json.dumps({"id": "x", "imp": [{"banner": {}}]}), "imp_missing_id"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "video": {"w": 1}}]}), "video_without_mimes"),
    (json.dumps({"id": "x", "imp": [{"id": "1"}]}), "imp_without_media"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "banner": {}}], "site": {}, "app": {}}),
     "multiple_distribution_channels"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "banner": {"w": "wide"}}]}), "invalid_field"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "banner": {}, "bidfloor": 1e308}]}), "bidfloor_out_of_range"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "banner": {}, "bidfloor": -1}]}), "bidfloor_out_of_range"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "banner": {}, "pmp": {"deals": [{"id": "d", "bidfloor": 1e300}]}}]}),
     "bidfloor_out_of_range"),
])
async def test_invalid_requests_are_400_without_body_and_counted(bidder, body, reason):
    resp = await post_bid(bidder, body)
    assert resp.status == 400 and await resp.read() == b""
    metrics = await (await bidder.get("/metrics")).text()
    assert f'contrail_bid_invalid_total{{reason="{reason}"}} 1.0' in metrics


async def test_unknown_fields_and_enum_values_are_tolerated(bidder):
    body = banner_request(ext={"anything": [1, 2]}, at=99)
    body["imp"][0]["banner"]["pos"] = 42
    body["imp"][0]["newfield"] = {"x": 1}
    resp = await post_bid(bidder, body)
    assert resp.status == 200


async def test_auth_is_required(bidder):
    from tests.conftest import CUSTOMER, bearer
    customer_headers = await bearer(bidder, *CUSTOMER, "customer")
    resp = await bidder.post("/v1/bid", data=json.dumps(banner_request()))
    assert resp.status == 401
    resp = await bidder.post("/v1/bid", data=json.dumps(banner_request()), headers=customer_headers)
    assert resp.status == 403


async def test_gzip_when_the_exchange_accepts_it(bidder):
    resp = await bidder.post("/v1/bid", data=json.dumps(banner_request()),
                             headers={**bidder.headers, "Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(await resp.read()))["id"] == "r1"


async def test_nobid_is_204_or_nbr_body_and_counted(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, bidding__nobid_body="true")
    resp = await post_bid(client, banner_request(floor=10_000))
    assert resp.status == 200 and (await resp.json()) == {"id": "r1", "nbr": 0}
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_bid_nobids_total{reason="below_floor"} 1.0' in metrics


def single_campaign(**kw) -> Campaign:
    fields = dict(id="only", name="x", advertiser_domain="contrail.example", bid_cap_micros=5_000_000,
                  daily_budget_micros=10**12, creatives=[Creative("c", "banner", "<b>", w=300, h=250)])
    fields.update(kw)
    return Campaign(**fields)


async def test_floor_in_another_currency_is_converted(aiohttp_client, tmp_path, clock):
    bidder = await _client(aiohttp_client, tmp_path, clock, campaigns=[single_campaign()])
    ok = await post_bid(bidder, banner_request(floor=1.0))
    price = (await ok.json())["seatbid"][0]["bid"][0]["price"]
    in_gbp = banner_request(floor=price / 1.27 + 0.01)
    in_gbp["imp"][0]["bidfloorcur"] = "GBP"
    assert (await post_bid(bidder, in_gbp)).status == 204  # just above our price once converted
    in_gbp["imp"][0]["bidfloor"] = price / 1.27 - 0.01
    assert (await post_bid(bidder, in_gbp)).status == 200  # just below it
    unknown = banner_request(floor=0.01)
    unknown["imp"][0]["bidfloorcur"] = "XXX"
    assert (await post_bid(bidder, unknown)).status == 204


async def test_tmax_too_small_is_a_no_bid_not_a_late_answer(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, bidding__nobid_body="true")
    resp = await post_bid(client, banner_request(tmax=1))
    assert (await resp.json())["nbr"] == 15


async def test_blocked_categories_advertisers_and_apps(bidder):
    for extra in ({"bcat": ["IAB20"]}, {"badv": ["contrail.example"]}, {"bapp": ["com.contrail.app"]}):
        assert (await post_bid(bidder, banner_request(**extra))).status == 204, extra


async def test_private_deal_only_bids_in_an_allowed_deal(bidder):
    body = banner_request(floor=0.1)
    body["imp"][0]["pmp"] = {"private_auction": 1, "deals": [{"id": "123", "bidfloor": 0.5}]}
    resp = await post_bid(bidder, body)
    bid = (await resp.json())["seatbid"][0]["bid"][0]
    assert bid["dealid"] == "123" and bid["adid"] in ("demo-lis-bcn", "demo-opo-lhr")
    body["imp"][0]["pmp"]["deals"] = [{"id": "not-ours", "bidfloor": 0.5}]
    assert (await post_bid(bidder, body)).status == 204


async def _price(client, body):
    resp = await post_bid(client, body)
    assert resp.status == 200
    return (await resp.json())["seatbid"][0]["bid"][0]["price"]


async def test_reserve_tier_boosts_the_bid_but_not_without_consent(bidder, tmp_path):
    from ml.model import make_default
    net = make_default(version="no-loyalty-weights")
    net.w1[128:136] = 0.0  # the tier then changes the price only through the boost
    net.save(tmp_path / "m.npz")
    cap = single_campaign(bid_cap_micros=100_000_000)
    platform = bidder.app[PLATFORM]
    await platform.model.reload(str(tmp_path / "m.npz"))
    for c in platform.campaigns.list():
        await platform.campaigns.update(c.id, status="paused")
    await platform.campaigns.create(cap)
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


async def _admin(client):
    from tests.conftest import ADMIN, bearer
    return await bearer(client, *ADMIN, "admin")


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
    # A stored impression is deleted once no cap window can count it (a day), not before.
    platform = client.app[PLATFORM]
    assert (await platform.purge_retained_once())["impressions"] == 0
    clock.advance(86_400)
    assert (await platform.purge_retained_once())["impressions"] == 1
    assert await platform.records_db.fetchall("SELECT count(*) FROM impressions") == [(0,)]


async def test_notices_reject_unknown_and_bad_input(bidder):
    assert (await bidder.get("/v1/notices/win", params={"bid": "nope", "price": "1"})).status == 404
    bid = (await (await post_bid(bidder, banner_request())).json())["seatbid"][0]["bid"][0]
    for price in ("${AUCTION_PRICE}", "abc", "-1", "nan", str(bid["price"] + 1)):
        resp = await bidder.get("/v1/notices/win", params={"bid": bid["id"], "price": price})
        assert resp.status == 400, price
    loss = await bidder.get("/v1/notices/loss", params={"bid": bid["id"], "reason": "102"})
    assert (await loss.json())["recorded"] is True
    assert (await bidder.get("/v1/notices/loss", params={"bid": bid["id"], "reason": "x"})).status == 400
    metrics = await (await bidder.get("/metrics")).text()
    assert 'contrail_bid_notices_total{kind="win",result="unknown_bid"} 1.0' in metrics


def test_the_bid_ledger_finds_live_bids_and_forgets_expired_and_overwritten_ones(clock):
    from app.bidding.notices import BidLedger
    ledger = BidLedger(clock, max_bids=3)
    now = clock.now()
    first = ledger.issue("r1", "1", "c", "cr", "u1", 1_000, now + 10)
    second = ledger.issue("r2", "1", "c", "cr", "u2", 2_000, now + 20)
    assert ledger.find(first).user_id == "u1" and ledger.find(second).price_micros == 2_000
    assert len({first, second}) == 2 and len(first) == 36 and int(first, 16) >= 0  # hex: safe in a URL
    forged = first[:12] + ("0" if first[12] != "0" else "1") + first[13:]  # the right slot, a wrong secret
    for bad in (forged, "", "nope", first[:12], "zz" + first[2:], "-" + first[1:], first + "0"):
        assert ledger.find(bad) is None, bad
    clock.advance(15)
    assert ledger.find(first) is None and ledger.find(second) is not None  # expired, still live
    assert ledger.sweep() == 1 and len(ledger) == 1
    later = [ledger.issue(f"r{i}", "1", "c", "cr", "u", 1, clock.now() + 60) for i in range(3)]
    assert ledger.find(second) is None  # more than max_bids live: the oldest is forgotten first
    assert all(ledger.find(b) is not None for b in later) and len(ledger) == 3
    assert ledger.sweep() == 0


async def test_expired_bids_cannot_be_won(bidder, clock):
    bid = (await (await post_bid(bidder, banner_request())).json())["seatbid"][0]["bid"][0]
    clock.advance(301)
    assert (await bidder.get("/v1/notices/win", params={"bid": bid["id"], "price": "1"})).status == 404


async def test_budget_stops_bidding_and_pacing_holds_back_early_spend(aiohttp_client, tmp_path, clock):
    import time as _time
    midnight = (int(_time.time()) // 86_400 + 1) * 86_400
    clock._now = midnight + 3600  # 01:00 UTC: the paced share is 1/24 + 5% of the budget
    tiny = single_campaign(id="tiny", daily_budget_micros=48_000)
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[tiny])

    async def win_until_refused(prefix: str, most: int) -> int:
        """Bid for new users and bill each win at 2.00 CPM (2000 micros) until the bidder stops."""
        for i in range(most):
            resp = await post_bid(client, banner_request(request_id=f"{prefix}{i}", user_id=f"{prefix}-u{i}"))
            if resp.status != 200:
                return i
            bid = (await resp.json())["seatbid"][0]["bid"][0]
            await client.get("/v1/notices/billing", params={"bid": bid["id"], "price": "2"})
        return most

    wins = await win_until_refused("r", 10)
    # paced share at 01:00 = 48000 * (1/24 + 0.05) = 4400 micros -> 3 impressions of 2000
    assert wins == 3
    # 6000 spent reopens the campaign once the paced share passes it: 1/24 + 5% + 47/1440 < 6000/48000 at 01:47,
    # and it is past it at 01:48:01. The open campaigns are cached between those moments; the cache must expire.
    clock.advance(47 * 60)
    assert (await post_bid(client, banner_request(request_id="early", user_id="early"))).status == 204
    clock.advance(61)
    assert (await post_bid(client, banner_request(request_id="late", user_id="late"))).status == 200
    clock.advance(23 * 3600 - 1 - 48 * 60 - 1)  # 23:59:59, nearly the whole budget is open
    more = await win_until_refused("s", 40)
    assert wins + more == 24  # 48000 / 2000: never beyond the daily budget


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
    resp = await bidder.patch(f"/v1/admin/campaigns/{created['id']}", json={"status": "paused"}, headers=headers)
    assert (await resp.json())["status"] == "paused"
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
    assert 'contrail_model_info{version="default-v1"} 0.0' in metrics
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


def test_response_model_round_trips_the_conformance_responses():
    from app.bidding.openrtb import BidResponse
    for path in sorted((CONFORMANCE / "openrtb").glob("ortb26_resp_*.json")):
        decoded = msgspec.json.decode(path.read_bytes(), type=BidResponse)
        assert decoded.id and decoded.seatbid


def prices_for(caps: np.ndarray, bid_factor: np.ndarray, boost: float) -> np.ndarray:
    """The documented price rule, as numpy evaluates it: the reference for the compiled auction."""
    return np.minimum(caps, np.floor(caps * (0.25 + 0.75 * bid_factor.astype(np.float64)) * boost))


@st.composite
def _batches(draw):
    calls = []
    same = draw(st.one_of(st.none(), st.integers(1, 8)))  # one size for every request, as is usual, or mixed
    for _ in range(draw(st.integers(1, 6))):
        n = same or draw(st.integers(1, 8))
        caps = draw(st.lists(st.integers(1, 5_000_000), min_size=n, max_size=n))
        # Few distinct scores, so ties between candidates are common.
        score = draw(st.lists(st.sampled_from([-0.5, 0.0, 0.25, 0.5, 0.9]), min_size=n, max_size=n))
        factor = draw(st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n))
        boost = draw(st.sampled_from([1.0, 1.15, 1.30]))
        floor = draw(st.one_of(st.just(NO_FLOOR), st.integers(0, 5_000_000)))
        calls.append((np.array(caps, np.float64), np.array(score, np.float32), np.array(factor, np.float32),
                      boost, floor))
    if same and draw(st.booleans()):  # requests of one shape: one caps array, shared
        calls = [(calls[0][0], *call[1:]) for call in calls]
    return calls


@settings(max_examples=300, deadline=None)
@given(_batches(), st.booleans())
def test_the_batch_auction_picks_what_each_request_would_pick_alone(calls, strided):
    """Settling a whole batch at once gives each request the winner and price it would get on its own:
    the first highest-ranked candidate whose price reaches the floor, never above its cap."""
    sizes = [len(c[0]) for c in calls]
    score = np.concatenate([c[1] for c in calls])
    factor = np.concatenate([c[2] for c in calls])
    if strided:  # the outputs as columns of one (rows, 2) array, as some providers give them
        both = np.stack([score, factor], axis=1)
        score, factor = both[:, 0], both[:, 1]
    settled = settle([Terms(caps, boost, floor) for caps, _, _, boost, floor in calls], score, score, factor, sizes)
    for (caps, s, f, boost, floor), got in zip(calls, settled, strict=True):
        prices = prices_for(caps, f, boost)
        assert (prices <= caps).all()
        if floor == NO_FLOOR:  # several impressions or deals: the processor chooses from these
            assert np.array_equal(got.prices, prices) and np.array_equal(got.rank, s * boost)
        eligible = [i for i in range(len(caps)) if prices[i] >= floor]
        if floor == NO_FLOOR or not eligible:
            assert got.winner == -1
        else:
            best = max(s[i] * np.float32(boost) for i in eligible)
            assert got.winner == next(i for i in eligible if s[i] * np.float32(boost) == best)
            assert got.price == int(prices[got.winner])
