"""Offers through the real app: search, pricing and ranking, ownership, expiry, the sweep, the priced-bundle
cache and retention."""

import msgspec
import pytest

from app.main import PLATFORM, create_app
from handlers.rest.retail import OfferList
from tests.conftest import make_config
from tests.integration.retail.helpers import (
    DAY,
    accept,
    customer,
    departure_date,
    ranking_of,
    search,
    search_body,
    seed_catalog,
)


async def test_search_prices_ranks_and_persists_bundles(shop, clock, customer_headers):
    client, _ = shop
    offers = await search(client, customer_headers, clock, passengers=3, segment="premium")
    bundles = {o["bundle"] for o in offers}
    assert 3 <= len(offers) <= 5
    assert {"flight_only", "comfort", "premium", "premium_lounge", "group_bags"} == bundles
    for o in offers:
        subtotal = sum(i["total_cents"] for i in o["items"])
        assert o["total_cents"] == subtotal + o["taxes_cents"] + o["booking_fee_cents"]
        assert o["expires_at"] == pytest.approx(clock.now() + 900)
        assert all(i["quantity"] == 3 for i in o["items"]) and o["state"] == "ACTIVE"
        # How the airline ranks an offer is its own business: no margin, probability or score.
        assert not {"margin_cents", "probability", "score"} & set(o)
    # The ranking is in the event log: best score first, score = P(accept) x margin.
    ranked = await ranking_of(client, offers)
    assert [e["rank"] for e in ranked] == list(range(1, len(offers) + 1))
    assert [e["score"] for e in ranked] == sorted((e["score"] for e in ranked), reverse=True)
    for e in ranked:
        assert e["margin_cents"] > 0 and e["score"] == pytest.approx(e["probability"] * e["margin_cents"], rel=1e-3)
    lounge = next(i for o in offers if o["bundle"] == "premium_lounge" for i in o["items"] if i["kind"] == "Lounge")
    assert lounge["discount_percent"] == 20 and lounge["unit_price_cents"] == 3_120  # 3,900 less 20%
    bags = next(i for o in offers if o["bundle"] == "group_bags" for i in o["items"] if i["kind"] == "Bag")
    assert bags["unit_price_cents"] == 2_625  # 3,500 less 25%
    corporate = await search(client, customer_headers, clock, segment="corporate")
    seat = next(i for o in corporate if o["bundle"] == "corporate_flex" for i in o["items"] if i["kind"] == "Seat")
    assert seat["unit_price_cents"] == 600  # half of 1,200
    # Offers are durable: the row is in SQLite before the response.
    rows = await client.app[PLATFORM].records_db.fetchall("SELECT id FROM offers")
    assert {o["id"] for o in offers} <= {r[0] for r in rows}
    # The response is the documented OfferList, each offer as GET /v1/offers/{id} shows it.
    resp = await client.post("/v1/offers/search", json=search_body(clock), headers=customer_headers)
    listed = msgspec.json.decode(await resp.read(), type=OfferList)
    assert listed.ranked_by == "rules" and listed.model_version == "rules" and len(listed.offers) >= 3
    raw = msgspec.json.decode(await resp.read())["offers"]
    store = client.app[PLATFORM].offer_store
    for offer, as_listed in zip(listed.offers, raw, strict=True):
        shown = await client.get(f"/v1/offers/{offer.id}", headers=customer_headers)
        assert await shown.json() == as_listed
        assert await store.fetch(offer.id) == offer == store.get(offer.id)  # SQLite holds it as shown
    # A row holds the offer's own fields and its draft's id; a draft (a priced bundle) is stored once
    # for all the offers made from it.
    again = await search(client, customer_headers, clock)
    assert {o["id"] for o in again}.isdisjoint(o.id for o in listed.offers)
    db = client.app[PLATFORM].records_db
    rows = await db.fetchall("SELECT draft_id, body FROM offers")
    (drafts_stored,), = await db.fetchall("SELECT count(*) FROM offer_drafts")
    assert all(draft is not None and body is None for draft, body in rows)
    assert drafts_stored == len({draft for draft, _ in rows}) < len(rows)


async def test_search_refuses_bad_input_with_clear_messages(shop, clock, customer_headers):
    client, _ = shop
    for overrides, fragment in (({"origin": "lis"}, "origin"), ({"departure_date": "2026-13-40"}, "calendar date"),
                                ({"passengers": 0}, "passengers"), ({"passengers": 10}, "passengers must be 1 to 9"),
                                ({"cabin": "first"}, "cabin"), ({"segment": "vip"}, "segment"),
                                ({"extra": 1}, "extra")):
        resp = await client.post("/v1/offers/search", json=search_body(clock, **overrides), headers=customer_headers)
        assert resp.status == 400, overrides
        assert fragment in (await resp.json())["error"]["message"], overrides
    resp = await client.post("/v1/offers/search", json=search_body(clock))
    assert resp.status == 401
    empty = await search(client, customer_headers, clock, destination="OPO")
    assert empty == []


async def test_offers_belong_to_whoever_searched(shop, clock, customer_headers, admin_headers):
    client, _ = shop
    offer = (await search(client, customer_headers, clock))[0]
    other = await customer(client, "someone-else")
    assert (await client.get(f"/v1/offers/{offer['id']}", headers=other)).status == 404
    assert (await accept(client, other, offer["id"])).status == 404
    assert (await client.get(f"/v1/offers/{offer['id']}", headers=admin_headers)).status == 200
    resp = await client.delete(f"/v1/offers/{offer['id']}", headers=customer_headers)
    assert resp.status == 200 and (await resp.json())["state"] == "CANCELLED"
    resp = await accept(client, customer_headers, offer["id"])
    assert resp.status == 409 and (await resp.json())["error"]["details"]["state"] == "CANCELLED"


async def test_an_expired_offer_is_gone(shop, clock, customer_headers):
    client, _ = shop
    offer = (await search(client, customer_headers, clock))[0]
    clock.advance(901)
    resp = await accept(client, customer_headers, offer["id"])
    assert resp.status == 410
    expired = await (await client.get(f"/v1/offers/{offer['id']}", headers=customer_headers)).json()
    assert expired["state"] == "EXPIRED"
    await client.app[PLATFORM].sweep_retail_once()
    # Swept out of memory, still answered from SQLite.
    resp = await client.get(f"/v1/offers/{offer['id']}", headers=customer_headers)
    assert resp.status == 200 and (await resp.json())["state"] == "EXPIRED"
    assert (await accept(client, customer_headers, offer["id"])).status == 410


async def test_the_sweep_expires_offers_a_chunk_per_commit(shop, clock, customer_headers):
    client, _ = shop
    shown = [o for _ in range(3) for o in await search(client, customer_headers, clock)]
    accepted = shown[0]
    assert (await accept(client, customer_headers, accepted["id"])).status == 201
    platform = client.app[PLATFORM]
    commits = platform.records_db.commits
    clock.advance(901)
    assert await platform.offers.expire_due(chunk=4) == len(shown) - 1  # the accepted one is not expired
    assert platform.records_db.commits - commits >= (len(shown) - 1) // 4
    rows = await platform.records_db.fetchall("SELECT state, count(*) FROM offers GROUP BY state")
    assert dict(rows)["EXPIRED"] == len(shown) - 1 and await platform.offers.expire_due(chunk=4) == 0


async def test_priced_bundles_kept_for_reuse_are_bounded(aiohttp_client, tmp_path, clock):
    """retail.draft_cache_size bounds the priced bundles kept for later searches: a search the cache
    has let go of prices its bundles (and stores them) again, one it still holds reuses them."""

    async def drafts_after(cache_size: int) -> int:
        client = await aiohttp_client(create_app(make_config(tmp_path / str(cache_size),
                                                             retail__draft_cache_size=cache_size), clock=clock))
        await seed_catalog(client.app[PLATFORM], clock)
        headers = await customer(client, f"cache{cache_size}")
        for passengers in (1, 2, 1):  # two parties: two cache entries, the first one asked for again
            assert len(await search(client, headers, clock, passengers=passengers)) == 3
        (count,), = await client.app[PLATFORM].records_db.fetchall("SELECT count(*) FROM offer_drafts")
        await client.close()
        return count

    assert await drafts_after(20_000) == 6  # 3 bundles per party, the first party's reused
    assert await drafts_after(1) == 9       # the first party's bundles were let go of and priced again


async def test_offers_and_their_drafts_are_deleted_after_the_retention(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, retail__offer_retention_days=1), clock=clock))
    platform = client.app[PLATFORM]
    db = platform.records_db
    await seed_catalog(platform, clock, days=40)
    day = departure_date(clock, 40)

    async def stored() -> tuple[int, int]:
        (offers,), = await db.fetchall("SELECT count(*) FROM offers")
        (drafts,), = await db.fetchall("SELECT count(*) FROM offer_drafts")
        return offers, drafts

    headers = await customer(client, "retention")
    first = await search(client, headers, clock, departure_date=day)
    assert await platform.offers.purge_expired() == (0, 0)  # nothing is old enough yet
    clock.advance(DAY + 1_000)  # a day past the offers' expiry
    await platform.sweep_retail_once()
    assert await platform.offers.purge_expired() == (3, 3) and await stored() == (0, 0)
    headers = await customer(client, "retention")  # a token on the moved clock
    assert (await client.get(f"/v1/offers/{first[0]['id']}", headers=headers)).status == 404
    # The same bundles are still priced in memory: shown again, they are stored again.
    again = await search(client, headers, clock, departure_date=day)
    assert await stored() == (3, 3)
    assert await platform.offer_store.fetch(again[0]["id"]) == platform.offer_store.get(again[0]["id"])
    # An order keeps what it took from its offer when the offer is gone.
    order = await (await accept(client, headers, again[0]["id"])).json()
    clock.advance(DAY + 1_000)
    await platform.sweep_retail_once()
    assert await platform.offers.purge_expired() == (3, 3) and await stored() == (0, 0)
    headers = await customer(client, "retention")
    kept = await (await client.get(f"/v1/orders/{order['id']}", headers=headers)).json()
    assert kept["offer_id"] == again[0]["id"] and kept["items"] == order["items"]


async def test_a_disk_budget_deletes_expired_offers_early_the_oldest_first_and_never_records(
        aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    db = platform.records_db
    if db.dialect != "sqlite":
        pytest.skip("the disk budget is the SQLite file's (on PostgreSQL the age retention applies)")
    await seed_catalog(platform, clock, days=3)
    headers = await customer(client, "budget")
    shown = await search(client, headers, clock, departure_date=departure_date(clock, 3))
    # 60,000 more offers made from the same drafts, expired over the last 0.9 day (inside the day kept).
    now = clock.now()
    await db.write([(
        "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 20000) "
        "INSERT INTO offers(id, owner, state, created_at, expires_at, draft_id, body) "
        "SELECT o.id || '-' || n.k, o.owner, 'EXPIRED', ? - 0.9 * 86400, ? - n.k * 3.888, o.draft_id, o.body "
        "FROM offers o, n", (now, now))])

    async def expired() -> list[float]:
        return [r[0] for r in await db.fetchall("SELECT expires_at FROM offers WHERE expires_at < ?", (now,))]

    async def used() -> int:
        (pages, free, size), = await db.fetchall("SELECT * FROM pragma_page_count(), pragma_freelist_count(), "
                                                 "pragma_page_size()")
        return (pages - free) * size

    half = now - 0.5 * 86_400
    newer = sum(1 for at in await expired() if at >= half)
    assert len(await expired()) == 60_000
    assert (await platform.purge_retained_once())["offers_over_budget"] == 0  # 20 GB: far within it
    before = await used()
    budget = max(1_000_000, before)  # past 90% of it: trimmed to 80%
    platform.config = msgspec.structs.replace(
        platform.config, storage=msgspec.structs.replace(platform.config.storage, max_database_bytes=budget))
    deleted = (await platform.purge_retained_once(chunk=2_000))["offers_over_budget"]
    left = await expired()
    assert 0 < deleted < 60_000 and len(left) == 60_000 - deleted
    assert await used() <= 0.8 * budget
    # Half the day kept first: what went had all expired more than half a day ago.
    assert sum(1 for at in left if at >= half) == newer and newer + deleted <= 60_000
    # The offers shown and still live are kept, and can be accepted.
    for offer in shown:
        assert (await client.get(f"/v1/offers/{offer['id']}", headers=headers)).status == 200
    assert (await accept(client, headers, shown[0]["id"])).status == 201
    metrics = await (await client.get("/metrics")).text()
    assert f'contrail_rows_pruned_total{{what="offers_over_budget"}} {float(deleted)}' in metrics
    assert 'contrail_database_over_budget{db="records"} 0.0' in metrics
    # Records past the budget are never pruned for it: the gauge says so.
    await db.write([("INSERT INTO reco_items(item_id, body) VALUES (?, ?)", (f"big-{k}", "x" * 4000))
                    for k in range(budget // 3_000)])
    orders = (await db.fetchall("SELECT count(*) FROM orders"))[0][0]
    await platform.purge_retained_once()
    assert (await db.fetchall("SELECT count(*) FROM orders"))[0][0] == orders == 1
    assert (await db.fetchall("SELECT count(*) FROM reco_items WHERE item_id LIKE 'big-%'"))[0][0] == budget // 3_000
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_database_over_budget{db="records"} 1.0' in metrics
