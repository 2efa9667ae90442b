"""POST /v1/dsp/bid against local DSPs: fan-out, deadlines, breakers, adjustments, floors, own bidder, debug ext."""

from __future__ import annotations

import json
import time

from app.main import PLATFORM
from tests.conftest import CONFORMANCE
from tests.integration.bidding.helpers import single_campaign
from tests.integration.dsp.conftest import SIMPLE_BANNER, platforms, post_bid, router_client


async def test_the_bidding_dsp_wins_with_its_seat_and_adjusted_price(aiohttp_client, tmp_path, clock, fake_dsps):
    bidder = await fake_dsps("bid", price=2.0)
    nobid = await fake_dsps("nobid")
    client = await router_client(aiohttp_client, tmp_path, clock,
                                 platforms(acme=(bidder, {"bid_adjustment": 0.9}), quiet=nobid))
    resp = await post_bid(client, SIMPLE_BANNER)
    assert resp.status == 200
    body = await resp.json()
    request = json.loads(SIMPLE_BANNER)
    assert body["id"] == request["id"] and body["cur"] == "USD" and body["bidid"]
    [seatbid] = body["seatbid"]
    assert seatbid["seat"] == "acme"
    [bid] = seatbid["bid"]
    assert bid["impid"] == "1" and bid["price"] == 1.8 and bid["adm"] == "<a>dsp ad</a>"
    assert bid["id"] != "b0"  # Contrail's own bid id, unique across auctions
    assert "/v1/dsp/notices/win?platform=acme&bid=" in bid["nurl"] and "${AUCTION_PRICE}" in bid["nurl"]
    assert "/v1/dsp/notices/billing?platform=acme&bid=" in bid["burl"]
    report = body["ext"]["dsp"]
    assert report["acme"]["status"] == "bid" and report["acme"]["bids"] == 1 and report["acme"]["kept"] == 1
    assert report["quiet"]["status"] == "nobid"
    # The DSP got the request as sent, with a deadline of its own: tmax 200 (the default) - 10 - 5, capped at 100.
    [sent] = bidder.requests
    assert sent["id"] == request["id"] and sent["site"] == request["site"] and sent["tmax"] == 100
    assert bidder.headers[0]["x-openrtb-version"] == "2.6"


async def test_every_conformance_request_is_routed(aiohttp_client, tmp_path, clock, fake_dsps):
    bidder = await fake_dsps("bid", price=50.0)
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=bidder))
    for path in sorted((CONFORMANCE / "openrtb").glob("ortb26_req_*.json")):
        request = json.loads(path.read_bytes())
        resp = await post_bid(client, path.read_bytes())
        assert resp.status == 200, path.name
        body = await resp.json()
        imps = {imp["id"] for imp in request["imp"]}
        private = {imp["id"] for imp in request["imp"] if imp.get("pmp", {}).get("private_auction")}
        won = {b["impid"] for sb in body.get("seatbid", []) for b in sb["bid"]}
        assert won == imps - private, path.name  # a private auction admits deal bids only


async def test_below_floor_bids_are_dropped(aiohttp_client, tmp_path, clock, fake_dsps):
    cheap = await fake_dsps("bid", price=0.02)  # the request's floor is 0.03
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(cheap=cheap), dsp__debug="false")
    resp = await post_bid(client, SIMPLE_BANNER)
    assert resp.status == 204 and await resp.read() == b""
    boosted = await fake_dsps("bid", price=0.02)
    client2 = await router_client(aiohttp_client, tmp_path / "b", clock,
                                  platforms(boosted=(boosted, {"bid_adjustment": 2.0})))
    body = await (await post_bid(client2, SIMPLE_BANNER)).json()
    assert body["seatbid"][0]["bid"][0]["price"] == 0.04  # adjustment applies before the floor


async def test_slow_failing_and_malformed_dsps_never_delay_the_answer(aiohttp_client, tmp_path, clock, fake_dsps):
    bidder, slow = await fake_dsps("bid", price=1.0), await fake_dsps("slow")
    failing, malformed = await fake_dsps("fail"), await fake_dsps("malformed")
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(
        acme=bidder, slow=(slow, {"timeout_ms": 500}), failing=failing, broken=malformed))
    request = {**json.loads(SIMPLE_BANNER), "tmax": 120}
    started = time.perf_counter()
    resp = await post_bid(client, request)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert resp.status == 200 and elapsed_ms < 400  # never the slow DSP's 500 ms (the bound is loose: shared CI)
    body = await resp.json()
    assert body["seatbid"][0]["seat"] == "acme"
    report = body["ext"]["dsp"]
    assert report["slow"]["status"] == "timeout" and report["slow"]["timeout_ms"] in (104, 105)  # 120 - 10 - 5
    assert report["failing"]["status"] == "error" and "HTTP 500" in report["failing"]["error"]
    assert report["broken"]["status"] == "error" and report["broken"]["error"].startswith("malformed_json")
    assert body["ext"]["elapsed_ms"] < 120  # inside tmax, arrival to answer
    metrics = (await (await client.get("/metrics")).read()).decode()
    assert 'contrail_dsp_calls_total{outcome="timeout",platform="slow"} 1.0' in metrics
    assert 'contrail_dsp_calls_total{outcome="error",platform="broken"} 1.0' in metrics


async def test_a_failing_dsp_is_circuit_broken(aiohttp_client, tmp_path, clock, fake_dsps):
    failing = await fake_dsps("fail")
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(failing=failing))
    statuses = []
    for _ in range(5):
        body = await (await post_bid(client, SIMPLE_BANNER)).json()
        assert body["nbr"] == 0 and "seatbid" not in body  # debug: a no-bid with its report
        statuses.append(body["ext"]["dsp"]["failing"]["status"])
    assert statuses == ["error", "error", "error", "open", "open"]
    assert len(failing.requests) == 3  # breaker_failures; then not called at all
    clock.advance(31)  # past breaker_open_s: one trial call goes through
    body = await (await post_bid(client, SIMPLE_BANNER)).json()
    assert body["ext"]["dsp"]["failing"]["status"] == "error" and len(failing.requests) == 4
    assert (await client.get("/v1/dsp/status", headers=client.headers)).status == 403  # admin or partner only


async def test_too_little_time_skips_the_dsps(aiohttp_client, tmp_path, clock, fake_dsps):
    bidder = await fake_dsps("bid")
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=bidder))
    body = await (await post_bid(client, {**json.loads(SIMPLE_BANNER), "tmax": 18})).json()  # 18-15 < 5 left
    assert body["ext"]["dsp"]["acme"]["status"] == "skipped" and bidder.requests == []


async def test_contrail_own_bidder_competes(aiohttp_client, tmp_path, clock, fake_dsps):
    dsp = await fake_dsps("bid", price=100.0)
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=dsp),
                                 dsp__include_own_bidder="true")
    await client.app[PLATFORM].campaigns.create("test", single_campaign(), audit=False)
    request = {"id": "r1", "imp": [{"id": "1", "bidfloor": 0.5, "banner": {"w": 300, "h": 250}}],
               "site": {"id": "s", "domain": "news.example"}, "user": {"id": "u1"}, "tmax": 200}
    body = await (await post_bid(client, request)).json()
    assert body["seatbid"][0]["seat"] == "acme"  # 100 beats a 5.00 bid cap
    dsp.price = 0.6
    body = await (await post_bid(client, {**request, "id": "r2"})).json()
    [seatbid] = body["seatbid"]
    assert seatbid["seat"] == "contrail" and seatbid["bid"][0]["price"] > 0.6
    assert "/v1/notices/win?bid=" in seatbid["bid"][0]["nurl"]  # our own bids keep our own notices


async def test_the_platform_adapters_shape_their_requests(aiohttp_client, tmp_path, clock, fake_dsps):
    ttd, amazon, meta, dv360 = (await fake_dsps("bid", price=1.0), await fake_dsps("nobid"),
                                await fake_dsps("nobid"), await fake_dsps("nobid"))
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(
        ttd=(ttd, {"kind": "ttd", "auth_token": "t0k"}), amazon=(amazon, {"kind": "amazon", "auth_token": "k"}),
        meta=(meta, {"kind": "meta", "auth_token": "secret"}), dv=(dv360, {"kind": "dv360"})))
    request = {**json.loads(SIMPLE_BANNER), "regs": {"gdpr": 1}, "user": {"id": "u", "consent": "CO", "buyeruid": "b"}}
    assert (await post_bid(client, request)).status == 200
    assert ttd.requests[0]["regs"] == {"ext": {"gdpr": 1}} and ttd.requests[0]["user"]["ext"] == {"consent": "CO"}
    assert ttd.headers[0]["x-openrtb-version"] == "2.5" and ttd.headers[0]["Authorization"] == "Bearer t0k"
    assert amazon.headers[0]["x-api-key"] == "k" and amazon.requests[0]["cur"] == ["USD"]
    assert len(meta.requests[0]["ext"]["authentication_id"]) == 64
    assert meta.headers[0]["X-Fb-Pool-Routing-Token"] == "b" and "Authorization" not in meta.headers[0]
