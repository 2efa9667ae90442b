"""Wins and spend per DSP: POST /v1/dsp/win and the rewritten notice URLs, idempotent, durable; status; bad input."""

from __future__ import annotations

import json

from app.main import create_app
from tests.conftest import ADMIN, CUSTOMER, bearer, make_config
from tests.integration.dsp.conftest import SIMPLE_BANNER, platforms, post_bid, router_client, until


async def _won_bid(client) -> dict:
    body = await (await post_bid(client, SIMPLE_BANNER)).json()
    return body["seatbid"][0]["bid"][0]



async def test_wins_are_idempotent_durable_and_in_the_status(aiohttp_client, tmp_path, clock, fake_dsps):
    bidder = await fake_dsps("bid", price=2.0)
    dsps = platforms(acme=bidder)
    client = await router_client(aiohttp_client, tmp_path, clock, dsps)
    bid = await _won_bid(client)
    win = {"platform": "acme", "bid_id": bid["id"], "win_price": 1.5}
    resp = await client.post("/v1/dsp/win", json=win, headers=client.headers)
    assert resp.status == 200
    assert await resp.json() == {"platform": "acme", "bid_id": bid["id"], "recorded": True, "spend_micros": 1500}
    again = await (await client.post("/v1/dsp/win", json=win, headers=client.headers)).json()
    assert again["recorded"] is False
    # The DSP's own notices were called once each, with its own bid id and the clearing price.
    await until(lambda: len(bidder.notices) == 2)
    assert sorted(n["kind"] for n in bidder.notices) == ["burl", "nurl"]
    assert all(n["bid"] == "b0" and n["price"] == "1.5" for n in bidder.notices)
    admin = await bearer(client, *ADMIN, "admin")
    [status] = (await (await client.get("/v1/dsp/status", headers=admin)).json())["platforms"]
    assert status["name"] == "acme" and status["kind"] == "openrtb" and status["enabled"] and status["healthy"]
    assert (status["requests"], status["bids"], status["wins_today"], status["spend_today_micros"]) == (1, 1, 1, 1500)
    assert status["breaker"] == "closed" and 0 < status["p50_latency_ms"] <= status["p99_latency_ms"]
    await client.close()

    # The same data directory after a restart: the spend is still there, and the win is still a repeat.
    config = make_config(tmp_path, dsp__platforms=dsps, dsp__debug="true", dsp__include_own_bidder="false")
    restarted = await aiohttp_client(create_app(config, clock=clock))
    admin = await bearer(restarted, *ADMIN, "admin")
    [status] = (await (await restarted.get("/v1/dsp/status", headers=admin)).json())["platforms"]
    assert (status["requests"], status["wins_today"], status["spend_today_micros"]) == (0, 1, 1500)
    again = await (await restarted.post("/v1/dsp/win", json=win, headers=admin)).json()
    assert again == {"platform": "acme", "bid_id": bid["id"], "recorded": False, "spend_micros": 1500}


async def test_the_rewritten_notice_urls_record_the_win_once(aiohttp_client, tmp_path, clock, fake_dsps):
    bidder = await fake_dsps("bid", price=2.0)
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=bidder))
    bid = await _won_bid(client)
    nurl = bid["nurl"].replace("${AUCTION_PRICE}", "1.25")
    burl = bid["burl"].replace("${AUCTION_PRICE}", "1.25")
    path = nurl[nurl.index("/v1/"):]
    first = await (await client.get(path)).json()  # an exchange's call: no key
    assert first["recorded"] is True and first["spend_micros"] == 1250
    second = await (await client.get(burl[burl.index("/v1/"):])).json()
    assert second["recorded"] is False
    await until(lambda: len(bidder.notices) == 2)  # each of the DSP's own URLs once
    burl_call = next(n for n in bidder.notices if n["kind"] == "burl")
    assert burl_call == {"kind": "burl", "price": "1.25", "bid": "b0", "imp": "1"}
    # Refused: an unknown bid, a price above the bid, an unsubstituted macro, a missing id.
    assert (await client.get(path.replace(bid["id"], "nope"))).status == 404
    bid2 = await _won_bid(client)
    over = bid2["burl"].replace("${AUCTION_PRICE}", "9.99")
    assert (await client.get(over[over.index("/v1/"):])).status == 400
    raw = bid2["burl"]
    assert (await client.get(raw[raw.index("/v1/"):])).status == 400
    assert (await client.get("/v1/dsp/notices/win?platform=acme")).status == 400


async def test_bad_input(aiohttp_client, tmp_path, clock, fake_dsps):
    bidder = await fake_dsps("bid")
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=bidder))
    for body in (b"{not json", b"", json.dumps({"id": "x", "imp": []}).encode(), b"[" * 100 + b"]" * 100):
        resp = await post_bid(client, body)
        assert resp.status == 400 and await resp.read() == b"", body[:20]
    assert bidder.requests == []
    assert (await client.post("/v1/dsp/bid", data=SIMPLE_BANNER)).status == 401
    customer = await bearer(client, *CUSTOMER, "customer")
    assert (await client.post("/v1/dsp/bid", data=SIMPLE_BANNER, headers=customer)).status == 403
    assert (await client.post("/v1/dsp/win", json={}, headers=customer)).status == 403
    assert (await post_bid(client, b'{"id": "' + b"x" * 2_000_000 + b'"}')).status == 413
    win = await client.post("/v1/dsp/win", json={"platform": "acme", "bid_id": "b", "win_price": -1},
                            headers=client.headers)
    assert win.status == 400 and (await win.json())["error"]
    unknown = await client.post("/v1/dsp/win", json={"platform": "nobody", "bid_id": "b", "win_price": 1},
                                headers=client.headers)
    assert unknown.status == 404


async def test_the_bids_answered_with_are_held_until_they_expire_and_no_more_than_max_live_bids(
        aiohttp_client, tmp_path, clock, fake_dsps):
    """The DSP bids Contrail answered with are a bounded cache (`dsp_issued_bids`, at most bidding.max_live_bids):
    the sweep forgets the expired ones, whose win notices then find no bid, and past the bound the oldest go."""
    from app.bidding.openrtb import Bid
    from app.main import PLATFORM

    bidder = await fake_dsps("bid", price=2.0)
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=bidder), bidding__bid_ttl_s="60",
                                 bidding__max_live_bids="1000")
    wins = client.app[PLATFORM].dsp.wins
    first = await _won_bid(client)
    clock.advance(30)
    second = await _won_bid(client)
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_cache_entries{cache="dsp_issued_bids"} 2.0' in metrics
    assert 'contrail_cache_capacity{cache="dsp_issued_bids"} 1000.0' in metrics
    clock.advance(31)  # the first has expired, the second not
    win = {"platform": "acme", "bid_id": first["id"], "win_price": 1.5}
    assert (await client.post("/v1/dsp/win", json=win, headers=client.headers)).status == 404  # before any sweep
    wins.sweep()
    assert list(key for key, _ in wins.issued.items()) == [("acme", second["id"])]
    assert (await client.post("/v1/dsp/win", json={**win, "bid_id": second["id"]},
                              headers=client.headers)).status == 200
    for n in range(1000):  # past the bound: the oldest is forgotten
        wins.issue("acme", Bid(id=f"b{n}", impid="1", price=1.0, adm="<a/>"), "r", 1.0)
    assert len(wins.issued) == 1000 and ("acme", second["id"]) not in wins.issued
