"""The Operations page in Chromium: staff filter orders by state, open a paid one, board its barcode at the gate
(refused the second time), look over flights and their seats, look up the customer's loyalty account and create
a promotion."""

from __future__ import annotations

import datetime
import re
import secrets
import time

from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN, DEMO_CUSTOMER
from tests.integration.console.helpers import call

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}


def paid_order(base: str) -> tuple[dict, str]:
    """The demo customer books and pays LIS-BCN three days out: the order and the customer's user id."""
    login = call(base, "POST", "/v1/auth/token", {"email": DEMO_CUSTOMER[0], "password": DEMO_CUSTOMER[1]})
    token = login["access_token"]
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3 * 86_400))
    offers = call(base, "POST", "/v1/offers/search", {"origin": "LIS", "destination": "BCN", "departure_date": day,
                                                     "passengers": 1}, token)["offers"]
    offer = next(o for o in offers if o["bundle"] == "flight_only")
    order = call(base, "POST", f"/v1/offers/{offer['id']}/accept", None, token)
    paid = call(base, "POST", f"/v1/orders/{order['id']}/pay", {"card": CARD}, token)
    assert paid["state"] == "FULFILLED", paid
    return paid, login["subject"]


def test_staff_work_orders_the_gate_flights_and_loyalty(server, console):
    order, user_id = paid_order(server.url)
    order_id = order["id"]
    barcode = next(b["code"] for b in order["barcodes"] if b["kind"] == "Flight")

    console.sign_in(*DEMO_ADMIN)
    page = console.open("operations")
    page.reload()  # a fresh document: nothing of the page shown after signing in is still rendering
    expect(page.get_by_role("tab", name="Orders")).to_have_attribute("aria-selected", "true")

    # Orders: only the fulfilled ones, then the customer's new order in full.
    page.get_by_label("State").select_option("FULFILLED")
    expect(page.get_by_role("status").filter(has_text="fulfilled")).to_contain_text("order")
    orders = page.get_by_role("table", name="Orders, oldest first")
    row = orders.get_by_role("row", name=re.compile(order_id))
    expect(row).to_contain_text("fulfilled")
    states = orders.locator("tbody .badge")
    expect(states.first).to_have_text("fulfilled")
    assert set(states.all_inner_texts()) == {"fulfilled"}
    row.get_by_role("button", name=f"Open order {order_id}").click()
    detail = page.get_by_role("region", name="Order details")
    expect(detail.get_by_role("heading", name=f"Order {order_id}")).to_be_visible()
    expect(detail.get_by_role("table", name="Items")).to_contain_text("LIS-BCN economy")
    expect(detail).to_contain_text("approved")
    expect(detail).to_contain_text("•••• 4242")
    barcode_row = detail.get_by_role("table", name="Barcodes").get_by_role("row", name=re.compile(re.escape(barcode)))
    expect(barcode_row).to_contain_text("not used")
    expect(detail.get_by_role("button", name="Cancel and refund…")).to_be_visible()
    console.shot("ops-orders")

    # The gate: typed (or scanned) and Enter; the same code again is refused.
    gate = page.get_by_role("region", name="Gate check")
    code = gate.get_by_label("Barcode (type it or scan it)")
    code.fill(barcode)
    code.press("Enter")
    result = gate.get_by_role("status")
    expect(result).to_contain_text("Boarded")
    expect(result).to_contain_text(order_id)
    expect(barcode_row).to_contain_text(re.compile(r"used \d"))
    expect(code).to_be_focused()
    code.fill(barcode)
    code.press("Enter")
    expect(result).to_contain_text("Already used")
    expect(result).to_contain_text("Do not board")
    expect(detail).to_contain_text("Part of this order has been used")
    console.shot("ops-gate")

    # Flights: seats left per cabin with the base fare and the fare now.
    page.get_by_role("tab", name="Flights and inventory").click()
    flights = page.get_by_role("table", name=re.compile("Flights by departure"))
    first = flights.get_by_role("row").filter(has_text="scheduled").first  # (the demo's flown trip's has left)
    expect(first).to_contain_text(re.compile(r"\d+ of 150 left"))
    expect(first).to_contain_text("base fare $")
    expect(first).to_contain_text("fare now $")
    console.shot("ops-flights")
    departing = page.get_by_label("Departing from")  # today by default; a year on there is none yet
    departing.fill(f"{datetime.date.today().year + 1}-06-01")
    expect(page.get_by_text("No flights.")).to_be_visible()
    departing.fill(datetime.date.today().isoformat())
    expect(first).to_contain_text(re.compile(r"\d+ of 150 left"))

    # Loyalty, reached from the keyboard: the customer's account has the stars of the paid order.
    page.get_by_role("tab", name="Flights and inventory").press("ArrowRight")
    loyalty_tab = page.get_by_role("tab", name="Loyalty")
    expect(loyalty_tab).to_be_focused()
    expect(loyalty_tab).to_have_attribute("aria-selected", "true")
    page.get_by_label("User id (or its beginning)").fill(user_id[:12])
    page.get_by_role("button", name="Search members").click()
    page.get_by_role("button", name=f"Open member {user_id}").click()
    member = page.get_by_role("region", name="Member", exact=True)
    expect(member.get_by_role("heading", name=f"Member {user_id}")).to_be_visible()
    expect(member).to_contain_text("stars to spend")
    expect(member.get_by_role("table", name="Ledger").get_by_role("row", name=re.compile(f"order:{order_id}"))) \
        .to_contain_text("earn")

    promo = f"console-{secrets.token_hex(3)}"
    page.get_by_label("Id", exact=True).fill(promo)
    page.get_by_label("Name", exact=True).fill("Double stars on the web")
    page.get_by_label("Bonus earn rate (stars per dollar, added)").fill("2")
    page.get_by_label("web", exact=True).check()
    page.get_by_role("button", name="Create promotion").click()
    expect(page.get_by_text(f"Promotion {promo} saved.")).to_be_visible()
    saved = page.get_by_role("table", name="Promotions").get_by_role("row", name=re.compile(promo))
    expect(saved).to_contain_text("Double stars on the web")
    expect(saved).to_contain_text("active")
    console.shot("ops-loyalty")
