"""What a report's range counts, against the real app: the totals are kept by the hour, so a report says which whole
UTC hours it counted (counted_from, counted_to; the campaign exports' from and to), and never leaves out an hour its
range touches; an eight-digit from/to is a basic-format date; an archived campaign's `today` shows what it spent
today; a click on a bid recorded as lost is refused; the summary export's budget_used_today is the JSON's number."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.campaigns.test_exports import csv_rows, fetch, xlsx_rows
from tests.integration.campaigns.test_reports import bid_request, live_campaign, notice, rolled_up

HOUR = 3600
DAY = 86_400


def _iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def shop(aiohttp_client, tmp_path, clock):
    """A live campaign ending in two hours, an exchange and an admin; the clock at 16:16:40 UTC."""
    now = clock.now()
    clock.advance(DAY - now % DAY + 16 * HOUR + 1_000)
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    await platform.campaigns.create("test", live_campaign("spring", daily_budget_micros=314_000_000,
                                                          ends_at=clock.now() + 2 * HOUR), audit=False)
    _, exchange = await platform.api_keys.create("exchange", "exchange")
    _, admin = await platform.api_keys.create("ops", "admin")
    return client, {"X-Api-Key": exchange}, {"X-Api-Key": admin}


async def _bids(client, exchange, n: int, prefix: str = "r") -> list[dict]:
    bids = []
    for k in range(n):
        resp = await client.post("/v1/bid", json=bid_request(f"{prefix}{k}"), headers=exchange)
        assert resp.status == 200, await resp.text()
        bids.append((await resp.json())["seatbid"][0]["bid"][0])
    return bids


async def _report(client, admin, params: dict, campaign: str | None = "spring") -> dict:
    path = f"/v1/admin/campaigns/{campaign}/report" if campaign else "/v1/admin/campaigns/report"
    resp = await client.get(path, params=params, headers=admin)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# ---- 1: a range counts whole UTC hours, and says so ----
async def test_a_mid_hour_range_says_it_counted_the_whole_hours_around_it(shop, clock):
    client, exchange, admin = shop
    at = clock.now()  # 16:16:40 UTC
    hour = at - at % HOUR
    for bid in await _bids(client, exchange, 3):
        await notice(client, bid["nurl"], "1.5")
    await rolled_up(client)
    # A range after the wins, one before them and one around them, all within the hour, and two adjacent ranges
    # meeting mid-hour: each counts the hour's three wins, and says it counted 16:00 to 17:00.
    for frm, to in [(at + 2, at + 3), (at - 60, at - 5), (at - 5, at + 3), (hour + 60, at), (at, hour + 3_000)]:
        params = {"from": str(frm), "to": str(to)}
        for granularity in ("hour", "day"):
            report = await _report(client, admin, {**params, "granularity": granularity})
            assert (report["start"], report["end"]) == (frm, to)  # what was asked
            assert (report["counted_from"], report["counted_to"]) == (hour, hour + HOUR)
            assert report["totals"]["wins"] == 3
        everyone = await _report(client, admin, params, campaign=None)
        assert (everyone["start"], everyone["end"]) == (frm, to)
        assert (everyone["counted_from"], everyone["counted_to"]) == (hour, hour + HOUR)
        assert everyone["items"][0]["totals"]["wins"] == 3
    # A range on whole hours counts exactly them: the hour before the wins has none.
    before = await _report(client, admin, {"from": str(hour - HOUR), "to": str(hour)})
    assert (before["counted_from"], before["counted_to"]) == (hour - HOUR, hour)
    assert before["totals"]["wins"] == 0
    # The default range (the last 7 days up to now) counts on to the end of the current hour.
    default = await _report(client, admin, {})
    assert default["end"] == at and default["counted_to"] == hour + HOUR
    assert default["counted_from"] == (at - 7 * DAY) - (at - 7 * DAY) % HOUR


async def test_a_range_ending_just_into_an_hour_counts_that_hour(shop, clock):
    """The old reading took the hour of `to` - 1 s as the last: a `to` less than a second into an hour left out
    that hour, and the events in the range there."""
    client, exchange, admin = shop
    clock.advance(HOUR - clock.now() % HOUR + 0.2)  # 17:00:00.2
    hour = clock.now() - clock.now() % HOUR
    await notice(client, (await _bids(client, exchange, 1))[0]["nurl"], "2.0")
    await rolled_up(client)
    report = await _report(client, admin, {"from": str(hour - 600), "to": str(hour + 0.5), "granularity": "hour"})
    assert report["totals"]["wins"] == 1 and [p["at"] for p in report["series"]] == [hour]
    assert (report["counted_from"], report["counted_to"]) == (hour - HOUR, hour + HOUR)


async def test_the_campaign_exports_print_the_whole_hours_they_counted(shop, clock):
    client, exchange, admin = shop
    at = clock.now()
    hour = at - at % HOUR
    for bid in await _bids(client, exchange, 2):
        await notice(client, bid["nurl"], "1.0")
    await rolled_up(client)
    params = {"from": str(at + 2), "to": str(at + 3)}
    for fmt in ("csv", "xlsx"):
        read = csv_rows if fmt == "csv" else xlsx_rows
        summary = {r["campaign_id"]: r for r in read(await fetch(client, admin, "campaign_summary", fmt, **params))}
        assert (summary["spring"]["from"], summary["spring"]["to"]) == (_iso(hour), _iso(hour + HOUR))
        assert int(summary["spring"]["wins"]) == 2  # type: ignore[arg-type]
        for granularity in ("hour", "day"):
            rows = read(await fetch(client, admin, "campaigns", fmt, granularity=granularity, **params))
            assert len(rows) == 1
            assert (rows[0]["from"], rows[0]["to"]) == (_iso(hour), _iso(hour + HOUR))  # a day's row: its hour
            assert rows[0]["period_start"] == _iso(hour if granularity == "hour" else at - at % DAY)
    # A daily row within a range of whole days counts the whole day.
    day = at - at % DAY
    rows = csv_rows(await fetch(client, admin, "campaigns", "csv", granularity="day", **{"from": str(day - DAY),
                                                                                         "to": str(day + DAY)}))
    assert [(r["period_start"], r["from"], r["to"]) for r in rows] == [(_iso(day), _iso(day), _iso(day + DAY))]


# ---- 2: an archived campaign's today ----
async def test_an_archived_campaigns_today_shows_what_it_spent_today(shop, clock):
    client, exchange, admin = shop
    platform = client.app[PLATFORM]
    for bid, price in zip(await _bids(client, exchange, 2), ("2.0", "1.234"), strict=True):
        await notice(client, bid["nurl"], price)
    await rolled_up(client)
    spent = 2_000 + 1_234
    clock.advance(2 * HOUR + 1)  # past its end (the same UTC day): completed, then archived (it leaves memory)
    await platform.workflow.tick()
    assert (await platform.workflow.archive("test", "spring")).state == "archived"
    assert not platform.campaigns.exists("spring")

    report = await _report(client, admin, {})
    assert report["state"] == "archived" and report["totals"]["spend_micros"] == spent
    today = report["today"]
    assert today["spent_micros"] == spent
    assert today["budget_used"] == pytest.approx(spent / 314_000_000)
    assert today["paced_micros"] == int(314_000_000 * min(1.0, (clock.now() % DAY) / DAY + 0.05))
    everyone = await _report(client, admin, {}, campaign=None)
    assert everyone["items"][0]["campaign_id"] == "spring" and everyone["items"][0]["today"] == today
    summary = csv_rows(await fetch(client, admin, "campaign_summary", "csv"))
    assert int(summary[0]["spent_today_micros"]) == spent


# ---- 3: eight digits are a basic-format date ----
@pytest.mark.parametrize("path", ["/v1/admin/campaigns/spring/report", "/v1/admin/campaigns/report"])
async def test_an_eight_digit_from_or_to_is_a_basic_format_date(shop, path):
    client, _, admin = shop
    first = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC).timestamp()
    last = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC).timestamp()
    resp = await client.get(path, params={"from": "20261201", "to": "20261207"}, headers=admin)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["start"], report["end"]) == (first, last)
    assert (report["counted_from"], report["counted_to"]) == (first, last)
    # Eight digits that are no date are refused, not read as a moment of 1970.
    resp = await client.get(path, params={"from": "20261301", "to": "20261207"}, headers=admin)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["details"] == {"field": "from"} and "YYYYMMDD" in error["message"]
    # Other epoch seconds stay epoch seconds.
    resp = await client.get(path, params={"from": "1796083200", "to": "1796601600.5"}, headers=admin)
    assert (await resp.json())["start"] == first


async def test_the_exports_read_an_eight_digit_from_or_to_as_a_date(shop):
    client, _, admin = shop
    rows = csv_rows(await fetch(client, admin, "campaign_summary", "csv", **{"from": "20261201", "to": "20261207"}))
    assert (rows[0]["from"], rows[0]["to"]) == ("2026-12-01T00:00:00Z", "2026-12-07T00:00:00Z")
    resp = await client.get("/v1/reports/orders.csv", params={"from": "20261399"}, headers=admin)
    assert resp.status == 400 and (await resp.json())["error"]["details"] == {"field": "from"}


# ---- 4: a click on a bid recorded as lost ----
async def test_a_click_on_a_bid_recorded_as_lost_is_409_and_counts_nowhere(shop):
    client, exchange, admin = shop
    platform = client.app[PLATFORM]
    lost, won, unnoticed = await _bids(client, exchange, 3)
    await notice(client, lost["lurl"], "1.0")
    await notice(client, won["nurl"], "1.0")
    resp = await client.get("/v1/notices/click", params={"bid": lost["id"]})
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "conflict" and lost["id"] in error["message"] and "lost" in error["message"]
    for bid in (won, unnoticed):  # a click after the win, and one before any win notice (it proves an impression)
        assert (await client.get("/v1/notices/click", params={"bid": bid["id"]})).status == 200
    await notice(client, lost["lurl"], "1.0")  # the loss again: still lost
    assert (await client.get("/v1/notices/click", params={"bid": lost["id"]})).status == 409
    await rolled_up(client)
    clicks = await platform.event_log.query("Click", None, 0, 100)
    assert len(clicks) == 2 and not [e for e in clicks if lost["id"] in str(e.payload)]
    report = await _report(client, admin, {})
    assert (report["totals"]["clicks"], report["totals"]["losses"]) == (2, 1)


async def test_a_click_on_a_bid_another_node_recorded_as_lost_is_409(shop):
    """Several nodes share the notices recorded: a loss that reached another node refuses the click here too."""
    client, exchange, _ = shop
    platform = client.app[PLATFORM]
    [bid] = await _bids(client, exchange, 1)
    await platform.records_db.write([("INSERT INTO bid_outcomes(bid_id, kind, campaign_id, at) VALUES (?, ?, ?, ?)",
                                      (bid["id"], "loss", "spring", platform.clock.now()))])
    resp = await client.get("/v1/notices/click", params={"bid": bid["id"]})
    assert resp.status == 409 and "lost" in (await resp.json())["error"]["message"]
    assert await platform.event_log.query("Click", None, 0, 10) == []


# ---- 5: the summary export's budget_used_today ----
async def test_budget_used_today_in_the_summary_export_is_the_reports_number_in_plain_digits(shop):
    client, exchange, admin = shop
    await notice(client, (await _bids(client, exchange, 1))[0]["nurl"], "2.0")  # 2,000 of 314,000,000 micros
    json_value = (await _report(client, admin, {}, campaign=None))["items"][0]["today"]["budget_used"]
    assert json_value == 2_000 / 314_000_000  # 6.369...e-06
    text = csv_rows(await fetch(client, admin, "campaign_summary", "csv"))[0]["budget_used_today"]
    assert "e" not in text.lower() and text.startswith("0.00000636942")
    assert Decimal(text) == Decimal(repr(json_value))  # every digit of the report's number
    number = xlsx_rows(await fetch(client, admin, "campaign_summary", "xlsx"))[0]["budget_used_today"]
    assert number == pytest.approx(json_value, rel=1e-15)  # a number (openpyxl writes 16 digits)
