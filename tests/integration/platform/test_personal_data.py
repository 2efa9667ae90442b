"""Personal data at rest: after a customer's whole life in Contrail (an account, a paid order, loyalty contact
details, ingested events, mail sent, suppressions), the database files hold none of it in the clear; a restart
reads it all back; erasure removes it and keeps the money."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import make_config
from tests.integration.channels.helpers import Relay
from tests.integration.retail.helpers import booked, pay, seed_catalog

EMAIL = "Ada.Lovelace@Example.com"
PHONE = "+351912345678"
PUSH = "push-token-ada-4f9c2e"
SECRETS = [b"ada.lovelace@example.com", b"Lovelace", b"lovelace", PHONE.encode(), PHONE[1:].encode(), PUSH.encode(),
           b"grace.hopper@example.com"]
PASSWORD = "correct horse battery"


@pytest.fixture
async def relay():
    r = await Relay().start()
    yield r
    await r.stop()


def leaked(data_dir: Path) -> dict[str, list[bytes]]:
    """Which personal values each database file (and its WAL) holds in plain bytes."""
    found = {}
    for path in sorted(data_dir.iterdir()):
        if path.name.startswith(("contrail.db", "events.db")):
            data = path.read_bytes()
            found[path.name] = [s for s in SECRETS if s in data]
    return found


async def a_customers_life(client, clock, relay, staff) -> str:
    """The account, a paid order (its confirmation mailed), contact details, events, suppressions: the id."""
    platform = client.app[PLATFORM]
    await seed_catalog(platform, clock)
    resp = await client.post("/v1/accounts", json={"email": EMAIL, "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    account_id = (await resp.json())["id"]
    resp = await client.post("/v1/auth/token", json={"email": EMAIL.lower(), "password": PASSWORD})
    assert resp.status == 200
    me = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    # Stored for replay with the Idempotency-Key: the response names her email and phone.
    resp = await client.put(f"/v1/loyalty/members/{account_id}", headers={**me, "Idempotency-Key": "m1"},
                            json={"email": EMAIL, "phone": PHONE, "push_token": PUSH, "birthday": "12-10",
                                  "preferred_channel": "email"})
    assert resp.status == 200, await resp.text()
    order = await booked(client, me, clock, passengers=2)
    assert (await pay(client, me, order["id"], key="pay-1")).status == 200
    resp = await client.post("/v1/channels/ingest", headers=staff, json=[
        {"source": "web", "type": "page_view", "user_id": account_id, "category": "beach"},
        {"source": "pos", "type": "purchase", "user_id": account_id, "amount_cents": 1200, "transaction_id": "t1"}])
    assert (await resp.json())["accepted"] == 2
    resp = await client.post("/v1/suppressions", headers=staff, json={"entries": [
        {"identifier": PHONE, "channel": "sms"}, {"identifier": "grace.hopper@example.com", "channel": "email"}]})
    assert resp.status in (200, 201), await resp.text()
    messages = await relay.wait_for(1)
    assert messages and messages[0]["To"].lower() == EMAIL.lower()  # the confirmation went out
    await platform.event_log.flush()
    return account_id


async def test_the_database_files_hold_no_personal_data_in_the_clear_and_a_restart_reads_it_all(
        aiohttp_client, tmp_path, clock, relay):
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    account_id = await a_customers_life(client, clock, relay, staff)
    data_dir = Path(config.storage.data_dir)
    assert leaked(data_dir) and not any(leaked(data_dir).values()), leaked(data_dir)
    await client.close()
    assert not any(leaked(data_dir).values()), leaked(data_dir)  # nor after the last checkpoint

    # Everything reads back after a restart: she signs in by her email, her details and the suppressions hold.
    client = await aiohttp_client(create_app(config, clock=clock))
    resp = await client.post("/v1/auth/token", json={"email": f"  {EMAIL.upper()} ", "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    resp = await client.get(f"/v1/loyalty/balance/{account_id}", headers=staff)
    assert resp.status == 200
    member = client.app[PLATFORM].loyalty.member(account_id)
    assert member is not None and (member.email, member.phone, member.push_token) == (EMAIL, PHONE, PUSH)
    listed = await (await client.get("/v1/suppressions", headers=staff)).json()
    assert {s["identifier"] for s in listed["items"]} == {PHONE, "grace.hopper@example.com"}
    # A second account cannot take her email, however it is spelt.
    resp = await client.post("/v1/accounts", json={"email": EMAIL.upper(), "password": PASSWORD})
    assert resp.status == 409
