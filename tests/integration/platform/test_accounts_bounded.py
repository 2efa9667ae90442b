"""Accounts are held in memory only while used lately (auth.account_cache_entries): with one held, sign-in, register,
token checks and erasure read the others from the store, a second account for a stored email is refused, and a
start reads no account at all."""

from __future__ import annotations

import asyncio
import re

import pytest

from app.main import PLATFORM, create_app
from state.accounts import Account, EmailTaken
from tests.conftest import make_config

PASSWORD = "a-long-password-1"


async def _register(client, email: str) -> str:
    resp = await client.post("/v1/accounts", json={"email": email, "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def _sign_in(client, email: str) -> int | dict[str, str]:
    resp = await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    if resp.status != 200:
        return resp.status
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


@pytest.fixture
async def tiny(aiohttp_client, tmp_path, clock):
    """An app holding one account in memory, and an admin key's headers."""
    config = make_config(tmp_path, auth__account_cache_entries=1)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("crm", "admin")
    return client, {"X-Api-Key": key}


async def test_sign_in_register_and_token_checks_read_accounts_memory_does_not_hold(tiny):
    client, staff = tiny
    store = client.app[PLATFORM].account_store
    ana = await _register(client, "Ana@Example.com")
    bob = await _register(client, "bob@example.com")
    assert store.get(ana) is None and store.by_email("ana@example.com") is None  # only bob is held
    assert len(store.ids) == len(store.emails) == 1 and store.ids.evictions >= 1

    # Ana's email is held only in the store: a second account for it is refused, however it is spelt.
    resp = await client.post("/v1/accounts", json={"email": "ANA@example.com", "password": PASSWORD})
    assert resp.status == 409
    # The store's unique index refuses it too when nothing in memory knows the email (another node's write).
    store.emails.clear()
    with pytest.raises(EmailTaken):
        await store.add(Account("usr_twin", "ana@example.com", "x", "customer", 0.0))
    assert await store.fetch("usr_twin") is None

    ana_token = await _sign_in(client, "ana@example.com")  # read from the store by the email's keyed hash
    assert isinstance(ana_token, dict)
    bob_token = await _sign_in(client, "BOB@example.com")  # Ana leaves memory again
    assert isinstance(bob_token, dict) and store.get(ana) is None
    # Her token is checked against her account read from the store; then Bob's against his.
    resp = await client.get("/v1/orders", headers=ana_token)
    assert resp.status == 200, await resp.text()
    assert store.get(ana) is not None and store.get(bob) is None
    assert (await client.get("/v1/orders", headers=bob_token)).status == 200
    assert (await client.get(f"/v1/loyalty/balance/{bob}", headers=ana_token)).status == 403  # she is not Bob
    assert await _sign_in(client, "ana@example.com") != 401
    assert await _sign_in(client, "nobody@example.com") == 401
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_cache_capacity{cache="accounts"} 1.0' in metrics
    assert 'contrail_cache_entries{cache="account_emails"} 1.0' in metrics


async def test_concurrent_registrations_of_one_email_open_one_account(tiny):
    client, _ = tiny
    await _register(client, "someone@example.com")  # fills memory's one place
    statuses = await asyncio.gather(*(client.post("/v1/accounts", json={"email": "twin@example.com",
                                                                        "password": PASSWORD}) for _ in range(4)))
    assert sorted(r.status for r in statuses) == [201, 409, 409, 409]
    rows = await client.app[PLATFORM].records_db.fetchall("SELECT id FROM accounts")
    assert len(rows) == 2


async def test_erasure_of_an_account_memory_does_not_hold(tiny):
    client, staff = tiny
    store = client.app[PLATFORM].account_store
    ana = await _register(client, "ana@example.com")
    ana_token = await _sign_in(client, "ana@example.com")
    assert isinstance(ana_token, dict)
    await _register(client, "bob@example.com")
    assert store.get(ana) is None

    resp = await client.delete(f"/v1/customers/{ana}", headers=staff)
    assert resp.status == 200, await resp.text()
    # Nobody signs in as her, her token stops working, and her email can open a new account.
    assert await _sign_in(client, "ana@example.com") == 401
    assert (await client.get("/v1/orders", headers=ana_token)).status == 401
    assert (await client.delete(f"/v1/customers/{ana}", headers=staff)).status == 404
    store.ids.clear()
    store.emails.clear()
    assert (await client.get("/v1/orders", headers=ana_token)).status == 401  # read back: erased
    again = await _register(client, "ana@example.com")
    assert again != ana and isinstance(await _sign_in(client, "ana@example.com"), dict)


async def test_a_start_reads_no_account_and_the_first_use_reads_one(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    for n in range(20):
        await _register(client, f"c{n}@example.com")
    await client.close()

    app = create_app(config, clock=clock)
    platform = app[PLATFORM]
    db, reads, starting = platform.records_db, [], [False]
    fetchall, fetchone, open_storage = db.fetchall, db.fetchone, platform.open_storage

    async def fetchall_seen(sql, params=()):  # (PostgreSQL's fetchone reads through it: seen twice)
        reads.append((starting[0], sql))
        return await fetchall(sql, params)

    async def fetchone_seen(sql, params=()):
        reads.append((starting[0], sql))
        return await fetchone(sql, params)

    async def open_storage_seen():
        starting[0] = True
        try:
            return await open_storage()
        finally:
            starting[0] = False

    db.fetchall, db.fetchone, platform.open_storage = fetchall_seen, fetchone_seen, open_storage_seen
    client = await aiohttp_client(app)
    assert reads and not [sql for during, sql in reads if during and re.search(r"\bFROM accounts\b", sql)]
    assert len(platform.account_store.ids) == 0
    reads.clear()
    token = await _sign_in(client, "c7@example.com")
    assert isinstance(token, dict)
    assert (await client.get("/v1/orders", headers=token)).status == 200
    # The sign-in read her row by the email's keyed hash; the token check found her in memory. (The re-encryption
    # pass, a background task, reads the table in pages of its own: not counted here.)
    assert {sql for _, sql in reads if "FROM accounts" in sql and "password_hash" in sql} == {
        "SELECT id, email, password_hash, role, created_at FROM accounts "
        "WHERE email_hash = ? OR (email_hash IS NULL AND email = ?)"}
