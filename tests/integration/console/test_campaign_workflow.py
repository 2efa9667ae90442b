"""Campaigns in the console beyond pausing: the list's states, a campaign's report charts, totals and history, and
the approval queue, where the demo admin approves or rejects what a second admin (an API key) submitted and is told
why it cannot approve what it created itself.

The demo server is shared by every console test: what these tests create never bids (it targets no country the demo
traffic comes from) and is archived afterwards; the second admin's key is revoked.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN
from tests.integration.console.helpers import admin_token, call

STATE_LABELS = ("Draft", "In review", "Approved", "Scheduled", "Live", "Paused", "Completed", "Archived", "Rejected")


def key_call(base_url: str, method: str, path: str, body: dict | None, key: str) -> Any:
    """One API call with an API key (X-Api-Key) instead of a bearer token."""
    headers = {"X-Api-Key": key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base_url + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


@pytest.fixture
def second_admin(server) -> Iterator[str]:
    """An admin API key made with the CLI: a second admin, so the demo admin is not the creator of what it approves
    (a key the demo admin made through the API would act for the demo admin)."""
    name = "console test: second admin"
    key = server.cli("create-api-key", "--name", name, "--role", "admin").stdout.strip().splitlines()[-1]
    yield key
    listed = call(server.url, "GET", "/v1/admin/api-keys?limit=200", None, admin_token(server.url))["items"]
    for made in (k for k in listed if k["name"] == name and k["revoked_at"] is None):
        call(server.url, "DELETE", f"/v1/admin/api-keys/{made['id']}", None, admin_token(server.url))


@pytest.fixture
def made(server, second_admin) -> Iterator[list[tuple[str, str]]]:
    """Campaigns a test made, as (id, who created it: "key" or "admin"); archived afterwards."""
    campaigns: list[tuple[str, str]] = []
    yield campaigns
    for campaign_id, creator in campaigns:
        retire(server.url, campaign_id, creator, second_admin)


def new_campaign(base_url: str, name: str, *, key: str | None = None, token: str | None = None,
                 comment: str = "ready for review") -> dict:
    """A draft made and submitted by the key (or the token's admin); it targets a country no traffic comes from."""
    body = {"id": f"console-{uuid.uuid4().hex[:10]}", "name": name, "advertiser_domain": "contrail.example",
            "bid_cap_micros": 1_000_000, "daily_budget_micros": 20_000_000, "targeting": {"countries": ["ZZZ"]},
            "creatives": [{"id": "banner-a", "format": "banner", "markup": "<b>A</b>", "w": 300, "h": 250},
                          {"id": "banner-b", "format": "banner", "markup": "<b>B</b>", "w": 728, "h": 90}]}
    if key:
        created = key_call(base_url, "POST", "/v1/admin/campaigns", body, key)
        return key_call(base_url, "POST", f"/v1/admin/campaigns/{created['id']}/submit", {"comment": comment}, key)
    created = call(base_url, "POST", "/v1/admin/campaigns", body, token)
    return call(base_url, "POST", f"/v1/admin/campaigns/{created['id']}/submit", {"comment": comment}, token)


def retire(base_url: str, campaign_id: str, creator: str, key: str) -> None:
    """Move a test campaign to archived without it ever bidding: approved, then scheduled over a window already
    past (the scheduler starts and completes it in one pass), then archived."""
    token = admin_token(base_url)
    submitter = (lambda m, p, b: key_call(base_url, m, p, b, key)) if creator == "key" else \
        (lambda m, p, b: call(base_url, m, p, b, token))
    approver = (lambda m, p, b: call(base_url, m, p, b, token)) if creator == "key" else \
        (lambda m, p, b: key_call(base_url, m, p, b, key))
    path = f"/v1/admin/campaigns/{campaign_id}"
    for _ in range(6):
        state = call(base_url, "GET", path, None, token)["state"]
        try:
            if state in ("draft", "rejected"):
                submitter("POST", f"{path}/submit", {"comment": "test clean-up"})
            elif state == "in_review":
                approver("POST", f"{path}/approve", {"comment": "test clean-up"})
            elif state == "approved":
                now = time.time()
                call(base_url, "POST", f"{path}/schedule",
                     {"starts_at": now - 120, "ends_at": now - 60, "comment": "test clean-up"}, token)
            elif state in ("live", "paused", "scheduled"):
                if state == "live":
                    call(base_url, "POST", f"{path}/pause", {"comment": "test clean-up"}, token)
                break
            elif state == "completed":
                call(base_url, "POST", f"{path}/archive", {"comment": "test clean-up"}, token)
            else:
                return
        except urllib.error.HTTPError as exc:  # e.g. a second approval needed by a stricter rule: try the next
            if exc.code not in (403, 409):
                raise
    assert call(base_url, "GET", path, None, token)["state"] in ("archived", "paused"), campaign_id


def open_campaigns(console, route: str = "campaigns"):
    console.sign_in(*DEMO_ADMIN)
    page = console.open(route)
    expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()
    return page


def test_the_list_shows_states_and_a_campaign_shows_its_report_charts_totals_and_policy(console, server):
    page = open_campaigns(console)
    table = page.get_by_role("table", name="Campaigns with today's spend and live bids")
    expect(table.get_by_role("row").filter(has_text="summer sale").first).to_be_visible()
    # Every row has a state badge, and the demo's campaigns are live.
    badges = table.locator("td[data-label=State] .badge")
    expect(badges.first).to_be_visible()
    assert set(badges.all_inner_texts()) <= set(STATE_LABELS), badges.all_inner_texts()
    expect(table.locator("tr", has_text="summer sale").first.get_by_text("Live", exact=True)).to_be_visible()
    expect(page.get_by_role("tab", name=re.compile(r"Approval queue \(\d+\)"))).to_be_visible()

    row = table.locator("tr", has_text="summer sale").first
    name = row.get_by_role("link").inner_text()
    row.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()

    # The report: three charts (a canvas each, with a text alternative), the totals, the period toggle.
    report = page.get_by_role("region", name="Report")
    expect(report.locator("[data-chart] canvas")).to_have_count(3)
    expect(report.get_by_role("img", name=re.compile(r"^Spend per hour"))).to_be_visible()
    expect(report.get_by_role("img", name=re.compile(r"^Bids and wins per hour: \d+ bids"))).to_be_visible()
    expect(report.get_by_role("img", name=re.compile(r"^Today's spend against pacing"))).to_be_visible()
    totals = report.locator(".report-totals")
    expect(totals.locator(".stat", has_text="Bids").locator("dd")).to_have_text(re.compile(r"^\d[\d,.\s]*$"))
    expect(totals.locator(".stat", has_text="Spend").locator("dd")).to_have_text(re.compile(r"^\$\d"))
    expect(totals.locator(".stat", has_text="Revenue").locator("dd")).to_have_text(re.compile(r"^\$\d"))  # retail USD
    console.shot("campaign-report-hourly")

    report.get_by_label("Daily, last 30 days").check()
    expect(report.get_by_role("heading", name=re.compile(r"^Spend per day"))).to_be_visible()
    expect(report.locator("[data-chart] canvas")).to_have_count(3)
    expect(report.get_by_role("status")).to_have_text(re.compile(r"^Daily, last 30 days"))
    expect(report.locator("[data-chart=spend]")).to_have_attribute("data-points", re.compile(r"^(30|31)$"))

    # The history table and the policy panel are there (the demo's campaigns have no steps and no policy yet); the
    # policy is read when asked for (most campaigns have none: the server's 409 would be a failed request).
    expect(page.get_by_role("table", name="The campaign's workflow history, newest first")).to_be_visible()
    policy = page.get_by_role("region", name="Offer-selection policy")
    policy.get_by_role("button", name="Show the policy").click()
    expect(policy).to_contain_text(re.compile(r"No offer-selection policy|\d+ arms?"))
    console.shot("campaign-report-daily")


def test_a_submitted_campaign_shows_its_review_task_in_jira_with_its_synced_status(console, server, jira,
                                                                                   second_admin, made):
    campaign = new_campaign(server.url, f"Task link {uuid.uuid4().hex[:4]}", key=second_admin)
    made.append((campaign["id"], "key"))
    console.page.clock.install()  # the panel refreshes every 10 s: the test moves the page's clock on instead
    console.sign_in(*DEMO_ADMIN)
    page = console.open(f"campaigns?id={campaign['id']}")
    tasks = page.get_by_role("region", name="Review tasks")
    link = tasks.get_by_role("link", name=re.compile(r"^MKT-\d+$"))
    expect(link).to_be_visible()
    key = link.inner_text()
    assert link.get_attribute("href") == f"{jira.url}/browse/{key}"
    expect(tasks.locator("tr[data-status=open]")).to_have_count(1)
    jira.fake.statuses[key] = ("In Progress", "indeterminate")  # someone picks it up in Jira
    token = admin_token(server.url)
    deadline = time.monotonic() + 15
    while call(server.url, "GET", f"/v1/admin/campaigns/{campaign['id']}/tasks", None, token)["items"][-1][
            "status"] != "in_progress":  # the sync reads it back within a second or two
        assert time.monotonic() < deadline, "the task's status was not synced back"
        time.sleep(0.2)
    page.clock.fast_forward(10_000)
    expect(tasks.locator("tr[data-status=in_progress]")).to_have_count(1)  # the panel's own refresh shows it
    expect(tasks).to_contain_text("in progress")
    console.shot("campaign-review-task")


def test_a_creative_whose_asset_the_sync_cannot_read_is_shown_on_its_campaign(console, server, jira, second_admin,
                                                                              made):
    campaign = key_call(server.url, "POST", "/v1/admin/campaigns", {
        "id": f"console-{uuid.uuid4().hex[:10]}", "name": f"Assets {uuid.uuid4().hex[:4]}",
        "advertiser_domain": "contrail.example", "bid_cap_micros": 1_000_000, "daily_budget_micros": 20_000_000,
        "targeting": {"countries": ["ZZZ"]}}, second_admin)  # a draft
    made.append((campaign["id"], "key"))
    imported = key_call(server.url, "POST", f"/v1/admin/campaigns/{campaign['id']}/creatives/import",
                        {"asset_ids": ["campaigns/summer/hero.jpg"], "w": 300, "h": 250}, second_admin)
    token = admin_token(server.url)
    hero = next(c for c in imported["creatives"] if c.get("dam_id") == "campaigns/summer/hero.jpg")
    jira.aem.fail_next = [503] * 10_000  # the library goes down: each sync (every second) fails to read it
    try:
        deadline = time.monotonic() + 15
        while not call(server.url, "GET", f"/v1/admin/campaigns/{campaign['id']}/assets", None, token)["failing"]:
            assert time.monotonic() < deadline, "no sync found the asset library failing"
            time.sleep(0.2)
        console.page.clock.install()  # the panel refreshes every 10 s: the test moves the page's clock on instead
        console.sign_in(*DEMO_ADMIN)
        page = console.open(f"campaigns?id={campaign['id']}")
        panel = page.get_by_role("region", name="Asset library sync")
        expect(panel).to_contain_text(f"{hero['id']} (campaigns/summer/hero.jpg)")
        expect(panel).to_contain_text("503")
        expect(panel).to_contain_text("keep their last version until a sync of aem reads them again")
        console.shot("campaign-asset-sync-failing")
    finally:
        jira.aem.fail_next = []
    deadline = time.monotonic() + 15
    while call(server.url, "GET", f"/v1/admin/campaigns/{campaign['id']}/assets", None, token)["failing"]:
        assert time.monotonic() < deadline, "no sync read the asset again"
        time.sleep(0.2)
    page.clock.fast_forward(10_000)
    expect(panel).to_be_hidden()  # read again by a sync: nothing stale, nothing shown


def test_the_demo_admin_approves_from_the_queue_what_a_second_admin_submitted(console, server, second_admin, made):
    name = f"Queue approval {uuid.uuid4().hex[:4]}"
    campaign = new_campaign(server.url, name, key=second_admin)
    made.append((campaign["id"], "key"))
    assert campaign["state"] == "in_review"

    page = open_campaigns(console, "campaigns?view=approvals")
    expect(page.get_by_role("tab", name=re.compile("Approval queue"))).to_have_attribute("aria-selected", "true")
    item = page.get_by_role("article", name=name)
    expect(item).to_be_visible()
    expect(item.get_by_text("In review", exact=True)).to_be_visible()
    expect(item.locator(".approvals-count")).to_have_text(re.compile(r"^0 of 1 approval"))
    expect(item.get_by_text("standard", exact=True)).to_be_visible()
    console.shot("campaigns-approval-queue")

    item.get_by_label(f"Comment on {name} (optional)").fill("Looks good to me")
    item.get_by_role("button", name=f"Approve {name}").click()
    expect(page.get_by_role("status").filter(has_text=f"Approved {name}: it is now approved")).to_be_visible()
    expect(item).to_have_count(0)  # it left the queue

    page.get_by_role("tab", name="All campaigns").click()
    row = page.locator(f"tr[data-campaign='{campaign['id']}']")
    expect(row.get_by_text("Approved", exact=True)).to_be_visible()
    assert call(server.url, "GET", f"/v1/admin/campaigns/{campaign['id']}", None,
                admin_token(server.url))["state"] == "approved"

    # Its detail: the report's charts (empty: it never bid), and the history with the approval and its comment.
    row.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    expect(page.locator("[data-chart] canvas")).to_have_count(3)
    history = page.get_by_role("table", name="The campaign's workflow history, newest first")
    approved = history.locator("tr[data-action=approve]")
    expect(approved).to_contain_text("in review → approved")
    expect(approved).to_contain_text("Looks good to me")
    expect(approved).to_contain_text("you (user:")
    submitted = history.locator("tr[data-action=submit]")
    expect(submitted).to_contain_text("draft → in review")
    expect(submitted).to_contain_text("ready for review")
    expect(submitted).to_contain_text("api_key:")
    policy = page.get_by_role("region", name="Offer-selection policy")
    policy.get_by_role("button", name="Show the policy").click()
    expect(policy).to_contain_text("No offer-selection policy")
    console.shot("campaign-approved-detail")

    # Given a policy over its creatives (when the server has the endpoint), the panel shows each arm's posterior.
    try:
        call(server.url, "PUT", f"/v1/admin/campaigns/{campaign['id']}/policy",
             {"kind": "thompson", "arms": "creatives"}, admin_token(server.url))
    except urllib.error.HTTPError as exc:
        assert exc.code in (404, 405), exc
        return
    policy.get_by_role("button", name="Check again").click()
    arms = page.get_by_role("table", name="The policy's arms with their posterior mean, interval and pulls")
    expect(arms.locator("tbody tr")).to_have_count(2)
    first_arm = arms.locator("tr[data-arm=banner-a]")
    expect(first_arm.locator("td").nth(0)).to_have_text(re.compile(r"^\d\.\d+$"))           # mean
    expect(first_arm.locator("td").nth(1)).to_have_text(re.compile(r"\d\.\d+ – \d\.\d+"))  # interval
    expect(first_arm.locator("td").nth(2)).to_have_text("0")                                 # pulls
    console.shot("campaign-policy-arms")


def test_approving_changes_that_hold_ones_own_edit_is_not_offered(console, server, second_admin, made):
    # The second admin's campaign goes live; the demo admin raises its budget, then the second admin raises it
    # again: the changes waiting for approval were last submitted by the second admin, but hold the demo admin's.
    theirs = new_campaign(server.url, f"Pending mine {uuid.uuid4().hex[:4]}", key=second_admin)
    made.append((theirs["id"], "key"))
    token = admin_token(server.url)
    path = f"/v1/admin/campaigns/{theirs['id']}"
    call(server.url, "POST", f"{path}/approve", {}, token)
    now = time.time()
    live = call(server.url, "POST", f"{path}/schedule", {"starts_at": now - 1, "ends_at": now + 86_400}, token)
    assert live["state"] == "live", live
    call(server.url, "PATCH", path, {"daily_budget_micros": 30_000_000}, token)
    pending = key_call(server.url, "PATCH", path, {"daily_budget_micros": 40_000_000}, second_admin)["pending"]
    assert pending["submitted_by"] != pending["editors"][0] and len(pending["editors"]) == 2

    page = open_campaigns(console, "campaigns?view=approvals")
    item = page.get_by_role("article", name=theirs["name"])
    approve = item.get_by_role("button", name=f"Approve {theirs['name']}")
    expect(approve).to_be_disabled()  # the server would refuse it: the demo admin's own change is in there
    expect(item.get_by_role("button", name=f"Reject {theirs['name']}")).to_be_enabled()


def test_a_reject_with_a_comment_shows_in_the_history_and_approving_ones_own_campaign_is_not_offered(
        console, server, second_admin, made):
    tag = uuid.uuid4().hex[:4]
    theirs = new_campaign(server.url, f"Queue reject {tag}", key=second_admin)
    made.append((theirs["id"], "key"))
    mine = new_campaign(server.url, f"Queue own {tag}", token=admin_token(server.url))
    made.append((mine["id"], "admin"))

    page = open_campaigns(console, "campaigns?view=approvals")
    own = page.get_by_role("article", name=mine["name"])
    expect(own.get_by_text("You created or changed this campaign")).to_be_visible()
    # Not offered: the server would refuse it (the refusal's message is kept for a session that still tries).
    approve = own.get_by_role("button", name=f"Approve {mine['name']}")
    expect(approve).to_be_disabled()
    expect(approve).to_have_attribute("title", re.compile("another admin has to approve it"))
    expect(own.get_by_role("button", name=f"Reject {mine['name']}")).to_be_enabled()
    expect(own).to_be_visible()  # still waiting
    console.shot("campaigns-approve-own-not-offered")

    item = page.get_by_role("article", name=theirs["name"])
    item.get_by_label(f"Comment on {theirs['name']} (optional)").fill("Budget too high for this route")
    item.get_by_role("button", name=f"Reject {theirs['name']}").click()
    expect(page.get_by_role("status").filter(has_text=f"Rejected {theirs['name']}.")).to_be_visible()
    expect(item).to_have_count(0)

    page.get_by_role("tab", name="All campaigns").click()
    row = page.locator(f"tr[data-campaign='{theirs['id']}']")
    expect(row.get_by_text("Rejected", exact=True)).to_be_visible()
    expect(row.locator("td[data-label=Pacing]")).to_have_text("not bidding")  # pacing is a bidding campaign's
    row.get_by_role("link", name=theirs["name"]).click()
    history = page.get_by_role("table", name="The campaign's workflow history, newest first")
    rejected = history.locator("tr[data-action=reject]")
    expect(rejected).to_contain_text("in review → rejected")
    expect(rejected).to_contain_text("Budget too high for this route")
    expect(history.locator("tbody tr").first).to_have_attribute("data-action", "reject")  # newest first
    # A rejected campaign can be sent back by its author only: here it offers Submit.
    expect(page.get_by_role("button", name=f"Submit {theirs['name']}")).to_be_visible()
    console.shot("campaign-rejected-detail")
