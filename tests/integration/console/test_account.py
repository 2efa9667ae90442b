"""My account as a new customer: create the account, buy a flight (which earns stars), see the order and the wallet,
get an in-app message live, redeem stars and see the balance drop, open the order from the list."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_CUSTOMER
from tests.integration.console.helpers import admin_token, call


def test_customer_sees_orders_and_wallet_gets_a_message_live_and_redeems_stars(console, server):
    page = console.open("signin")
    email = f"shopper-{uuid.uuid4().hex[:10]}@example.com"
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Create account").click()
    page.locator("#who").filter(has_text=email).wait_for()

    # A new account: no orders, no stars, the inbox connected.
    expect(page.get_by_role("heading", name="My orders")).to_be_visible()
    expect(page.get_by_text("No orders yet.")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("0 stars")
    expect(page.get_by_text("Not enough stars to redeem yet")).to_be_disabled()
    inbox = page.get_by_role("region", name="Inbox")
    expect(inbox.get_by_role("status")).to_have_text("live")

    # Buy a flight in the shop: a customer's paid order earns stars (the flight-only fare: too few to reach Gold).
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Shop").click()
    expect(page.get_by_text("Shopping as a guest")).to_have_count(0)
    page.get_by_role("button", name="Search offers").click()
    page.locator("article.offer").filter(has_text="Flight only").first.get_by_role("button", name="Choose").click()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("CVC").fill("321")
    page.get_by_label("Name on card").fill("Sam Shopper")
    page.get_by_role("button", name=re.compile(r"^Pay \$")).click()
    expect(page.get_by_text("Your booking is confirmed.")).to_be_visible()
    flight = page.get_by_role("heading", name=re.compile("^Order for ")).inner_text().removeprefix("Order for ")
    total = page.get_by_test_id("order-total").inner_text()
    page.get_by_role("link", name="← My orders").click()

    # The order in my list, the stars it earned in my wallet and ledger.
    orders = page.get_by_role("region", name="My orders")
    row = orders.get_by_role("row").filter(has_text=flight)
    expect(row).to_contain_text("Confirmed")
    expect(row).to_contain_text(total)
    expect(orders.get_by_text("1 order, newest first.")).to_be_visible()
    wallet = page.get_by_role("region", name="Loyalty wallet")
    balance = wallet.get_by_test_id("balance")
    expect(balance).to_have_text(re.compile(r"^[1-9]\d* stars$"))
    stars = int(balance.inner_text().split()[0])
    expect(wallet.get_by_test_id("tier")).to_have_text("Green")
    expect(wallet.get_by_text(re.compile(rf"Progress to Gold: {stars} of 500 qualifying stars"))).to_be_visible()
    expect(wallet.get_by_role("row").filter(has_text="Earned for an order")).to_contain_text(f"+{stars}")
    expect(wallet.get_by_label("500 stars → $25.00 reward (needs Gold)")).to_be_disabled()
    console.shot("account-orders")

    # An in-app message arrives live while the page is open.
    user_id = page.evaluate("JSON.parse(localStorage.getItem('contrail.session')).subject")
    admin = admin_token(server.url)
    sent = call(server.url, "POST", "/v1/channels/activate", {"user_id": user_id, "subject": "Your trip is booked",
                                                         "text": "See you on board!", "channel": "in_app"}, admin)
    assert sent["status"] == "delivered", sent
    message = inbox.get_by_role("listitem").filter(has_text="Your trip is booked")
    expect(message).to_contain_text("See you on board!")
    expect(message).to_contain_text("new")

    # Redeem 25 stars: the balance drops, the ledger says so.
    wallet.get_by_label("25 stars → $0.80 reward").check()
    wallet.get_by_role("button", name="Redeem 25 stars").click()
    expect(wallet.get_by_role("status").filter(has_text="Redeemed")).to_have_text(
        f"Redeemed 25 stars for a $0.80 reward. Your balance is now {stars - 25} stars.")
    expect(balance).to_have_text(f"{stars - 25} stars")
    redeemed = wallet.get_by_role("row").filter(has_text="Redeemed for a $0.80 reward")
    expect(redeemed.get_by_role("cell")).to_have_text([re.compile(r"\d"), "Redeemed for a $0.80 reward", "-25",
                                                       str(stars - 25)])
    console.shot("account-wallet")

    # The order opens from the list, in the order view the shop uses.
    row.get_by_role("link", name=flight).click()
    expect(page.get_by_role("heading", name=f"Order for {flight}")).to_be_visible()
    expect(page.get_by_text("Confirmed", exact=True)).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^QR code: Boarding pass, passenger 1"))).to_be_visible()
    expect(page.get_by_role("link", name="← My orders")).to_be_visible()


def test_a_held_order_whose_payment_was_declined_says_so_when_opened(console):
    """The demo traveller's order paid with the declined test card: opened later, it says why it is still held."""
    console.sign_in(*DEMO_CUSTOMER)
    page = console.open("account")
    held = page.get_by_role("region", name="My orders").get_by_role("row").filter(has_text="Held, awaiting payment")
    held.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("^Order for "))).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="Payment declined")).to_have_text(
        "Payment declined: the bank declined the card. No money was taken; try another card.")
    expect(page.get_by_label("Card number")).to_be_visible()  # and the traveller can pay with another card
    console.shot("account-declined-order")
