"""Campaign reports against the real app: bids, notices, reward signals and a paid order through the real edges land
in the campaign's hourly totals (once each, across a restart of the roll-up); a month of data answers in well under
50 ms; bad ranges get clear errors."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import statistics
import time

import pytest

from adapters.sqlite.reports import SqliteReportStore
from app.campaigns.reports import CampaignReports
from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative
from tests.conftest import make_config
from tests.integration.retail.helpers import booked, customer, pay, seed_catalog

HOUR = 3600


def live_campaign(campaign_id: str, **kw) -> Campaign:
    fields = dict(id=campaign_id, name=campaign_id.title(), advertiser_domain="contrail.example",
                  bid_cap_micros=5_000_000, daily_budget_micros=10**9, state="live",
                  creatives=[Creative("c", "banner", "<b>", w=300, h=250)], offer_ids=["LIS-BCN", "promo-1"],
                  channels=["display", "email"])
    fields.update(kw)
    return Campaign(**fields)


def bid_request(request_id: str, floor: float = 0.1) -> dict:
    return {"id": request_id, "imp": [{"id": "1", "bidfloor": floor, "banner": {"w": 300, "h": 250}}],
            "site": {"id": "s", "domain": "news.example"}, "user": {"id": f"u-{request_id}"}, "tmax": 200}


@pytest.fixture
async def shop(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    await platform.campaigns.create("test", live_campaign("spring"), audit=False)
    _, exchange = await platform.api_keys.create("exchange", "exchange")
    _, admin = await platform.api_keys.create("ops", "admin")
    return client, {"X-Api-Key": exchange}, {"X-Api-Key": admin}, config


async def notice(client, url: str, price: str) -> None:
    path = url[url.index("/v1/"):].replace("${AUCTION_PRICE}", price).replace("${AUCTION_LOSS}", "102")
    assert (await client.get(path)).status == 200


async def rolled_up(client) -> None:
    platform = client.app[PLATFORM]
    await platform.event_log.flush()
    await platform.reports.roll_up()


async def test_a_campaigns_bids_notices_clicks_and_orders_are_reported(shop, clock):
    client, exchange, admin, _ = shop
    bids = []
    for k in range(4):
        resp = await client.post("/v1/bid", json=bid_request(f"r{k}"), headers=exchange)
        assert resp.status == 200
        bids.append((await resp.json())["seatbid"][0]["bid"][0])
    await notice(client, bids[0]["nurl"], "2.0")     # won at a 2.00 CPM: 2,000 micros spent
    await notice(client, bids[1]["nurl"], "3.0")
    await notice(client, bids[1]["burl"], "3.0")     # billed after its win: not a second impression
    await notice(client, bids[2]["burl"], "1.5")     # billed with no win notice: an impression
    await notice(client, bids[3]["lurl"], "1.0")
    no_bid = await client.post("/v1/bid", json=bid_request("cheap", floor=500), headers=exchange)
    assert no_bid.status == 204
    for signal in ("clicked", "clicked", "redeemed", "ignored"):
        resp = await client.post("/v1/loyalty/reward-signal", headers=admin,
                                 json={"offer_id": "promo-1", "user_id": "u1", "signal_type": signal})
        assert resp.status == 200, await resp.text()
    for _ in range(3):  # a signal sent three times (a client's retries): counted once
        resp = await client.post("/v1/loyalty/reward-signal", headers=admin,
                                 json={"offer_id": "promo-1", "user_id": "u2", "signal_type": "clicked",
                                       "signal_id": "sig-retried", "campaign_id": "spring", "arm": "c"})
        assert resp.status == 200, await resp.text()
    for bid in (bids[0], bids[0], bids[1]):  # the ad of two bids clicked, one of them twice: two clicks
        assert (await client.get("/v1/notices/click", params={"bid": bid["id"]})).status == 200
    platform = client.app[PLATFORM]
    await seed_catalog(platform, clock)  # a LIS-BCN flight: the campaign promotes that route
    buyer = await customer(client, "ana")
    order = await booked(client, buyer, clock)
    assert (await pay(client, buyer, order["id"])).status == 200
    await rolled_up(client)

    resp = await client.get("/v1/admin/campaigns/spring/report", params={"granularity": "hour"}, headers=admin)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    totals = report["totals"]
    assert (totals["bids"], totals["wins"], totals["impressions"], totals["losses"]) == (4, 2, 3, 1)
    assert totals["win_rate"] == 0.5
    assert totals["spend_micros"] == 2_000 + 3_000 + 1_500
    assert totals["avg_clearing_price_micros"] == 2_500_000
    # clicks: two signals, the retried one once, and two click notices; conversions: a redemption, a paid order
    assert (totals["clicks"], totals["conversions"]) == (5, 2)
    assert totals["revenue_cents"] == order["total_cents"]
    assert [p["at"] % HOUR for p in report["series"]] == [0] * len(report["series"])
    assert sum(p["totals"]["bids"] for p in report["series"]) == 4
    assert report["no_bid_reasons"] == {"below_floor": 1}
    today = report["today"]
    assert today["spent_micros"] == 6_500 and today["daily_budget_micros"] == 10**9
    assert len(today["pacing"]) == 25 and today["pacing"][-1]["allowed_micros"] == 10**9
    assert report["state"] == "live" and report["granularity"] == "hour"

    everyone = await (await client.get("/v1/admin/campaigns/report", headers=admin)).json()
    assert [i["campaign_id"] for i in everyone["items"]] == ["spring"]
    assert everyone["items"][0]["totals"] == totals and everyone["totals"] == totals


async def test_the_roll_up_counts_each_event_once_across_a_restart(aiohttp_client, shop, clock):
    client, exchange, admin, config = shop
    signal = {"offer_id": "promo-1", "user_id": "u2", "signal_type": "clicked", "signal_id": "sig-1",
              "campaign_id": "spring", "arm": "c"}
    for k in range(3):
        assert (await client.post("/v1/bid", json=bid_request(f"r{k}"), headers=exchange)).status == 200
    assert (await client.post("/v1/loyalty/reward-signal", json=signal, headers=admin)).status == 200
    await rolled_up(client)
    await rolled_up(client)  # nothing new: nothing added
    await client.close()
    again = await aiohttp_client(create_app(config, clock=clock))
    await again.app[PLATFORM].reports.roll_up()  # starts from where it was
    resp = await again.post("/v1/bid", json=bid_request("after"), headers=exchange)
    assert resp.status == 200
    assert (await again.post("/v1/loyalty/reward-signal", json=signal, headers=admin)).status == 200  # a retry
    await rolled_up(again)
    report = await (await again.get("/v1/admin/campaigns/spring/report", headers=admin)).json()
    assert report["totals"]["bids"] == 4
    assert report["totals"]["clicks"] == 1  # the retry, in a later roll-up after a restart, is not counted again


async def test_a_month_of_hourly_data_answers_in_well_under_50_ms(shop, clock):
    client, exchange, admin, _ = shop
    platform = client.app[PLATFORM]
    log = platform.event_log
    start = clock.now()
    for hour in range(30 * 24):  # a month of a demo campaign's traffic, written through the event log
        clock.advance(HOUR)
        log.log_events("Bid", [{"campaign_id": "spring", "bid_id": f"b{hour}-{k}"} for k in range(20)])
        log.log_events("Win", [{"campaign_id": "spring", "bid_id": f"b{hour}-{k}", "price_micros": 1_500_000}
                               for k in range(4)])
        log.log_event("NoBid", {"reason": "no_match"})
        if hour % 50 == 49:
            await log.flush()
    await rolled_up(client)
    params = {"granularity": "hour", "from": str(start), "to": str(clock.now() + 1)}
    timings = []
    for _ in range(7):
        began = time.perf_counter()
        resp = await client.get("/v1/admin/campaigns/spring/report", params=params, headers=admin)
        body = await resp.json()
        timings.append(time.perf_counter() - began)
    assert resp.status == 200 and len(body["series"]) == 30 * 24
    assert body["totals"]["bids"] == 30 * 24 * 20 and body["totals"]["wins"] == 30 * 24 * 4
    assert body["no_bid_reasons"] == {"no_match": 30 * 24}
    assert statistics.median(timings) < 0.05, timings
    daily = await (await client.get("/v1/admin/campaigns/spring/report", headers=admin,
                                    params={**params, "granularity": "day"})).json()
    assert len(daily["series"]) in (30, 31) and daily["totals"] == body["totals"]
    timings = []
    for _ in range(7):  # every campaign's report over the same month
        began = time.perf_counter()
        resp = await client.get("/v1/admin/campaigns/report", params={"from": params["from"], "to": params["to"]},
                                headers=admin)
        everyone = await resp.json()
        timings.append(time.perf_counter() - began)
    assert resp.status == 200 and everyone["totals"] == body["totals"]
    assert statistics.median(timings) < 0.05, timings


@pytest.mark.parametrize("params, message", [
    ({"granularity": "week"}, "granularity"),
    ({"from": "yesterday"}, "from must be epoch seconds or an ISO 8601 date"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "from must be before to"),
    ({"from": "2025-01-01", "to": "2026-01-01", "granularity": "hour"}, "hourly report spans at most 93 days"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "a report spans at most three years"),
    ({"bogus": "1"}, "unknown query parameter"),
])
async def test_bad_report_ranges_get_clear_errors(shop, params, message):
    client, exchange, admin, _ = shop
    resp = await client.get("/v1/admin/campaigns/spring/report", params=params, headers=admin)
    assert resp.status in (400, 422) and message in (await resp.json())["error"]["message"]
    assert (await client.get("/v1/admin/campaigns/nope/report", headers=admin)).status == 404
    assert (await client.get("/v1/admin/campaigns/report", headers=exchange)).status == 403


async def test_a_report_counts_every_bid_sent_from_the_totals_across_a_restart(aiohttp_client, tmp_path, clock):
    """Bids and no-bids are kept as per-second totals plus a 5% sample of whole records: the report counts each bid
    the exchange got once (the sample is not counted again), per campaign and per no-bid reason, before and after a
    restart, with roll-ups between flushes and flushes in the middle of a second."""
    config = make_config(tmp_path, analytics__sample_bids=0.05, analytics__whole_per_s=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    await platform.campaigns.create("test", live_campaign("spring"), audit=False)
    await platform.campaigns.create("test", live_campaign("summer", creatives=[Creative("c", "banner", "<b>", w=728,
                                                                                       h=90)]), audit=False)
    _, exchange = await platform.api_keys.create("exchange", "exchange")
    _, admin = await platform.api_keys.create("ops", "admin")
    sent: dict[str, int] = {}
    no_bids = 0

    async def traffic(client, prefix: str, n: int) -> None:
        nonlocal no_bids
        for k in range(n):
            cheap = k % 7 == 0
            request = bid_request(f"{prefix}{k}", floor=500 if cheap else 0.1)
            if k % 3 == 0:  # a leaderboard: summer's size
                request["imp"][0]["banner"] = {"w": 728, "h": 90}
            resp = await client.post("/v1/bid", json=request, headers={"X-Api-Key": exchange})
            if cheap:
                assert resp.status == 204
                no_bids += 1
            else:
                bid = (await resp.json())["seatbid"][0]["bid"][0]
                sent[bid["adid"]] = sent.get(bid["adid"], 0) + 1
            if k % 40 == 39:
                clock.advance(0.7)
            if k % 90 == 89:
                await rolled_up(client)

    await traffic(client, "a", 300)
    await client.close()  # a clean stop writes the totals of the current second
    client = await aiohttp_client(create_app(config, clock=clock))
    await traffic(client, "b", 200)
    await rolled_up(client)
    platform = client.app[PLATFORM]
    whole = await platform.event_log.query("Bid", None, 0, 10_000)
    assert 0 < len(whole) < sum(sent.values()) / 5  # a sample, not everything
    everyone = await (await client.get("/v1/admin/campaigns/report", headers={"X-Api-Key": admin})).json()
    assert {i["campaign_id"]: i["totals"]["bids"] for i in everyone["items"]} == sent
    assert everyone["totals"]["bids"] == sum(sent.values()) and set(sent) == {"spring", "summer"}
    assert everyone["no_bid_reasons"] == {"below_floor": no_bids}


async def test_roll_ups_running_at_once_here_and_on_another_node_count_each_bid_once(shop):
    """The periodic roll-up, one an operator starts, and another node's over the same store: each event is counted
    once, whichever pass takes it."""
    client, exchange, admin, _ = shop
    platform = client.app[PLATFORM]
    other_node = CampaignReports(platform.event_log, SqliteReportStore(platform.records_db), platform.campaigns,
                                 platform.clock, platform.metrics, lambda _: None, batch=7)
    here = platform.reports
    conflicts = platform.metrics.rollup_conflicts.labels()
    # Until two passes meet over the same events (on a busy machine one pass may finish before the others read):
    # every round, each bid counts once.
    for sent in range(60, 301, 60):
        for k in range(sent - 60, sent):
            assert (await client.post("/v1/bid", json=bid_request(f"r{k}"), headers=exchange)).status == 200
        await platform.event_log.flush()
        await asyncio.gather(here.roll_up(), here.roll_up(), other_node.roll_up(), other_node.roll_up())
        report = await (await client.get("/v1/admin/campaigns/report", headers=admin)).json()
        assert report["totals"]["bids"] == sent
        if conflicts.value >= 1:
            break
    assert conflicts.value >= 1  # a pass found its events taken by another, and counted nothing twice


async def test_clicks_on_a_campaigns_email_count_once_a_message_whichever_way_we_hear_of_them(shop, clock):
    from state.loyalty import Member
    client, _, admin, _ = shop
    platform = client.app[PLATFORM]
    for user in ("m1", "m2"):
        await platform.loyalty.put_member(Member(user, preferred_channel="email", email=f"{user}@example.com"))

    async def activate(user: str, **campaign) -> str:
        resp = await client.post("/v1/channels/activate", headers=admin, json={
            "user_id": user, "subject": "Spring in Barcelona", "text": "Fly in spring", "channel": "email", **campaign})
        assert resp.status == 201, await resp.text()
        return (await resp.json())["provider_message_id"]

    ours = await activate("m1", campaign_id="spring")
    other = await activate("m2")  # no campaign: its clicks are in the mail analytics only
    for message in (ours, ours, other):  # our tracked link, the first message clicked twice
        assert await platform.email.record("click", message, url="https://contrail.example/spring")
    webhook = [{"event": "click", "email": "m1@example.com", "timestamp": int(clock.now()), "sg_event_id": "sg-1",
                "contrail_message_id": ours, "url": "https://contrail.example/spring"}]
    assert (await platform.email_analytics.ingest(json.dumps(webhook).encode()))["recorded"] == 1  # SendGrid's
    await rolled_up(client)
    resp = await client.get("/v1/admin/campaigns/spring/report", headers=admin)
    assert (await resp.json())["totals"]["clicks"] == 1  # one message clicked, however often and by whichever path

    third = await activate("m1", campaign_id="spring")
    assert await platform.email.record("click", third, url="https://contrail.example/spring")
    await rolled_up(client)
    resp = await client.get("/v1/admin/campaigns/spring/report", headers=admin)
    assert (await resp.json())["totals"]["clicks"] == 2


async def test_a_paid_order_and_reward_signals_credit_only_the_live_campaigns_promoting_them_and_count_once(shop,
                                                                                                           clock):
    """Every campaign promoting the route and the offer, in every state: only the two running when the order was
    paid and the signals came get them; the all-campaigns totals count each once."""
    from tests.integration.campaigns.test_workflow import new_campaign
    client, _, admin, _ = shop
    platform = client.app[PLATFORM]
    await platform.campaigns.create("test", live_campaign("autumn"), audit=False)  # live too, beside spring
    idle = ["in_review", "approved", "scheduled", "rejected", "paused", "completed"]
    for state in idle:
        await platform.campaigns.create("test", live_campaign(state.replace("_", "-"), state=state), audit=False)
    await platform.campaigns.create("test", live_campaign("ended", ends_at=clock.now() + 60), audit=False)
    resp = await client.post("/v1/admin/campaigns", headers=admin,
                             json=new_campaign(id="draft", offer_ids=["LIS-BCN", "promo-1"]))
    assert resp.status == 201
    clock.advance(120)  # "ended" is past its end: stored live until the scheduler's pass, but it no longer runs
    await seed_catalog(platform, clock)
    buyer = await customer(client, "ana")
    order = await booked(client, buyer, clock)
    assert (await pay(client, buyer, order["id"])).status == 200
    for signal in ("clicked", "redeemed"):
        resp = await client.post("/v1/loyalty/reward-signal", headers=admin,
                                 json={"offer_id": "promo-1", "user_id": "u1", "signal_type": signal})
        assert resp.status == 200, await resp.text()
    await rolled_up(client)

    everyone = await (await client.get("/v1/admin/campaigns/report", headers=admin)).json()
    credited = {i["campaign_id"]: (i["totals"]["clicks"], i["totals"]["conversions"], i["totals"]["revenue_cents"])
                for i in everyone["items"]}
    paid = order["total_cents"]
    assert credited == {"spring": (1, 2, paid), "autumn": (1, 2, paid), "draft": (0, 0, 0), "ended": (0, 0, 0),
                        **{state.replace("_", "-"): (0, 0, 0) for state in idle}}
    totals = everyone["totals"]
    assert (totals["clicks"], totals["conversions"], totals["revenue_cents"]) == (1, 2, paid)  # once, not twice
    assert everyone["no_bid_reasons"] == {}  # what the totals take off is not a no-bid reason
    draft = await (await client.get("/v1/admin/campaigns/draft/report", headers=admin)).json()
    assert (draft["totals"]["conversions"], draft["totals"]["revenue_cents"]) == (0, 0)
    summary = await client.get("/v1/reports/campaign_summary.csv", headers=admin)
    rows = {r["campaign_id"]: r for r in csv.DictReader(io.StringIO(await summary.text()))}
    assert {c: int(r["conversions"]) for c, r in rows.items() if int(r["conversions"])} == {"spring": 2, "autumn": 2}


async def test_a_promoting_campaign_is_credited_for_what_happened_while_it_was_live_by_its_history(
        aiohttp_client, tmp_path, clock):
    """With the campaigns' workflow history, a signal that came while a campaign was paused earns it nothing though
    it is live again when rolled up, and one that came while it was live counts though it is paused by then."""
    from tests.integration.campaigns.test_workflow import new_campaign, step
    config = make_config(tmp_path, campaigns__rollup_interval_s=3600)  # only this test's roll-up takes the events
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    keys = {}
    for name in ("author", "ana"):
        _, key = await platform.api_keys.create(name, "admin")
        keys[name] = {"X-Api-Key": key}
    reports = CampaignReports(platform.event_log, SqliteReportStore(platform.records_db), platform.campaigns,
                              platform.clock, platform.metrics, lambda _: None,
                              history=platform.campaign_store.history)

    async def signal(kind: str) -> None:
        resp = await client.post("/v1/loyalty/reward-signal", headers=keys["ana"],
                                 json={"offer_id": "promo-1", "user_id": "u1", "signal_type": kind})
        assert resp.status == 200, await resp.text()
        clock.advance(60)

    async def totals() -> tuple[int, int]:
        await platform.event_log.flush()
        await reports.roll_up()
        report = await (await client.get("/v1/admin/campaigns/summer/report", headers=keys["ana"])).json()
        return report["totals"]["clicks"], report["totals"]["conversions"]

    resp = await client.post("/v1/admin/campaigns", headers=keys["author"],
                             json=new_campaign(id="summer", offer_ids=["promo-1"]))
    assert resp.status == 201
    await signal("redeemed")  # a draft
    await step(client, keys["author"], "summer", "submit")
    await step(client, keys["ana"], "summer", "approve")
    await step(client, keys["ana"], "summer", "schedule")
    clock.advance(60)
    await signal("clicked")  # live
    await step(client, keys["ana"], "summer", "pause")
    clock.advance(60)
    await signal("redeemed")  # paused
    await step(client, keys["ana"], "summer", "resume")
    assert await totals() == (1, 0)  # live again now: the redemptions came before it ran and while it was paused
    await signal("clicked")  # live
    await step(client, keys["ana"], "summer", "pause")
    assert await totals() == (2, 0)  # paused now: the click came while it was live


async def test_a_billing_notice_before_the_win_notice_counts_one_impression_and_its_spend_once(shop):
    client, exchange, admin, _ = shop
    resp = await client.post("/v1/bid", json=bid_request("r0"), headers=exchange)
    bid = (await resp.json())["seatbid"][0]["bid"][0]
    await notice(client, bid["burl"], "2.0")  # charges the bid
    await notice(client, bid["nurl"], "2.0")  # a win, charging nothing more
    # A Win event logged before win events said whether they charged: it charged (the billing notice after it
    # was not logged), so it counts its impression and spend as it always did.
    client.app[PLATFORM].event_log.log_event("Win", {"bid_id": "old", "campaign_id": "spring",
                                                     "price_micros": 1_000_000})
    await rolled_up(client)
    report = await (await client.get("/v1/admin/campaigns/spring/report", headers=admin)).json()
    totals = report["totals"]
    assert (totals["wins"], totals["impressions"], totals["spend_micros"]) == (2, 2, 2_000 + 1_000)
    assert totals["avg_clearing_price_micros"] == 1_500_000
    assert report["today"]["spent_micros"] == 2_000  # what was charged: the report's spend but for the old event
    spend = await (await client.get("/v1/admin/spend", headers=admin)).json()
    assert spend["items"][0]["spent_micros"] == 2_000


@pytest.mark.parametrize("params, field", [
    ({"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-02"}, "from"),
    ({"from": "9999-12-30", "to": "9999-12-31T23:59:59-12:00"}, "from"),
    ({"from": "2026-01-01", "to": "9999-12-31"}, "to"),
    ({"to": "1969-12-31T23:59:59Z"}, "to"),
])
@pytest.mark.parametrize("path", ["/v1/admin/campaigns/spring/report", "/v1/admin/campaigns/report"])
async def test_dates_outside_the_epoch_seconds_range_are_400_naming_the_parameter(shop, path, params, field):
    client, _, admin, _ = shop
    resp = await client.get(path, params=params, headers=admin)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["details"] == {"field": field}
    assert error["message"].startswith(f"{field} must be epoch seconds or an ISO 8601 date from 1970-01-01")


async def test_a_customers_own_signals_count_once_an_offer_kind_and_day_whatever_ids_they_carry(shop, clock):
    """A member's app may send their clicks with their own token, but a customer must not be able to raise the
    campaigns' figures by sending more: theirs count once per offer, kind and UTC day; a partner's count by id."""
    client, _, admin, _ = shop
    clock.advance(86_400 - clock.now() % 86_400 + 3600)  # 01:00 UTC: the day's signals all fall on one day
    buyer = await customer(client, "ana")
    me = await (await client.get("/v1/me", headers=buyer)).json()
    for k in range(5):
        for body in ({"signal_id": f"mine-{k}"}, {}):
            resp = await client.post("/v1/loyalty/reward-signal", headers=buyer,
                                     json={"offer_id": "promo-1", "user_id": me["id"], "signal_type": "clicked",
                                           **body})
            assert resp.status == 200, await resp.text()
    resp = await client.post("/v1/loyalty/reward-signal", headers=buyer,
                             json={"offer_id": "promo-1", "user_id": me["id"], "signal_type": "redeemed"})
    assert resp.status == 200
    for k in range(2):  # a partner system's signals count by their ids
        resp = await client.post("/v1/loyalty/reward-signal", headers=admin,
                                 json={"offer_id": "promo-1", "user_id": "u1", "signal_type": "clicked",
                                       "signal_id": f"pos-{k}"})
        assert resp.status == 200
    await rolled_up(client)
    clock.advance(86_400)  # the next day, the member's click counts again
    buyer = await customer(client, "ana")
    resp = await client.post("/v1/loyalty/reward-signal", headers=buyer,
                             json={"offer_id": "promo-1", "user_id": me["id"], "signal_type": "clicked"})
    assert resp.status == 200
    await rolled_up(client)
    report = await (await client.get("/v1/admin/campaigns/spring/report", headers=admin,
                                     params={"from": str(clock.now() - 2 * 86_400), "to": str(clock.now() + 1)})).json()
    assert (report["totals"]["clicks"], report["totals"]["conversions"]) == (1 + 2 + 1, 1)


async def test_an_acknowledged_click_or_reward_signal_is_written_before_it_is_answered(shop):
    """A click notice is recorded once (a repeat logs nothing) and a reward signal may never be sent again: each is in
    the event log's store when its answer comes, so a kill -9 right after cannot take it from the reports. Bids and
    the other notices still wait in the queue for the writer."""
    client, exchange, admin, _ = shop
    platform = client.app[PLATFORM]
    await platform.event_log.flush()
    bid = (await (await client.post("/v1/bid", json=bid_request("k1"), headers=exchange)).json())["seatbid"][0]
    queued = platform.event_log.pending
    assert queued >= 1  # the bid's own event, behind
    assert (await client.get("/v1/notices/click", params={"bid": bid["bid"][0]["id"]})).status == 200
    resp = await client.post("/v1/loyalty/reward-signal", headers=admin,
                             json={"offer_id": "promo-1", "user_id": "u1", "signal_type": "clicked"})
    assert resp.status == 200
    stored = {e.type for e in await platform.event_log.query(None, None, 0, 1000)}
    assert {"Click", "RewardSignal"} <= stored and platform.event_log.pending == queued
