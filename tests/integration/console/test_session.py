"""Signing in and out: who the header says you are, the navigation your role gets, and a session kept across reloads."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.integration.console.conftest import DEMO_ADMIN, DEMO_CUSTOMER

# One line of app.js's PAGES: ["route", "Label", [roles], "./pages/module.js"]
_PAGE_LINE = re.compile(r'\[\s*"([\w-]+)"\s*,\s*"([^"]+)"\s*,\s*\[([^\]]*)\]\s*,\s*"\./pages/([\w-]+\.js)"\s*\]')
ADMIN_ONLY = {"Live bidding", "Operations", "Campaigns", "Mail"}


def console_pages() -> list[tuple[str, str, list[str | None], str]]:
    """The console's pages as app.js lists them: (route, label, roles that see it in the navigation, module file)."""
    source = (ROOT / "static" / "js" / "app.js").read_text()
    pages = []
    for route, label, roles, module in _PAGE_LINE.findall(source):
        who = [None if token == "null" else token.strip('"') for token in re.findall(r'"\w+"|null', roles)]
        pages.append((route, label, who, module))
    assert pages, "no PAGES found in static/js/app.js"
    return pages


def nav_labels(role: str | None) -> list[str]:
    return [label for _, label, roles, _ in console_pages() if role in roles]


def test_sign_in_stay_signed_in_sign_out_and_each_role_sees_its_pages(console):
    page = console.page
    who = page.locator("#who")
    nav = page.get_by_role("navigation", name="Pages")
    sign_in_link = page.get_by_role("banner").get_by_role("link", name="Sign in")
    sign_out = page.get_by_role("button", name="Sign out")

    # A wrong password: the server's own message, readable, and nobody signed in.
    page = console.open("signin")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(nav.get_by_role("link")).to_have_text(nav_labels(None))
    console.shot("signin")
    page.get_by_label("Email").fill(DEMO_ADMIN[0])
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    error = page.get_by_role("main").get_by_role("alert")
    expect(error).to_contain_text("email or password is wrong")
    assert "{" not in error.inner_text(), error.inner_text()  # the message, not the JSON envelope
    expect(who).to_have_text("")
    expect(sign_in_link).to_be_visible()

    # The demo admin: email and role in the header, the admin pages in the navigation.
    page.get_by_label("Password").fill(DEMO_ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(who).to_have_text(f"{DEMO_ADMIN[0]} · admin")
    links = nav.get_by_role("link")
    expect(links).to_have_text(nav_labels("admin"))
    assert ADMIN_ONLY <= set(links.all_inner_texts())
    expect(sign_out).to_be_visible()
    expect(sign_in_link).to_be_hidden()
    expect(nav.get_by_role("link", name="Live bidding")).to_have_attribute("aria-current", "page")
    console.shot("nav-admin")

    # The session is remembered: a reload (or a new visit) is still signed in.
    page.reload()
    expect(who).to_have_text(f"{DEMO_ADMIN[0]} · admin")
    expect(nav.get_by_role("link")).to_have_text(nav_labels("admin"))
    nav.get_by_role("link", name="Health").click()
    expect(page.get_by_role("heading", name="Health", level=1)).to_be_visible()
    # The tasks: the running ones, and warm_up, which runs once and is done, are fine; none is shown as failing.
    warm = page.get_by_role("row", name=re.compile(r"^task warm_up"))
    expect(warm.get_by_role("cell").nth(1)).to_have_text("finished")
    expect(warm.get_by_role("cell").nth(1)).to_have_class("ok")
    expect(page).to_have_title(re.compile(r"^Health · Contrail console$"))

    # Sign out: back to the guest's navigation, and it stays so after a reload.
    sign_out.click()
    expect(who).to_have_text("")
    expect(sign_in_link).to_be_visible()
    expect(sign_out).to_be_hidden()
    expect(nav.get_by_role("link")).to_have_text(nav_labels(None))
    page.reload()
    expect(nav.get_by_role("link")).to_have_text(nav_labels(None))
    assert not ADMIN_ONLY & set(nav.get_by_role("link").all_inner_texts())

    # A customer: their own pages, none of the admin's.
    console.sign_in(*DEMO_CUSTOMER)
    expect(who).to_have_text(f"{DEMO_CUSTOMER[0]} · customer")
    links = nav.get_by_role("link")
    expect(links).to_have_text(nav_labels("customer"))
    assert "My account" in links.all_inner_texts()
    assert not ADMIN_ONLY & set(links.all_inner_texts())
    console.shot("nav-customer")
    # An admin page reached by its address says whom it is for, and asks the server nothing it would refuse.
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status in (401, 403) else None)
    for route, label in (("reco", "Recommendations"), ("models", "Models"), ("operations", "Operations"),
                         ("mail", "Mail")):
        console.open(route)
        main = page.get_by_role("main")
        expect(main.get_by_role("heading", name=label, level=1)).to_be_visible()
        expect(main).to_contain_text(f"{label} is for administrators.")
        expect(main.get_by_role("button")).to_have_count(0)
    page.wait_for_timeout(500)
    assert refused == [], refused
    sign_out.click()
    expect(who).to_have_text("")


def test_a_guest_opens_the_shop_without_an_account(console):
    page = console.open("")  # the console's front door is the shop for anyone not signed in
    nav = page.get_by_role("navigation", name="Pages")
    expect(nav.get_by_role("link", name="Shop")).to_have_attribute("aria-current", "page")
    expect(page).to_have_title(re.compile(r"^Shop · Contrail console$"))
    expect(page.get_by_role("main").get_by_role("heading", level=1).first).to_be_visible()
    expect(page.get_by_role("banner").get_by_role("link", name="Sign in")).to_be_visible()
    assert not ADMIN_ONLY & set(nav.get_by_role("link").all_inner_texts())
