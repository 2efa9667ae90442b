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
