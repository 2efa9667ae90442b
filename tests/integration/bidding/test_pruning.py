"""What the retention pass deletes from the bidder's stored state: profiles past their TTL and the notices (charged
bid ids among them) past the notice window, a chunk per commit; the bidder answers as before for those users and
bids."""

from adapters.sqlite.delivery import utc_day
from app.main import PLATFORM
from state.profiles import Profile
from tests.integration.bidding.helpers import banner_request, post_bid

DAY = 86_400


async def stored(platform, sql: str) -> int:
    return (await platform.records_db.fetchall(sql))[0][0]


async def test_profiles_past_their_ttl_leave_the_store_and_those_users_are_still_bid_on(bidder, clock):
    platform = bidder.app[PLATFORM]
    ttl = platform.config.bidding.profile_l2_ttl_s
    now = clock.now()
    await platform.profiles.put(*(Profile(f"old{k}", segments=[3], updated_at=now) for k in range(5)))
    clock.advance(ttl / 2)
    await platform.profiles.put(Profile("fresh", segments=[4], updated_at=clock.now()))
    assert (await platform.purge_retained_once(chunk=2))["profiles"] == 0  # nobody is past the TTL yet
    clock.advance(ttl / 2 + 1)
    deleted = await platform.purge_retained_once(chunk=2)  # three commits of up to two, then one finding none
    assert deleted["profiles"] == 5
    assert await stored(platform, "SELECT count(*) FROM profiles") == 1
    # One node remembers which users have a profile; several cannot, and Redis expires its copies on its own clock.
    if platform.redis is None:
        assert all(f"old{k}" not in platform.profile_store for k in range(5)) and "fresh" in platform.profile_store
    assert (await platform.profile_store.get("fresh")).segments == [4]
    # A user whose profile went is bid on as anyone unknown is; a profile written for them again is read again.
    assert (await post_bid(bidder, banner_request(user_id="old0"))).status == 200
    await platform.profiles.put(Profile("old0", segments=[5], updated_at=clock.now()))
    assert (await platform.profile_store.get("old0")).segments == [5]
    metrics = await (await bidder.get("/metrics")).text()
    assert 'contrail_rows_pruned_total{what="profiles"} 5.0' in metrics


async def test_charged_bid_ids_go_after_the_notice_window_and_a_late_repeat_is_still_refused(bidder, clock):
    platform = bidder.app[PLATFORM]
    bids = []
    for k in range(3):
        resp = await post_bid(bidder, banner_request(request_id=f"r{k}", user_id=f"u{k}"))
        bids.append((await resp.json())["seatbid"][0]["bid"][0])
    for bid in bids:
        won = await bidder.get("/v1/notices/win", params={"bid": bid["id"], "price": "1"})
        assert (await won.json())["charged"] is True
    assert await stored(platform, "SELECT count(*) FROM bid_outcomes") == 6  # a win and a charge each
    # Within the window a repeat is refused by the stored charge.
    again = await bidder.get("/v1/notices/billing", params={"bid": bids[0]["id"], "price": "1"})
    assert again.status == 200 and (await again.json())["charged"] is False
    clock.advance(DAY - 60)  # the bids expired long ago, but today's spend report still counts their wins
    assert (await platform.purge_retained_once())["notices"] == 0
    clock.advance(61)
    assert (await platform.purge_retained_once(chunk=4))["notices"] == 6
    assert await stored(platform, "SELECT count(*) FROM bid_outcomes") == 0
    # A late repeat gets the documented answer for a bid past its window (404: unknown or expired) and charges
    # nothing.
    spent = platform.delivery.spend.copy()
    late = await bidder.get("/v1/notices/billing", params={"bid": bids[0]["id"], "price": "1"})
    assert late.status == 404 and "expired" in (await late.json())["error"]["message"]
    assert platform.delivery.spend == spent
    metrics = await (await bidder.get("/metrics")).text()
    assert 'contrail_rows_pruned_total{what="notices"} 6.0' in metrics


async def test_a_user_shown_ads_every_day_holds_a_days_impressions_and_old_spend_leaves_memory(bidder, clock):
    platform = bidder.app[PLATFORM]
    delivery = platform.delivery
    clock.advance((DAY // 2 - clock.now() % DAY) % DAY)  # noon UTC: a day's four charges fall on one date
    charged_days = set()
    for day in range(10):  # four charges a day, every day, for the same traveller
        for k in range(4):
            at = clock.now()
            await delivery.charge(f"b{day}-{k}", "camp-1", "daily", 1_000, utc_day(at), at)
            charged_days.add(utc_day(at))
            clock.advance(3_600)
        clock.advance(DAY - 4 * 3_600)
    held = delivery.impressions["daily"]
    assert 4 <= len(held) <= 5 and all(held[-1][0] - at <= DAY for at, _ in held)  # a day's of 40
    assert delivery.count_since("daily", clock.now() - DAY) == 4
    assert await stored(platform, "SELECT count(*) FROM campaign_spend") == 10  # the record keeps every day
    await platform.purge_retained_once()
    days_held = sorted(day for _, day in delivery.spend)
    # Today and the two days before (nothing charged today yet).
    assert days_held == sorted(d for d in charged_days if d >= utc_day(clock.now() - 2 * DAY)) and len(days_held) == 2
    assert delivery.spent("camp-1", utc_day(clock.now() - DAY)) == 4_000
    # A restart loads the same days.
    await delivery.load(clock.now())
    assert sorted(day for _, day in delivery.spend) == days_held
