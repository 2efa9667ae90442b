"""The delivery store's start: the impressions within the cap windows come back in keyset pages, per user in time
order, exactly as one plain read of them gives."""

import random
from collections import defaultdict

from adapters.sqlite import delivery, migrations
from adapters.sqlite.db import Database
from adapters.sqlite.delivery import SqliteDeliveryStore


async def test_impressions_load_in_pages_as_a_plain_read_gives(tmp_path, monkeypatch):
    db = Database(tmp_path / "records.db", migrations.RECORDS)
    await db.open()
    rng = random.Random(9)
    now, keep = 100_000.0, 86_400.0
    rows = [(f"user-{rng.randrange(20)}", f"camp-{rng.randrange(5)}", now - rng.choice([keep, keep + 1, 10.0, 500.5,
                                                                                        rng.uniform(0, 2 * keep)]))
            for _ in range(500)]
    await db.write([("INSERT INTO impressions(user_id, campaign_id, at) VALUES (?, ?, ?)", r) for r in rows])
    store = SqliteDeliveryStore(db, keep_s=keep)
    monkeypatch.setattr(delivery, "LOAD_PAGE", 37)
    await store.load(now)
    plain: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for user_id, campaign_id, at in await db.fetchall(
            "SELECT user_id, campaign_id, at FROM impressions WHERE at > ? ORDER BY at, id", (now - keep,)):
        plain[user_id].append((at, campaign_id))
    assert {u: list(d) for u, d in store.impressions.items()} == dict(plain)
    assert sum(map(len, plain.values())) > 100
    await db.close()
