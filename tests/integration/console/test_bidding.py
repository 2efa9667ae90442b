"""The admin watches live bidding: charts fed by the server's own counters, and the event inspector."""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN

LOCAL_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3}")
POSITIVE = re.compile(r"^(?:[1-9]\d*(?:\.\d)?|0\.[1-9])$")  # a rate above zero as the page prints it


def test_admin_watches_live_bids_and_inspects_the_event_stream(console):
    console.sign_in(*DEMO_ADMIN)  # an admin lands on Live bidding
    page = console.page
    expect(page.get_by_role("heading", name="Live bidding", level=1)).to_be_visible()

    # The charts draw from /metrics every second: the demo traffic (20 requests/s) moves them at once.
    traffic = page.get_by_role("img", name=re.compile(r"^Bids, wins, losses and no-bids per second"))
    for chart in (traffic, page.get_by_role("img", name=re.compile(r"^No-bids per second by reason")),
                  page.get_by_role("img", name=re.compile(r"^Bid latency percentiles"))):
        expect(chart.locator("canvas")).to_have_count(1)
    bids_per_s = page.locator(".stat").filter(has=page.get_by_text("bids/s", exact=True)).locator("b")
    expect(bids_per_s).to_have_text(POSITIVE)
    expect(traffic).to_have_attribute("aria-label", re.compile(r"bids \d"))
    points = int(traffic.get_attribute("data-points"))
    label = traffic.get_attribute("aria-label")
    expect(traffic).not_to_have_attribute("data-points", str(points), timeout=4000)   # a new point was plotted
    expect(traffic).not_to_have_attribute("aria-label", label)
    assert int(traffic.get_attribute("data-points")) > points
    latency = page.locator(".stat").filter(has=page.get_by_text("p95 latency", exact=True)).locator("b")
    expect(latency).to_have_text(re.compile(r"^\d+(\.\d+)? ms$"))
    # spend per campaign, the model and the provider
    spend = page.get_by_role("table", name="Win rate, spend and average clearing price per campaign")
    expect(spend.get_by_role("row").filter(has_text="summer sale").first).to_be_visible()
    # each campaign's workflow state, as the server names it
    expect(spend.get_by_role("row").filter(has_text="summer sale").first.get_by_role("cell").nth(1)).to_have_text(
        "live")
    expect(page.locator(".facts")).to_contain_text("default-v1")
    expect(page.locator(".facts")).to_contain_text("cpu")
    console.shot("bidding-live")

    # The inspector: events arrive, newest first, with readable local times.
    lines = page.get_by_role("list", name="Events, newest first").get_by_role("button")
    expect(lines.nth(5)).to_be_visible()
    expect(lines.first.locator("time")).to_have_text(LOCAL_TIME)

    # Pause: no new lines while paused (the count says what is held back).
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    frozen_first, frozen_count = lines.first.inner_text(), lines.count()
    expect(page.get_by_text(re.compile(r"paused: [1-9]\d* new events? held back"))).to_be_visible()
    assert lines.first.inner_text() == frozen_first and lines.count() == frozen_count

    # Search (case-insensitive) filters the lines to one campaign's events.
    bid_line = lines.filter(has=page.locator("[class~=etype]", has_text=re.compile(r"^Bid$"))).first
    found = re.search(r"campaign_id=(\S+)", bid_line.inner_text())
    assert found, bid_line.inner_text()
    campaign = found.group(1)
    page.get_by_label("Search events").fill(campaign.upper())
    expect(page.get_by_text(re.compile(rf"lines? shown matching “{re.escape(campaign.upper())}”"))).to_be_visible()
    shown = lines.all_inner_texts()
    assert shown and len(shown) < frozen_count, shown
    assert all(campaign in text for text in shown), shown

    # A line's full JSON, with its local time.
    bid_line = lines.filter(has=page.locator("[class~=etype]", has_text=re.compile(r"^Bid$"))).first
    bid_line.click()
    expect(bid_line).to_have_attribute("aria-current", "true")
    expect(page.get_by_role("heading", name=re.compile(r"^Bid at .+ \(local time\)$"))).to_be_visible()
    event = json.loads(page.get_by_label("The chosen event's JSON").inner_text())
    assert event["type"] == "Bid" and event["data"]["campaign_id"] == campaign and event["at"] > 0, event
    console.shot("bidding-inspector")

    # Resume: new lines again (still filtered by the search).
    page.get_by_label("Search events").fill("")
    page.get_by_role("button", name="Resume").click()
    expect(lines.first).not_to_have_text(frozen_first)

    # The pick list: only Win events once the others are unsubscribed.
    page.get_by_role("button", name="No types").click()
    page.get_by_label("Win", exact=True).check()
    page.get_by_role("button", name="Clear").click()
    expect(lines.nth(2)).to_be_visible()
    assert set(lines.locator("[class~=etype]").all_inner_texts()) == {"Win"}
    page.get_by_role("button", name="All types").click()
    expect(page.get_by_label("Bid", exact=True)).to_be_checked()

    # A phone: everything fits 390 px.
    page.set_viewport_size({"width": 390, "height": 844})
    time.sleep(0.5)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(traffic.locator("canvas")).to_be_visible()
    console.shot("bidding-390")
