"""What every domain's wiring is built from: the configuration, the shared runtime and the two databases."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adapters.pii import PiiCipher
from adapters.sqlite.db import Database
from adapters.sqlite.leases import SqliteLeases
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


LEASE_MIN_S = 60.0  # a one-node task's lease outlives a few missed passes, so a slow pass does not lose it


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
    lease_holder: str = field(default_factory=lambda: uuid.uuid4().hex)  # this process, among nodes sharing a store

    def add_on_one_node(self, name: str, interval_s: float, tick: Callable[[], Awaitable[object]]) -> None:
        """A periodic task that only one of the nodes sharing the system of record runs at a time (one talking to
        an outside tool, whose work must not be done twice): each pass first takes or renews the lease `name`
        for three intervals (at least LEASE_MIN_S) and is skipped while another node holds it; a node that stops
        renewing is taken over once its lease lapses. One node alone always holds it."""
        turn = self.turn(name, interval_s)

        async def pass_if_ours() -> object:
            return await tick() if await turn() else None
        self.supervisor.add_periodic(name, interval_s, pass_if_ours)

    def turn(self, name: str, interval_s: float) -> Callable[[], Awaitable[bool]]:
        """Whether this node holds the lease `name` now (taking or renewing it); see add_on_one_node."""
        leases, ttl_s = SqliteLeases(self.records_db), max(3 * interval_s, LEASE_MIN_S)
        return lambda: leases.hold(name, self.lease_holder, self.clock.now(), ttl_s)

    @property
    def personal_data(self) -> PiiCipher:
        """The cipher of personal data: stores holding any are built with it."""
        if self.pii is None:
            raise RuntimeError("Infra was built without the PII cipher (pii=...)")
        return self.pii
