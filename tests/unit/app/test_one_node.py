"""Work one node does at a time (app/infra.py OneNode over the task_leases table): the holder keeps its lease through
a pass longer than the lease, another node waits and takes over once it lapses, and a restarted node (the same
holder) takes its own lease back at once."""

from __future__ import annotations

import asyncio

from adapters.sqlite import migrations
from adapters.sqlite.db import Database
from adapters.sqlite.leases import SqliteLeases
from app.infra import OneNode
from app.runtime.clock import SystemClock

TTL_S = 0.6  # renewed every 0.2 s: a loop late by less than that keeps it


async def test_a_pass_longer_than_the_lease_keeps_it_and_the_other_node_takes_over_after(tmp_path):
    db = Database(tmp_path / "records.db", migrations.RECORDS, synchronous="OFF")
    await db.open()
    try:
        clock, leases = SystemClock(), SqliteLeases(db)
        a, b = (OneNode(leases, "asset_sync", holder, clock, TTL_S) for holder in ("node-a", "node-b"))
        refused: list[bool] = []

        async def long_pass() -> str:
            for _ in range(12):  # 1.2 s: two leases long
                await asyncio.sleep(0.1)
                refused.append(await b.run(lambda: asyncio.sleep(0, "b worked")) is None)
            return "a worked"
        assert await a.run(long_pass) == "a worked"
        assert all(refused) and len(refused) == 12  # the other node never got a turn mid-pass
        assert await b.run(lambda: asyncio.sleep(0, "b")) is None  # A's lease, renewed late in its pass, holds
        await asyncio.sleep(TTL_S + 0.1)
        assert await b.run(lambda: asyncio.sleep(0, "b")) == "b"  # lapsed: B takes over
        restarted = OneNode(SqliteLeases(db), "asset_sync", "node-b", clock, TTL_S)  # B again, after a restart
        assert await restarted.run(lambda: asyncio.sleep(0, "b again")) == "b again"
    finally:
        await db.close()
