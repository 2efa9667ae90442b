"""OpenRTB bidding through the real app: conformance, validation, auth, encoding, floors and filters."""

import gzip
import json

import pytest

from tests.integration.bidding.helpers import (
    REQUESTS,
    _client,
    banner_request,
    check_response,
    post_bid,
    single_campaign,
)


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
