"""A campaign's line items on the DSPs Contrail routes to: the bids a DSP makes for one of them (its `cid`) and their
wins land in the campaign's report, with the DSP's spend, but not in the budget Contrail keeps for it; they route only
while the campaign is live; bad line items are refused with a reason."""

from __future__ import annotations

import json

import msgspec
import pytest

from app.main import PLATFORM, create_app
from tests.conftest import ADMIN, bearer, make_config
from tests.integration.dsp.conftest import SIMPLE_BANNER, platforms, post_bid, router_client

SPRING = {"name": "Spring sale", "advertiser_domain": "contrail.example", "bid_cap_micros": 5_000_000,
          "daily_budget_micros": 10**9, "id": "spring", "channels": ["paid_media"],
          "dsp_line_items": [{"platform": "acme", "cid": "ttd-42"}]}


async def _report(client, admin, campaign_id: str) -> dict:
    platform = client.app[PLATFORM]
    await platform.event_log.flush()
    await platform.reports.roll_up()
    resp = await client.get(f"/v1/admin/campaigns/{campaign_id}/report", headers=admin)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _created_live(client, admin, body: dict) -> None:
    """The campaign created and put live as the workflow would once approved (the workflow is tested elsewhere)."""
    created = await client.post("/v1/admin/campaigns", json=body, headers=admin)
    assert created.status == 201, await created.text()
    campaigns = client.app[PLATFORM].campaigns
    await campaigns.replace(msgspec.structs.replace(campaigns.get(body["id"]), state="live"))


async def _routed(client) -> dict:
    resp = await post_bid(client, SIMPLE_BANNER)
    assert resp.status == 200, await resp.text()
    [seat] = (await resp.json())["seatbid"]
    return seat["bid"][0]


async def test_a_dsps_bids_and_wins_for_a_campaigns_line_item_are_in_its_report(aiohttp_client, tmp_path, clock,
                                                                                 fake_dsps):
    acme = await fake_dsps("bid", price=2.0, cid="ttd-42")
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=acme))
    admin = await bearer(client, *ADMIN, "admin")
    await _created_live(client, admin, SPRING)
    got = await (await client.get("/v1/admin/campaigns/spring", headers=admin)).json()
    assert got["dsp_line_items"] == [{"platform": "acme", "cid": "ttd-42"}]

    bids = [await _routed(client) for _ in range(3)]
    assert all(b["cid"] == "ttd-42" for b in bids)   # the DSP's campaign id reaches the exchange as it was sent
    won = await client.post("/v1/dsp/win", headers=client.headers,
                            json={"platform": "acme", "bid_id": bids[0]["id"], "win_price": 1.5})
    assert won.status == 200 and (await won.json())["recorded"] is True
    # A second win arrives by the rewritten notice URL, then again by the API: it counts once.
    nurl = bids[1]["nurl"]
    assert (await client.get(nurl[nurl.index("/v1/"):].replace("${AUCTION_PRICE}", "1.8"))).status == 200
    again = await client.post("/v1/dsp/win", headers=client.headers,
                              json={"platform": "acme", "bid_id": bids[1]["id"], "win_price": 1.8})
    assert (await again.json())["recorded"] is False

    report = await _report(client, admin, "spring")
    totals = report["totals"]
    assert (totals["bids"], totals["wins"], totals["impressions"]) == (3, 2, 2)
    assert totals["spend_micros"] == 1500 + 1800 and totals["avg_clearing_price_micros"] == 1_650_000
    assert totals["win_rate"] == 2 / 3
    assert report["today"]["spent_micros"] == 0   # the DSP spent its own budget, not the one Contrail paces
    everyone = await (await client.get("/v1/admin/campaigns/report", headers=admin)).json()
    assert [(c["campaign_id"], c["totals"]["wins"]) for c in everyone["items"]] == [("spring", 2)]

    # Once the line item is taken off the campaign, the DSP's new bids are no longer the campaign's.
    patched = await client.patch("/v1/admin/campaigns/spring", json={"dsp_line_items": []}, headers=admin)
    assert patched.status == 200 and (await patched.json())["dsp_line_items"] == []
    await _routed(client)
    assert (await _report(client, admin, "spring"))["totals"]["bids"] == 3


async def test_bids_for_no_line_item_and_with_sampled_bids_are_counted_right(aiohttp_client, tmp_path, clock,
                                                                              fake_dsps):
    acme = await fake_dsps("bid", price=2.0, cid="someone-else")
    dsps = platforms(acme=acme)
    client = await router_client(aiohttp_client, tmp_path, clock, dsps, analytics__sample_bids=0.5,
                                 analytics__whole_per_s=1)
    admin = await bearer(client, *ADMIN, "admin")
    await _created_live(client, admin, SPRING)
    await _routed(client)
    assert (await _report(client, admin, "spring"))["totals"]["bids"] == 0   # another buyer's campaign
    acme.cid = "ttd-42"
    for _ in range(40):   # counted in per-second totals, a sample kept whole beside them: each counts once
        await _routed(client)
    assert (await _report(client, admin, "spring"))["totals"]["bids"] == 40


async def test_line_items_that_name_no_dsp_or_another_campaigns_are_refused(aiohttp_client, tmp_path, clock,
                                                                             fake_dsps):
    acme = await fake_dsps("bid")
    dsps = platforms(acme=acme)
    client = await router_client(aiohttp_client, tmp_path, clock, dsps)
    admin = await bearer(client, *ADMIN, "admin")
    assert (await client.post("/v1/admin/campaigns", json=SPRING, headers=admin)).status == 201

    async def refused(body: dict, status: int, *words: str, method: str = "post", path: str = "") -> None:
        resp = await getattr(client, method)(path or "/v1/admin/campaigns", json=body, headers=admin)
        text = await resp.text()
        assert resp.status == status and all(w in text for w in words), (resp.status, text)

    summer = {**SPRING, "id": "summer", "name": "Summer"}
    await refused({**summer, "dsp_line_items": [{"platform": "tradedsk", "cid": "x"}]}, 400, "tradedsk", "acme")
    await refused(summer, 409, "ttd-42", "spring")
    await refused({**summer, "dsp_line_items": [{"platform": "acme", "cid": "a"}] * 2}, 400, "once")
    await refused({**summer, "dsp_line_items": [{"platform": "acme", "cid": ""}]}, 400, "cid")
    await refused({**summer, "dsp_line_items": [{"platform": "acme"}]}, 400, "cid")
    assert (await client.post("/v1/admin/campaigns", json={**summer, "dsp_line_items": []}, headers=admin)).status \
        == 201
    await refused({"dsp_line_items": [{"platform": "acme", "cid": "ttd-42"}]}, 409, "spring", method="patch",
                  path="/v1/admin/campaigns/summer")
    # Another node gave a line item to a campaign this node has not heard of yet: the store refuses the second.
    await client.app[PLATFORM].records_db.write([(
        "INSERT INTO campaign_line_items(platform, cid, campaign_id) VALUES (?,?,?)", ("acme", "ttd-7", "elsewhere"))])
    await refused({"dsp_line_items": [{"platform": "acme", "cid": "ttd-7"}]}, 409, "ttd-7", method="patch",
                  path="/v1/admin/campaigns/summer")
    assert client.app[PLATFORM].campaigns.get("summer").dsp_line_items == []   # nothing of the change written
    # A completed campaign lets go of its line items: the DSP's campaign may run on, or be named by a new one.
    campaigns = client.app[PLATFORM].campaigns
    ended = msgspec.structs.replace(campaigns.get("spring"), state="completed")
    await campaigns.replace(ended)
    assert campaigns.campaign_of_line_item("acme", "ttd-42") is None
    taken = await client.patch("/v1/admin/campaigns/summer", json={"dsp_line_items": [
        {"platform": "acme", "cid": "ttd-42"}]}, headers=admin)
    assert taken.status == 200 and campaigns.campaign_of_line_item("acme", "ttd-42") == "summer"
    await client.close()

    # The DSP leaves the configuration: the campaign naming it still loads and still moves through its workflow.
    restarted = await aiohttp_client(create_app(make_config(tmp_path, dsp__platforms=json.dumps([])), clock=clock))
    admin = await bearer(restarted, *ADMIN, "admin")
    kept = await restarted.patch("/v1/admin/campaigns/summer", json={"name": "Summer, extended"}, headers=admin)
    assert kept.status == 200, await kept.text()
    assert (await kept.json())["dsp_line_items"] == [{"platform": "acme", "cid": "ttd-42"}]


async def test_a_win_another_node_answered_counts_for_the_campaign(aiohttp_client, tmp_path, clock, fake_dsps):
    acme = await fake_dsps("bid", price=2.0, cid="ttd-42")
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=acme))
    platform = client.app[PLATFORM]
    if platform.redis is None:
        pytest.skip("one node: the routed bids are shared between nodes through Redis (run with --storage=scaleout)")
    admin = await bearer(client, *ADMIN, "admin")
    await _created_live(client, admin, SPRING)
    bid = await _routed(client)
    platform.dsp.wins.issued.clear()   # this node never answered it: the bid is found in Redis, campaign and all
    won = await client.post("/v1/dsp/win", headers=client.headers,
                            json={"platform": "acme", "bid_id": bid["id"], "win_price": 1.5})
    assert won.status == 200 and (await won.json())["recorded"] is True
    totals = (await _report(client, admin, "spring"))["totals"]
    assert (totals["bids"], totals["wins"], totals["spend_micros"]) == (1, 1, 1500)


async def test_a_line_items_bids_route_only_while_its_campaign_is_live(aiohttp_client, tmp_path, clock, fake_dsps):
    acme = await fake_dsps("bid", price=2.0, cid="ttd-42")
    client = await router_client(aiohttp_client, tmp_path, clock, platforms(acme=acme))
    admin = await bearer(client, *ADMIN, "admin")
    assert (await client.post("/v1/admin/campaigns", json=SPRING, headers=admin)).status == 201

    async def routed() -> bool:
        resp = await post_bid(client, SIMPLE_BANNER)
        body = await resp.json()
        assert resp.status == 200 and body["ext"]["dsp"]["acme"]["bids"] == 1, body  # the DSP did bid
        return bool(body.get("seatbid"))

    assert not await routed()   # a draft: nothing goes out before approval, on any protocol
    campaigns = client.app[PLATFORM].campaigns
    await campaigns.replace(msgspec.structs.replace(campaigns.get("spring"), state="live"))
    assert await routed()
    paused = await client.post("/v1/admin/campaigns/spring/pause", json={"comment": "stop"}, headers=admin)
    assert paused.status == 200, await paused.text()
    assert not await routed()   # immediate
    assert (await client.post("/v1/admin/campaigns/spring/resume", headers=admin)).status == 200
    assert await routed()
    acme.cid = "someone-else"   # another buyer's line item is not the campaign's to hold
    await client.post("/v1/admin/campaigns/spring/pause", headers=admin)
    assert await routed()
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_dsp_bids_total{fate="held",platform="acme"} 2.0' in metrics
    assert (await _report(client, admin, "spring"))["totals"]["bids"] == 2   # the two that went out live
