"""What every domain's wiring is built from: the configuration, the shared runtime and the two databases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

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
from state.ports import ChangeFeed, Leases, UnitOfWork

if TYPE_CHECKING:  # imported only where configured (app/platform.py)
    from adapters.postgres.db import PgDatabase
    from adapters.redis.client import RedisClient


LEASE_MIN_S = 60.0  # a one-node task's lease outlives a few missed passes
log = logging.getLogger("contrail.infra")

T = TypeVar("T")


class OneNode:
    """Work only one of the nodes sharing the store does at a time: each pass first takes or renews the lease (and
    is skipped while another node holds it), and renews it every third of its time while the pass runs, so a pass
    longer than the lease keeps it; a node that stops is taken over once its lease lapses."""

    def __init__(self, leases: Leases, name: str, holder: str, clock: Clock, ttl_s: float) -> None:
        self._leases, self._name, self._holder, self._clock, self._ttl_s = leases, name, holder, clock, ttl_s

    async def run(self, work: Callable[[], Awaitable[T]]) -> T | None:
        """`work()`'s answer when this node holds the lease; None, and nothing done, when another does."""
        if not await self._hold():
            return None
        renewing = asyncio.create_task(self._renewing())
        try:
            return await work()
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _hold(self) -> bool:
        return await self._leases.hold(self._name, self._holder, self._clock.now(), self._ttl_s)

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            try:
                if not await self._hold():
                    log.warning("a one-node task lost its lease mid-pass", extra={"task": self._name})
            except Exception as exc:  # the store unreachable: the pass goes on; the lease lapses if this lasts
                log.warning("a one-node task could not renew its lease", extra={"task": self._name,
                                                                                "error": str(exc)[:200]})


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
    # This node among those sharing the store, the same across its restarts (so a restarted node takes its own
    # leases back at once): the platform names it by server.node_id (or the host) and its data directory.
    lease_holder: str = field(default_factory=lambda: uuid.uuid4().hex)

    def add_on_one_node(self, name: str, interval_s: float, tick: Callable[[], Awaitable[object]]) -> None:
        """A periodic task that only one of the nodes sharing the system of record runs at a time (one talking to
        an outside tool, whose work must not be done twice); see OneNode."""
        one = self.one_node(name, interval_s)
        self.supervisor.add_periodic(name, interval_s, lambda: one.run(tick))

    def one_node(self, name: str, interval_s: float) -> OneNode:
        """The lease `name` of a task run every `interval_s`, for three intervals (at least LEASE_MIN_S)."""
        return OneNode(SqliteLeases(self.records_db), name, self.lease_holder, self.clock,
                       max(3 * interval_s, LEASE_MIN_S))

    @property
    def personal_data(self) -> PiiCipher:
        """The cipher of personal data: stores holding any are built with it."""
        if self.pii is None:
            raise RuntimeError("Infra was built without the PII cipher (pii=...)")
        return self.pii
