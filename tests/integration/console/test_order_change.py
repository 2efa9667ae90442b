"""Changing a paid order from its page: another day's flight (paid for with the test card), the new barcodes and
the order's history; then a change offer used behind the page's back is refused with the server's message, and a
service removed."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from playwright.sync_api import expect

from tests.integration.console.helpers import call

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": date.today().year + 3, "cvc": "123"}
SCREENSHOT = Path("/tmp/order_change.png")


def paid_order(base_url: str) -> tuple[str, str, str, dict]:
    """A new customer with a paid flight-only order LIS → BCN in three days: (email, password, token, order)."""
    email, password = f"changer-{uuid.uuid4().hex[:10]}@example.com", "a-long-password"
    call(base_url, "POST", "/v1/accounts", {"email": email, "password": password})
    token = call(base_url, "POST", "/v1/auth/token", {"email": email, "password": password})["access_token"]
    day = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    offers = call(base_url, "POST", "/v1/offers/search", {"origin": "LIS", "destination": "BCN", "departure_date": day,
                                                           "passengers": 1, "cabin": "economy"}, token)["offers"]
    offer = next(o for o in offers if o["bundle"] == "flight_only")
    order = call(base_url, "POST", f"/v1/offers/{offer['id']}/accept", None, token)
    order = call(base_url, "POST", f"/v1/orders/{order['id']}/pay", {"card": CARD}, token)
    assert order["state"] == "FULFILLED", order
    return email, password, token, order


def pay_change(region, name: str) -> None:
    region.get_by_label("Card number").fill("4242 4242 4242 4242")
    region.get_by_label("CVC").fill("123")
    region.get_by_label("Name on card").fill(name)
    region.get_by_role("button", name=re.compile(r"^Pay \$[\d,.]+ and change$")).click()


def test_customer_moves_a_paid_order_to_another_day_and_a_used_change_offer_is_refused(console, server):
    email, password, token, order = paid_order(server.url)
    flight_day = order["flight_id"][-10:]
    next_day = (date.fromisoformat(flight_day) + timedelta(days=1)).isoformat()
    old_code = next(b["code"] for b in order["barcodes"] if b["kind"] == "Flight")

    console.sign_in(email, password)
    page = console.open(f"shop?order={order['id']}")
    expect(page.get_by_role("heading", name=re.compile(r"^Order for CT\d+ LIS-BCN economy$"))).to_be_visible()
    expect(page.locator(f'figure[data-code="{old_code}"]')).to_be_visible()
    before = page.locator(".order p.flight").inner_text()

    # The change panel starts from the order's flight: its route, day and cabin.
    change = page.get_by_role("region", name="Change this order")
    expect(change.get_by_label("From", exact=True)).to_have_value("LIS")
    expect(change.get_by_label("To", exact=True)).to_have_value("BCN")
    expect(change.get_by_label("New date")).to_have_value(flight_day)
    expect(change.get_by_label("Cabin")).to_have_value("economy")
    expect(change.get_by_label("Move to another flight")).not_to_be_checked()
    expect(change.get_by_label("Checked bag 23 kg")).to_be_enabled()

    # Another day: editing the date ticks "Move to another flight"; the options are that day's flights.
    change.get_by_label("New date").fill(next_day)
    expect(change.get_by_label("Move to another flight")).to_be_checked()
    change.get_by_role("button", name="Find options").click()
    options = change.get_by_role("region", name="Change options")
    offers = options.locator("article.change-offer")
    expect(offers.first).to_be_visible()
    assert 1 <= offers.count() <= 5
    first = offers.first
    # The flight-only fare: a $75 change penalty, and a lower fare is not refunded, so money is owed.
    expect(first).to_contain_text("Fare difference")
    expect(first).to_contain_text(re.compile(r"Change penalty\s*\+\$75\.00"))
    expect(first).to_contain_text("Taxes")
    what = first.get_by_role("list", name="What changes")
    expect(what).to_contain_text(re.compile(r"Removed: CT\d+ LIS-BCN economy"))
    expect(what).to_contain_text(re.compile(r"Added: CT\d+ LIS-BCN economy"))
    expect(first.get_by_test_id("change-total")).to_have_text(re.compile(r"^To pay \$[\d,.]+$"))
    expect(first).to_contain_text(re.compile(r"Price held for 1[45]:\d\d"))
    departs = first.locator("p.flight").inner_text()
    assert departs != before and departs.startswith("Departs ")

    # Money is owed: the card form (the first payment's, reused) asks for a card.
    first.get_by_role("button", name=re.compile(r"^Choose CT\d+")).click()
    pay_form = change.get_by_role("form", name="Pay for the change")
    expect(pay_form.get_by_label("Card number")).to_be_focused()
    console.shot("order-change-options")
    pay_change(change, "Cam Changer")

    done = change.get_by_role("status").filter(has_text="Changed:")
    expect(done).to_contain_text(re.compile(r"Changed: CT\d+ LIS-BCN economy, departs .*\(\$[\d,.]+ paid\)"))
    expect(page.locator(".order p.flight")).to_contain_text(departs)
    expect(pay_form).to_be_hidden()
    expect(options).to_be_hidden()
    # New barcodes: the old boarding pass is gone, a new one is shown.
    expect(page.locator(f'figure[data-code="{old_code}"]')).to_have_count(0)
    expect(page.get_by_role("img", name=re.compile(r"^QR code: Boarding pass, passenger 1"))).to_be_visible()
    # The history: as booked, then the change.
    history = page.get_by_role("region", name="History")
    versions = history.get_by_role("listitem")
    expect(versions).to_have_count(2)
    expect(versions.nth(0)).to_contain_text("Version 1")
    expect(versions.nth(0)).to_contain_text("booked")
    expect(versions.nth(1)).to_contain_text("Version 2")
    expect(versions.nth(1)).to_contain_text("now")
    expect(versions.nth(1)).to_contain_text(departs.removeprefix("Departs "))
    console.shot("order-change")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A service this time; its one option is confirmed elsewhere (another tab, the API) before the page does.
    change.get_by_label("Checked bag 23 kg").check()
    change.get_by_role("button", name="Find options").click()
    bag = options.locator("article.change-offer")
    expect(bag).to_have_count(1)
    expect(bag.get_by_role("list", name="What changes")).to_contain_text("Added: Checked bag 23 kg")
    offer_id = bag.get_attribute("data-change-offer")
    call(server.url, "POST", f"/v1/orders/{order['id']}/change-offers/{offer_id}/confirm", {"card": CARD}, token)
    bag.get_by_role("button", name=re.compile(r"^Choose CT\d+")).click()
    pay_change(change, "Cam Changer")
    refused = pay_form.get_by_role("alert")
    expect(refused).to_have_text(f"change offer {offer_id} was already confirmed")
    expect(bag.get_by_role("button", name=re.compile(r"^Choose"))).to_have_text("Unavailable")
    expect(bag).to_contain_text("This option can no longer be confirmed")
    # The page has caught up with the change made elsewhere: the bag is on the order, and a third version.
    expect(versions).to_have_count(3)
    expect(change.get_by_label(re.compile(r"^Checked bag 23 kg"))).to_be_disabled()
    console.shot("order-change-refused")

    # And the bag removed again: the fare is not refundable, so the option keeps the order's money and costs nothing.
    change.get_by_label("Remove Checked bag 23 kg").check()
    change.get_by_role("button", name="Find options").click()
    removal = options.locator("article.change-offer")
    expect(removal).to_have_count(1)
    expect(removal.get_by_role("list", name="What changes")).to_contain_text("Removed: Checked bag 23 kg")
    expect(removal.get_by_test_id("change-total")).to_have_text("No charge")
    console.shot("order-change-remove")
    removal.get_by_role("button", name=re.compile(r"^Confirm CT\d+")).click()
    expect(versions).to_have_count(4)
    expect(change.get_by_label(re.compile(r"^Checked bag 23 kg"))).to_be_enabled()
    expect(change.get_by_text("No services on this order yet.")).to_be_visible()

    # The wallet's ledger: each paid change took back the earn before it and earned the new total; not a refund.
    page = console.open("account")
    ledger = page.get_by_role("table", name="Ledger, newest first")
    taken_back = ledger.get_by_role("row").filter(has_text="Taken back")
    expect(taken_back).to_have_count(2)
    for n in range(2):
        expect(taken_back.nth(n)).to_contain_text("an order was changed and earns for its new total")
    expect(ledger).not_to_contain_text("was refunded")
    earned = ledger.get_by_role("link", name="an order")
    assert {earned.nth(n).get_attribute("href") for n in range(earned.count())} == {
        f"#/account?order={order['id']}"}
    console.shot("order-change-ledger")
