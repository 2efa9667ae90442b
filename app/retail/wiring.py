"""Builds the retail domain: the catalog, offers and their ranking (local, or a remote ranker when configured),
orders (and their changes after payment) and the payment gateway; sweeps expired offers and holds. The ranker's
acceptance model is retrained and versioned by the learning loop (app/learning/acceptance.py). Offer search reads a
customer's recommendations (the reco domain, built before) for its bundles' optional ancillary."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.grpc.ranker import RemoteRanker
from adapters.payments.simulator import CardSimulator
from adapters.sqlite.catalog import SqliteCatalogStore
from adapters.sqlite.changes import SqliteChangeStore
from adapters.sqlite.offers import SqliteOfferStore
from adapters.sqlite.orders import SqliteOrderStore
from adapters.tls import grpc_client_ssl
from app.eventlog import EventLog
from app.infra import Infra
from app.retail.catalog import CatalogService
from app.retail.changes import OrderChangeService
from app.retail.offers import OfferService, Recommendations
from app.retail.ranking import Ranker


@dataclass
class Retail:
    catalog_store: SqliteCatalogStore
    offer_store: SqliteOfferStore
    order_store: SqliteOrderStore
    catalog: CatalogService
    remote_ranker: RemoteRanker | None
    ranker: Ranker
    offers: OfferService
    payment_gateway: CardSimulator
    orders: OrderChangeService  # orders, and their changes after payment (app/retail/changes.py)
    event_log: EventLog
    change_store: SqliteChangeStore

    async def sweep_once(self) -> dict[str, int]:
        """Expire offers and holds, reconcile stuck payments, archive flown orders (one pass); after a start, once
        the live orders are loaded."""
        await self.order_store.loaded()
        expired_offers = await self.offers.expire_due()
        counts = await self.orders.sweep()
        return {"offers_expired": expired_offers, **counts}


def build(infra: Infra, recommendations: Recommendations | None = None) -> Retail:
    """`recommendations`: the engine whose lists choose comfort's and premium's optional ancillary for signed-in
    customers (None: the bundles as listed for everyone)."""
    config, clock, metrics = infra.config, infra.clock, infra.metrics
    catalog_store = SqliteCatalogStore(infra.records_db, infra.changes, config.storage.backend == "postgres")
    offer_store = SqliteOfferStore(infra.records_db, config.retail.max_offers_in_memory,
                                   metrics.offers_evicted.inc)
    order_store = SqliteOrderStore(infra.records_db)
    catalog = CatalogService(catalog_store, order_store, infra.audit)
    rc = config.ranking
    remote = RemoteRanker(rc.remote, rc.remote_api_key, grpc_client_ssl(config.tls)) if rc.remote else None
    ranker = Ranker(rc, metrics, clock, remote=remote)
    offers = OfferService(config.retail, catalog, offer_store, ranker, clock, infra.event_log.log_events, metrics,
                          infra.uow, recommendations)
    pay = config.payments
    gateway = CardSimulator(infra.records_db, clock, settle_s=pay.simulator_settle_s, slow_s=pay.gateway_timeout_s + 1)
    change_store = SqliteChangeStore(infra.records_db)
    orders = OrderChangeService(config.retail, pay, catalog, offers, offer_store, order_store, gateway, clock,
                                infra.event_log.log_event, metrics, infra.bus, infra.uow, change_store)
    metrics.watch_queue("offers_in_memory", lambda: len(offer_store))
    # Flights to fly and those departed within retail.archive_after_days; older ones are read from the store.
    metrics.watch_queue("flights_in_memory", lambda: len(catalog_store))
    # Live orders are bounded by what can still change (state/orders.py); finished ones read back are an LRU.
    metrics.watch_queue("orders_in_memory", lambda: len(order_store))
    metrics.caches.register(order_store.finished)
    metrics.caches.register(offers.drafts)
    domain = Retail(catalog_store, offer_store, order_store, catalog, remote, ranker, offers, gateway, orders,
                    infra.event_log, change_store)
    infra.supervisor.add_periodic("retail_sweep", config.retail.sweep_interval_s, domain.sweep_once)
    return domain
