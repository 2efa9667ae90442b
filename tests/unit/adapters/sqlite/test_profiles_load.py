"""The profile store's start: every stored profile's id comes back, read in keyset pages; lookups while they are
read go to the store."""

import asyncio

import msgspec
import pytest

from adapters.sqlite import migrations, profiles
from adapters.sqlite.db import Database
from adapters.sqlite.profiles import SqliteProfileStore
from state.profiles import Profile


async def test_every_stored_id_comes_back_across_pages(tmp_path, monkeypatch):
    db = Database(tmp_path / "records.db", migrations.RECORDS)
    await db.open()
    ids = [f"user-{n}" for n in range(25)]
    await db.write([("INSERT INTO profiles(user_id, body, updated_at) VALUES (?, '{}', 0)", (i,)) for i in ids])
    monkeypatch.setattr(profiles, "LOAD_PAGE", 7)  # four pages, the last one short
    store = SqliteProfileStore(db)
    await store.load()
    assert all(i in store for i in ids) and "user-25" not in store
    # The plain read of every id agrees.
    assert {r[0] for r in await db.fetchall("SELECT user_id FROM profiles")} == {i for i in ids if i in store}
    await db.close()


async def test_lookups_during_the_load_read_the_store_and_changes_meanwhile_are_kept(tmp_path, monkeypatch):
    """A server reads the ids after it is ready: meanwhile a stored profile is found, and the profiles written
    or deleted while the pages are read are what the set says once it is complete."""
    db = Database(tmp_path / "records.db", migrations.RECORDS)
    await db.open()
    await db.write([("INSERT INTO profiles(user_id, body, updated_at) VALUES (?, ?, 0)",
                     (f"user-{n:02d}", msgspec.json.encode(Profile(f"user-{n:02d}")).decode())) for n in range(20)])
    monkeypatch.setattr(profiles, "LOAD_PAGE", 5)
    store = SqliteProfileStore(db)
    fetchall, first_page_read, go_on = db.fetchall, asyncio.Event(), asyncio.Event()

    async def paused_after_the_first_page(sql, params=()):
        rows = await fetchall(sql, params)
        if "ORDER BY user_id LIMIT" in sql:
            first_page_read.set()
            await go_on.wait()
        return rows

    monkeypatch.setattr(db, "fetchall", paused_after_the_first_page)
    loading = asyncio.create_task(store.load())
    await first_page_read.wait()
    assert store.loading and "user-17" in store and "nobody" in store  # anyone may have one: read, not guessed
    assert (await store.get("user-17")).user_id == "user-17" and await store.get("nobody") is None
    # Written and deleted while the pages are read, before and after the page they fall in.
    await store.put(Profile("user-00b"), Profile("user-99"), Profile("user-03"))
    await store.forget("user-01")
    await store.forget("user-18")
    await store.forget("user-03")  # written, then deleted: the latest change holds
    await store.put(Profile("user-18"))  # deleted, then written again
    go_on.set()
    await loading
    assert not store.loading and "nobody" not in store and await store.get("nobody") is None
    stored = {r[0] for r in await fetchall("SELECT user_id FROM profiles")}
    assert stored == {f"user-{n:02d}" for n in range(20) if n not in (1, 3)} | {"user-00b", "user-99"}
    assert all(i in store for i in stored)
    assert not any(i in store for i in ("user-01", "user-03", "user-20"))
    await db.close()


async def test_a_failed_load_leaves_lookups_reading_the_store(tmp_path, monkeypatch):
    db = Database(tmp_path / "records.db", migrations.RECORDS)
    await db.open()
    store = SqliteProfileStore(db)
    await store.load()
    await db.write([("INSERT INTO profiles(user_id, body, updated_at) VALUES ('late', ?, 0)",
                     (msgspec.json.encode(Profile("late")).decode(),))])
    assert "late" not in store  # written behind the store's back: not known (the test's doing)
    fetchall = db.fetchall

    async def broken(sql, params=()):
        raise OSError("disk I/O error")

    monkeypatch.setattr(db, "fetchall", broken)
    with pytest.raises(OSError):
        await store.load()
    monkeypatch.setattr(db, "fetchall", fetchall)
    assert store.loading and (await store.get("late")).user_id == "late"
    await store.load()
    assert not store.loading and "late" in store
    await db.close()


async def test_before_any_load_every_lookup_reads_the_store(tmp_path):
    """A server is ready before its warm-up reaches the ids (the live orders load first): lookups read the store."""
    db = Database(tmp_path / "records.db", migrations.RECORDS)
    await db.open()
    await db.write([("INSERT INTO profiles(user_id, body, updated_at) VALUES ('early', ?, 0)",
                     (msgspec.json.encode(Profile("early")).decode(),))])
    store = SqliteProfileStore(db)
    assert store.loading and "early" in store
    assert (await store.get("early")).user_id == "early" and await store.get("nobody") is None
    await db.close()
