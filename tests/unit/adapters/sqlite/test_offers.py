"""The SQLite offer store: an offer stored before drafts were shared still loads after the migration."""

import msgspec

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.offers import SqliteOfferStore


async def test_offers_stored_before_drafts_were_shared_still_load(tmp_path):
    """An offer row written by the schema before shared drafts holds its whole body (and a ranking the
    shopper no longer sees): after the migration it loads, unchanged where it matters."""
    old = {"id": "off_old", "owner": "acct_1", "flight_id": "CT101-test", "cabin": "economy", "passengers": 2,
           "segment": "economy", "bundle": "flight_only", "items": [], "taxes_cents": 100, "booking_fee_cents": 500,
           "total_cents": 20_600, "currency": "EUR", "conditions": {"refundable": False, "refund_penalty_cents": 0,
                                                                    "changeable": True, "change_penalty_cents": 7500},
           "created_at": 1_000.0, "expires_at": 1_900.0, "departure_at": 90_000.0, "probability": 0.3,
           "margin_cents": 2_500, "score": 750.0, "discount_percent": 0.0, "state": "ACTIVE"}
    before = Database(tmp_path / "records.db", [m for m in migrations.RECORDS if m.version < 8])
    await before.open()
    await before.write([("INSERT INTO offers(id, owner, state, expires_at, body) VALUES (?, ?, ?, ?, ?)",
                         ("off_old", "acct_1", "ACTIVE", 1_900.0, msgspec.json.encode(old).decode()))])
    await before.close()
    after = Database(tmp_path / "records.db", migrations.RECORDS)
    assert 8 in await after.open()
    store = SqliteOfferStore(after)
    await store.load(now=1_500.0)
    offer = store.get("off_old")
    assert offer is not None and await store.fetch("off_old") == offer
    assert (offer.owner, offer.created_at, offer.expires_at, offer.total_cents) == ("acct_1", 1_000.0, 1_900.0, 20_600)
    assert not {"probability", "margin_cents", "score"} & set(msgspec.to_builtins(offer))
    await after.close()
