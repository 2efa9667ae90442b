"""Builds Contrail's services from a Config: the objects create_app() and the CLI share."""

from __future__ import annotations

import asyncio
import logging

import msgspec

from adapters.grpc.ranker import RemoteRanker
from adapters.http.providers import HttpAdaptors
from adapters.payments.simulator import CardSimulator
from adapters.sqlite import migrations
from adapters.sqlite.accounts import SqliteAccountStore
from adapters.sqlite.activations import SqliteActivationCountStore
from adapters.sqlite.apikeys import SqliteApiKeyStore
from adapters.sqlite.audit import SqliteAuditStore
from adapters.sqlite.campaigns import SqliteCampaignStore
from adapters.sqlite.catalog import SqliteCatalogStore
from adapters.sqlite.db import Database
from adapters.sqlite.delivery import SqliteDeliveryStore
from adapters.sqlite.demo import SqliteDemoMarkerStore
from adapters.sqlite.eventlog import SqliteEventLogStore
from adapters.sqlite.idempotency import SqliteIdempotencyStore
from adapters.sqlite.inbox import SqliteInboxStore
from adapters.sqlite.loyalty import SqliteLoyaltyStore
from adapters.sqlite.offers import SqliteOfferStore
from adapters.sqlite.orders import SqliteOrderStore
from adapters.sqlite.outbox import SqliteOutboxStore
from adapters.sqlite.profiles import SqliteProfileStore
from adapters.sqlite.suppressions import SqliteSuppressionStore
from app.admin import AdminService
from app.auth import AccountService, ApiKeyService, Authenticator, TokenService
from app.bidding import auction
from app.bidding.campaigns import CampaignService
from app.bidding.gateway import BidGateway
from app.bidding.models import ModelHolder
from app.bidding.notices import BidLedger, NoticeService
from app.bidding.processor import BidProcessor
from app.bidding.profiles import ProfileCache
from app.bidding.simulator import run_traffic
from app.channels.activation import ActivationService
from app.channels.analytics import EmailAnalytics, load_verification_key
from app.channels.email import EmailService
from app.channels.inapp import InAppService
from app.channels.ingest import IngestService, WebActivity
from app.channels.sink import Mailbox
from app.channels.suppression import SuppressionService
from app.config import Config
from app.eventlog import EventLog
from app.hub import Hub
from app.idempotency import IdempotencyService
from app.loyalty.service import LoyaltyService
from app.ratelimit import RateLimiter, TokenBuckets
from app.retail.catalog import CatalogService
from app.retail.events import OrderCancelled, OrderPaid
from app.retail.offers import OfferService
from app.retail.orders import OrderService
from app.retail.ranking import Ranker
from app.runtime.bus import Bus
from app.runtime.clock import Clock, SystemClock
from app.runtime.health import Health
from app.runtime.metrics import Metrics
from app.runtime.supervisor import Supervisor
from app.secrets import with_secrets
from app.urls import PublicUrls
from ml.batcher import Batcher
from ml.providers import build_providers

log = logging.getLogger("contrail")


def _watch_database(metrics: Metrics, name: str, db: Database) -> None:
    """Export a database's writer queue depth and the pages its WAL held at the last checkpoint."""
    metrics.watch_queue(f"{name}_writer", lambda: db.queue_depth)
    metrics.wal_pages.labels(name).set_function(lambda: db.wal_frames)


class Platform:
    """Every service of one Contrail instance, wired once; no I/O until open_storage()."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config = with_secrets(config)
        self.clock = clock or SystemClock()
        self.metrics = metrics = Metrics()
        self.public_urls = PublicUrls(config)
        self.bus = Bus(metrics)
        storage = config.storage
        data = config.data_path
        tuning = dict(max_group_size=storage.max_group_size, busy_timeout_ms=storage.busy_timeout_ms,
                      checkpoint_interval_ms=storage.checkpoint_interval_ms,
                      wal_restart_frames=storage.wal_restart_frames)
        self.records_db = Database(data / "contrail.db", migrations.RECORDS, synchronous=storage.synchronous,
                                   on_commit=metrics.commit_observer("records"), **tuning)
        # Telemetry is re-derivable and high volume: NORMAL survives kill -9 (not a power cut).
        self.events_db = Database(data / "events.db", migrations.EVENTS, synchronous="NORMAL",
                                  on_commit=metrics.commit_observer("events"), **tuning)
        for name, db in (("records", self.records_db), ("events", self.events_db)):
            _watch_database(metrics, name, db)

        self.hub = Hub(config.websocket.client_queue, on_drop=lambda s: metrics.ws_dropped.labels(s).inc())
        a = config.analytics
        self.event_log = EventLog(SqliteEventLogStore(self.events_db), self.hub, self.clock, metrics,
                                  capacity=a.queue_capacity, flush_rows=a.flush_rows,
                                  flush_interval_ms=a.flush_interval_ms)
        self.supervisor = Supervisor(metrics, backoff_s=config.tasks.restart_backoff_s,
                                     backoff_max_s=config.tasks.restart_backoff_max_s)
        self.health = Health(self.supervisor, {"records": self.records_db, "events": self.events_db})

        self.account_store = SqliteAccountStore(self.records_db)
        self.api_key_store = SqliteApiKeyStore(self.records_db)
        self.idempotency_store = SqliteIdempotencyStore(self.records_db)
        self.audit_store = SqliteAuditStore(self.records_db)
        self.demo_markers = SqliteDemoMarkerStore(self.records_db)

        auth = config.auth
        self.tokens = TokenService(auth.jwt_secret, self.clock, customer_ttl_s=auth.customer_token_ttl_s,
                                   guest_ttl_s=auth.guest_token_ttl_s)
        self.accounts = AccountService(self.account_store, self.tokens, self.clock)
        self.api_keys = ApiKeyService(self.api_key_store, self.clock)
        self.admin = AdminService(self.accounts, self.api_keys, self.audit_store, self.clock,
                                  self.event_log.log_event)
        self.idempotency = IdempotencyService(self.idempotency_store, self.clock, config.idempotency.ttl_s)
        self.authenticator = Authenticator(self.api_keys, self.tokens, self.accounts)
        rl = config.ratelimit
        self.limiter = RateLimiter(TokenBuckets(rl.ip_per_s, rl.ip_burst, name="rate_limit_ip"),
                                   TokenBuckets(rl.principal_per_s, rl.principal_burst, name="rate_limit_principal"),
                                   TokenBuckets(config.bidding.exchange_per_s, config.bidding.exchange_burst,
                                                name="rate_limit_exchange"),
                                   metrics)
        self.supervisor.add_periodic("idempotency_purge", 300, self._purge_idempotency)
        self._build_loyalty(config)  # first: bidding reads members' features, and it subscribes to retail
        self._build_bidding(config)
        self._build_retail(config)
        self._build_channels(config)
        self._register_caches()

    def _build_bidding(self, config: Config) -> None:
        b, inf = config.bidding, config.inference
        self.campaign_store = SqliteCampaignStore(self.records_db)
        self.profile_store = SqliteProfileStore(self.records_db)
        self.delivery = SqliteDeliveryStore(self.records_db)
        self.campaigns = CampaignService(self.campaign_store, self.delivery, self.clock, pacing_slack=b.pacing_slack)
        self.profiles = ProfileCache(self.profile_store, self.clock, l1_size=b.profile_l1_size,
                                     l2_ttl_s=b.profile_l2_ttl_s, metrics=self.metrics)
        self.model = ModelHolder(inf.model_path, self.metrics)
        self.providers = build_providers()
        self.batcher = Batcher(self.providers[inf.provider], self.model, max_batch=inf.max_batch,
                               max_wait_us=inf.max_wait_us, max_queue=inf.max_queue, timeout_ms=inf.timeout_ms,
                               on_batch=self._observe_batch, settle=auction.settle)
        self.metrics.watch_queue("inference", lambda: self.batcher.depth)
        self.bid_ledger = BidLedger(self.clock)
        self.bidder = BidProcessor(b, self.campaigns, self.profiles, self.delivery, self.batcher, self.bid_ledger,
                                   self.clock, self.event_log.log_event, self.public_urls.notices(),
                                   loyalty_features=self.loyalty.features)
        self.public_urls.on_change(lambda: self.bidder.set_notice_base(self.public_urls.notices()))
        self.bid_gateway = BidGateway(self.bidder, self.metrics)
        self.notices = NoticeService(self.bid_ledger, self.delivery, self.clock, self.event_log.log_event,
                                     self.metrics)
        self.supervisor.add_periodic("bid_ledger_sweep", 1.0, self.bid_ledger.sweep)
        if config.demo.traffic_per_s > 0:
            self.supervisor.add("demo_traffic", lambda: run_traffic(self.bid_gateway, self.notices,
                                                                    config.demo.traffic_per_s))

    def _build_retail(self, config: Config) -> None:
        self.catalog_store = SqliteCatalogStore(self.records_db)
        self.offer_store = SqliteOfferStore(self.records_db)
        self.order_store = SqliteOrderStore(self.records_db)
        self.catalog = CatalogService(self.catalog_store, self.order_store)
        rc = config.ranking
        self.remote_ranker = RemoteRanker(rc.remote, rc.remote_api_key) if rc.remote else None
        self.ranker = Ranker(rc, self.metrics, self.clock, remote=self.remote_ranker)
        self.offers = OfferService(config.retail, self.catalog, self.offer_store, self.ranker, self.clock,
                                   self.event_log.log_events, self.metrics)
        pay = config.payments
        self.payment_gateway = CardSimulator(self.clock, settle_s=pay.simulator_settle_s,
                                             slow_s=pay.gateway_timeout_s + 1)
        self.orders = OrderService(config.retail, pay, self.catalog, self.offers, self.offer_store, self.order_store,
                                   self.payment_gateway, self.clock, self.event_log.log_event, self.metrics, self.bus)
        self.metrics.watch_queue("offers_in_memory", lambda: len(self.offer_store))
        self.supervisor.add_periodic("retail_sweep", config.retail.sweep_interval_s, self.sweep_retail_once)
        self.supervisor.add_periodic("retention", 60, self._retention)
        self.supervisor.add_periodic("ranking_retrain", config.ranking.retrain_interval_s, self.retrain_ranking_once)

    async def sweep_retail_once(self) -> dict[str, int]:
        """Expire offers and holds, reconcile stuck payments, archive flown orders (one pass)."""
        expired_offers = await self.offers.expire_due()
        counts = await self.orders.sweep()
        return {"offers_expired": expired_offers, **counts}

    async def _retention(self) -> None:
        deleted = await self.purge_retained_once()
        if any(deleted.values()):
            log.info("deleted what is past its retention", extra=deleted)

    async def purge_retained_once(self, chunk: int = 5_000) -> dict[str, int]:
        """Delete offers and drafts past retail.offer_retention_days, events past analytics.retention_days
        and impressions older than every frequency-cap window, a chunk per commit (the loop serves
        between) until none is left."""
        totals = {"offers": 0, "drafts": 0, "events": 0, "impressions": 0}
        while True:
            now = self.clock.now()
            offers, drafts = await self.offers.purge_expired(chunk)
            events = await self.event_log.purge(now - self.config.analytics.retention_days * 86_400, chunk)
            impressions = await self.delivery.purge(now, chunk)
            for name, n in (("offers", offers), ("drafts", drafts), ("events", events), ("impressions", impressions)):
                totals[name] += n
            if offers < chunk and drafts < chunk and not events and impressions < chunk:
                return totals

    async def retrain_ranking_once(self, window: int = 50_000) -> bool:
        """Fit the acceptance model on recent offers: generated (features) vs accepted."""
        await self.event_log.flush()
        log_ = self.event_log
        generated = await log_.recent_payloads("OfferGenerated", window)
        accepted = await log_.recent_payloads("OfferAccepted", window)

        def fit() -> bool:
            # Decoding 50,000 payloads and fitting takes a few hundred ms: on a thread of its own the
            # loop keeps serving (it gets the GIL back every switch interval) instead of standing still.
            taken = {msgspec.json.decode(p).get("offer_id") for p in accepted}
            shown = (msgspec.json.decode(p) for p in generated)
            return self.ranker.retrain([(g["features"], g["offer_id"] in taken) for g in shown if g.get("features")])
        return await asyncio.to_thread(fit)

    def _build_loyalty(self, config: Config) -> None:
        self.loyalty_store = SqliteLoyaltyStore(self.records_db)
        self.loyalty = LoyaltyService(config.loyalty, self.loyalty_store, self.clock, self.event_log.log_event)
        self.bus.subscribe(OrderPaid, self._earn_for_order)
        self.bus.subscribe(OrderCancelled, self._reverse_for_order)
        self.supervisor.add_periodic("loyalty_expiry", config.loyalty.expiry_interval_s, self.loyalty.expire_due)

    async def _earn_for_order(self, event: OrderPaid) -> None:
        """A customer's paid order earns stars (a guest's does not: guests have no loyalty account)."""
        order = event.order
        kind, _, user_id = order.owner.partition(":")
        if kind == "user":
            await self.loyalty.earn(user_id, order.total_cents, "web", f"order:{order.id}", is_digital=True)

    async def _reverse_for_order(self, event: OrderCancelled) -> None:
        order = event.order
        if order.owner.startswith("user:") and order.payment is not None and order.payment.status == "approved":
            await self.loyalty.reverse(f"order:{order.id}")

    def _build_channels(self, config: Config) -> None:
        self.suppression_store = SqliteSuppressionStore(self.records_db)
        self.suppression = SuppressionService(self.suppression_store, self.clock)
        self.outbox_store = SqliteOutboxStore(self.records_db)
        self.email = EmailService(config.smtp, self.public_urls.links, config.auth.jwt_secret,
                                  self.outbox_store, self.suppression, self.clock, self.event_log.log_event)
        self.inapp_hub = Hub(config.websocket.client_queue,
                             on_drop=lambda s: self.metrics.ws_dropped.labels(s).inc())
        self.inapp = InAppService(SqliteInboxStore(self.records_db), self.inapp_hub, self.clock)
        self.adaptors = HttpAdaptors(config.adaptors)
        self.web_activity = WebActivity(self.clock)
        self.activation = ActivationService(config.channels, self.loyalty.member, self.email, self.inapp,
                                            self.adaptors, self.suppression,
                                            SqliteActivationCountStore(self.records_db), self.clock,
                                            self.event_log.log_event, self.web_activity.seen)
        self.mailbox = Mailbox()
        self.ingest = IngestService(config.ingest, self.loyalty, self.profiles, self.activation, self.web_activity,
                                    self.clock, self.event_log.log_events)
        self.supervisor.add_periodic("profile_write_behind", config.ingest.profile_flush_interval_s,
                                     self.ingest.flush_profiles)
        self.email_analytics = EmailAnalytics(self.outbox_store, self.suppression, self.clock,
                                              load_verification_key(config.sendgrid.verification_key),
                                              allow_unsigned=config.sendgrid.allow_unsigned)
        self.supervisor.add("email_sender", self.email.run)
        self.supervisor.add_periodic("suppression_cleanup", 600, self.suppression.purge_expired)

    def _observe_batch(self, calls: int, rows: int, waited_s: float) -> None:
        self.metrics.batch_calls.observe(calls)
        self.metrics.batch_wait.observe(waited_s)

    async def _purge_idempotency(self) -> None:
        removed = await self.idempotency.purge_expired()
        if removed:
            log.info("purged idempotency records", extra={"count": removed})

    def _register_caches(self) -> None:
        """Every bounded cache, exported by name (contrail_cache_entries, _capacity, _evictions_total)."""
        for cache in (self.tokens.verified, self.api_keys.unknown, self.limiter.ip.buckets,
                      self.limiter.principal.buckets, self.limiter.exchange.buckets, self.profiles.l1,
                      self.web_activity.last_seen, self.ingest.sessions, self.mailbox.raw):
            self.metrics.caches.register(cache)

    async def open_storage(self) -> list[int]:
        """Open both databases (applying migrations) and rebuild the hot state."""
        applied = await self.records_db.open()
        await self.events_db.open()
        await self.api_key_store.load()
        await self.account_store.load()
        await self.idempotency_store.load(self.clock.now())
        await self.campaign_store.load()
        await self.profile_store.load()
        await self.delivery.load(self.clock.now())
        await self.catalog_store.load()
        await self.order_store.load()
        await self.offer_store.load(self.clock.now())
        await self.loyalty.load()
        await self.suppression_store.load()
        await self.email.load()
        await self.activation.load()
        return applied

    async def close_storage(self) -> None:
        await self.ingest.flush_profiles()
        await self.adaptors.close()
        await self.event_log.flush()
        await self.events_db.close()
        await self.records_db.close()
