"""The API explorer: find an operation, read its nested schemas, and try calls with the signed-in session."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Locator, expect

from tests.integration.console.conftest import DEMO_ADMIN


def schema_block(scope: Locator, name: str) -> Locator:
    """The expanded block of the named schema (its summary shows the name)."""
    summary = scope.locator("details.schema > summary").filter(
        has=scope.page.locator("code.schema-name", has_text=re.compile(f"^{re.escape(name)}$")))
    return summary.first.locator("xpath=..")


def test_search_an_operation_read_its_schemas_and_try_calls(console):
    console.sign_in(*DEMO_ADMIN)
    page = console.open("api")
    expect(page.get_by_role("heading", name="API explorer", level=1)).to_be_visible()
    expect(page.get_by_text("“Try it” sends requests as admin@contrail.demo (admin).")).to_be_visible()

    # Search: case-insensitive, over path, summary and tag; only matching operations stay listed.
    search = page.get_by_label("Search operations")
    search.fill("OFFERS")
    count = page.locator("#api-count")
    expect(count).to_have_text(re.compile(r"^\d+ of \d+ operations match$"))
    matching, total = map(int, re.findall(r"\d+", count.inner_text()))
    assert 4 <= matching < total
    listed = page.locator("details.op:visible > summary")
    expect(listed).to_have_count(matching)
    assert all("offers" in text.lower() for text in listed.all_inner_texts())
    expect(page.get_by_text("/v1/ping", exact=True)).to_be_hidden()

    # Expand the search: its request schema, and the response's nested $ref schemas (OfferList → Offer → Conditions).
    page.get_by_text("/v1/offers/search", exact=True).click()
    op = page.locator("details.op[open]")
    expect(op.get_by_role("heading", name="Request body")).to_be_visible()
    request = schema_block(op, "SearchQuery")
    expect(request.get_by_text("departure_date", exact=True)).to_be_visible()
    expect(request.get_by_text('one of "business", "economy", "premium"', exact=False)).to_be_visible()
    expect(schema_block(op, "Offer").get_by_text("total_cents", exact=True).first).to_be_visible()
    expect(schema_block(op, "Conditions").get_by_text("refundable", exact=True)).to_be_visible()
    body = op.get_by_label("Request body (JSON)")
    expect(body).to_have_value(re.compile(r'"departure_date": "\d{4}-\d{2}-\d{2}"'))
    console.shot("api-explorer")

    # Try GET /v1/ping: the status and the pretty-printed JSON.
    search.fill("ping")
    expect(listed).to_have_count(1)
    page.get_by_text("/v1/ping", exact=True).click()
    ping = page.locator("details.op[open]", has_text="/v1/ping")
    ping.get_by_role("button", name="Send request").click()
    expect(ping.get_by_text("200 OK", exact=True)).to_be_visible()
    expect(ping.get_by_label("Response body")).to_have_text('{\n  "status": "ok"\n}')
    ping.get_by_text("Response headers").click()
    expect(ping.get_by_role("rowheader", name="content-type")).to_be_visible()
    console.shot("api-explorer-try")

    # The session's token goes with the request: /v1/me answers as the signed-in admin.
    search.fill("/v1/me")
    page.get_by_text("/v1/me", exact=True).click()
    me = page.locator("details.op[open]", has_text="/v1/me")
    me.get_by_role("button", name="Send request").click()
    expect(me.get_by_text("200 OK", exact=True)).to_be_visible()
    expect(me.get_by_label("Response body")).to_contain_text('"role": "admin"')

    # A refusal shows the server's own message readably (the raw envelope stays below it, as sent).
    search.fill("one of your offers")
    page.get_by_text("/v1/offers/{offer_id}", exact=True).first.click()
    one = page.locator("details.op[open]", has_text="/v1/offers/{offer_id}").first
    one.get_by_role("button", name="Send request").click()
    expect(one.get_by_role("alert")).to_have_text("Fill in offer_id first.")
    one.get_by_label("offer_id (path, required)").fill("off_does_not_exist")
    one.get_by_role("button", name="Send request").click()
    expect(one.get_by_text("404 Not Found", exact=True)).to_be_visible()
    message = one.locator(".try-result .error")
    expect(message).to_be_visible()
    assert "{" not in message.inner_text() and message.inner_text().strip()

    # Every operation, and every nested schema down to the depth limit, opens without an error (the fixture fails
    # the test on any), and every body editor starts with valid JSON.
    search.fill("")
    for _ in range(16):
        closed = page.evaluate("""() => {
          const shut = [...document.querySelectorAll("#page details:not([open])")];
          shut.forEach((d) => { d.open = true; });
          return shut.length;
        }""")
        if not closed:
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("nested schemas kept opening: a cycle is not guarded")
    editors = page.locator("textarea.body-editor")
    assert editors.count() > 20
    for value in editors.evaluate_all("(all) => all.map((e) => e.value)"):
        json.loads(value)


def test_a_visitor_takes_a_guest_token_and_searches_offers(console):
    page = console.open("api")
    page.get_by_label("Search operations").fill("post /v1/offers/search")
    page.get_by_text("/v1/offers/search", exact=True).click()
    op = page.locator("details.op[open]")
    op.get_by_role("button", name="Send request").click()
    expect(op.get_by_text("401 Unauthorized", exact=True)).to_be_visible()  # no credentials yet
    page.get_by_role("button", name="Use a guest token").click()
    expect(page.get_by_text("“Try it” sends requests with your guest token")).to_be_visible()
    body = op.get_by_label("Request body (JSON)")
    body.fill(body.input_value().replace('"origin": "AAA"', '"origin": "LIS"')
              .replace('"destination": "AAA"', '"destination": "BCN"'))
    op.get_by_role("button", name="Send request").click()
    expect(op.get_by_text("200 OK", exact=True)).to_be_visible()
    expect(op.get_by_label("Response body")).to_contain_text('"ranked_by"')
    body.fill('{"origin": "LIS",')
    op.get_by_role("button", name="Send request").click()
    expect(op.get_by_role("alert")).to_contain_text("The request body is not valid JSON")
