"""An erasure touches only the erased customer's own data. A customer can type anyone's address into their loyalty
contact details (it is never verified): erasing that customer must not blank, cancel or anonymise the mail, email
events or suppressions of the person the address belongs to, and still erases everything that is their own."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.channels.helpers import Relay, activate
from tests.integration.retail.helpers import booked, pay, seed_catalog

PASSWORD = "correct horse battery"
VICTIM = "traveller@example.com"
ATTACKER = "mallory@example.com"


@pytest.fixture
async def relay():
    r = await Relay().start()
    yield r
    await r.stop()


async def _account(client, email: str) -> tuple[str, dict[str, str]]:
    resp = await client.post("/v1/accounts", json={"email": email, "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    account_id = (await resp.json())["id"]
    resp = await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return account_id, {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def _sent(platform, relay, count: int) -> None:
    """Wait until the relay has `count` messages and the outbox shows none pending."""
    await relay.wait_for(count)
    for _ in range(250):
        pending = await platform.records_db.fetchall("SELECT id FROM outbox WHERE state = 'pending'")
        if not pending:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"mail still pending: {pending}")


async def _rows(platform) -> tuple[dict, dict]:
    outbox = {r[0]: tuple(r) for r in await platform.records_db.fetchall(
        "SELECT id, state, body, recipient, user_id FROM outbox")}
    events = {r[0]: tuple(r) for r in await platform.records_db.fetchall(
        "SELECT id, message_id, body, email_hash FROM email_events")}
    return outbox, events


async def _webhook(client, events: list[dict]) -> None:
    resp = await client.post("/v1/webhooks/sendgrid", data=json.dumps(events),
                             headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["recorded"] == len(events)


async def test_a_customer_who_typed_in_someone_elses_address_erases_only_their_own_mail(
        aiohttp_client, tmp_path, clock, relay):
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05,
                         sendgrid__allow_unsigned="true")
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    await seed_catalog(platform, clock)

    # The victim: an order confirmation and a campaign mail, sent; events about them and one about their address
    # that SendGrid could not tie to a message of ours; a suppression of their address on another channel's
    # reason (an unsubscribe from a list elsewhere).
    victim, victim_me = await _account(client, VICTIM)
    resp = await client.put(f"/v1/loyalty/members/{victim}", headers=victim_me,
                            json={"email": VICTIM, "preferred_channel": "email"})
    assert resp.status == 200, await resp.text()
    order = await booked(client, victim_me, clock)
    assert (await pay(client, victim_me, order["id"])).status == 200
    campaign = await activate(client, staff, user_id=victim)
    await _sent(platform, relay, 2)

    # The attacker: their own confirmation (to their account's address), then they set their loyalty email to the
    # victim's address (as spelt differently) and a campaign mails them there.
    attacker, attacker_me = await _account(client, ATTACKER)
    order = await booked(client, attacker_me, clock)
    assert (await pay(client, attacker_me, order["id"])).status == 200
    await _sent(platform, relay, 3)
    resp = await client.put(f"/v1/loyalty/members/{attacker}", headers=attacker_me,
                            json={"email": VICTIM.upper(), "preferred_channel": "email"})
    assert resp.status == 200, await resp.text()
    theirs = await activate(client, staff, user_id=attacker)
    await _sent(platform, relay, 4)

    mail = {m.id: m for m in await _all_mail(platform)}
    victims = {i for i, m in mail.items() if m.user_id == victim}
    attackers = {i for i, m in mail.items() if m.user_id == attacker}
    assert len(victims) == 2 and campaign["provider_message_id"] in victims
    assert len(attackers) == 2 and theirs["provider_message_id"] in attackers
    assert mail[theirs["provider_message_id"]].to == VICTIM.upper()  # the attacker's mail went to the victim
    await _webhook(client, [
        *({"event": "open", "email": mail[i].to, "contrail_message_id": i, "sg_event_id": f"open-{i}",
           "timestamp": int(clock.now())} for i in sorted(victims | attackers)),
        {"event": "delivered", "email": VICTIM, "sg_event_id": "elsewhere-victim", "timestamp": int(clock.now())},
        {"event": "delivered", "email": ATTACKER, "sg_event_id": "elsewhere-attacker",
         "timestamp": int(clock.now())}])
    resp = await client.post("/v1/suppressions", headers=staff,
                             json={"entries": [{"identifier": VICTIM, "channel": "email"}]})
    assert resp.status in (200, 201), await resp.text()

    outbox, events = await _rows(platform)
    victim_events = {i for i, e in events.items() if e[1] in victims or i.startswith("sg:elsewhere-victim")}
    attacker_events = {i for i, e in events.items() if e[1] in attackers or i.startswith("sg:elsewhere-attacker")}
    assert len(victim_events) == 5 and len(attacker_events) == 5  # a sent and an open per message, and the other

    resp = await client.delete(f"/v1/customers/{attacker}", headers=attacker_me)
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert done["mail_rows_blanked"] == len(attackers) + len(attacker_events), done
    assert done["mail_cancelled"] == 0 and done["suppressions_anonymised"] == 0, done

    after_outbox, after_events = await _rows(platform)
    # The victim's mail and the events about it are exactly as they were.
    assert {i: after_outbox[i] for i in victims} == {i: outbox[i] for i in victims}
    assert {i: after_events[i] for i in victim_events} == {i: events[i] for i in victim_events}
    for i in victims:
        message = await platform.outbox_store.get(i)
        assert message is not None and message.to == VICTIM and message.user_id == victim
    # Everything of the attacker's is blanked, the mail they got at the victim's address included.
    for i in attackers:
        _, state, _, recipient, user_id = after_outbox[i]
        message = await platform.outbox_store.get(i)
        assert (recipient, user_id, state) == (None, None, "sent") and message is not None and message.to == ""
    for i in attacker_events:
        assert after_events[i][3] is None and after_events[i][2] != events[i][2]
    blanked = [e for e in await platform.outbox_store.events(None) if e.id in attacker_events]
    assert len(blanked) == len(attacker_events) and all(e.email is None and not e.details for e in blanked)
    # The victim's suppression is still theirs, by address; the victim still signs in.
    listed = await (await client.get("/v1/suppressions", params={"identifier": VICTIM}, headers=staff)).json()
    assert [s["identifier"] for s in listed["items"]] == [VICTIM]
    assert (await client.post("/v1/auth/token", json={"email": VICTIM, "password": PASSWORD})).status == 200


async def _all_mail(platform):
    ids = [r[0] for r in await platform.records_db.fetchall("SELECT id FROM outbox")]
    return [m for i in ids if (m := await platform.outbox_store.get(i)) is not None]


async def test_a_providers_late_report_about_an_erased_customers_mail_keeps_nothing_of_them(
        aiohttp_client, tmp_path, clock, relay):
    """SendGrid reports opens and clicks long after a message went: one that comes after the customer was erased
    is still counted (its kind and time), but its address, IP and user agent are not written back."""
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05,
                         sendgrid__allow_unsigned="true")
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    await seed_catalog(platform, clock)
    customer, me = await _account(client, VICTIM)
    order = await booked(client, me, clock)
    assert (await pay(client, me, order["id"])).status == 200
    await _sent(platform, relay, 1)
    [message] = await _all_mail(platform)
    assert (await client.delete(f"/v1/customers/{customer}", headers=me)).status == 200

    await _webhook(client, [{"event": "open", "email": VICTIM, "contrail_message_id": message.id,
                             "sg_event_id": "late-open", "timestamp": int(clock.now()), "ip": "203.0.113.7",
                             "useragent": "Mozilla/5.0", "sg_message_id": "sg-1"}])
    [late] = [e for e in await platform.outbox_store.events(None) if e.id.startswith("sg:late-open")]
    assert (late.kind, late.message_id, late.email) == ("open", message.id, None)
    assert late.details == {"contrail_message_id": message.id, "sg_event_id": "late-open",
                            "timestamp": int(clock.now()), "sg_message_id": "sg-1"}
    rows = await platform.records_db.fetchall("SELECT email_hash FROM email_events WHERE id LIKE 'sg:late-open%'")
    assert rows == [(None,)]


async def test_a_profile_write_behind_under_way_does_not_bring_an_erased_customers_profile_back(
        aiohttp_client, tmp_path, clock):
    """Ingest's profile updates are written behind in chunks; a customer erased while a write is under way (their
    update in a chunk not yet sent) has no profile afterwards, and other customers' updates are all written."""
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    customer, me = await _account(client, "viewer@example.com")
    _, admin_key = await platform.api_keys.create("ops", "admin")
    others = [f"shopper-{n}" for n in range(60)]
    events = [{"source": "web", "type": "product_view", "user_id": u, "category": "beach", "at": clock.now()}
              for u in [*others, customer]]  # the customer's update comes in the write's last chunk
    resp = await client.post("/v1/channels/ingest", json=events, headers={"X-Api-Key": admin_key})
    assert resp.status == 200, await resp.text()

    ingest, store = platform.ingest, platform.ingest._profiles
    first_put, go_on = asyncio.Event(), asyncio.Event()
    real_put = store.put

    async def put_pausing(*profiles):  # the first chunk's commit is slow: the erasure comes meanwhile
        if not first_put.is_set():
            first_put.set()
            await go_on.wait()
        await real_put(*profiles)
    store.put = put_pausing
    flushing = asyncio.create_task(ingest.flush_profiles())
    await first_put.wait()
    resp = await client.delete(f"/v1/customers/{customer}", headers=me)
    assert resp.status == 200, await resp.text()
    go_on.set()
    assert await flushing == len(others) + 1
    store.put = real_put
    assert await platform.profiles.get(customer) is None
    assert (await platform.records_db.fetchone("SELECT COUNT(*) FROM profiles WHERE user_id = ?", (customer,)))[0] == 0
    assert all([await platform.profiles.get(u) is not None for u in others])
