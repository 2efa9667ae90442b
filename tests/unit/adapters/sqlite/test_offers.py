"""The SQLite offer store: an offer stored before drafts were shared still loads after the migration; the expiry
buckets and the bound on offers in memory."""

import random

import msgspec

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.offers import SqliteOfferStore
from state.offers import Offer


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


def _offer(template: Offer, n: int, expires_at: float) -> Offer:
    return msgspec.structs.replace(template, id=f"off_{n:06d}", expires_at=expires_at)


TEMPLATE = msgspec.convert({
    "id": "drf", "owner": "acct_1", "state": "ACTIVE", "created_at": 0.0, "expires_at": 0.0, "flight_id": "CT101",
    "cabin": "economy", "passengers": 1, "segment": "economy", "bundle": "flight_only", "items": [],
    "taxes_cents": 100, "booking_fee_cents": 500, "total_cents": 20_600, "currency": "EUR", "departure_at": 9e9,
    "conditions": {"refundable": False, "refund_penalty_cents": 0, "changeable": True, "change_penalty_cents": 0}},
    Offer)


def test_the_sweep_finds_what_a_plain_scan_finds():
    """The expiry buckets against a plain scan of every offer held: the same offers fall due, each once, in
    chunks; finished and forgotten ones are skipped; an offer forgotten and held again is due once."""
    rng = random.Random(3)
    store = SqliteOfferStore(None)  # type: ignore[arg-type]  # no load: memory only
    held: dict[str, Offer] = {}
    for n in range(3_000):
        offer = _offer(TEMPLATE, n, 1_000 + rng.uniform(0, 100))
        store.remember(offer)
        held[offer.id] = offer
    for offer_id in rng.sample(sorted(held), 300):
        store.forget(offer_id)
        del held[offer_id]
    back = next(iter(held.values()))
    store.forget(back.id)
    store.remember(back)  # its bucket lists it twice now
    for now in (990.0, 1_010.5, 1_010.5, 1_050.25, 1_101.0):
        expected = {o.id for o in held.values() if o.expires_at <= now}
        found: list[Offer] = []
        while chunk := store.due(now, limit=97):
            found += chunk
            for offer in chunk:
                store.forget(offer.id)
        assert sorted(o.id for o in found) == sorted(expected), now
        for offer_id in expected:
            del held[offer_id]
    assert len(store) == 0 and not held


def test_over_the_bound_the_offers_expiring_soonest_leave_memory():
    evicted: list[int] = []
    store = SqliteOfferStore(None, 100, evicted.append)  # type: ignore[arg-type]
    for n in range(250):
        store.remember(_offer(TEMPLATE, n, 1_000.0 + n))  # as searches make them: each expires after the last
    assert len(store) <= 100 and sum(evicted) == 250 - len(store)
    assert all(store.get(f"off_{n:06d}") is not None for n in range(250 - len(store), 250))  # the latest stayed
    gone = _offer(TEMPLATE, 0, 1_000.0)
    assert store.get(gone.id) is None and store.readmit(gone) is gone and store.get(gone.id) is gone
    assert store.readmit(_offer(TEMPLATE, 0, 1_000.0)) is gone  # the one held wins
    n, before = 250, sum(evicted)
    while sum(evicted) == before:  # until the bound lets go of more
        store.remember(_offer(TEMPLATE, n, 1_000.0 + n))
        n += 1
    assert store.get(gone.id) is None  # read back, it is still among the first to go


def test_accepted_offers_stay_in_memory_past_the_bound():
    """An accepted offer is never let go of for the bound (an accept racing with it must find it in memory)."""
    store = SqliteOfferStore(None, 10)  # type: ignore[arg-type]
    accepted = msgspec.structs.replace(_offer(TEMPLATE, 0, 1_000.0), state="ACCEPTED")
    store.remember(accepted)
    for n in range(1, 100):
        store.remember(_offer(TEMPLATE, n, 1_000.0 + n))
    assert store.get(accepted.id) is accepted and len(store) <= 10
    assert [o.id for o in store.due(1_000.0)] == [accepted.id]  # still swept at its expiry
