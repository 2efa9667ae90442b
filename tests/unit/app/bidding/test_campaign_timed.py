"""The campaigns the scheduler looks at (CampaignService.timed) follow every stored change, this process's and
others' alike, without a look at every campaign: after any run of changes they are exactly the approved or
scheduled campaigns with a start and the live ones with an end."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import msgspec

from adapters.sqlite import migrations
from adapters.sqlite.audit import SqliteAuditStore
from adapters.sqlite.campaigns import SqliteCampaignStore
from adapters.sqlite.db import Database
from adapters.sqlite.delivery import SqliteDeliveryStore
from app.admin import AuditTrail
from app.bidding.campaigns import CampaignService
from state.campaigns import Campaign, Creative

STATES = ["draft", "in_review", "approved", "scheduled", "live", "paused", "completed", "archived", "rejected"]


class _Clock:
    def now(self) -> float:
        return 1_790_000_000.0


def test_timed_campaigns_follow_every_change(tmp_path: Path):
    async def run() -> None:
        db = Database(tmp_path / "records.db", migrations.RECORDS, synchronous="OFF")
        await db.open()
        store, delivery = SqliteCampaignStore(db), SqliteDeliveryStore(db)
        await store.load()
        await delivery.load(_Clock().now())
        service = CampaignService(store, delivery, _Clock(), AuditTrail(SqliteAuditStore(db), _Clock(),
                                                                        lambda *_: None), pacing_slack=0.05)
        rng = random.Random(3)

        def fields() -> dict:
            return {"state": rng.choice(STATES), "starts_at": rng.choice([None, 1_789_000_000.0, 1_791_000_000.0]),
                    "ends_at": rng.choice([None, None, 1_792_000_000.0])}
        for i in range(60):
            await service.create("test", Campaign(id=f"c{i:02d}", name="x", advertiser_domain="a.example",
                                                  bid_cap_micros=1, daily_budget_micros=1, **fields(),
                                                  creatives=[Creative("k", "banner", "<b>", w=1, h=1)]), audit=False)
        for step in range(400):
            current = rng.choice(store.all())
            changed = msgspec.structs.replace(current, **fields())
            if rng.random() < 0.8:
                await service.replace(changed)  # this process's change
            else:
                await store.put(changed, _Clock().now())  # as another node's change reads back: no hint
            if step % 7 == 0:
                expected = sorted((c for c in store.all() if (c.state in ("approved", "scheduled") and c.starts_at)
                                   or (c.state == "live" and c.ends_at)), key=lambda c: c.id)
                assert service.timed() == expected
        await db.close()
    asyncio.run(run())
