"""Personal data at rest: after a customer's whole life in Contrail (an account, a paid order, loyalty contact
details, ingested events, mail sent, suppressions), the database files hold none of it in the clear; a restart
reads it all back; erasure removes it and keeps the money."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.main import PLATFORM, create_app
from tests.conftest import ROOT, make_config
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


async def a_customers_life(client, clock, relay, staff) -> tuple[str, str]:
    """The account, a paid order (its confirmation mailed), contact details, events, suppressions: their ids."""
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
    return account_id, order["id"]


async def _lived(aiohttp_client, tmp_path, clock, relay):
    """The app, an admin key's headers, and a customer who has lived a whole flow in it: (config, client, staff,
    account id, order id)."""
    config = make_config(tmp_path, smtp__port=relay.port, smtp__retry_backoff_s=0.05)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    staff = {"X-Api-Key": key}
    account_id, order_id = await a_customers_life(client, clock, relay, staff)
    return config, client, staff, account_id, order_id


async def test_the_database_files_hold_no_personal_data_in_the_clear_and_a_restart_reads_it_all(
        aiohttp_client, tmp_path, clock, relay):
    config, client, staff, account_id, _ = await _lived(aiohttp_client, tmp_path, clock, relay)
    data_dir = Path(config.storage.data_dir)
    if config.storage.backend == "sqlite":  # on PostgreSQL (--storage=postgres) the records are not in data_dir
        assert leaked(data_dir) and not any(leaked(data_dir).values()), leaked(data_dir)
    await client.close()
    assert not any(leaked(data_dir).values()), leaked(data_dir)  # nor after the last checkpoint

    # Everything reads back after a restart: she signs in by her email, her details and the suppressions hold.
    client = await aiohttp_client(create_app(config, clock=clock))
    resp = await client.post("/v1/auth/token", json={"email": f"  {EMAIL.upper()} ", "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    resp = await client.get(f"/v1/loyalty/balance/{account_id}", headers=staff)
    assert resp.status == 200
    member = await client.app[PLATFORM].loyalty.member(account_id)
    assert member is not None and (member.email, member.phone, member.push_token) == (EMAIL, PHONE, PUSH)
    listed = await (await client.get("/v1/suppressions", headers=staff)).json()
    assert {s["identifier"] for s in listed["items"]} == {PHONE, "grace.hopper@example.com"}
    # A second account cannot take her email, however it is spelt.
    resp = await client.post("/v1/accounts", json={"email": EMAIL.upper(), "password": PASSWORD})
    assert resp.status == 409


async def test_erasure_removes_her_personal_data_everywhere_keeps_the_money_and_survives_a_restart(
        aiohttp_client, tmp_path, clock, relay):
    config, client, staff, account_id, order_id = await _lived(aiohttp_client, tmp_path, clock, relay)
    platform = client.app[PLATFORM]
    me = {"Authorization": f"Bearer {(await (await client.post('/v1/auth/token', json={'email': EMAIL, 'password': PASSWORD})).json())['access_token']}"}  # noqa: E501
    stars = (await (await client.get(f"/v1/loyalty/balance/{account_id}", headers=staff)).json())

    other = await client.post("/v1/accounts", json={"email": "eve@example.com", "password": PASSWORD})
    eve = {"Authorization": f"Bearer {(await (await client.post('/v1/auth/token', json={'email': 'eve@example.com', 'password': PASSWORD})).json())['access_token']}"}  # noqa: E501
    assert (await client.delete(f"/v1/customers/{account_id}", headers=eve)).status == 403
    assert (await client.delete(f"/v1/customers/{account_id}")).status == 401
    assert (await client.delete("/v1/customers/usr_nobody", headers=staff)).status == 404
    assert (await other.json())["id"] != account_id

    resp = await client.delete(f"/v1/customers/{account_id}", headers=me)  # she erases herself
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert done["member_forgotten"] and done["suppressions_anonymised"] == 1 and done["events_anonymised"] >= 3
    assert done["mail_rows_blanked"] >= 2 and done["replies_deleted"] >= 1  # the confirmation and its `sent` event

    # Nobody can sign in as her, her token stops working, a second erasure finds no customer.
    assert (await client.post("/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})).status == 401
    assert (await client.get(f"/v1/loyalty/balance/{account_id}", headers=me)).status == 401
    assert (await client.delete(f"/v1/customers/{account_id}", headers=staff)).status == 404
    # The money stays: the order, its payment and her stars.
    resp = await client.get(f"/v1/orders/{order_id}", headers=staff)
    body = await resp.json()
    assert resp.status == 200 and body["state"] == "FULFILLED" and body["payment"]["status"] == "approved"
    assert (await (await client.get(f"/v1/loyalty/balance/{account_id}", headers=staff)).json()) == stars
    # Her phone stays suppressed, under its keyed hash only; the other entry is untouched.
    listed = {s["identifier"] for s in (await (await client.get("/v1/suppressions", headers=staff)).json())["items"]}
    assert PHONE not in listed and "grace.hopper@example.com" in listed
    assert await platform.suppression.is_suppressed([PHONE], "sms") is not None
    # No analytics event names her any more (but the audit trail's record of the erasure, by account id).
    await platform.event_log.flush()
    events = await platform.event_log.query(None, None, 0, 100_000)
    assert events and not [e for e in events if account_id.encode() in bytes(e.payload) and e.type != "AdminAction"]
    audit = await (await client.get("/v1/admin/audit", headers=staff)).json()
    assert any(e["action"] == "customer.erase" and e["target"] == account_id for e in audit["items"])
    await client.close()
    assert not any(leaked(Path(config.storage.data_dir)).values())

    # After a restart nothing comes back, and her email can open a new account.
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    assert await platform.loyalty.member(account_id) is None
    assert await platform.suppression.is_suppressed([PHONE], "sms") is not None
    assert (await client.post("/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})).status == 401
    resp = await client.post("/v1/accounts", json={"email": EMAIL, "password": PASSWORD})
    assert resp.status == 201 and (await resp.json())["id"] != account_id


SEALED = {"accounts": "email", "loyalty_members": "body", "suppressions": "body", "outbox": "body",
          "email_events": "body", "idempotency": "body"}


async def key_ids_in_use(db) -> set[str]:
    """The key ids of every sealed value in the database (rows not sealed at all show as "plain")."""
    ids = set()
    for table, column in SEALED.items():
        for (value,) in await db.fetchall(f"SELECT {column} FROM {table}"):
            text = bytes(value).decode("latin-1") if not isinstance(value, str) else value
            if text:  # an in-flight idempotency claim holds nothing
                ids.add(text.split(":")[1] if text.startswith("pii1:") else "plain")
    return ids


async def test_a_rotated_key_re_encrypts_every_row_in_the_background_and_every_record_still_reads(
        aiohttp_client, tmp_path, clock, relay):
    config, client, staff, account_id, _ = await _lived(aiohttp_client, tmp_path, clock, relay)
    platform = client.app[PLATFORM]
    old = platform.pii.current_id
    assert await key_ids_in_use(platform.records_db) == {old}

    # The operator's command, from another process, while the server runs.
    run = subprocess.run([sys.executable, "-m", "app", "rotate-pii-key"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                      "CONTRAIL__STORAGE__DATA_DIR": config.storage.data_dir})
    assert run.returncode == 0, run.stderr
    assert f"(was {old})" in run.stdout

    # Until the server's pass looks, every record reads, and what is written meanwhile reads too.
    assert (await client.post("/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})).status == 200
    resp = await client.post("/v1/suppressions", headers=staff, json={"entries": [{"identifier": "new@example.com"}]})
    assert resp.status in (200, 201)
    done = await platform.rewrap_pii_once()  # the supervised task's tick
    new = platform.pii.current_id
    assert new != old and sum(done.values()) >= 7, done
    assert await key_ids_in_use(platform.records_db) == {new}  # no row is left under the old key
    assert await platform.rewrap_pii_once(force=True) == dict.fromkeys(SEALED, 0)  # nothing more to do
    assert (await client.post("/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})).status == 200
    await client.close()

    # After a restart everything reads under the new key.
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    assert (await client.post("/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})).status == 200
    member = await platform.loyalty.member(account_id)
    assert member is not None and member.phone == PHONE
    assert await platform.suppression.is_suppressed(["NEW@example.com"], "email") is not None
    assert platform.pii.current_id == new


def test_the_rotation_command_refuses_keys_that_come_from_config(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONTRAIL__STORAGE__DATA_DIR": str(tmp_path),
           "CONTRAIL__PII__KEY": base64.b64encode(b"k" * 32).decode(),
           "CONTRAIL__PII__LOOKUP_KEY": base64.b64encode(b"l" * 32).decode()}
    run = subprocess.run([sys.executable, "-m", "app", "rotate-pii-key"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 2 and "pii.previous_keys" in run.stderr
    run = subprocess.run([sys.executable, "-m", "app", "rotate-pii-key"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**env, "CONTRAIL__PII__LOOKUP_KEY": "c2hvcnQ="})
    assert run.returncode == 2 and "pii.lookup_key" in run.stderr and "32 random bytes" in run.stderr
