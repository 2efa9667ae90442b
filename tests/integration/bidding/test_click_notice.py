"""The click notice: a click tracker's call after a won impression, recorded once per bid."""

from app.bidding.events import BidClicked
from app.main import PLATFORM
from tests.integration.bidding.helpers import _client, banner_request, post_bid, single_campaign


async def test_a_click_on_a_known_bid_is_recorded_logged_and_published_once(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[single_campaign(id="spring")])
    platform = client.app[PLATFORM]
    heard: list[BidClicked] = []
    platform.bus.subscribe(BidClicked, heard.append)
    bid = (await (await post_bid(client, banner_request(user_id="ann"))).json())["seatbid"][0]["bid"][0]
    answers = []
    for _ in range(2):  # a repeated click changes nothing and says nothing
        resp = await client.get("/v1/notices/click", params={"bid": bid["id"]})  # anyone: no credentials
        assert resp.status == 200
        answers.append(await resp.json())
    assert answers == [{"bid_id": bid["id"], "recorded": True, "charged": False},
                       {"bid_id": bid["id"], "recorded": False, "charged": False}]
    assert [(e.bid_id, e.campaign_id, e.creative_id, e.user_id) for e in heard] == [(bid["id"], "spring", "c", "ann")]
    await platform.event_log.flush()
    clicks = [e for e in await platform.event_log.query(None, None, 0, 10_000) if e.type == "Click"]
    assert len(clicks) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_bid_notices_total{kind="click",result="ok"} 1.0' in metrics
    assert 'contrail_bid_notices_total{kind="click",result="repeat"} 1.0' in metrics


async def test_a_click_on_an_unknown_or_expired_bid_is_refused(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[single_campaign(id="spring")])
    resp = await client.get("/v1/notices/click", params={"bid": "000000000000" + "ab" * 12})
    assert resp.status == 404 and (await resp.json())["error"]["code"]
    assert (await client.get("/v1/notices/click", params={"bid": "not-a-bid"})).status == 404
    bid = (await (await post_bid(client, banner_request())).json())["seatbid"][0]["bid"][0]
    clock.advance(301)
    assert (await client.get("/v1/notices/click", params={"bid": bid["id"]})).status == 404
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_bid_notices_total{kind="click",result="unknown_bid"} 3.0' in metrics


async def test_a_click_without_a_bid_id_is_bad_input(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[single_campaign(id="spring")])
    for params in ({}, {"bid": ""}):
        resp = await client.get("/v1/notices/click", params=params)
        assert resp.status == 400, params
        assert "error" in await resp.json()
