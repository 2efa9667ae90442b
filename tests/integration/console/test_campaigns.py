"""The admin pauses a campaign, sees it stop bidding while the others go on, and resumes it; archived campaigns
are listed only when asked for."""

from __future__ import annotations

import re
import time
import urllib.error

from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN
from tests.integration.console.helpers import admin_token, call


def _admin_call(base_url: str, method: str, path: str, body: dict | None = None) -> dict:
    """The API as the demo admin, outside the browser (to put the shared server back as it was)."""
    return call(base_url, method, path, body, admin_token(base_url))


def _rates(page) -> dict[str, float]:
    """Each campaign row's Bids/s as the page shows it."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll("tr[data-campaign]")]
        .map((tr) => [tr.dataset.campaign, parseFloat(tr.querySelector("td.live-rate").textContent)])
        .filter(([, v]) => !Number.isNaN(v)))""")


def test_admin_pauses_a_campaign_sees_its_bids_stop_and_resumes_it(console, server):
    console.sign_in(*DEMO_ADMIN)
    page = console.page
    expect(page.get_by_role("heading", name="Live bidding", level=1)).to_be_visible()
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Campaigns").click()
    expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()
    table = page.get_by_role("table", name="Campaigns with today's spend and live bids")
    expect(table.get_by_role("row").filter(has_text="summer sale").first).to_be_visible()
    expect(table.get_by_role("cell", name=re.compile(r"^\$\d+\.\d{2}$")).first).to_be_visible()  # today's spend

    # The busiest campaign right now (the demo traffic spreads its bids over a few of them).
    page.wait_for_function("""() => [...document.querySelectorAll("td.live-rate")]
        .filter((td) => parseFloat(td.textContent) >= 1).length >= 2""", timeout=10_000)
    time.sleep(1)
    rates = _rates(page)
    busiest = max(rates, key=lambda campaign_id: rates[campaign_id])
    row = table.locator(f"tr[data-campaign='{busiest}']")
    name = row.get_by_role("link").inner_text()
    campaign = _admin_call(server.url, "GET", f"/v1/admin/campaigns/{busiest}")
    assert campaign["state"] == "live"
    # Its daily budget as the API has it, and a win rate once it has bids (the demo's exchange wins some).
    expect(row.locator("td[data-label='Daily budget']")).to_have_text(f"${campaign['daily_budget_micros'] / 1e6:,.2f}")
    expect(row.locator("td[data-label='Win rate']")).to_have_text(re.compile(r"^\d{1,3}\.\d %$"))
    # A bidding campaign's live bids hold part of its budget until they are billed or expire: shown beside its spend.
    expect(row.locator("td[data-label='Spent today']")).to_contain_text(
        re.compile(r"\+ \$\d+\.\d{2} held by live bids"))
    console.shot("campaigns-list")

    try:
        row.get_by_role("button", name=f"Pause {name}").click()
        expect(page.get_by_role("status").filter(has_text=f"Paused {name}")).to_be_visible()
        expect(row.get_by_text("Paused", exact=True)).to_be_visible()
        expect(row.get_by_role("button", name=f"Resume {name}")).to_be_visible()

        # Its bids stop (nothing in the last 5 s) while the others keep bidding, and its wins stop growing.
        live = row.locator("td.live-rate")
        expect(live).to_have_text("0.0", timeout=9000)
        assert any(v > 0 for k, v in _rates(page).items() if k != busiest), _rates(page)
        wins = row.locator("td[data-label=Wins]")
        wins_then = wins.inner_text()
        time.sleep(2.5)  # one more spend poll
        assert wins.inner_text() == wins_then
        assert live.inner_text() == "0.0"
        console.shot("campaigns-paused")

        # Resume: it bids again.
        row.get_by_role("button", name=f"Resume {name}").click()
        expect(page.get_by_role("status").filter(has_text=f"Resumed {name}")).to_be_visible()
        expect(row.get_by_text("Live", exact=True)).to_be_visible()
        expect(live).not_to_have_text("0.0", timeout=8000)
    finally:
        if _admin_call(server.url, "GET", f"/v1/admin/campaigns/{busiest}")["state"] == "paused":
            _admin_call(server.url, "POST", f"/v1/admin/campaigns/{busiest}/resume", {})

    # Its detail: settings and creatives.
    row.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    creatives = page.get_by_role("table", name="The campaign's creatives")
    expect(creatives.get_by_role("row").nth(1)).to_be_visible()
    expect(page.get_by_role("button", name=f"Pause {name}")).to_be_visible()
    expect(page.locator("dt", has_text="Held by live bids").locator("xpath=following-sibling::dd[1]")).to_have_text(
        re.compile(r"^\$\d+\.\d{2}$"))
    console.shot("campaigns-detail")


def test_archived_campaigns_are_listed_only_when_asked_for(console, server):
    # An archived campaign is read from the store, so the list leaves it out until the admin asks for it.
    admin = admin_token(server.url)
    try:
        call(server.url, "POST", "/v1/admin/users", {"email": "second@contrail.demo", "password": "second-admin-1",
                                                     "role": "admin"}, admin)
    except urllib.error.HTTPError as exc:  # made by an earlier run against this server
        assert exc.code == 409
    second = call(server.url, "POST", "/v1/auth/token",
                  {"email": "second@contrail.demo", "password": "second-admin-1"})["access_token"]
    creative = {"id": "c1", "format": "banner", "markup": "<b>autumn</b>", "w": 300, "h": 250}
    made = call(server.url, "POST", "/v1/admin/campaigns", {
        "name": "autumn sale, ended", "advertiser_domain": "contrail.example", "bid_cap_micros": 1_000_000,
        "daily_budget_micros": 1_000_000, "creatives": [creative]}, admin)
    path = f"/v1/admin/campaigns/{made['id']}"
    call(server.url, "POST", f"{path}/submit", {}, admin)
    call(server.url, "POST", f"{path}/approve", {}, second)
    now = time.time()
    call(server.url, "POST", f"{path}/schedule", {"starts_at": now - 10, "ends_at": now + 1}, admin)
    deadline = time.time() + 10
    while call(server.url, "GET", path, None, admin)["state"] != "completed":  # the scheduler ends it
        assert time.time() < deadline
        time.sleep(0.2)
    assert call(server.url, "POST", f"{path}/archive", {}, admin)["state"] == "archived"

    console.sign_in(*DEMO_ADMIN)
    page = console.page
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Campaigns").click()
    table = page.get_by_role("table", name="Campaigns with today's spend and live bids")
    expect(table.get_by_role("row").filter(has_text="summer sale").first).to_be_visible()
    expect(table.get_by_role("row").filter(has_text="autumn sale, ended")).to_have_count(0)
    page.get_by_role("checkbox", name=re.compile("Show archived campaigns")).check()
    row = table.get_by_role("row").filter(has_text="autumn sale, ended")
    expect(row).to_be_visible()
    expect(row.get_by_text("Archived", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"Show archived campaigns \(\d+\)"))).to_be_visible()
    row.get_by_role("link", name="autumn sale, ended").click()  # its page is read from the store too
    expect(page.get_by_role("heading", name="autumn sale, ended")).to_be_visible()
    expect(page.get_by_role("cell", name="completed → archived")).to_be_visible()
    expect(page.locator("[data-chart=pacing]")).to_have_attribute(  # pacing is for campaigns that bid
        "aria-label", re.compile(r"spent today of \$1\.00; not bidding \(archived\)$"))
    console.shot("campaigns-archived")


def test_admin_creates_a_campaign_adds_a_creative_and_sets_its_policy_in_the_console(console, server):
    console.sign_in(*DEMO_ADMIN)
    page = console.page
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Campaigns").click()
    page.get_by_text("New campaign", exact=True).click()
    form = page.get_by_role("form", name="New campaign")
    form.get_by_label("Name").fill("   ")  # blank once trimmed: the server's refusal is shown, nothing is lost
    form.get_by_label("Advertiser domain").fill("contrail.example")
    form.get_by_label("Bid cap (USD CPM)").fill("3.50")
    form.get_by_label("Daily budget (USD)").fill("250")
    form.get_by_label("Its markup (HTML)").fill('<a href="https://contrail.example/">Winter sun</a>')
    form.get_by_role("button", name="Create campaign").click()
    expect(form.get_by_role("alert")).to_contain_text("name")
    expect(form.get_by_label("Daily budget (USD)")).to_have_value("250")
    form.get_by_label("Name").fill("winter sun from the console")
    form.get_by_label("DSP line items (optional)").fill("ttd")  # not a platform:cid pair: said before sending
    form.get_by_role("button", name="Create campaign").click()
    expect(form.get_by_role("alert")).to_contain_text("platform:cid")
    console.shot("campaign-new-form")
    form.get_by_label("DSP line items (optional)").fill("ttd:ttd-winter-01")
    form.get_by_role("button", name="Create campaign").click()

    # Its page: a draft with the first banner, and the settings as typed.
    expect(page.get_by_role("heading", name="winter sun from the console", level=1)).to_be_visible()
    expect(page.get_by_text("Draft", exact=True).first).to_be_visible()
    expect(page.get_by_text("$3.50 CPM")).to_be_visible()
    creatives = page.get_by_role("table", name="The campaign's creatives")
    expect(creatives.get_by_role("row").filter(has_text="300×250")).to_have_count(1)
    campaign_id = page.url.split("id=")[1]
    stored = _admin_call(server.url, "GET", f"/v1/admin/campaigns/{campaign_id}")
    assert (stored["state"], stored["daily_budget_micros"], stored["channels"]) == ("draft", 250_000_000, ["display"])
    assert stored["dsp_line_items"] == [{"platform": "ttd", "cid": "ttd-winter-01"}]
    expect(page.locator("dt", has_text="DSP line items").locator("xpath=following-sibling::dd[1]")).to_have_text(
        "ttd: ttd-winter-01")

    page.get_by_text("Add a creative", exact=True).click()
    added = page.get_by_role("form", name="Add a creative")
    expect(added.get_by_label("Creative id")).to_have_value("c2")
    added.get_by_label("Size").select_option("728x90")
    added.get_by_label("Markup (HTML)").fill("<b>Winter sun, wide</b>")
    added.get_by_role("button", name="Add creative").click()
    expect(creatives.get_by_role("row").filter(has_text="728×90")).to_have_count(1)
    expect(added.get_by_role("status")).to_have_text("Added creative c2.")  # the form stays, ready for the next
    expect(added.get_by_label("Creative id")).to_have_value("c3")

    page.get_by_text("Configure the policy", exact=True).click()
    policy = page.get_by_role("form", name="Configure the policy")
    policy.get_by_label("Policy").select_option("epsilon_greedy")
    policy.get_by_label("ε (exploration share)").fill("0.2")
    policy.get_by_label("tier").check()
    policy.get_by_role("button", name="Save policy").click()
    expect(policy.get_by_role("status")).to_contain_text("Saved the ε-greedy policy over creatives")
    arms = page.get_by_role("table", name="The policy's arms with their posterior mean, interval and pulls")
    expect(arms.get_by_role("row")).to_have_count(3)  # the header, c1 and c2
    configured = _admin_call(server.url, "GET", f"/v1/admin/campaigns/{campaign_id}/policy")
    assert (configured["kind"], configured["epsilon"], configured["context"]) == ("epsilon_greedy", 0.2, ["tier"])
    console.shot("campaign-created")


# ---- the list with traffic: long figures under each row's spend and pacing, and up to three actions ----

HELD, ALLOWED = "+ $1,234.56 held by live bids", "$15,000.00 allowed by now"
LONG_NAME = "Spring 2027 Lisbon to Barcelona and onwards to the Balearic Islands premium upsell"


def _busy_day(page) -> None:
    """The demo's list as it reads on a busy day: every campaign's spend, holds and pacing in the thousands, and the
    first one's changes waiting for approval (Approve, Reject and Pause), with a long name."""

    def spend(route):
        answer = route.fetch()
        body = answer.json()
        for item in body["items"]:
            item.update(spent_micros=12_345_670_000, reserved_micros=1_234_560_000, paced_micros=15_000_000_000,
                        daily_budget_micros=20_000_000_000, budget_used=0.6173, wins=123_456, win_rate=0.4567)
        route.fulfill(response=answer, json=body)

    def campaigns(route):
        answer = route.fetch()
        body = answer.json()
        for c in body["items"]:
            c.update(daily_budget_micros=20_000_000_000, bid_cap_micros=12_500_000)
        live = next(c for c in body["items"] if c["state"] == "live")
        live["name"] = LONG_NAME
        live["pending"] = {"rule": "standard", "approvals": [], "approvals_required": 2, "editors": ["user:someone"],
                           "submitted_by": "user:someone", "submitted_at": time.time(),
                           "daily_budget_micros": 30_000_000_000}
        route.fulfill(response=answer, json=body)

    page.route("**/v1/admin/spend", spend)
    page.route(re.compile(r"/v1/admin/campaigns(\?[^/]*)?$"), campaigns)


# Every cell and action button of each row, against the table's scroller and the window: what sticks out of either.
OUTSIDE = """() => {
  const wrap = document.querySelector(".campaigns .table-wrap").getBoundingClientRect();
  const out = [];
  for (const tr of document.querySelectorAll("tr[data-campaign]")) {
    for (const el of tr.querySelectorAll("td, th, td.row-actions button")) {
      const r = el.getBoundingClientRect();
      const what = `${tr.dataset.campaign} ${el.dataset.label || el.textContent.trim().slice(0, 20)}`;
      if (r.left < Math.max(0, wrap.left) - 0.5 || r.right > Math.min(innerWidth, wrap.right) + 0.5)
        out.push(`${what}: ${Math.round(r.left)}-${Math.round(r.right)} outside ` +
                 `${Math.round(wrap.left)}-${Math.round(wrap.right)}`);
      if (el.tagName === "BUTTON" && el.scrollWidth > el.clientWidth) out.push(`${what}: its text is cut`);
    }
  }
  const scroller = document.querySelector(".campaigns .table-wrap");
  if (scroller.scrollWidth > scroller.clientWidth)
    out.push(`the table scrolls: ${scroller.scrollWidth} > ${scroller.clientWidth}`);
  return out;
}"""


def test_the_list_fits_with_long_figures_at_1280_and_800_px(console):
    console.sign_in(*DEMO_ADMIN)
    page = console.page
    _busy_day(page)
    page = console.open("campaigns")
    table = page.get_by_role("table", name="Campaigns with today's spend and live bids")
    row = table.locator("tr[data-campaign]").filter(has_text=LONG_NAME)
    expect(row.locator("td[data-label='Spent today']")).to_contain_text(HELD)
    expect(row.locator("td[data-label='Pacing']")).to_contain_text(ALLOWED)
    for action in ("Approve", "Reject", "Pause"):
        expect(row.get_by_role("button", name=f"{action} {LONG_NAME}")).to_be_visible()
    rows = table.locator("tr[data-campaign]").count()
    assert rows >= 6
    assert table.locator("td.row-actions button").count() >= rows + 2
    for width in (1280, 800):
        page.set_viewport_size({"width": width, "height": 860})
        expect(row.get_by_role("button", name=f"Pause {LONG_NAME}")).to_be_visible()
        assert page.evaluate(OUTSIDE) == [], width
        console.shot(f"campaigns-list-busy-{width}")
    page.unroute_all(behavior="ignoreErrors")  # a spend poll in flight as the tab closes is no one's concern


def test_a_campaign_without_a_policy_opens_without_a_failed_request(console, server):
    # The demo's campaigns have no offer-selection policy: the server answers its policy with 409 (no_policy), which
    # Chromium logs as a failed request. Opening the campaign asks for nothing that fails.
    campaign_id = "demo-fao-dub"
    try:
        _admin_call(server.url, "GET", f"/v1/admin/campaigns/{campaign_id}/policy")
        raise AssertionError(f"{campaign_id} has a policy")
    except urllib.error.HTTPError as exc:
        assert exc.code == 409
    console.sign_in(*DEMO_ADMIN)
    page = console.page
    logged: list[str] = []
    page.on("console", lambda msg: logged.append(msg.text) if msg.type == "error" else None)
    # Its history as a long-lived campaign has it (API keys' long ids beside comments), to read at 800 px too.
    steps = [{"at": time.time() - 60 * i, "actor": f"api_key:key_{i}9741a879ad847ab", "action": action,
              "from_state": before, "to_state": after, "comment": comment}
             for i, (action, before, after, comment) in enumerate([
                 ("approve", "in_review", "approved", "Looks good to me, the budget is within the quarter's plan"),
                 ("submit", "draft", "in_review", "ready for review"), ("create", None, "draft", None)])]
    page.route(f"**/v1/admin/campaigns/{campaign_id}/history",
               lambda route: route.fulfill(json={"items": list(reversed(steps))}))
    page = console.open(f"campaigns?id={campaign_id}")
    expect(page.get_by_role("heading", name="FAO-DUB summer sale", level=1)).to_be_visible()
    expect(page.locator("[data-chart] canvas")).to_have_count(3)
    history = page.get_by_role("table", name="The campaign's workflow history, newest first")
    expect(history.locator("tr[data-action=approve]")).to_contain_text("Looks good to me")
    page.wait_for_timeout(500)  # anything else the page asks on opening has been answered
    assert logged == [], logged
    policy = page.get_by_role("region", name="Offer-selection policy")
    expect(policy.get_by_role("button", name="Show the policy")).to_be_visible()

    # At 800 px the history's comments are still on screen, beside the long ids.
    page.set_viewport_size({"width": 800, "height": 860})
    comment = history.locator("tr[data-action=approve] td.comment")
    expect(comment).to_be_visible()
    comment.scroll_into_view_if_needed()
    box, wrap = comment.bounding_box(), history.locator("xpath=..").bounding_box()
    assert box["x"] >= wrap["x"] and box["x"] + box["width"] <= wrap["x"] + wrap["width"] + 0.5, (box, wrap)
    assert box["x"] + box["width"] <= 800
    console.shot("campaign-no-policy-800")

    # Asked for, the panel says there is none (that failed request is the user's own).
    policy.get_by_role("button", name="Show the policy").click()
    expect(policy).to_contain_text("No offer-selection policy for this campaign.")
    expect(policy.get_by_role("button", name="Check again")).to_be_visible()
    page.unroute_all(behavior="ignoreErrors")
