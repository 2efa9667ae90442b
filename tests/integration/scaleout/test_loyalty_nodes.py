"""Loyalty on two nodes sharing one PostgreSQL: each node decides on a member's stars from its own memory, and the
ledger's numbering per member refuses the second of two decisions made on the same balance, so stars are never
spent twice and earns on two nodes at once both count."""

from __future__ import annotations

import asyncio

import pytest

from adapters.pii import PiiCipher
from adapters.postgres import migrations
from adapters.postgres.db import PgDatabase
from adapters.sqlite.loyalty import SqliteLoyaltyStore
from adapters.sqlite.uow import SqliteUnitOfWork
from app.config import LoyaltyConfig
from app.errors import RuleViolation
from app.loyalty.service import LoyaltyService
from app.runtime.clock import SystemClock


class _Audit:
    async def record(self, *args, **kwargs) -> None:
        pass


async def _nothing(event: object) -> None:
    pass


@pytest.fixture
async def two_nodes(pg_dsn):
    """The loyalty service of two nodes on one database, each with its own memory of the ledger."""
    dbs = [PgDatabase(pg_dsn, migrations.RECORDS, max_size=4) for _ in range(2)]
    services = []
    pii = PiiCipher.generate()  # the nodes share their keys, as nodes sharing PostgreSQL must
    for db in dbs:
        await db.open()
        service = LoyaltyService(LoyaltyConfig(), SqliteLoyaltyStore(db, pii), SystemClock(), lambda *a: None,
                                 _Audit(), SqliteUnitOfWork(db, pii, shared_inventory=True), _nothing)  # type: ignore
        await service.load()
        services.append(service)
    yield services
    for db in dbs:
        await db.close()


async def test_stars_are_never_redeemed_twice_across_nodes(two_nodes, pg_dsn):
    a, b = two_nodes
    await a.earn("ana", 10_000, "web", "t1")  # 100 stars
    await b.refresh("member", ["ana"])         # what a change notice does; without one, B learns on its first write
    results = await asyncio.gather(a.redeem("ana", 100), b.redeem("ana", 100), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    refused = next(r for r in results if isinstance(r, BaseException))
    assert isinstance(refused, RuleViolation) and "not enough stars" in str(refused)
    for node in (a, b):
        await node.refresh("member", ["ana"])
        assert node.balance("ana")["balance"] == 0


async def test_a_node_that_has_not_heard_decides_on_what_is_stored(two_nodes):
    a, b = two_nodes
    await a.earn("bo", 10_000, "web", "t2")
    await b.earn("bo", 5_000, "web", "t3")   # B never heard of t2: its write is refused, it catches up, earns
    assert b.balance("bo")["balance"] == 150
    await b.redeem("bo", 100)
    with pytest.raises(RuleViolation, match="not enough stars: 50"):
        await a.redeem("bo", 100)            # A decided on 150, the ledger says 50
    assert (await b.earn("bo", 10_000, "web", "t2")).replayed  # an earn made on A is a replay on B
    reversed_ = await b.reverse("t2")        # and B can take it back
    assert reversed_.user_id == "bo" and reversed_.stars == -100


async def test_earns_for_one_member_on_two_nodes_at_once_all_count(two_nodes, pg_dsn):
    a, b = two_nodes
    await asyncio.gather(*(node.earn("cy", 1_000, "web", f"p{i}") for i in range(40) for node in (a, b)
                           if (i % 2 == 0) == (node is a)))
    for node in (a, b):
        await node.refresh("member", ["cy"])
        assert node.balance("cy")["balance"] == 400
    db = PgDatabase(pg_dsn, migrations.RECORDS, max_size=2)
    await db.open()
    try:
        rows = await db.fetchall("SELECT seq FROM loyalty_ledger WHERE user_id = 'cy' ORDER BY seq")
        ids = await db.fetchall("SELECT count(DISTINCT id) FROM loyalty_ledger")
    finally:
        await db.close()
    assert [r[0] for r in rows] == list(range(1, 41))
    assert ids == [(40,)]
