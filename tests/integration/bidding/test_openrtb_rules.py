"""OpenRTB 2.6 request rules: what is invalid (400, no body, counted by reason) and what is valid but
cannot be served (a no-bid, counted by reason, nbr 0 in a no-bid body). Never a bid for either.

Every case starts from a request that bids and breaks one rule, so a rule that stops holding shows
up as a bid. The rules and their basis are tabled in docs/api.md (Real-time bidding).
"""

import pytest

from tests.integration.bidding.helpers import AUDIO, BANNER, NATIVE, SCHAIN, VIDEO, _client, bid_request, post_bid


async def _metric(client, line: str) -> bool:
    return line in await (await client.get("/metrics")).text()


# ---- the seven requests that were bid on --------------------------------------------------------
@pytest.mark.parametrize("body, status, reason", [
    (bid_request({"banner": {}}), 204, "banner_without_size"),
    (bid_request({"banner": {"format": []}}), 204, "banner_without_size"),
    (bid_request({"video": {**VIDEO, "w": -640}}), 400, "invalid_size"),
    (bid_request({"video": {**VIDEO, "h": 0}}), 400, "invalid_size"),
    (bid_request({"native": {"ver": "1.2"}}), 400, "native_without_request"),
    (bid_request({**BANNER, "pmp": {"private_auction": 1, "deals": [{"id": "", "bidfloor": 0.5}]}}), 400,
     "deal_missing_id"),
    (bid_request(regs={"gdpr": 2}), 400, "invalid_gdpr"),
], ids=["banner-empty", "banner-format-empty", "video-w-negative", "video-h-zero", "native-no-request",
        "private-deal-empty-id", "gdpr-2"])
async def test_the_reported_requests_get_no_bid(bidder, body, status, reason):
    resp = await post_bid(bidder, body)
    assert resp.status == status and await resp.read() == b""
    counter = "contrail_bid_invalid_total" if status == 400 else "contrail_bid_nobids_total"
    assert await _metric(bidder, f'{counter}{{reason="{reason}"}} 1.0')


# ---- invalid: 400 with no body ------------------------------------------------------------------
INVALID = [
    # Sizes are pixels: 0 or less fits no creative (Prebid Server: "must be a positive number").
    ("banner.w", bid_request({"banner": {"w": 0, "h": 250}}), "invalid_size"),
    ("banner.h", bid_request({"banner": {"w": 300, "h": -250}}), "invalid_size"),
    ("format.w", bid_request({"banner": {"format": [{"w": -300, "h": 250}]}}), "invalid_size"),
    ("format.h", bid_request({"banner": {"format": [{"w": 300, "h": 0}]}}), "invalid_size"),
    ("video.w", bid_request({"video": {**VIDEO, "w": 0}}), "invalid_size"),
    ("video.h", bid_request({"video": {**VIDEO, "h": -480}}), "invalid_size"),
    ("device.w", bid_request(device={"w": 0, "h": 1920}), "invalid_size"),
    ("device.h", bid_request(device={"w": 1080, "h": -1}), "invalid_size"),
    # Durations are seconds: minduration >= 0, maxduration >= 1, and not a range that holds nothing.
    ("video.minduration", bid_request({"video": {**VIDEO, "minduration": -5}}), "invalid_duration"),
    ("video.maxduration", bid_request({"video": {**VIDEO, "maxduration": 0}}), "invalid_duration"),
    ("video.min>max", bid_request({"video": {**VIDEO, "minduration": 30, "maxduration": 15}}), "invalid_duration"),
    ("audio.minduration", bid_request({"audio": {**AUDIO, "minduration": -1}}), "invalid_duration"),
    ("audio.maxduration", bid_request({"audio": {**AUDIO, "maxduration": 0}}), "invalid_duration"),
    ("audio.min>max", bid_request({"audio": {**AUDIO, "minduration": 60, "maxduration": 30}}), "invalid_duration"),
    # native.request is required.
    ("native.request-missing", bid_request({"native": {"ver": "1.2"}}), "native_without_request"),
    ("native.request-empty", bid_request({"native": {**NATIVE, "request": ""}}), "native_without_request"),
    # deal.id is required, in any auction.
    ("deal.id-missing", bid_request({**BANNER, "pmp": {"deals": [{"bidfloor": 0.5}]}}), "deal_missing_id"),
    ("deal.id-empty-private", bid_request({**BANNER, "pmp": {"private_auction": 1, "deals": [{"id": ""}]}}),
     "deal_missing_id"),
    # Flags are 0 or 1.
    ("imp.secure", bid_request({**BANNER, "secure": 2}), "invalid_flag"),
    ("imp.instl", bid_request({**BANNER, "instl": -1}), "invalid_flag"),
    ("pmp.private_auction", bid_request({**BANNER, "pmp": {"private_auction": 2, "deals": [{"id": "123"}]}}),
     "invalid_flag"),
    ("test", bid_request(test=2), "invalid_flag"),
    ("source.fd", bid_request(source={"fd": 3}), "invalid_flag"),
    # Privacy signals: a value other than 0/1 leaves the consent state unknown.
    ("regs.gdpr", bid_request(regs={"gdpr": -1}), "invalid_gdpr"),
    ("regs.ext.gdpr", bid_request(regs={"ext": {"gdpr": 2}}), "invalid_gdpr"),
    ("regs.ext.gdpr-string", bid_request(regs={"ext": {"gdpr": "1"}}), "invalid_gdpr"),
    ("regs.coppa", bid_request(regs={"coppa": 2}), "invalid_coppa"),
    ("user.ext.consent", bid_request(user={"id": "u1", "ext": {"consent": {"tcf": 2}}}), "invalid_consent"),
    # Latitude -90..90, longitude -180..180.
    ("device.geo.lat", bid_request(device={"geo": {"lat": 90.5}}), "invalid_geo"),
    ("device.geo.lon", bid_request(device={"geo": {"lon": -181}}), "invalid_geo"),
    ("user.geo.lat", bid_request(user={"id": "u1", "geo": {"lat": -91}}), "invalid_geo"),
    ("user.geo.lon", bid_request(user={"id": "u1", "geo": {"lon": 180.01}}), "invalid_geo"),
    # SupplyChain: complete, nodes and ver required; each node's asi and sid required; flags 0/1.
    ("schain.complete", bid_request(source={"schain": {k: v for k, v in SCHAIN.items() if k != "complete"}}),
     "invalid_schain"),
    ("schain.complete-2", bid_request(source={"schain": {**SCHAIN, "complete": 2}}), "invalid_schain"),
    ("schain.ver", bid_request(source={"schain": {k: v for k, v in SCHAIN.items() if k != "ver"}}), "invalid_schain"),
    ("schain.nodes", bid_request(source={"schain": {**SCHAIN, "nodes": []}}), "invalid_schain"),
    ("schain.node.asi", bid_request(source={"schain": {**SCHAIN, "nodes": [{"sid": "pub-1", "hp": 1}]}}),
     "invalid_schain"),
    ("schain.node.sid", bid_request(source={"schain": {**SCHAIN, "nodes": [{"asi": "x.example", "sid": ""}]}}),
     "invalid_schain"),
    ("schain.node.hp", bid_request(source={"schain": {**SCHAIN, "nodes": [{"asi": "x.example", "sid": "p", "hp": 2}]}}),
     "invalid_schain"),
]


@pytest.mark.parametrize("body, reason", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
async def test_a_broken_rule_is_400_without_body_and_counted(bidder, body, reason):
    resp = await post_bid(bidder, body)
    assert resp.status == 400 and await resp.read() == b""
    assert await _metric(bidder, f'contrail_bid_invalid_total{{reason="{reason}"}} 1.0')


# ---- valid but unservable: a no-bid -------------------------------------------------------------
UNSERVABLE = [
    ("banner-empty", bid_request({"banner": {}}), "banner_without_size"),
    ("banner-format-empty", bid_request({"banner": {"format": [], "mimes": ["image/png"]}}), "banner_without_size"),
    ("banner-w-only", bid_request({"banner": {"w": 300}}), "banner_without_size"),
    ("banner-ratio-format-only", bid_request({"banner": {"format": [{"wratio": 16, "hratio": 9, "wmin": 320}]}}),
     "banner_without_size"),
    ("banner-interstitial-no-size", bid_request({"banner": {}, "instl": 1}, device={"w": 1080, "h": 1920}),
     "banner_without_size"),
    ("private-auction-no-deals", bid_request({**BANNER, "pmp": {"private_auction": 1}}),
     "private_auction_without_deals"),
    ("private-auction-empty-deals", bid_request({**BANNER, "pmp": {"private_auction": 1, "deals": []}}),
     "private_auction_without_deals"),
]


@pytest.mark.parametrize("body, reason", [c[1:] for c in UNSERVABLE], ids=[c[0] for c in UNSERVABLE])
async def test_an_unservable_request_is_a_counted_no_bid(aiohttp_client, tmp_path, clock, body, reason):
    client = await _client(aiohttp_client, tmp_path, clock)
    resp = await post_bid(client, body)
    assert resp.status == 204 and await resp.read() == b""
    assert await _metric(client, f'contrail_bid_nobids_total{{reason="{reason}"}} 1.0')
    with_body = await _client(aiohttp_client, tmp_path / "nbr", clock, bidding__nobid_body="true")
    resp = await post_bid(with_body, body)
    assert resp.status == 200 and await resp.json() == {"id": "r1", "nbr": 0}


async def test_an_unservable_imp_does_not_stop_the_others(bidder):
    body = bid_request()
    body["imp"] = [{"id": "no-size", "banner": {}}, {"id": "sized", "bidfloor": 0.5, **BANNER},
                   {"id": "closed", "pmp": {"private_auction": 1}, **BANNER},
                   {"id": "either", "banner": {}, "video": VIDEO}]
    resp = await post_bid(bidder, body)
    assert resp.status == 200
    bids = {b["impid"]: b for b in (await resp.json())["seatbid"][0]["bid"]}
    assert set(bids) == {"sized", "either"}
    assert (bids["sized"]["w"], bids["sized"]["h"]) == (300, 250) and bids["either"]["mtype"] == 2


async def test_a_private_auction_open_only_to_deals_still_bids_in_them(bidder):
    body = bid_request({**BANNER, "pmp": {"private_auction": 1, "deals": [{"id": "123", "bidfloor": 0.5}]}})
    resp = await post_bid(bidder, body)
    assert resp.status == 200 and (await resp.json())["seatbid"][0]["bid"][0]["dealid"] == "123"


# ---- what stays valid ---------------------------------------------------------------------------
async def test_values_at_the_edges_of_each_range_are_valid(bidder):
    body = bid_request({"banner": {"w": 300, "h": 250, "format": [{"w": 300, "h": 250}, {"wratio": 16, "hratio": 9}]},
                        "video": {**VIDEO, "minduration": 0, "maxduration": 1}, "secure": 1, "instl": 0,
                        "pmp": {"private_auction": 0, "deals": [{"id": "not-ours", "bidfloor": 0}]}},
                       device={"w": 1, "h": 1, "geo": {"lat": -90, "lon": 180}},
                       user={"id": "u1", "geo": {"lat": 90, "lon": -180}, "consent": "CPXxRfAPXxRfAAfKABENB",
                             "ext": {"consent": "CPXxRfAPXxRfAAfKABENB"}},
                       regs={"gdpr": 1, "coppa": 0, "ext": {"gdpr": 1}}, test=0,
                       source={"fd": 1, "schain": SCHAIN})
    assert (await post_bid(bidder, body)).status == 200


async def test_native_with_a_request_is_bid_on(bidder):
    resp = await post_bid(bidder, bid_request({"native": NATIVE}))
    assert resp.status == 200 and (await resp.json())["seatbid"][0]["bid"][0]["mtype"] == 4


async def test_unknown_fields_and_enum_values_stay_tolerated_in_every_object(bidder):
    body = bid_request({"banner": {"w": 300, "h": 250, "pos": 99, "btype": [42], "battr": [999], "api": [77],
                                   "format": [{"w": 300, "h": 250, "ext": {"x": 1}}], "vcm": 5, "future": {"a": 1}},
                        "video": {**VIDEO, "protocols": [99], "plcmt": 42, "linearity": 9, "startdelay": -7},
                        "pmp": {"deals": [{"id": "d1", "at": 42, "guar": 1, "future": [1]}], "newfield": 1},
                        "rwdd": 1, "ssai": 9, "qty": {"multiplier": 2}, "refresh": {"count": 1}, "unknown": True},
                       at=600, cattax=99, wlang=["pt"], acat=["IAB1"], ext={"anything": [1, {"b": None}]},
                       device={"devicetype": 99, "connectiontype": 42, "ppi": 326, "lmt": 0, "sua": {"source": 9}},
                       user={"id": "u1", "yob": 1980, "eids": [{"source": "x.example", "uids": [{"id": "1"}]}]},
                       regs={"gpp": "DBABMA~CPXxRfAPXxRfAAfKABENB", "gpp_sid": [2], "us_privacy": "1YNN"},
                       source={"tid": "t", "pchain": "p", "schain": {**SCHAIN, "ext": {"x": 1}}})
    assert (await post_bid(bidder, body)).status == 200
