"""The campaign workflow on a SQLite file, as the unit tests build it (no app around it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.sqlite import migrations
from adapters.sqlite.audit import SqliteAuditStore
from adapters.sqlite.campaigns import SqliteCampaignStore
from adapters.sqlite.db import Database
from adapters.sqlite.delivery import SqliteDeliveryStore
from app.admin import AuditTrail
from app.bidding.campaigns import CampaignService
from app.campaigns.workflow import CampaignWorkflow
from app.config import CampaignsConfig


@dataclass
class WorkflowOn:
    """One node's workflow over the records database at `path` (several may open the same file)."""

    db: Database
    store: SqliteCampaignStore
    campaigns: CampaignService
    workflow: CampaignWorkflow
    published: list[Any] = field(default_factory=list)  # what the workflow published on the bus

    @classmethod
    async def open(cls, path: Path, clock: Any) -> WorkflowOn:
        db = Database(path, migrations.RECORDS, synchronous="OFF")
        await db.open()
        store = SqliteCampaignStore(db)  # no change feed: a node hears nothing of another
        delivery = SqliteDeliveryStore(db)
        await store.load()
        await delivery.load(clock.now())
        audit = AuditTrail(SqliteAuditStore(db), clock, lambda *_: None)
        campaigns = CampaignService(store, delivery, clock, audit, pacing_slack=0.05)
        published: list[Any] = []

        async def publish(event: Any) -> None:
            published.append(event)
        workflow = CampaignWorkflow(campaigns, store, CampaignsConfig(), clock, audit, publish)
        return cls(db, store, campaigns, workflow, published)
