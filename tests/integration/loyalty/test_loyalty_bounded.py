"""Loyalty's memory stays bounded as members and years of ledger grow (issue 28): a ledger is paged from the store
exactly as it was from memory, a start reads members' stored states and not their history (and rebuilds them once
on a database from before they were stored), and a transaction repeated after memory forgot it is still answered
from the ledger."""

import asyncio
import time

import msgspec
import pytest

from app.loyalty.service import CHANNEL_CODES
from app.main import PLATFORM, create_app
from app.platform import Platform
from handlers.rest.common import encode_cursor, paginate
from state.loyalty import LedgerEntry
from tests.conftest import make_config
from tests.integration.loyalty.helpers import balance, earn

DAY = 86_400
_entries = msgspec.json.Decoder(list[LedgerEntry])


class _Reads:
    """The loyalty store's database, counting the ledger entries (rows with a body) each read returns."""

    def __init__(self, db) -> None:
        self._db = db
        self.dialect = db.dialect
        self.entries = 0
        self.statements: list[str] = []

    async def fetchall(self, sql, params=()):
        rows = await self._db.fetchall(sql, params)
        self.statements.append(sql)
        if "loyalty_ledger" in sql and "body" in sql.split("FROM")[0]:
            self.entries += len(rows)
        return rows

    async def fetchone(self, sql, params=()):
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    def __getattr__(self, name):
        return getattr(self._db, name)


async def _started(config, clock) -> tuple[Platform, _Reads]:
    platform = Platform(config, clock)
    reads = platform.loyalty_store._db = _Reads(platform.loyalty_store._db)
    await platform.open_storage()
    return platform, reads


async def _history(platform: Platform, members: list[str]) -> dict:
    """Members' whole state as memory holds it, and what they see."""
    loyalty = platform.loyalty
    return {u: (loyalty.accounts.peek(u), loyalty.balance(u), loyalty.debt(u)) for u in members
            if await loyalty.hold(u)}


async def _years_of_activity(platform: Platform, clock, members: list[str]) -> None:
    """Earns, redemptions, a reversal and expiry over two years, for each member."""
    loyalty = platform.loyalty
    for month in range(24):
        for n, user in enumerate(members):
            await loyalty.earn(user, 2_000 + 7_000 * n + 100 * month, "pos", f"{user}-{month}")
            if month % 5 == 4:
                await loyalty.redeem(user, 25)
        if month == 13:
            await loyalty.reverse(f"{members[0]}-12")
        clock.advance(30 * DAY)
        await loyalty.expire_due()


async def test_a_long_ledger_pages_exactly_as_it_did_from_memory(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, ratelimit__principal_per_s=10_000,
                                                         ratelimit__principal_burst=10_000), clock=clock))
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("pos", "partner")
    staff = {"X-Api-Key": key}
    for n in range(120):
        assert (await earn(client, staff, "lea", 1_000 + n, f"l{n}")).status == 201
        if n % 10 == 9:
            await client.post("/v1/loyalty/redeem", json={"user_id": "lea", "stars": 25}, headers=staff)
        if n % 3 == 0:
            await earn(client, staff, "other", 500, f"o{n}")  # another member's entries in between
    await client.post("/v1/loyalty/reverse", json={"transaction_id": "l5"}, headers=staff)
    rows = await platform.records_db.fetchall("SELECT body FROM loyalty_ledger WHERE user_id = 'lea' ORDER BY seq")
    whole = [msgspec.json.decode(r[0], type=LedgerEntry) for r in rows]
    assert len(whole) == 133

    for limit in (1, 7, 100, 133, 1000):
        after, pages = None, 0
        while True:
            params = {"limit": limit, **({"after": after} if after else {})}
            resp = await client.get("/v1/loyalty/ledger/lea", params=params, headers=staff)
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            items, nxt = paginate(whole, after, limit)  # the memory's answer, as the endpoint gave it before
            assert body == msgspec.json.decode(msgspec.json.encode({"items": items, "next_cursor": nxt}))
            pages += 1
            if body["next_cursor"] is None:
                break
            after = body["next_cursor"]
        assert pages == -(-133 // limit)

    other = await (await client.get("/v1/loyalty/ledger/other", params={"limit": 1}, headers=staff)).json()
    for cursor in (encode_cursor({"id": other["items"][0]["id"]}), encode_cursor({"id": "x"}),
                   encode_cursor({"at": 1}), encode_cursor({"id": 2**70}), "not-base64!"):
        resp = await client.get("/v1/loyalty/ledger/lea", params={"after": cursor}, headers=staff)
        assert resp.status == 400, cursor
    assert (await client.get("/v1/loyalty/ledger/nobody", headers=staff)).status == 404


async def test_a_restart_reads_the_stored_states_not_the_history(tmp_path, clock):
    config = make_config(tmp_path)
    members = ["ann", "ben", "cai"]
    platform, _ = await _started(config, clock)
    await _years_of_activity(platform, clock, members)
    before = await _history(platform, members)
    entries = (await platform.records_db.fetchone("SELECT count(*) FROM loyalty_ledger"))[0]
    await platform.close_storage()

    platform, reads = await _started(config, clock)
    try:
        assert platform.loyalty.loaded == {"states": 3, "replayed": 0, "rebuilt": 0}
        assert reads.entries == 0, reads.statements  # not one ledger entry read: the states are the whole start
        assert await _history(platform, members) == before  # balances, debts, tiers, lots: all as they were
        assert entries > 100
        # An entry appended by a version that stored no state (or meanwhile): replayed onto the state, which is
        # stored again.
        stale = (await platform.records_db.fetchone("SELECT body FROM loyalty_accounts WHERE user_id = 'ben'"))[0]
        await platform.loyalty.earn("ben", 5_000, "pos", "ben-late")
        await platform.loyalty.redeem("ben", 25)
        after = await _history(platform, ["ben"])
        await platform.records_db.write([("UPDATE loyalty_accounts SET seq = seq - 2, body = ? WHERE user_id = 'ben'",
                                          (stale,))])
    finally:
        await platform.close_storage()
    platform, reads = await _started(config, clock)
    try:
        assert platform.loyalty.loaded == {"states": 3, "replayed": 2, "rebuilt": 0}
        assert reads.entries == 2  # the two entries after ben's state, nothing older
        assert await _history(platform, ["ben"]) == after
        row = await platform.records_db.fetchone("SELECT seq FROM loyalty_accounts WHERE user_id = 'ben'")
        assert row[0] == after["ben"][0].seq
    finally:
        await platform.close_storage()


async def test_the_first_start_on_a_database_without_states_rebuilds_them_once(tmp_path, clock):
    config = make_config(tmp_path)
    members = [f"m{n:03}" for n in range(30)]
    platform, _ = await _started(config, clock)
    await _years_of_activity(platform, clock, members[:3])
    for n, user in enumerate(members[3:]):
        await platform.loyalty.earn(user, 10_000 + n, "web", f"{user}-1")
    before = await _history(platform, members)
    # The database as the version before kept it: no states, and migration 27 not applied yet.
    await platform.records_db.write([("DROP TABLE loyalty_accounts", ()), ("DROP INDEX loyalty_ledger_firsts", ()),
                                     ("DELETE FROM schema_migrations WHERE version = 27", ())])
    await platform.close_storage()

    platform, reads = await _started(config, clock)
    try:
        assert platform.loyalty.loaded == {"states": 0, "replayed": 0, "rebuilt": 30}
        assert await _history(platform, members) == before
        stored = await platform.records_db.fetchall("SELECT user_id, seq FROM loyalty_accounts ORDER BY user_id")
        assert stored == [(u, before[u][0].seq) for u in members]
        assert (await platform.loyalty.earn("m000", 1_000, "pos", "m000-1")).replayed  # the ledger still decides
    finally:
        await platform.close_storage()
    platform, reads = await _started(config, clock)
    try:
        assert platform.loyalty.loaded == {"states": 30, "replayed": 0, "rebuilt": 0} and reads.entries == 0
        assert await _history(platform, members) == before
    finally:
        await platform.close_storage()


async def test_a_transaction_repeated_after_memory_forgot_it_is_answered_by_the_ledger(aiohttp_client, tmp_path,
                                                                                       clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, loyalty__transactions_in_memory=2), clock=clock))
    platform = client.app[PLATFORM]
    loyalty = platform.loyalty
    _, key = await platform.api_keys.create("pos", "partner")
    staff = {"X-Api-Key": key}
    first = await earn(client, staff, "dot", 10_000, "d0")
    assert first.status == 201
    first = await first.json()
    for n in range(1, 5):
        assert (await earn(client, staff, "dot", 1_000, f"d{n}")).status == 201
    assert "d0" not in loyalty.earned and loyalty.earned.evictions == 3
    replay = await earn(client, staff, "dot", 10_000, "d0")
    assert replay.status == 200 and await replay.json() == {**first, "replayed": True}
    assert (await earn(client, staff, "eli", 10_000, "d0")).status == 422  # earned by another member
    assert (await balance(client, staff, "dot"))["balance"] == 140

    # Twenty at once for a transaction memory never held, after it left the LRU too: one earns, the rest replay.
    await earn(client, staff, "dot", 1_000, "d5")
    for n in range(6, 9):
        await earn(client, staff, "dot", 1_000, f"d{n}")
    assert "d5" not in loyalty.earned
    responses = await asyncio.gather(*(earn(client, staff, "dot", 1_000, "d5") for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    fresh = await asyncio.gather(*(earn(client, staff, "dot", 3_000, "d9") for _ in range(20)))
    assert sorted(r.status for r in fresh) == [200] * 19 + [201]
    two = await asyncio.gather(earn(client, staff, "fay", 3_000, "d10"), earn(client, staff, "gus", 3_000, "d10"))
    assert sorted(r.status for r in two) == [201, 422]  # one transaction, two members at once: earned once

    reversal = await client.post("/v1/loyalty/reverse", json={"transaction_id": "d0"}, headers=staff)
    assert reversal.status == 200
    reversal = await reversal.json()
    for n in range(1, 4):
        assert (await client.post("/v1/loyalty/reverse", json={"transaction_id": f"d{n}"}, headers=staff)).status \
            == 200
    assert "d0" not in loyalty.reversals and "d0" not in loyalty.earned
    again = await asyncio.gather(*(client.post("/v1/loyalty/reverse", json={"transaction_id": "d0"}, headers=staff)
                                   for _ in range(5)))
    assert {(r.status, (await r.json())["id"]) for r in again} == {(200, reversal["id"])}  # reversed once
    assert (await balance(client, staff, "dot"))["balance"] == 5 * 10 + 30  # d4..d8 and d9 stand
    kinds = [e.kind for e in (await loyalty.ledger("dot", None, 1_000))[0]]
    assert kinds.count("reverse") == 4 and kinds.count("earn") == 10
    assert (await client.post("/v1/loyalty/reverse", json={"transaction_id": "nope"}, headers=staff)).status == 404


async def test_a_refund_recounts_the_tiers_with_purchases_memory_no_longer_keeps(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("pos", "partner")
    staff = {"X-Api-Key": key}
    start = clock.now()
    await earn(client, staff, "ivy", 49_900, "i1")                      # 499: Green
    clock.advance(300 * DAY)
    assert (await (await earn(client, staff, "ivy", 100, "i2")).json())["tier"] == "Gold"  # 500 within the year
    clock.advance(50 * DAY)
    await earn(client, staff, "ivy", 100, "i3")                         # Gold, and kept from here
    clock.advance(40 * DAY)                                              # i1 is over a year old:
    await client.post("/v1/loyalty/redeem", json={"user_id": "ivy", "stars": 25}, headers=staff)
    assert [p.transaction_id for p in client.app[PLATFORM].loyalty.accounts.peek("ivy").qualifying] == ["i2", "i3"]
    clock.advance(10 * DAY)
    assert (await client.post("/v1/loyalty/reverse", json={"transaction_id": "i3"}, headers=staff)).status == 200
    view = await balance(client, staff, "ivy")
    # i1 and i2 reached Gold at day 300, kept a year: the refund of i3 leaves that, counted from the ledger.
    assert (view["tier"], view["tier_kept_until"]) == ("Gold", pytest.approx(start + 300 * DAY + 365 * DAY))
    await client.close()
    client = await aiohttp_client(create_app(config, clock=clock))
    assert (await balance(client, staff, "ivy")) == view


async def test_nodes_appending_to_one_member_store_the_state_a_start_reads(tmp_path, clock):
    from tests import conftest
    if conftest._storage == "sqlite":
        pytest.skip("nodes share PostgreSQL (--storage=postgres or scaleout)")
    a, _ = await _started(make_config(tmp_path, storage__data_dir=str(tmp_path / "a")), clock)
    b, _ = await _started(make_config(tmp_path, storage__data_dir=str(tmp_path / "b")), clock)
    try:
        await asyncio.gather(*(node.loyalty.earn("kai", 1_000 + i, "web", f"k{i}") for i in range(30)
                               for node in (a, b) if (i % 2 == 0) == (node is a)))
        await b.loyalty.redeem("kai", 100)                    # B decides on what is stored, A's earns included
        await a.loyalty.reverse("k3")                         # an earn B made, reversed by A
        clock.advance(400 * DAY)
        await b.loyalty.earn("kai", 20_000, "web", "k-late")  # and A never hears of it
        rows = await a.records_db.fetchall("SELECT seq FROM loyalty_ledger WHERE user_id = 'kai' ORDER BY seq")
        assert [r[0] for r in rows] == list(range(1, 34))
        await b.loyalty.refresh("member", ["kai"])
        whole = await _history(b, ["kai"])
        # One transaction sent to both nodes twenty times within 20 ms: earned once, every other answer its replay
        # (also those that waited for a first attempt that the other node's append refused).
        async def later(node: Platform, n: int, tx: str):
            await asyncio.sleep(n / 1000)
            return await node.loyalty.earn("lin", 5_000, "web", tx)
        for tx in ("same", "again", "once more"):
            results = await asyncio.gather(*(later(node, n, tx) for n in range(20) for node in (a, b)))
            assert sorted(r.replayed for r in results) == [False] + [True] * 39
            assert len({(r.stars_earned, r.balance) for r in results}) == 1
    finally:
        await a.close_storage()
        await b.close_storage()
    c, reads = await _started(make_config(tmp_path, storage__data_dir=str(tmp_path / "c")), clock)
    try:
        assert c.loyalty.loaded == {"states": 2, "replayed": 0, "rebuilt": 0} and reads.entries == 0
        assert await _history(c, ["kai"]) == whole
        assert whole["kai"][0].seq == 33 and whole["kai"][1]["balance"] == sum(
            e.stars for e in (await c.loyalty.ledger("kai", None, 100))[0])
    finally:
        await c.close_storage()


async def test_memory_holding_two_accounts_answers_for_every_member(aiohttp_client, tmp_path, clock):
    import csv
    import io
    config = make_config(tmp_path, loyalty__max_accounts_in_memory=2, ratelimit__principal_per_s=10_000,
                         ratelimit__principal_burst=10_000)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    loyalty = platform.loyalty
    _, key = await platform.api_keys.create("pos", "partner")
    _, admin_key = await platform.api_keys.create("ops", "admin")
    staff, admin = {"X-Api-Key": key}, {"X-Api-Key": admin_key}
    members = [f"m{n}" for n in range(6)]
    for user in members:
        assert (await earn(client, staff, user, 10_000, f"{user}-1")).status == 201  # 100 stars each, Green
    assert (await client.post("/v1/loyalty/redeem", json={"user_id": "m0", "stars": 25}, headers=staff)).status == 201
    await earn(client, staff, "m1", 5_000, "m1-2")
    assert (await client.post("/v1/loyalty/reverse", json={"transaction_id": "m1-2"}, headers=staff)).status == 200
    assert (await earn(client, staff, "m2", 10_000, "m2-1")).status == 200  # a replay, for an account let go
    expected = {"m0": 75, **{u: 100 for u in members[1:]}}
    assert len(loyalty.accounts) == 2 and loyalty.accounts.evictions >= 5 and loyalty.members_known() == 6

    async def balances() -> dict[str, int]:
        return {u: (await balance(client, staff, u))["balance"] for u in members}
    assert await balances() == expected
    found = await client.get("/v1/admin/loyalty/members", params={"q": "M"}, headers=admin)
    assert [(m["user_id"], m["balance"]) for m in (await found.json())["items"]] == sorted(expected.items())
    report = await client.get("/v1/reports/loyalty.csv", headers=admin)
    rows = list(csv.DictReader(io.StringIO((await report.read()).decode("utf-8-sig"), newline="")))
    assert {r["user_id"]: int(r["balance_stars"]) for r in rows} == expected
    ledger = await client.get("/v1/loyalty/ledger/m1", headers=staff)
    assert [e["kind"] for e in (await ledger.json())["items"]] == ["earn", "earn", "reverse"]

    # The bidder never waits: a member memory let go is priced as a non-member until their account is read back.
    let_go = next(u for u in members if u not in loyalty.accounts)
    assert loyalty.features(let_go) is None and loyalty.features("nobody") is None
    for _ in range(100):
        if loyalty.features(let_go) is not None:
            break
        await asyncio.sleep(0.01)
    assert loyalty.features(let_go)[1] == pytest.approx(expected[let_go] / 5000)

    clock.advance(240 * DAY)  # every member's Green stars are past their expiry, held in memory or not
    assert await loyalty.expire_due() == sum(expected.values())
    assert set((await balances()).values()) == {0}
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))
    loyalty = client.app[PLATFORM].loyalty
    assert loyalty.loaded == {"states": 2, "replayed": 0, "rebuilt": 0} and loyalty.members_known() == 6
    assert await balances() == {u: 0 for u in members}
    assert (await (await earn(client, staff, "m5", 10_000, "m5-1")).json())["replayed"]


async def test_memory_holding_two_members_details_answers_for_every_member(aiohttp_client, tmp_path, clock):
    """Members' details (contact, birthday, channel) are held as their accounts are, the most recently used: one
    memory let go is read back wherever it is needed (an activation's channel, a birthday reward, an erasure)."""
    config = make_config(tmp_path, loyalty__max_accounts_in_memory=2)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    loyalty = platform.loyalty
    _, key = await platform.api_keys.create("ops", "admin")
    staff = {"X-Api-Key": key}
    today = time.strftime("%m-%d", time.gmtime(clock.now()))
    for n in range(6):
        resp = await client.put(f"/v1/loyalty/members/d{n}", headers=staff,
                                json={"email": f"d{n}@example.com", "preferred_channel": "email", "birthday": today})
        assert resp.status == 200, await resp.text()
    assert len(loyalty.details) == 2 and loyalty.details.evictions == 4 and "d0" not in loyalty.details
    sent = await (await client.post("/v1/channels/activate", headers=staff,
                                    json={"user_id": "d0", "subject": "Hi", "text": "hello"})).json()
    assert sent["channel"] == "email" and sent["status"] == "queued", sent
    assert "d1" not in loyalty.details
    await earn(client, staff, "d1", 10_000, "d1-1")
    resp = await client.post("/v1/loyalty/birthday", json={"user_id": "d1"}, headers=staff)
    assert resp.status == 200 and (await resp.json())["stars_earned"] == 50, await resp.text()
    await client.close()

    client = await aiohttp_client(create_app(config, clock=clock))  # a start reads no member's details
    loyalty = client.app[PLATFORM].loyalty
    assert len(loyalty.details) == 0 and "d1" in loyalty.accounts
    # The bidder never waits: a member whose details are not held is priced without them while they are read back.
    assert loyalty.features("d1")[6] == 0.0
    for _ in range(100):
        if "d1" in loyalty.details:
            break
        await asyncio.sleep(0.01)
    assert loyalty.features("d1")[6] == (CHANNEL_CODES.index("email") + 1) / len(CHANNEL_CODES)
    loyalty.details.clear()
    assert (await loyalty.member("d5")).email == "d5@example.com" and await loyalty.member("nobody") is None
    assert len(loyalty.details) == 2  # "nobody" is held as having none
