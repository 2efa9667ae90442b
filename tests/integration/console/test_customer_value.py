"""Customer value in Chromium: the admin sees the lifetime-value model serving (its holdout accuracy and errors),
how the demo's customers' predicted values are spread, the most valuable customers, and one member's value with
its interval and the features behind it."""

from __future__ import annotations

import math
import re

import pytest
from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN, SCREENSHOTS
from tests.integration.console.helpers import admin_token, call


def test_admin_sees_the_model_the_spread_of_values_and_a_members_value_with_reasons(server, console):
    token = admin_token(server.url)
    model = call(server.url, "GET", "/v1/admin/ltv/model", token=token)
    assert model["model_version"], "the demo seed fits the first lifetime-value model"
    spread = call(server.url, "GET", "/v1/admin/ltv/distribution", token=token)
    best = spread["top"][0]["customer_id"]

    console.sign_in(*DEMO_ADMIN)
    page = console.open("operations?tab=loyalty")
    card = page.get_by_role("region", name="Customer value")
    expect(card).to_contain_text(model["model_version"])
    expect(card).to_contain_text("Holdout accuracy (total purchases)")
    bins = card.get_by_role("table", name=re.compile("Customers by predicted value"))
    expect(bins.get_by_role("row")).to_have_count(len(spread["bins"]) + 1)
    expect(bins.get_by_role("row").last).to_contain_text("and more")
    top = card.get_by_role("table", name="The most valuable customers")
    expect(top.get_by_role("row").nth(1)).to_contain_text(best)

    page.get_by_label("User id (or its beginning)").fill(best)
    page.get_by_role("button", name="Search members").click()
    page.get_by_role("button", name=f"Open member {best}").click()
    value = page.get_by_role("region", name="Member", exact=True).get_by_role("region", name="Lifetime value")
    expect(value).to_contain_text(re.compile(r"over 365 days \(80% between"))
    expect(value).to_contain_text("Still buying (P alive)")
    reasons = value.get_by_role("table", name=re.compile("Why"))
    expect(reasons.get_by_role("row").nth(1)).to_be_visible()
    expect(reasons).to_contain_text("Repeat purchases")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    value.screenshot(path=str(SCREENSHOTS / "ops-member-value.png"))  # the page is long: each part on its own

    # A member who has most likely stopped buying: no interval above zero, said in words.
    lapsed = next(m for m in (f"member-{i:04d}" for i in range(200))
                  if call(server.url, "GET", f"/v1/customers/{m}/ltv", token=token)["ltv_upper_bound"] == 0)
    page.get_by_label("User id (or its beginning)").fill(lapsed)
    page.get_by_role("button", name="Search members").click()
    page.get_by_role("button", name=f"Open member {lapsed}").click()
    member = page.get_by_role("region", name="Member", exact=True)
    expect(member.get_by_role("heading", name=f"Member {lapsed}")).to_be_visible()
    expect(member.get_by_role("region", name="Lifetime value")).to_contain_text("at least 80% likely to buy nothing")

    card.screenshot(path=str(SCREENSHOTS / "ops-customer-value.png"))


FEATURES = {"frequency": "Repeat purchases", "recency": "Days from first to last purchase",
            "age": "Days since first purchase", "monetary": "Average repeat purchase",
            "digital_share": "Share bought on the web or app", "channels": "Channels used"}


def test_a_members_reasons_show_rounded_contributions_bars_to_scale_and_shares_as_percentages(server, console):
    # A member whose reasons include a contribution that rounds to zero from below (the model's -2e-16 kind), one of
    # at least 1, and the share of purchases made digitally.
    token = admin_token(server.url)
    member, features = next(
        (m, f) for m, f in ((m, call(server.url, "GET", f"/v1/customers/{m}/ltv", token=token)["top_features"])
                            for m in (f"member-{i:04d}" for i in range(200)))
        if any(-0.5 < x["importance"] < 0 for x in f) and any(abs(x["importance"]) >= 1 for x in f)
        and any(x["name"] == "digital_share" for x in f))
    largest = max(abs(x["importance"]) for x in features)

    console.sign_in(*DEMO_ADMIN)
    page = console.open("operations?tab=loyalty")
    # The members' ids each on one line at 1280 px ("member-" / "0000" before).
    first = page.get_by_role("button", name="Open member member-0000")
    expect(first).to_be_visible()
    assert first.evaluate("""(b) => { const r = document.createRange(); r.selectNodeContents(b);
                                      return r.getClientRects().length; }""") == 1
    page.get_by_label("User id (or its beginning)").fill(member)
    page.get_by_role("button", name="Search members").click()
    page.get_by_role("button", name=f"Open member {member}").click()
    value = page.get_by_role("region", name="Member", exact=True).get_by_role("region", name="Lifetime value")
    reasons = value.get_by_role("table", name=re.compile("Why"))
    expect(reasons.locator("tbody tr")).to_have_count(len(features))
    for f in features:
        row = reasons.locator("tbody tr").filter(has=page.get_by_role("cell", name=FEATURES[f["name"]], exact=True))
        shown = math.floor(f["importance"] + 0.5)  # as the page rounds (Math.round)
        contribution, bar_cell = row.locator("td").nth(2), row.locator("td").nth(3)
        if f["name"] == "digital_share":  # a share, as a percentage
            expect(row.locator("td").nth(1)).to_have_text(f"{round(f['value'] * 100)}%")
        if shown == 0:  # a plain 0: no sign, neither colour, no bar
            expect(contribution).to_have_text("0")
            expect(contribution).not_to_have_class(re.compile(r"\b(bad|ok)\b"))
            assert all(b["width"] < 1 for b in (s.bounding_box() for s in bar_cell.locator("span").all()) if b), f
        else:
            expect(contribution).to_have_text(f"{shown:+,}")
            expect(contribution).to_have_class(re.compile(r"\bbad\b" if shown < 0 else r"\bok\b"))
            bar, cell = bar_cell.locator("span").bounding_box(), bar_cell.evaluate(
                "(td) => td.clientWidth - parseFloat(getComputedStyle(td).paddingLeft)"
                " - parseFloat(getComputedStyle(td).paddingRight)")
            assert bar["width"] / cell == pytest.approx(abs(f["importance"]) / largest, abs=0.02), (f, bar, cell)
    value.screenshot(path=str(SCREENSHOTS / "ops-member-reasons.png"))
