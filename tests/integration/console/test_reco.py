"""The Recommendations page in Chromium: the admin picks a user whose events came through ingest, sees what they
interacted with and each strategy's list with reasons, an item's neighbours, and retrains the model."""

from __future__ import annotations

import re
import secrets
import time

from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN
from tests.integration.console.helpers import admin_token, call

STRATEGIES = ["Personalized", "Co-viewed (cf)", "Content based", "Frequently bought together", "Trending",
              "New arrivals"]


def event(user: str, kind: str, item: str) -> dict:
    return {"source": "web", "type": kind, "user_id": user, "product_id": item}


def learned(base: str, token: str, user: str) -> dict:
    """Reco learns from ingest through a queued subscriber: wait until the user's list reflects their events."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = call(base, "GET", f"/v1/recommendations/{user}?n=10", token=token)
        if answer["model"] != "popular" and any(i["reason"].startswith("co-viewed with") for i in answer["items"]):
            return answer
        time.sleep(0.2)
    raise AssertionError(f"the recommendations for {user} never reflected their events: {answer}")


def test_admin_sees_a_users_lists_an_items_neighbours_and_retrains(server, console):
    base = server.url
    token = admin_token(base)
    tag = secrets.token_hex(3)
    user = f"reco-{tag}"
    # Others who view Barcelona also view Lisbon and Porto; the user views Barcelona and Madrid, puts a bag in the
    # cart and dismisses Faro. Enough interactions that retraining has something to learn from.
    events = []
    for u in range(12):
        other = f"reco-{tag}-o{u}"
        events += [event(other, "product_view", "dest-BCN"), event(other, "product_view", "dest-LIS"),
                   event(other, "click", "dest-OPO"), event(other, "cart_add", "seat-standard"),
                   event(other, "product_view", "dest-AMS" if u % 2 else "dest-CDG")]
    events += [event(user, "product_view", "dest-BCN"), event(user, "product_view", "dest-MAD"),
               event(user, "cart_add", "bag-23kg"), event(user, "dismiss", "dest-FAO")]
    answer = call(base, "POST", "/v1/channels/ingest", events, token)
    assert answer["accepted"] == len(events) and answer["rejected"] == [], answer
    learned(base, token, user)

    console.sign_in(*DEMO_ADMIN)
    page = console.open("reco")
    page.reload()  # a fresh document: nothing of the page shown after signing in is still rendering
    expect(page.get_by_role("heading", name="Recommendations", level=1)).to_be_visible()
    expect(page.get_by_role("region", name="Popular now").get_by_role("listitem").first).to_be_visible()
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Show recommendations").click()
    expect(page.get_by_role("status").filter(has_text=f"Lists for {user}")).to_be_visible()

    personalized = page.get_by_role("region", name="Personalized")
    expect(personalized).to_contain_text(re.compile(r"Model: (seed|als-\S+)"))
    expect(personalized.get_by_role("listitem").filter(has_text="co-viewed with").first).to_be_visible()
    expect(personalized.get_by_role("listitem").filter(has_text="dest-FAO")).to_have_count(0)  # dismissed
    for name in STRATEGIES:
        region = page.get_by_role("region", name=name, exact=True)
        expect(region.get_by_role("listitem").first).to_be_visible()
        expect(region).to_contain_text("Model:")
    expect(page.get_by_role("region", name="Co-viewed (cf)").get_by_role("listitem")
           .filter(has_text="dest-LIS").first).to_contain_text("co-viewed with dest-BCN")
    seen = page.get_by_role("region", name=f"What {user} interacted with")
    rows = seen.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(5)  # a header and their four events, newest first
    expect(rows.nth(1)).to_contain_text(re.compile(r"dest-FAO\s*dismiss.*-5\s*yes"))
    expect(rows.nth(4)).to_contain_text(re.compile(r"dest-BCN\s*product view"))
    expect(seen).to_contain_text("4 of them count in their lists now")
    expect(seen.get_by_role("list")).to_contain_text("dest-FAO")  # dismissed: never recommended to them
    console.shot("reco-user")

    # exclude=seen leaves out what they viewed.
    page.get_by_label("Leave out what they have seen (exclude=seen)").check()
    expect(page.get_by_role("status").filter(has_text="leaving out what they have seen")).to_be_visible()
    expect(personalized.get_by_role("button", name="dest-BCN", exact=True)).to_have_count(0)
    expect(personalized.get_by_role("listitem").first).to_be_visible()

    first = personalized.get_by_role("listitem").first.get_by_role("button")
    item = first.inner_text()
    first.click()
    neighbours = page.get_by_role("region", name=f"Neighbours of {item}")
    expect(neighbours).to_contain_text(re.compile(r"By (co-view counts|the trained embeddings)"))
    expect(neighbours.get_by_role("listitem").first).to_be_visible()
    expect(first).to_have_attribute("aria-pressed", "true")
    console.shot("reco-neighbours")

    page.get_by_role("button", name="Retrain now").click()
    model = page.get_by_role("region", name="Model")
    expect(model.locator(".reco-outcome")).to_have_text(re.compile(r"^(Live|Not live): .+"))
    expect(model.get_by_role("row", name=re.compile("HR@10"))).to_be_visible()
    expect(model).to_contain_text(re.compile(r"Held-out\d+ users, \d+ events"))
    expect(page.get_by_role("button", name="Retrain now")).to_be_enabled()
    console.shot("reco-retrain")


def test_a_user_without_history_is_told_which_lists_fall_back_to_popular_items(server, console):
    user = f"nobody-{secrets.token_hex(3)}"
    console.sign_in(*DEMO_ADMIN)
    page = console.open(f"reco?user={user}")
    # Trending and New arrivals are lists of their own (live features, or the trained model once another test of
    # this server trained one); the others fall back to popular items.
    for name in ("Trending", "New arrivals"):
        expect(page.get_by_role("region", name=name, exact=True)).to_contain_text(
            re.compile(r"Model: (features \(live features\)|\S+ \(trained model\))"))
    for name in ("Personalized", "Co-viewed (cf)", "Content based", "Frequently bought together"):
        expect(page.get_by_role("region", name=name, exact=True)).to_contain_text(
            "Model: popular (popular: no history)")
    seen = page.get_by_role("region", name=f"What {user} interacted with")
    expect(seen).to_contain_text(f"{user} has no history yet: Personalized, Co-viewed (cf), Content based and "
                                 "Frequently bought together fall back to popular items. Trending and New arrivals "
                                 "are their own lists, which need no history.")
    expect(seen).not_to_contain_text("every list")
    status = page.get_by_role("status").filter(has_text=f"Lists for {user}")
    expect(status).to_have_text(f"Lists for {user}: no history yet, so popular items stand in for the personalized "
                                "lists.")
    console.shot("reco-no-history")
