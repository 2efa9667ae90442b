"""The profile store's start: every stored profile's id comes back, read in keyset pages."""

from adapters.sqlite import migrations, profiles
from adapters.sqlite.db import Database
from adapters.sqlite.profiles import SqliteProfileStore


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
