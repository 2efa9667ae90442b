"""The shop as a guest: search, compare offers, hold one, a declined card then a good one, the barcodes as QR codes,
and cancelling with a refund quote; then the same shop on a phone."""

from __future__ import annotations

import re

from playwright.sync_api import expect

DECLINED_CARD = "4000 0000 0000 0002"  # adapters/payments/simulator.py DECLINES: card_declined
GOOD_CARD = "4242 4242 4242 4242"


def pay(page, number: str) -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry month").select_option("12")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Name on card").fill("Ana Guest")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()


def test_guest_searches_pays_after_a_decline_gets_qr_codes_and_cancels_for_a_refund(console):
    page = console.open("shop")
    expect(page.get_by_role("heading", name="Find a flight")).to_be_visible()
    page.get_by_label("From").select_option("LIS")
    page.get_by_label("To").select_option("BCN")
    expect(page.get_by_label("Passengers")).to_have_value("1")
    # The day's flights on the route, from the public schedule (tomorrow by default).
    expect(page.get_by_text(re.compile(r"LIS → BCN on \d{4}-\d\d-\d\d: CT\d+ at"))).to_be_visible()
    console.shot("shop-search")

    page.get_by_role("button", name="Search offers").click()
    offers = page.locator("article.offer")
    expect(page.get_by_role("heading", name="Offers: Lisbon (LIS) → Barcelona (BCN)")).to_be_visible()
    expect(offers.first).to_be_visible()
    assert 3 <= offers.count() <= 5
    expect(offers.first).to_contain_text(re.compile(r"Price held for 1[45]:\d\d"))  # a 15-minute offer, counting down
    expect(offers.filter(has_text="Not refundable").first).to_contain_text("Flight only")
    console.shot("shop-offer")

    # A refundable bundle, so cancelling it refunds the price less its penalty.
    chosen = offers.filter(has_text="Refundable, less a").first
    price = chosen.locator(".price").inner_text().split()[0]
    chosen.get_by_role("button", name="Choose").click()

    expect(page.get_by_role("heading", name=re.compile(r"^Order for CT\d+ LIS-BCN economy"))).to_be_visible()
    expect(page.get_by_text("Held, awaiting payment")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Seats held for you for (29|30):\d\d"))).to_be_visible()
    expect(page.get_by_test_id("order-total")).to_have_text(price)
    # The lines add up to the total: the items, then the taxes and the booking fee.
    lines = page.locator(".order ul.items li .num").all_inner_texts()
    assert "Taxes and booking fee" in page.locator(".order ul.items").inner_text()
    def cents(text: str) -> int:  # the amount, not a discount shown beside it
        return round(float(re.search(r"[\d,]+\.\d{2}", text).group().replace(",", "")) * 100)
    assert sum(cents(t) for t in lines) == cents(price), (lines, price)

    pay(page, DECLINED_CARD)
    declined = page.get_by_role("alert").filter(has_text="Payment declined")
    expect(declined).to_have_text(re.compile(r"Payment declined: the bank declined the card\. No money was taken"))
    expect(page.get_by_text("Held, awaiting payment")).to_be_visible()  # still held: the guest can try again
    expect(page.get_by_label("Card number")).to_be_focused()
    console.shot("shop-declined")

    pay(page, GOOD_CARD)
    expect(page.get_by_text("Paid with the card ending 4242. Your booking is confirmed.")).to_be_visible()
    expect(page.get_by_text("Confirmed", exact=True)).to_be_visible()
    expect(declined).to_be_hidden()
    # One QR code (an <svg>) per barcode: the fare and each product, for the one passenger.
    barcodes = page.locator("figure.barcode")
    expect(barcodes.first).to_be_visible()
    count = barcodes.count()
    assert count >= 2
    expect(page.get_by_role("img", name=re.compile(r"^QR code: "))).to_have_count(count)
    expect(barcodes.locator("svg")).to_have_count(count)
    expect(barcodes.first).to_contain_text("Boarding pass, passenger 1")
    console.shot("shop-barcodes")

    # Cancel: the refund is quoted before anything happens.
    page.get_by_role("button", name="Cancel order…").click()
    refund = page.get_by_test_id("refund")
    expect(page.get_by_text(re.compile(r"^Cancelling refunds \$[\d,.]+ of the " + re.escape(price) + " paid"))
           ).to_be_visible()
    quoted = refund.inner_text()
    assert quoted != "$0.00"
    expect(page.get_by_text(re.compile(r"This quote is valid for 1[45]:\d\d"))).to_be_visible()
    console.shot("shop-refund-quote")
    page.get_by_role("button", name=f"Confirm cancellation (refund {quoted})").click()
    expect(page.get_by_text(f"Cancelled. Refund: {quoted}.")).to_be_visible()
    expect(page.get_by_text("Cancelled", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Cancel order…")).to_be_hidden()
    expect(barcodes.first).to_be_hidden()  # a cancelled order's barcodes are void

    # On a phone: back to the offers (kept for the session), nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="← Back to the offers").click()
    expect(offers.first).to_be_visible()
    expect(page.get_by_role("button", name="Search offers")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    console.shot("shop-mobile")


def test_a_link_from_a_message_opens_the_shop_on_its_destination(console):
    page = console.open("shop?destination=DUB")  # flown from Faro only
    expect(page.get_by_label("To")).to_have_value("DUB")
    expect(page.get_by_label("From")).to_have_value("FAO")
