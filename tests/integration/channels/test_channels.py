"""Email activation over a real SMTP server on loopback, suppression, unsubscribe, tracking links."""

import asyncio
from urllib.parse import parse_qs, urlparse

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import CONFORMANCE, make_config
from tests.integration.channels.helpers import Relay, activate


@pytest.fixture
async def relay():
    r = await Relay().start()
    yield r
    await r.stop()


@pytest.fixture
async def shop(aiohttp_client, tmp_path, clock, relay):
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05, sendgrid__allow_unsigned="true")
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    await client.put("/v1/loyalty/members/lia", json={"email": "Lia@Example.com", "preferred_channel": "email"},
                     headers=staff)
    return client, staff


async def test_email_reaches_a_real_smtp_server_with_the_right_headers(shop, relay):
    client, staff = shop
    result = await activate(client, staff)
    assert result["channel"] == "email" and result["status"] == "queued"
    [mail] = await relay.wait_for(1)
    assert mail["To"] == "Lia@Example.com" and mail["Subject"] == "Your Lisbon weekend"
    assert mail["Message-ID"] == f"<{result['provider_message_id']}@contrail>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Links follow the port the server really listens on.
    assert mail["List-Unsubscribe"].startswith(f"<http://127.0.0.1:{client.port}/v1/email/unsubscribe?")
    text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    assert "Fly to Lisbon from $49." in text and "Unsubscribe:" in text
    assert "/v1/email/open/" in html and "/v1/email/click/" in html and "fly.contrail.example" in html


async def test_suppressed_and_unsubscribed_addresses_receive_nothing(shop, relay):
    client, staff = shop
    await activate(client, staff)
    [mail] = await relay.wait_for(1)
    unsubscribe = mail["List-Unsubscribe"].strip("<>").replace(f"http://127.0.0.1:{client.port}", "")
    assert (await client.post(unsubscribe.replace("t=", "t=0"), data="List-Unsubscribe=One-Click")).status == 404
    page = await client.get(unsubscribe)
    assert page.status == 200 and "<form" in await page.text()
    resp = await client.post(unsubscribe, data="List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 200
    listed = await (await client.get("/v1/suppressions", params={"identifier": "lia@example.com"},
                                     headers=staff)).json()
    assert [(s["channel"], s["reason"]) for s in listed["items"]] == [("email", "unsubscribe")]
    again = await activate(client, staff)
    assert again["status"] == "suppressed"
    # A manual, channel-wide entry by user id works the same way, and can be lifted.
    await client.put("/v1/loyalty/members/max", json={"email": "max@example.com"}, headers=staff)
    add = await client.post("/v1/suppressions", headers=staff,
                            json={"entries": [{"identifier": "max", "channel": "all"}]})
    assert add.status == 201
    assert (await activate(client, staff, user_id="max"))["status"] == "suppressed"
    lift = await client.request("DELETE", "/v1/suppressions", headers=staff,
                                json={"entries": [{"identifier": "max", "channel": "all"}]})
    assert (await lift.json())["changed"] == 1
    assert (await activate(client, staff, user_id="max"))["status"] == "queued"
    await relay.wait_for(2)
    await asyncio.sleep(0.2)
    assert [m["To"] for m in relay.messages] == ["Lia@Example.com", "max@example.com"]
    bad = await client.post("/v1/suppressions", headers=staff,
                            json={"entries": [{"identifier": "x", "channel": "fax"}]})
    assert bad.status == 400


async def test_opens_and_clicks_are_recorded_and_links_are_signed(shop, relay):
    client, staff = shop
    result = await activate(client, staff)
    [mail] = await relay.wait_for(1)
    html = mail.get_body(("html",)).get_content()
    click = html.split('href="')[1].split('"')[0].replace("&amp;", "&").replace(f"http://127.0.0.1:{client.port}", "")
    target = parse_qs(urlparse(click).query)["u"][0]
    assert target == "https://fly.contrail.example/lis?x=1&y=2"
    resp = await client.get(click, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == target
    forged = click.replace("fly.contrail.example", "evil.example")
    assert (await client.get(forged, allow_redirects=False)).status == 404
    pixel = await client.get(f"/v1/email/open/{result['provider_message_id']}.gif")
    assert pixel.status == 200 and pixel.content_type == "image/gif"
    events = await client.app[PLATFORM].outbox_store.events(result["activation_id"])
    assert sorted(e.kind for e in events) == ["click", "open", "sent"]


async def test_a_relay_that_is_down_gets_the_message_later(aiohttp_client, tmp_path, clock):
    relay = Relay()
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    await client.put("/v1/loyalty/members/ned", json={"email": "ned@example.com"}, headers=staff)
    result = await activate(client, staff, user_id="ned")
    await asyncio.sleep(0.3)  # the relay refuses connections: the message waits in the outbox
    stored = await client.app[PLATFORM].outbox_store.get(result["provider_message_id"])
    assert stored.state == "pending" and stored.attempts >= 1 and stored.last_error
    await relay.start()
    try:
        [mail] = await relay.wait_for(1, timeout=10)
        assert mail["To"] == "ned@example.com"
    finally:
        await relay.stop()


async def test_the_daily_cap_and_unreachable_customers(shop, relay):
    client, staff = shop
    statuses = [(await activate(client, staff))["status"] for _ in range(4)]
    assert statuses == ["queued", "queued", "queued", "capped"]
    assert (await activate(client, staff, user_id="no-contact"))["status"] == "unreachable"


SENDGRID = CONFORMANCE / "sendgrid"
EVENT_FILES = sorted(p for p in SENDGRID.glob("sendgrid_event_*.json"))


async def test_sendgrid_conformance_events_are_recorded_once(shop):
    client, staff = shop
    assert len(EVENT_FILES) >= 5
    for path in EVENT_FILES:
        raw = path.read_bytes()
        first = await client.post("/v1/webhooks/sendgrid", data=raw, headers={"Content-Type": "application/json"})
        body = await first.json()
        assert first.status == 200 and body["recorded"] >= 1 and body["ignored"] == 0, (path.name, body)
        again = await (await client.post("/v1/webhooks/sendgrid", data=raw)).json()
        assert again["recorded"] == 0 and again["duplicate"] == body["recorded"] + body["duplicate"], path.name
    report = await (await client.get("/v1/channels/email/analytics", headers=staff)).json()
    assert report["bounces"] >= 2 and report["blocked"] == 1 and report["spam_reports"] == 1
    # Counted per message: the sample's unsubscribe and group unsubscribe are about one message.
    assert report["clicks"] >= 3 and report["opens"] >= 1 and report["unsubscribes"] == 1
    # Hard bounces, spam reports and unsubscribes suppress; a blocked message does not by itself.
    suppressed = await (await client.get("/v1/suppressions", params={"identifier": "example@test.com"},
                                         headers=staff)).json()
    assert [s["channel"] for s in suppressed["items"]] == ["email"]
    bad = await client.post("/v1/webhooks/sendgrid", data=b'{"event": "open"}')
    assert bad.status == 400 and "array" in (await bad.json())["error"]["message"]


async def test_custom_args_tie_sendgrid_events_to_the_activation(shop):
    client, staff = shop
    events = [{"email": "a@example.com", "event": "delivered", "sg_event_id": "e1", "activation_id": "act_1",
               "timestamp": 1},
              {"email": "a@example.com", "event": "open", "sg_event_id": "e2", "activation_id": "act_1",
               "timestamp": 2},
              {"email": "a@example.com", "event": "open", "sg_event_id": "e3", "activation_id": "act_1",
               "timestamp": 3},
              {"email": "a@example.com", "event": "click", "sg_event_id": "e4", "activation_id": "act_1",
               "url": "https://x.example", "timestamp": 4}]
    await client.post("/v1/webhooks/sendgrid", json=events)
    report = await (await client.get("/v1/channels/email/analytics/act_1", headers=staff)).json()
    assert (report["delivered"], report["opens"], report["unique_opens"], report["clicks"]) == (1, 2, 1, 1)
    assert report["open_rate"] == 1.0 and report["click_rate"] == 1.0


async def test_signed_webhooks_are_verified(aiohttp_client, tmp_path, clock):
    import json as jsonlib
    vector = jsonlib.loads((SENDGRID / "sendgrid_signed_webhook_test_vector.json").read_text())
    config = make_config(tmp_path, sendgrid__verification_key=vector["public_key_b64_der"])
    client = await aiohttp_client(create_app(config, clock=clock))
    headers = {"X-Twilio-Email-Event-Webhook-Signature": vector["header_X-Twilio-Email-Event-Webhook-Signature"],
               "X-Twilio-Email-Event-Webhook-Timestamp": vector["header_X-Twilio-Email-Event-Webhook-Timestamp"]}
    raw = vector["raw_body"].encode()
    ok = await client.post("/v1/webhooks/sendgrid", data=raw, headers=headers)
    assert ok.status == 200 and (await ok.json())["recorded"] == 1
    tampered = await client.post("/v1/webhooks/sendgrid", data=raw.replace(b"dropped", b"delivered"), headers=headers)
    assert tampered.status == 403
    unsigned = await client.post("/v1/webhooks/sendgrid", data=raw)
    assert unsigned.status == 403


async def test_unsigned_sendgrid_webhooks_are_refused_unless_allowed(client):
    """Unsigned, anyone could report any address as bounced and have it suppressed."""
    raw = (SENDGRID / "sendgrid_event_bounce_and_blocked.json").read_bytes()
    resp = await client.post("/v1/webhooks/sendgrid", data=raw)
    error = (await resp.json())["error"]
    assert resp.status == 403 and "sendgrid.verification_key" in error["message"]
    assert await client.app[PLATFORM].suppression_store.page(None, 10) == []


async def test_custom_args_sent_with_mail_come_back_on_the_events(shop):
    import json as jsonlib
    client, _ = shop
    request = jsonlib.loads((SENDGRID / "sendgrid_mail_send_v3_custom_args_request.json").read_text())
    custom_args = request["personalizations"][0]["custom_args"]
    await client.post("/v1/webhooks/sendgrid", data=(SENDGRID / "sendgrid_event_custom_args_click.json").read_bytes())
    [event] = [e for e in await client.app[PLATFORM].outbox_store.events(None) if e.kind == "click"]
    assert {k: event.details[k] for k in custom_args} == custom_args


async def test_the_embedded_sink_shows_sent_mail(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, smtp__port=0, smtp__embedded_sink="true")
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    await client.put("/v1/loyalty/members/ola", json={"email": "ola@example.com"}, headers=staff)
    result = await activate(client, staff, user_id="ola")
    for _ in range(100):
        box = await (await client.get("/v1/admin/mailbox", headers=staff)).json()
        if box["items"]:
            break
        await asyncio.sleep(0.02)
    [mail] = box["items"]
    assert mail["to"] == ["ola@example.com"] and mail["message_id"] == f"<{result['provider_message_id']}@contrail>"
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_non_ascii_subjects_and_bodies_arrive_intact(shop, relay):
    client, staff = shop
    await activate(client, staff, subject="Férias em Lisboa ✈", text="Olá! Voos desde 49 €.",
                   html="<p>Olá! <b>Voos</b> desde 49 €.</p>")
    [mail] = await relay.wait_for(1)
    assert mail["Subject"] == "Férias em Lisboa ✈"
    assert "Olá! Voos desde 49 €." in mail.get_body(("plain",)).get_content()
    assert "<b>Voos</b> desde 49 €" in mail.get_body(("html",)).get_content()
    bad = await client.post("/v1/channels/activate", headers=staff,
                            json={"user_id": "lia", "subject": "two\r\nBcc: x@evil.example", "text": "x"})
    assert bad.status == 400


async def test_the_daily_cap_holds_across_a_restart(aiohttp_client, tmp_path, clock, relay):
    config = make_config(tmp_path, smtp__port=relay.port, channels__max_per_customer_per_day=2)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    await client.put("/v1/loyalty/members/wes", json={"email": "wes@example.com"}, headers=staff)
    assert [(await activate(client, staff, user_id="wes"))["status"] for _ in range(2)] == ["queued", "queued"]
    await client.close()
    client = await aiohttp_client(create_app(config, clock=clock))
    assert (await activate(client, staff, user_id="wes"))["status"] == "capped"
    clock.advance(86_400)
    assert (await activate(client, staff, user_id="wes"))["status"] == "queued"


async def test_memory_holds_at_most_the_queue_capacity_and_the_rest_waits_in_the_outbox(aiohttp_client, tmp_path,
                                                                                         clock):
    relay = Relay()  # down at first: nothing leaves
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05, smtp__max_attempts=1000,
                         smtp__queue_capacity=3)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    sent = [f"p{k:02d}@example.com" for k in range(25)]
    for k, to in enumerate(sent[:15]):
        await platform.email.enqueue(to, f"Trip {k}", "See you on board.")
    await asyncio.sleep(0.2)
    assert platform.email.held == 3
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_queue_depth{queue="email_outbox"} 3.0' in metrics
    await client.close()
    # A restart reads back as much as memory holds; the rest is read as the sender catches up.
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    assert platform.email.held == 3
    for k, to in enumerate(sent[15:], start=15):
        await platform.email.enqueue(to, f"Trip {k}", "See you on board.")
    assert platform.email.held == 3
    await relay.start()
    try:
        mails = await relay.wait_for(25, timeout=20)
        assert sorted(m["To"] for m in mails) == sent  # each once
        # Those read back from the outbox go oldest first (a message at most a few places from its turn: the
        # sender's four connections and the three held overlap). The three held across the restart failed while
        # the relay was down and wait out their own backoff, which grows with each failure: they may come last.
        rest = [m["To"] for m in mails if m["To"] not in sent[:3]]
        assert all(abs(sent[3:].index(to) - i) <= 6 for i, to in enumerate(rest)), rest
        for _ in range(50):
            if platform.email.held == 0:
                break
            await asyncio.sleep(0.05)
        assert platform.email.held == 0
        (pending,), = await platform.records_db.fetchall("SELECT count(*) FROM outbox WHERE state = 'pending'")
        assert pending == 0
    finally:
        await relay.stop()
