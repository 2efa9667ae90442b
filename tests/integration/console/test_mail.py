"""The Mail page in Chromium: the admin reads an email in the mailbox and its sandboxed preview, sees how its
activation did (opened and clicked through the mail's own tracking links), and adds then lifts a suppression."""

from __future__ import annotations

import html
import http.client
import re
import secrets
import time
import urllib.parse
import urllib.request

from playwright.sync_api import expect

from tests.integration.console.conftest import DEMO_ADMIN
from tests.integration.console.helpers import call


def get(url: str) -> int:
    """GET a link as a mail client does, without following its redirect (its target is not on this machine)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
    status = connection.getresponse().status
    connection.close()
    return status


def sent_mail(base: str, token: str, activation_id: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        box = call(base, "GET", "/v1/admin/mailbox?limit=200", token=token)
        mine = [m for m in box["items"] if m["headers"].get("X-Contrail-Activation") == activation_id]
        if mine:
            return mine[0]
        time.sleep(0.1)
    raise AssertionError(f"no mail for activation {activation_id} in the mailbox")


def test_admin_reads_an_email_sees_its_analytics_and_manages_suppressions(server, console):
    base = server.url
    admin = call(base, "POST", "/v1/auth/token", {"email": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]})["access_token"]
    user = f"reader-{secrets.token_hex(4)}"
    address = f"{user}@example.com"
    subject = f"Your Lisbon weekend, {user}"
    call(base, "PUT", f"/v1/loyalty/members/{user}", {"email": address}, admin)
    activation = call(base, "POST", "/v1/channels/activate", {
        "user_id": user, "subject": subject, "text": "Fly to Lisbon from $49.",
        "html": '<h1>Lisbon</h1><p>Fly to <a href="https://fly.contrail.example/lis?x=1&amp;y=2">Lisbon</a> '
                'from $49.</p><script>document.title = "ran"</script>'}, admin)
    assert activation["channel"] == "email" and activation["status"] == "queued", activation
    act = activation["activation_id"]
    mail = sent_mail(base, admin, act)
    # The recipient reads it (the open pixel) and clicks its link (the tracked redirect), as a mail client would.
    pixel = re.search(r'<img src="([^"]+/v1/email/open/[^"]+)"', mail["html"]).group(1)
    link = html.unescape(re.search(r'href="([^"]+/v1/email/click/[^"]+)"', mail["html"]).group(1))
    assert get(pixel) == 200 and get(link) == 302

    console.sign_in(*DEMO_ADMIN)
    page = console.open("mail")
    page.reload()  # a fresh document: nothing of the page shown after signing in is still rendering
    expect(page.get_by_role("tab", name="Mailbox")).to_have_attribute("aria-selected", "true")
    item = page.get_by_role("button", name=re.compile(re.escape(subject)))
    expect(item).to_contain_text(f"To {address}")
    console.shot("mail-mailbox")

    item.click()
    preview = page.get_by_role("region", name="Preview")
    expect(preview.get_by_role("heading", name=subject)).to_be_visible()
    frame = page.locator(f'iframe[title="Email preview: {subject}"]')
    expect(frame).to_have_attribute("sandbox", "")
    body = page.frame_locator(f'iframe[title="Email preview: {subject}"]')
    expect(body.get_by_role("heading", name="Lisbon")).to_be_visible()
    expect(body.get_by_text("from $49")).to_be_visible()
    expect(body.locator("script")).to_have_count(0)
    expect(preview.get_by_role("listitem").filter(has_text="https://fly.contrail.example/lis?x=1&y=2")) \
        .to_contain_text("click-tracked")
    expect(preview.locator("pre")).to_contain_text("Fly to Lisbon from $49.")
    expect(preview).to_contain_text(act)
    assert page.title() != "ran"
    console.shot("mail-preview")

    preview.get_by_role("button", name="Show its analytics").click()
    expect(page.get_by_role("tab", name="Analytics")).to_have_attribute("aria-selected", "true")
    chosen = page.get_by_role("region", name="Chosen activation")
    expect(chosen).to_contain_text(act)
    expect(chosen.locator(".stat").filter(has_text="sent")).to_have_text("1sent")
    expect(chosen.locator(".stat").filter(has_text="open rate")).to_have_text("100%open rate")
    expect(chosen.locator(".stat").filter(has_text="click rate")).to_have_text("100%click rate")
    row = page.get_by_role("row", name=re.compile(act))
    expect(row).to_contain_text(subject)
    expect(row.get_by_role("cell")).to_have_text(["1", "1", "1 (1)", "1 (1)", "0", "100%", "100%", "0%"])
    console.shot("mail-analytics")

    page.get_by_role("tab", name="Suppressions").click()
    page.get_by_label("Email, phone or user id").fill(address)
    page.get_by_label("Channel", exact=True).select_option("email")
    page.get_by_label("Reason").fill("asked by phone")
    page.get_by_role("button", name="Add to the list").click()
    entry = page.get_by_role("row", name=re.compile(re.escape(address)))
    expect(entry).to_contain_text("asked by phone")
    expect(page.get_by_text(f"Suppressed {address} (email).")).to_be_visible()
    entry.get_by_role("button", name=f"Remove {address} (email)").click()
    expect(page.get_by_text(f"Removed {address} (email)")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(re.escape(address)))).to_have_count(0)
