"""Today's spend per campaign: what the console's campaign and live-bidding pages show."""

from tests.integration.bidding.helpers import _admin, _client, banner_request, post_bid, single_campaign


async def test_spend_follows_win_loss_and_billing_notices(aiohttp_client, tmp_path, clock):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[
        single_campaign(id="spring", daily_budget_micros=100_000_000),
        single_campaign(id="idle", name="Idle", daily_budget_micros=50_000_000, state="paused")])
    admin = await _admin(client)
    base = f"http://127.0.0.1:{client.port}"

    async def bid(request_id: str, user: str) -> dict:
        resp = await post_bid(client, banner_request(request_id=request_id, user_id=user))
        assert resp.status == 200
        return (await resp.json())["seatbid"][0]["bid"][0]
    won = [await bid(f"w{i}", f"u{i}") for i in range(2)]
    for b, price in zip(won, ("2.0", "3.0"), strict=True):
        assert (await client.get(b["nurl"].removeprefix(base).replace("${AUCTION_PRICE}", price))).status == 200
    lost = await bid("l1", "u9")
    assert (await client.get(lost["lurl"].removeprefix(base).replace("${AUCTION_LOSS}", "102"))).status == 200

    resp = await client.get("/v1/admin/spend", headers=admin)
    assert resp.status == 200
    report = await resp.json()
    lines = {line["campaign_id"]: line for line in report["items"]}
    spring = lines["spring"]
    assert (spring["wins"], spring["losses"], spring["win_rate"]) == (2, 1, 2 / 3)
    # Cleared at CPMs of 2.00 and 3.00: an impression costs a thousandth of that.
    assert spring["spent_micros"] == 5_000 and spring["avg_clearing_price_micros"] == 2_500_000
    assert spring["budget_used"] == 5_000 / 100_000_000 and 0 < spring["paced_micros"] <= 100_000_000
    idle = lines["idle"]
    assert idle["state"] == "paused"
    assert (idle["spent_micros"], idle["wins"], idle["win_rate"], idle["avg_clearing_price_micros"]) == (0, 0, None,
                                                                                                          None)
    assert (await client.get("/v1/admin/spend", headers=client.headers)).status == 403  # an exchange key


async def test_the_first_win_and_loss_notices_go_on_the_bus_once(aiohttp_client, tmp_path, clock):
    from app.bidding.events import BidLost, BidWon
    from app.main import PLATFORM
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[single_campaign(id="spring")])
    heard: list[object] = []
    bus = client.app[PLATFORM].bus
    bus.subscribe(BidWon, heard.append)
    bus.subscribe(BidLost, heard.append)
    base = f"http://127.0.0.1:{client.port}"
    answers = [await (await post_bid(client, banner_request(request_id=r, user_id=u))).json()
               for r, u in (("a", "ann"), ("b", "bo"))]
    won, lost = (a["seatbid"][0]["bid"][0] for a in answers)
    for _ in range(2):  # a repeated notice changes nothing and says nothing
        await client.get(won["nurl"].removeprefix(base).replace("${AUCTION_PRICE}", "2.0"))
        await client.get(lost["lurl"].removeprefix(base).replace("${AUCTION_LOSS}", "102"))
    assert [(type(e).__name__, e.bid_id, e.campaign_id, e.user_id) for e in heard] == [
        ("BidWon", won["id"], "spring", "ann"), ("BidLost", lost["id"], "spring", "bo")]
    assert heard[0].price_micros == 2_000_000 and heard[1].reason == 102


async def test_live_bids_hold_budget_the_report_shows_it_and_expired_ones_give_it_back(aiohttp_client, tmp_path):
    from app.runtime.clock import ManualClock
    clock = ManualClock(1_790_035_200.0 + 3_600)  # 01:00 UTC: pacing allows 1/24 of the day plus 5% slack
    # 11,000 micros allowed by now: room for two or three impressions at most at the 5.00 CPM cap
    client = await _client(aiohttp_client, tmp_path, clock, campaigns=[
        single_campaign(id="tight", daily_budget_micros=120_000)])
    admin = await _admin(client)

    async def report() -> dict:
        resp = await client.get("/v1/admin/spend", headers=admin)
        assert resp.status == 200
        [line] = (await resp.json())["items"]
        return line
    fresh = await report()
    assert (fresh["spent_micros"], fresh["reserved_micros"], fresh["within_pace"]) == (0, 0, True)
    assert fresh["paced_micros"] == 11_000

    prices = []
    for i in range(10):
        resp = await post_bid(client, banner_request(request_id=f"r{i}", user_id=f"u{i}"))
        if resp.status != 200:
            break
        prices.append((await resp.json())["seatbid"][0]["bid"][0]["price"])
    # Two or three bids fit (each reserves its price; one node also wants room for one more at the cap), then none.
    assert resp.status == 204 and 2 <= len(prices) <= 3
    held = await report()
    # Nothing is spent, yet the campaign no longer bids: what the console must say, not "within pace".
    assert held["spent_micros"] == 0 < held["paced_micros"]
    assert held["reserved_micros"] == sum(round(p * 1_000_000) // 1000 for p in prices)
    assert held["within_pace"] is False

    clock.advance(301)  # the bids lived bidding.bid_ttl_s (300 s) and were never billed
    gone = await report()
    assert (gone["reserved_micros"], gone["within_pace"]) == (0, True)
    assert (await post_bid(client, banner_request(request_id="r9", user_id="u9"))).status == 200
