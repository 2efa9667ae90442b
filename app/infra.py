"""What every domain's wiring is built from: the configuration, the shared runtime and the two databases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adapters.pii import PiiCipher
from adapters.sqlite.db import Database
from app.admin import AuditTrail
from app.config import Config
from app.eventlog import EventLog
from app.hub import Hub
from app.runtime.bus import Bus
from app.runtime.clock import Clock
from app.runtime.metrics import Metrics
from app.runtime.supervisor import Supervisor
from app.runtime.tracing import Tracing
from app.urls import PublicUrls
from state.ports import ChangeFeed, UnitOfWork

if TYPE_CHECKING:  # imported only where configured (app/platform.py)
    from adapters.postgres.db import PgDatabase
    from adapters.redis.client import RedisClient


@dataclass(frozen=True)
class Infra:
    config: Config
    clock: Clock
    metrics: Metrics
    bus: Bus
    supervisor: Supervisor
    records_db: Database | PgDatabase  # the system of record: this node's SQLite, or PostgreSQL shared by nodes
    uow: UnitOfWork           # transactions on the system of record
    events_db: Database | PgDatabase  # the analytics event log (PostgreSQL too when nodes share it)
    event_log: EventLog
    hub: Hub                  # the admin event stream
    public_urls: PublicUrls
    audit: AuditTrail         # admin actions, recorded by the services that perform them
    changes: ChangeFeed | None = None  # several nodes: tell the others which records this one committed
    redis: RedisClient | None = None   # several nodes: what they share hot (budgets, caps, issued bids, rate limits)
    pii: PiiCipher | None = None       # seals personal data at rest (adapters/pii.py); the platform always sets it
    tracing: Tracing = field(default_factory=Tracing.off)  # spans for outbound calls (remote models, DSPs, mail)

    @property
    def personal_data(self) -> PiiCipher:
        """The cipher of personal data: stores holding any are built with it."""
        if self.pii is None:
            raise RuntimeError("Infra was built without the PII cipher (pii=...)")
        return self.pii
