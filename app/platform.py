"""Builds Contrail's services from a Config: the objects create_app() and the CLI share."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from adapters.pii import FILE_NAME as PII_KEY_FILE
from adapters.pii import cipher_from, rotate_key_file
from adapters.sqlite import migrations
from adapters.sqlite.accounts import SqliteAccountStore
from adapters.sqlite.apikeys import SqliteApiKeyStore
from adapters.sqlite.audit import SqliteAuditStore
from adapters.sqlite.db import Database
from adapters.sqlite.demo import SqliteDemoMarkerStore
from adapters.sqlite.eventlog import SqliteEventLogStore
from adapters.sqlite.idempotency import SqliteIdempotencyStore
from adapters.sqlite.inbox import SqliteInboxStore
from adapters.sqlite.rewrap import PersonalDataRewrap
from adapters.sqlite.statements import used_bytes
from adapters.sqlite.uow import SqliteUnitOfWork
from adapters.tls import http_client_ssl
from app.admin import AdminService, AuditTrail
from app.auth import AccountService, ApiKeyService, Authenticator, TokenService
from app.bidding import wiring as bidding_wiring
from app.campaigns import wiring as campaigns_wiring
from app.campaigns.policies import POLICY_NOTICE
from app.channels import wiring as channels_wiring
from app.config import Config
from app.dsp import wiring as dsp_wiring
from app.errors import CannotStart
from app.eventlog import TRIM_ABOVE, TRIM_TO, EventLog
from app.hub import Hub
from app.idempotency import IdempotencyService
from app.infra import Infra
from app.learning import wiring as learning_wiring
from app.loyalty import wiring as loyalty_wiring
from app.ltv import wiring as ltv_wiring
from app.privacy import CustomerErasure
from app.ratelimit import RateLimiter, TokenBuckets
from app.reco import wiring as reco_wiring
from app.reco.service import FEEDBACK_NOTICE, ITEM_NOTICE
from app.retail import wiring as retail_wiring
from app.retail.orders import departed_horizon
from app.runtime.bus import Bus
from app.runtime.clock import Clock, SystemClock
from app.runtime.health import Health
from app.runtime.metrics import Metrics
from app.runtime.supervisor import Supervisor, watch_loop_lag
from app.runtime.tracing import Tracing
from app.secrets import with_secrets
from app.sessions import Sessions
from app.simulate import NotLoopback, Simulator, check_loopback
from app.urls import PublicUrls
from ml import compiled

# The scale-out adapters (PostgreSQL, Redis, NATS) are imported only when configured: a node on SQLite, every CLI
# command included, starts without loading their client libraries.
if TYPE_CHECKING:
    from adapters.nats.changes import NatsChangeFeed
    from adapters.postgres.db import PgDatabase
    from adapters.redis.client import RedisClient
    from adapters.redis.ratelimit import SharedRateLimits

log = logging.getLogger("contrail")
DEMO_EXCHANGE, DEMO_PROFILES, DEMO_MAIL = "demo traffic (bids)", "demo traffic (profiles)", "demo traffic (mail)"


async def copy_to_postgres(source: Path, dsn: str) -> dict[str, int]:
    """`migrate-to-postgres`: the SQLite system of record at `source` into PostgreSQL (adapters/postgres/copy.py);
    ValueError saying why when refused or when PostgreSQL cannot be reached."""
    import asyncpg

    from adapters.postgres.copy import CannotCopy, copy_sqlite_to_postgres
    try:
        return await copy_sqlite_to_postgres(source, dsn)
    except CannotCopy as exc:
        raise ValueError(str(exc)) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise ValueError(f"PostgreSQL at {dsn.rpartition('@')[2]}: {exc}") from None


def pii_key_file(config: Config) -> Path:
    return Path(config.pii.key_file) if config.pii.key_file else config.data_path / PII_KEY_FILE


def rotate_pii_key(config: Config) -> tuple[str, str]:
    """`rotate-pii-key`: a new current key in the key file, the previous ones kept for reading; the (old, new) key
    ids. ValueError when the keys come from config (rotated there: the new key in pii.key, the old in
    pii.previous_keys)."""
    if config.pii.key:
        raise ValueError("pii.key is set, so the keys come from config: put a new key in pii.key and the current "
                         "one in pii.previous_keys, and restart the nodes one by one")
    return rotate_key_file(pii_key_file(config))


def _watch_database(metrics: Metrics, name: str, db: Database) -> None:
    """Export a database's writer queue depth and the pages its WAL held at the last checkpoint."""
    metrics.watch_queue(f"{name}_writer", lambda: db.queue_depth)
    metrics.wal_pages.labels(name).set_function(lambda: db.wal_frames)
    wal = db.path.with_name(db.path.name + "-wal")
    metrics.database_bytes.labels(name).set_function(lambda: sum(p.stat().st_size for p in (db.path, wal)
                                                                 if p.exists()))


class Platform:
    """Every service of one Contrail instance, wired once; no I/O until open_storage()."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        try:
            self.config = config = with_secrets(config)
        except (OSError, msgspec.DecodeError) as exc:  # the data directory unusable, its secrets file broken
            raise CannotStart(f"storage.data_dir {config.data_path}: {exc}") from None
        self.clock = clock or SystemClock()
        self.metrics = metrics = Metrics()
        t = config.tracing
        self.tracing = Tracing.from_config(
            t.otlp_endpoint, sample_ratio=t.sample_ratio, service_name=t.service_name, node_id=config.server.node_id,
            headers=t.headers, max_queue_spans=t.max_queue_spans, export_interval_ms=t.export_interval_ms,
            export_timeout_ms=t.export_timeout_ms, metrics=metrics, ca_file=config.tls.outbound_ca_file,
            client_cert_file=config.tls.outbound_cert_file, client_key_file=config.tls.outbound_key_file)
        tracer = self.tracing.tracer
        self.public_urls = PublicUrls(config)
        self.bus = Bus(metrics)
        storage = config.storage
        data = config.data_path
        tuning = dict(max_group_size=storage.max_group_size, busy_timeout_ms=storage.busy_timeout_ms,
                      checkpoint_interval_ms=storage.checkpoint_interval_ms,
                      wal_restart_frames=storage.wal_restart_frames)
        self.records_db: Database | PgDatabase
        self.events_db: Database | PgDatabase
        if storage.backend == "postgres":
            from adapters.postgres import migrations as pg_migrations
            from adapters.postgres.db import PgDatabase
            self.records_db = PgDatabase(storage.postgres_dsn, pg_migrations.RECORDS,
                                         max_size=storage.postgres_pool_size, tracer=tracer)
            # Nodes sharing PostgreSQL write telemetry there too, so reports and training read every node's events.
            self.events_db = PgDatabase(storage.events_postgres_dsn or storage.postgres_dsn, pg_migrations.EVENTS,
                                        min_size=1, max_size=4, ledger="event_log_migrations", tracer=tracer)
        else:
            self.records_db = Database(data / "contrail.db", migrations.RECORDS, synchronous=storage.synchronous,
                                       on_commit=metrics.commit_observer("records"), tracer=tracer, **tuning)
            # Telemetry is re-derivable and high volume: NORMAL survives kill -9 (not a power cut).
            self.events_db = Database(data / "events.db", migrations.EVENTS, synchronous="NORMAL",
                                      on_commit=metrics.commit_observer("events"), tracer=tracer, **tuning)
        for name, db in (("records", self.records_db), ("events", self.events_db)):
            if isinstance(db, Database):  # PostgreSQL has no writer queue of ours and no WAL to watch
                _watch_database(metrics, name, db)

        self.hub = Hub(config.websocket.client_queue, on_drop=lambda s: metrics.ws_dropped.labels(s).inc())
        a = config.analytics
        self.event_log = EventLog(SqliteEventLogStore(self.events_db), self.hub, self.clock, metrics,
                                  capacity=a.queue_capacity, flush_rows=a.flush_rows,
                                  flush_interval_ms=a.flush_interval_ms,
                                  sample={"Bid": a.sample_bids, "DspBid": a.sample_bids, "NoBid": a.sample_bids,
                                          "OfferGenerated": a.sample_offers, "ChannelEvent": a.sample_channel_events},
                                  whole_per_s=a.whole_per_s, totals_s=a.totals_s, max_totals=a.max_totals)
        self.supervisor = Supervisor(metrics, backoff_s=config.tasks.restart_backoff_s,
                                     backoff_max_s=config.tasks.restart_backoff_max_s, tracing=self.tracing)
        self.health = Health(self.supervisor, {"records": self.records_db, "events": self.events_db})

        # Several nodes on PostgreSQL with NATS: each tells the others which records it committed.
        self.changes: NatsChangeFeed | None = None
        if storage.backend == "postgres" and config.nats.url:
            from adapters.nats.changes import NatsChangeFeed  # here: the NATS client is imported only when used

            self.changes = NatsChangeFeed(config.nats.url, f"{config.server.node_id or socket.gethostname()}-"
                                          f"{secrets.token_hex(4)}", metrics, self.apply_change)
        p = config.pii
        try:
            self.pii = cipher_from(p.key, p.previous_keys, p.lookup_key, pii_key_file(config))
        except (OSError, ValueError) as exc:
            raise CannotStart(f"pii: {exc}") from None
        self.pii_rewrap = PersonalDataRewrap(self.records_db, self.pii)
        self._rewrap_due = True  # at start: rows sealed under a key rotated while stopped, or not sealed yet
        self.account_store = SqliteAccountStore(self.records_db, self.pii, config.auth.account_cache_entries)
        self.api_key_store = SqliteApiKeyStore(self.records_db, self.changes)
        self.idempotency_store = SqliteIdempotencyStore(self.records_db, self.pii, config.idempotency.max_in_memory)
        self.metrics.caches.register(self.idempotency_store.records)
        self.audit_store = SqliteAuditStore(self.records_db)
        self.demo_markers = SqliteDemoMarkerStore(self.records_db)

        auth = config.auth
        self.tokens = TokenService(auth.jwt_secret, self.clock, customer_ttl_s=auth.customer_token_ttl_s,
                                   guest_ttl_s=auth.guest_token_ttl_s)
        self.accounts = AccountService(self.account_store, self.tokens, self.clock)
        # The websockets and gRPC streams open with each API key, ended when it is revoked (here or on another node).
        self.sessions = Sessions()
        self.metrics.registry.register(self.sessions.collector())
        self.api_keys = ApiKeyService(self.api_key_store, self.clock, self.sessions)
        self.audit = AuditTrail(self.audit_store, self.clock, self.event_log.log_event)
        self.admin = AdminService(self.accounts, self.api_keys, self.audit)
        self.idempotency = IdempotencyService(self.idempotency_store, self.clock, config.idempotency.ttl_s,
                                              config.auth.jwt_secret, shared=storage.backend == "postgres")
        self.authenticator = Authenticator(self.api_keys, self.tokens, self.accounts)
        rl = config.ratelimit
        self.limiter = RateLimiter(TokenBuckets(rl.ip_per_s, rl.ip_burst, name="rate_limit_ip"),
                                   TokenBuckets(rl.principal_per_s, rl.principal_burst, name="rate_limit_principal"),
                                   TokenBuckets(config.bidding.exchange_per_s, config.bidding.exchange_burst,
                                                name="rate_limit_exchange"),
                                   metrics)
        self.supervisor.add_periodic("idempotency_purge", 300, self._purge_idempotency)
        self.supervisor.add_periodic("retention", 60, self._retention)
        self.supervisor.add_periodic("pii_rewrap", config.pii.rewrap_check_s, self.rewrap_pii_once)
        self.supervisor.add("loop_lag", lambda: watch_loop_lag(metrics.loop_lag.observe))
        # Set by create_app: what requests are answered correctly without is loaded after the server is ready
        # (open_storage leaves it to the `warm_up` task); the operator commands load everything first.
        self.load_after_ready = False
        self._after_ready: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        self._loaded_after_ready = asyncio.Event()
        self.supervisor.add("warm_up", self._warm_up)
        if config.demo.traffic_per_s > 0:
            self.supervisor.add("demo_traffic", self._demo_traffic)

        # Each domain is built by its own wiring, in dependency order: bidding reads loyalty's member
        # features; reco comes before retail and channels, which take its lists at construction (offer
        # bundles, activation messages), and needs of them only a flight's destination, looked up when a
        # paid order arrives; channels use loyalty, bidding's profiles and the catalog's product names;
        # retail and loyalty meet on the bus.
        r = config.redis
        self.redis: RedisClient | None = None
        self.shared_limits: SharedRateLimits | None = None
        if r.url:
            from adapters.redis.client import RedisClient
            from adapters.redis.ratelimit import SharedRateLimits
            self.redis = redis = RedisClient(r.url, r.prefix, timeout_s=r.timeout_ms / 1000, pool_size=r.pool_size)
            metrics.redis_failures.set_function(lambda: redis.failures)
            self.health.add_check("redis", lambda: redis.available)
            limiter = self.limiter
            self.shared_limits = SharedRateLimits(redis, {"ip": limiter.ip, "principal": limiter.principal,
                                                          "exchange": limiter.exchange})
            self.supervisor.add_periodic("shared_rate_limits", r.rate_limit_sync_ms / 1000, self.shared_limits.sync)
        infra = Infra(config, self.clock, metrics, self.bus, self.supervisor, self.records_db,
                      SqliteUnitOfWork(self.records_db, self.pii, shared_inventory=storage.backend == "postgres",
                                       changes=self.changes),
                      self.events_db,
                      self.event_log, self.hub, self.public_urls, self.audit, self.changes, self.redis,
                      pii=self.pii, tracing=self.tracing,
                      lease_holder=f"{config.server.node_id or socket.gethostname()}:{config.data_path.resolve()}")
        self.loyalty_domain = loyalty_wiring.build(infra)
        self.ltv_domain = ltv_wiring.build(infra)  # lifetime value reads loyalty's ledger; bids read its values
        self.bidding = bidding_wiring.build(infra, self.loyalty_domain.loyalty.features, self.ltv_domain.values)
        self.campaigns_domain = campaigns_wiring.build(infra, self.bidding.campaigns, self.bidding.campaign_store,
                                                       self._route_of)
        self.reco_domain = reco_wiring.build(infra, self._destination_of)
        self.retail = retail_wiring.build(infra, self.reco_domain.reco)
        self.learning = learning_wiring.build(infra, self.bidding.model, self.retail.ranker,  # the models it trains
                                              self.reco_domain.versions, self.ltv_domain.versions)
        # DSP routing; Contrail's own bidder competes, and DSP bids for a campaign's line items count in its report
        self.dsp = dsp_wiring.build(infra, self.bidding.bid_gateway, self.bidding.campaigns.campaign_of_line_item,
                                   self.bidding.campaigns.line_item_held)
        self.channels = channels_wiring.build(infra, self.loyalty_domain.loyalty, self.bidding.profiles,
                                              self._email_of, self.reco_domain.reco, self.retail.catalog.product_name,
                                              self.ltv_domain.customer_value, self._campaign_state)
        # Each domain's services as attributes of the platform too (`platform.orders`), for the edges,
        # the operator commands and the tests.
        loyalty_domain = self.loyalty_domain
        self.loyalty_store = loyalty_domain.loyalty_store
        self.loyalty = loyalty_domain.loyalty
        bidding = self.bidding
        self.campaign_store = bidding.campaign_store
        self.profile_store = bidding.profile_store
        self.delivery = bidding.delivery
        self.campaigns = bidding.campaigns
        self.workflow = self.campaigns_domain.workflow
        self.policies = self.campaigns_domain.policies
        self.reports = self.campaigns_domain.reports
        self.profiles = bidding.profiles
        self.model = bidding.model
        self.providers = bidding.providers
        self.batcher = bidding.batcher
        self.bid_ledger = bidding.bid_ledger
        self.bid_model = self.learning.bid_model
        self.bidder = bidding.bidder
        self.bid_gateway = bidding.bid_gateway
        self.notices = bidding.notices
        retail = self.retail
        self.catalog_store = retail.catalog_store
        self.offer_store = retail.offer_store
        self.order_store = retail.order_store
        self.catalog = retail.catalog
        self.remote_ranker = retail.remote_ranker
        self.ranker = retail.ranker
        self.offers = retail.offers
        self.payment_gateway = retail.payment_gateway
        self.orders = retail.orders
        channels = self.channels
        self.suppression_store = channels.suppression_store
        self.suppression = channels.suppression
        self.outbox_store = channels.outbox_store
        self.email = channels.email
        self.inapp_hub = channels.inapp_hub
        self.inapp = channels.inapp
        self.adaptors = channels.adaptors
        self.web_activity = channels.web_activity
        self.activation = channels.activation
        self.mailbox = channels.mailbox
        self.ingest = channels.ingest
        self.email_analytics = channels.email_analytics
        self.reco_store = self.reco_domain.reco_store
        self.reco = self.reco_domain.reco
        self.ltv = self.ltv_domain.ltv
        self.erasure = CustomerErasure(
            self.account_store, self.loyalty.member, self.loyalty.forget_member, self.suppression_store,
            self.outbox_store, self.email.cancel, SqliteInboxStore(self.records_db), self.profiles.forget,
            self.ingest.forget, self.idempotency_store, SqliteEventLogStore(self.events_db), self.event_log.flush,
            self.audit, forget_value=self.ltv_domain.forget, forget_decisions=self.policies.forget_decisions)
        self._register_caches()
        for name, drain in self.bus.drains():  # queued subscribers, drained under the supervisor
            self.supervisor.add(name, drain)
        for name, depth in self.bus.depths():
            metrics.watch_queue(f"bus_{name}", depth)

    async def _demo_traffic(self) -> None:
        """The simulator drives this node over loopback once it listens, with keys of its own (those of the last
        start are revoked, so restarts do not pile up live keys)."""
        while not self.public_urls.bound:
            await asyncio.sleep(0.05)
        try:
            base = check_loopback(self.public_urls.local())
        except NotLoopback as exc:
            log.warning("no demo traffic: the simulator drives only a loopback address", extra={"error": str(exc)})
            return
        for key in self.api_keys.list():
            if key.name in (DEMO_EXCHANGE, DEMO_PROFILES, DEMO_MAIL) and key.revoked_at is None:
                await self.api_keys.revoke(key.id)
        _, exchange = await self.api_keys.create(DEMO_EXCHANGE, "exchange")
        _, partner = await self.api_keys.create(DEMO_PROFILES, "partner")
        # The mailbox is read only from the embedded sink, where the demo's mail goes.
        mail = (await self.api_keys.create(DEMO_MAIL, "admin"))[1] if self.config.smtp.embedded_sink else None
        demo = self.config.demo
        # https:// is verified as every outbound call is (tls.outbound_ca_file: the CA of this node's certificate).
        await Simulator(demo.seed, base, exchange, profile_key=partner, mail_key=mail, ssl=http_client_ssl()).run(
            demo.traffic_per_s, math.inf, search_rate=demo.searches_per_s)

    async def _email_of(self, owner: str) -> str | None:
        """An order owner's email: a signed-in user's ("user:<account id>", read if not held); a guest has none."""
        kind, _, account_id = owner.partition(":")
        account = await self.accounts.fetch(account_id) if kind == "user" else None
        return account.email if account is not None and account.email else None  # erased: none

    async def _campaign_state(self, campaign_id: str) -> tuple[str, list[str]] | None:
        """A campaign's state as activation sees it, and the channels it was approved for."""
        campaign = await self.bidding.campaign_store.read(campaign_id)  # an archived one from the store
        if campaign is None:
            return None
        if campaign.state == "live" and campaign.ends_at is not None and campaign.ends_at <= self.clock.now():
            return "completed", campaign.channels  # its end has come; the scheduler's next pass records it
        return campaign.state, campaign.channels

    def _route_of(self, flight_id: str) -> str | None:
        flight = self.catalog_store.flight(flight_id)
        return f"{flight.origin}-{flight.destination}" if flight is not None else None

    def _destination_of(self, flight_id: str) -> str | None:
        flight = self.catalog_store.flight(flight_id)
        return flight.destination if flight is not None else None

    async def sweep_retail_once(self) -> dict[str, int]:
        """Expire offers and holds, reconcile stuck payments, archive flown orders (one pass)."""
        return await self.retail.sweep_once()

    async def retrain_ranking_once(self) -> bool:
        """Retrain offer acceptance now; True when the candidate went live."""
        return (await self.learning.acceptance.retrain()).status == "promoted"

    async def _retention(self) -> None:
        deleted = await self.purge_retained_once()
        if any(deleted.values()):
            log.info("deleted what is past its retention", extra=deleted)

    async def purge_retained_once(self, chunk: int = 5_000) -> dict[str, int]:
        """Delete offers, drafts and unconfirmed change offers past retail.offer_retention_days, events past
        analytics.retention_days (then the oldest while they take more than analytics.max_bytes), impressions older
        than every frequency-cap window, profiles past bidding.profile_l2_ttl_s and notices past the notice window
        (and the UTC day the spend report reads), a chunk per commit (the loop serves between) until none is
        left: a pass stopped midway resumes where it was, the oldest rows first. Then expired offers early while
        contrail.db is past storage.max_database_bytes."""
        totals = {"offers": 0, "drafts": 0, "change_offers": 0, "events": 0, "impressions": 0, "profiles": 0,
                  "notices": 0, "events_over_budget": 0, "offers_over_budget": 0}
        b = self.config.bidding
        while True:
            now = self.clock.now()
            offers, drafts = await self.retail.offers.purge_expired(chunk)
            changes = await self.retail.change_store.purge(
                now - self.config.retail.offer_retention_days * 86_400, chunk)
            events = await self.event_log.purge(now - self.config.analytics.retention_days * 86_400, chunk)
            impressions = await self.bidding.delivery.purge(now, chunk)
            profiles = await self.profile_store.purge(now - b.profile_l2_ttl_s, chunk)
            notices = await self.bidding.delivery.purge_outcomes(now - max(b.bid_ttl_s, 86_400), chunk)
            for name, n in (("offers", offers), ("drafts", drafts), ("change_offers", changes), ("events", events),
                            ("impressions", impressions), ("profiles", profiles), ("notices", notices)):
                totals[name] += n
                if n:
                    self.metrics.rows_pruned.labels(name).inc(n)
            if offers < chunk and drafts < chunk and changes < chunk and not events and impressions < chunk \
                    and profiles < chunk and notices < chunk:
                break
        over = await self.event_log.trim(self.config.analytics.max_bytes, chunk)
        if over:
            totals["events_over_budget"] = over
            self.metrics.rows_pruned.labels("events_over_budget").inc(over)
        totals["offers_over_budget"] = await self._trim_records(chunk)
        return totals

    async def _trim_records(self, chunk: int) -> int:
        """Keep contrail.db within storage.max_database_bytes: past 90% of it, expired offers go before their
        retention is up (those that expired longest ago first: half the retention kept, then a quarter, an eighth,
        none), down to 80%. Only expired offers and their drafts are prunable; records never are. How many went."""
        budget = self.config.storage.max_database_bytes
        used = await used_bytes(self.records_db)
        deleted = 0
        if budget and used > budget * TRIM_ABOVE:
            for share in (0.5, 0.25, 0.125, 0.0):
                while used > budget * TRIM_TO:
                    offers, drafts = await self.retail.offers.purge_expired(chunk, retention_share=share)
                    deleted += offers
                    self.metrics.rows_pruned.labels("offers_over_budget").inc(offers)
                    self.metrics.rows_pruned.labels("drafts").inc(drafts)
                    used = await used_bytes(self.records_db)
                    if offers < chunk and drafts < chunk:
                        break
            if used > budget:
                log.warning("contrail.db is past storage.max_database_bytes with nothing left to prune: add disk or "
                            "raise the budget", extra={"used_bytes": used, "budget_bytes": budget})
        self.metrics.database_over_budget.labels("records").set(1 if budget and used > budget else 0)
        return deleted

    async def rewrap_pii_once(self, force: bool = False) -> dict[str, int]:
        """Re-read the PII keyring (`rotate-pii-key` writes the key file) and, when its current key changed (or at
        start), re-encrypt every sealed row under it; the rows rewritten per table."""
        if self.pii.reload():
            log.info("the PII key changed: re-encrypting personal data", extra={"key_id": self.pii.current_id})
            self._rewrap_due = True
        if not (self._rewrap_due or force):
            return {}
        done = await self.pii_rewrap.run(self.config.pii.rewrap_batch)
        self._rewrap_due = False
        if any(done.values()):
            log.info("personal data re-encrypted under the current key", extra={"key_id": self.pii.current_id,
                                                                                 **done})
        return done

    async def _purge_idempotency(self) -> None:
        removed = await self.idempotency.purge_expired()
        if removed:
            log.info("purged idempotency records", extra={"count": removed})

    def _register_caches(self) -> None:
        """Every bounded cache, exported by name (contrail_cache_entries, _capacity, _evictions_total)."""
        for cache in (self.account_store.ids, self.account_store.emails,
                      self.tokens.verified, self.api_keys.unknown, self.limiter.ip.buckets,
                      self.limiter.principal.buckets, self.limiter.exchange.buckets, self.profiles.l1,
                      self.web_activity.last_seen, self.ingest.sessions, self.mailbox.raw,
                      self.reco.features.users, self.reco.lists, self.ltv.histories,
                      self.ltv.predictions):
            self.metrics.caches.register(cache)
        if self.shared_limits is not None:
            self.metrics.caches.register(self.shared_limits.totals)

    async def apply_change(self, kind: str, ids: list[str]) -> None:
        """Another node committed these records: read them back into this node's memory."""
        if kind == "order":
            await self.retail.order_store.refresh(ids)
        elif kind == "offer":
            await self.retail.offer_store.refresh(ids)
        elif kind in ("flight", "product"):
            await self.retail.catalog_store.refresh(kind, ids)
        elif kind == "campaign":
            await self.bidding.campaign_store.refresh(ids)
        elif kind in ("member", "promotion"):
            await self.loyalty.refresh(kind, ids)
            if kind == "member":  # a purchase on another node: the value this node holds for them is stale
                for member in ids:
                    self.ltv.changed(member)
        elif kind == "api_key":  # revoked there: refused here at once, and the streams open here with it end
            self.api_keys.revoked_elsewhere(await self.api_key_store.refresh(ids))
        elif kind == "suppression":
            await self.suppression_store.refresh(ids)
        elif kind == FEEDBACK_NOTICE:
            await self.reco.apply_remote(ids)
        elif kind == ITEM_NOTICE:
            await self.reco.apply_items(ids)
        elif kind == POLICY_NOTICE:
            await self.policies.refresh(ids)
        else:
            log.warning("a record change of an unknown kind", extra={"kind": kind})

    async def open_storage(self) -> list[int]:
        """Open both databases (applying migrations) and rebuild the hot state."""
        if self.load_after_ready:
            # A server's bid loops, from numba's cache, before it is ready: never compiled on a bid. A command
            # that never bids never loads them (about 0.7 s of every command's start).
            await asyncio.to_thread(compiled.load_modules, bidding_wiring.BID_LOOPS)
        applied = await self.records_db.open()
        await self.events_db.open()
        await self.api_key_store.load()
        await self.account_store.load()
        await self.idempotency_store.load(self.clock.now())
        await self.campaign_store.load()
        if self.load_after_ready and self.redis is None:
            # A million ids take about a second; until they are read every profile lookup reads the store.
            self._after_ready.append(("profile_ids", self.profile_store.load))
        else:
            await self.profile_store.load()
        await self.delivery.load(self.clock.now())
        await self.catalog_store.load(departed_horizon(self.config.retail, self.clock.now()))
        if self.load_after_ready and self.changes is None:
            # Requests that need the live orders (retail's, and its sweep) wait for them (order_store.loaded());
            # with other nodes' changes arriving from the start, they are loaded first, as before.
            self.order_store.defer_load()
            self._after_ready.insert(0, ("live_orders", self.order_store.load))
        else:
            await self.order_store.load()
        await self.offer_store.load(self.clock.now())
        await self.loyalty.load()
        await self.suppression_store.load()
        await self.email.load()
        await self.activation.load()
        await self.reco.load()
        await self.ltv.load()
        await self.policies.load()
        await self.learning.load()
        if self.load_after_ready:
            # The reco and LTV loops, from numba's cache, in a worker thread: compiled when first called otherwise.
            self._after_ready.append(("compiled_loops", lambda: asyncio.to_thread(compiled.load_all)))
        return applied

    async def _warm_up(self) -> None:
        """What open_storage left for after readiness, in order; a step that fails is retried (the task restarts)
        without the ones done before it."""
        started = time.perf_counter()
        steps = self._after_ready
        while steps:
            name, step = steps[0]
            await step()
            steps.pop(0)
            log.info("loaded after ready", extra={"what": name, "seconds": round(time.perf_counter() - started, 3)})
        self._loaded_after_ready.set()

    async def loaded_after_ready(self) -> None:
        """Returns once the `warm_up` task has loaded what open_storage left for after readiness."""
        await self._loaded_after_ready.wait()

    async def close_outbound(self, wait_s: float | None = None) -> None:
        """Before the stores close: the other services' sessions, each after what must reach them has gone (the bid
        providers'; the DSPs' forwarded notices; the decision service's, its background sends stopped; the team's
        tools', the review tasks being opened finished, at most `wait_s`, and their links stored)."""
        await self.adaptors.close()
        await self.dsp.close()
        await self.policies.close()
        await self.campaigns_domain.close(wait_s)

    async def close_storage(self) -> None:
        await self.ingest.flush_profiles()
        await self.close_outbound()
        await self.event_log.flush()
        await self.events_db.close()
        await self.records_db.close()
        if self.redis is not None:
            await self.redis.close()
