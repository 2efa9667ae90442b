"""Builds the bidding domain: campaigns and pacing, profiles, the scoring batcher, the bid pipeline every
protocol calls, and notices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from adapters.sqlite.campaigns import SqliteCampaignStore
from adapters.sqlite.delivery import SqliteDeliveryStore
from adapters.sqlite.profiles import SqliteProfileStore
from app.bidding import auction
from app.bidding.campaigns import CampaignService
from app.bidding.gateway import BidGateway
from app.bidding.models import ModelHolder
from app.bidding.notices import BidLedger, NoticeService
from app.bidding.processor import BidProcessor, ValuePricing, Values
from app.bidding.profiles import ProfileCache
from app.bidding.shown import FeatureTap
from app.infra import Infra
from ml.batcher import Batcher
from ml.providers import Provider, build_providers

# The compiled loops every bid runs (the network's layers, the auction): a server loads them before it is ready.
BID_LOOPS = ("ml.kernels", "app.bidding.auction")


@dataclass
class Bidding:
    campaign_store: SqliteCampaignStore
    profile_store: SqliteProfileStore
    delivery: SqliteDeliveryStore
    campaigns: CampaignService
    profiles: ProfileCache
    model: ModelHolder
    providers: dict[str, Provider]
    batcher: Batcher
    bid_ledger: BidLedger
    bidder: BidProcessor
    bid_gateway: BidGateway
    notices: NoticeService


def build(infra: Infra, loyalty_features: Callable[[str], np.ndarray | None], values: Values | None = None) -> Bidding:
    """`values`: the customers' lifetime values (the LTV domain's ValueSource) that value-bidding campaigns price
    their bids from; None: every bid keeps the auction's price."""
    config, clock, metrics = infra.config, infra.clock, infra.metrics
    b, inf = config.bidding, config.inference
    campaign_store = SqliteCampaignStore(infra.records_db, infra.changes)
    profile_store: SqliteProfileStore
    delivery: SqliteDeliveryStore
    if infra.redis is None:  # one node: it admits its bids against budgets in its own memory
        profile_store = SqliteProfileStore(infra.records_db)
        delivery = SqliteDeliveryStore(infra.records_db, max_reserved=b.max_live_bids)
    else:  # several nodes: profiles, budgets, caps and issued bids shared in Redis (imported only then)
        from adapters.redis.delivery import RedisDeliveryStore
        from adapters.redis.profiles import RedisProfileStore
        profile_store = RedisProfileStore(infra.records_db, infra.redis, b.profile_l2_ttl_s, clock.now)
        delivery = redis_delivery = RedisDeliveryStore(infra.records_db, infra.redis,
                                                       lambda: [c.id for c in campaign_store.all()], clock=clock.now)

        async def refresh_spend() -> None:
            # Spend other nodes charged (no charge here announced it): the budget view reads those campaigns again.
            campaigns.spend_changed(await redis_delivery.refresh_spend())

        infra.supervisor.add_periodic("shared_spend_refresh", config.redis.spend_refresh_ms / 1000, refresh_spend)
    metrics.watch_queue("bid_reservations", lambda: delivery.reservations)
    metrics.watch_queue("campaigns_in_memory", lambda: len(campaign_store))
    metrics.delivery_users.set_function(lambda: len(delivery.impressions))
    campaigns = CampaignService(campaign_store, delivery, clock, infra.audit, pacing_slack=b.pacing_slack,
                                shape_cache_bytes=b.shape_cache_mb << 20,
                                dsp_platforms=[p.name for p in config.dsp.platforms])
    metrics.caches.register(campaigns.shape_cache)
    metrics.caches.register(campaigns.block_masks)
    profiles = ProfileCache(profile_store, clock, l1_size=b.profile_l1_size, l2_ttl_s=b.profile_l2_ttl_s,
                            metrics=metrics)
    model = ModelHolder(inf.model_path, metrics)
    providers = build_providers()

    def observe_batch(calls: int, rows: int, waited_s: float) -> None:
        metrics.batch_calls.observe(calls)
        metrics.batch_wait.observe(waited_s)

    batcher = Batcher(providers[inf.provider], model, max_batch=inf.max_batch, max_wait_us=inf.max_wait_us,
                      max_queue=inf.max_queue, timeout_ms=inf.timeout_ms, on_batch=observe_batch,
                      settle=auction.settle)
    model.scores_through(batcher)
    metrics.watch_queue("inference", lambda: batcher.depth)
    ledger = BidLedger(clock, b.max_live_bids, on_forgotten_live=metrics.bids_forgotten_live.inc)
    metrics.watch_queue("bid_ledger", lambda: len(ledger))
    urls = infra.public_urls
    value_pricing = ValuePricing(values, b, config.retail.currency, metrics) if values is not None else None
    tap = FeatureTap(config.learning.feature_slots)
    metrics.caches.register(tap)
    bidder = BidProcessor(b, campaigns, profiles, delivery, batcher, ledger, clock, infra.event_log.log_event,
                          urls.notices(), loyalty_features=loyalty_features, value_pricing=value_pricing,
                          feature_tap=tap, shared=delivery)
    urls.on_change(lambda: bidder.set_notice_base(urls.notices()))
    gateway = BidGateway(bidder, metrics)
    notices = NoticeService(ledger, delivery, clock, infra.event_log.log_event, metrics, infra.bus.publish, tap,
                            delivery, spend_watch=campaigns, log_kept=infra.event_log.log_kept)
    infra.supervisor.add_periodic("bid_ledger_sweep", 1.0, ledger.sweep)
    return Bidding(campaign_store, profile_store, delivery, campaigns, profiles, model, providers, batcher, ledger,
                   bidder, gateway, notices)
