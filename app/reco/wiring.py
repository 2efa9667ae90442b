"""Builds the recommendation domain: its store and service; learns from ingest's events and paid and changed
orders (on the bus); retrains on a schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.sqlite.models import SqliteModelRegistry
from adapters.sqlite.reco import SqliteRecoStore
from app.channels.events import CustomerEventsIngested
from app.infra import Infra
from app.learning.versions import Versioning
from app.reco.service import FEEDBACK, Feedback, RecoService
from app.reco.versions import RecoVersions
from app.retail.events import OrderChanged, OrderPaid
from state.orders import Order

FINAL = ("purchase", "dismiss")  # the feedback that keeps an item out of the customer's lists


@dataclass
class Reco:
    reco_store: SqliteRecoStore
    reco: RecoService
    destination_of: Callable[[str], str | None]

    @property
    def versions(self) -> RecoVersions:
        """The model's versions in the registry (GET /v1/admin/models/reco, its canaries)."""
        assert self.reco.versions is not None
        return self.reco.versions

    async def learn_from_events(self, event: CustomerEventsIngested) -> None:
        """Ingest's feedback events with an item (the product_id) and a known user, in the background: a batch
        without a purchase or a dismissal."""
        if not _final(event):
            await self._learn(event)

    async def learn_in_line(self, event: CustomerEventsIngested) -> None:
        """A batch with a purchase or a dismissal, stored and learned before ingest answers, in its order: either
        keeps an item out of the customer's lists, so one acknowledged and lost to a kill -9 would show the bought
        or dismissed item again."""
        if _final(event):
            await self._learn(event)

    async def _learn(self, event: CustomerEventsIngested) -> None:
        await self.reco.record((Feedback(e.user_id, e.product_id, e.type, e.at) for e in event.events
                                if e.type in FEEDBACK and e.product_id), arrived=event.accepted_at)

    async def learn_from_order(self, event: OrderPaid) -> None:
        """A paid order: its destination ("dest-XXX") and its products are the customer's purchases."""
        order = event.order
        user_id = _member(order)
        if user_id:
            at = order.payment.updated_at if order.payment is not None else order.updated_at
            await self.reco.on_order_paid(user_id, self._items(order), at)

    async def learn_from_change(self, event: OrderChanged) -> None:
        """A changed order: what the new version has and the one it replaced had not (another destination, services
        added) is bought now."""
        user_id = _member(event.order)
        if user_id:
            before = set(self._items(event.previous))
            added = [i for i in self._items(event.order) if i not in before]
            if added:
                await self.reco.on_order_paid(user_id, added, event.order.updated_at)

    def _items(self, order: Order) -> list[str]:
        items: list[str] = []
        for line in order.items:
            if line.kind == "Flight":
                destination = self.destination_of(line.product_id)
                if destination:
                    items.append(f"dest-{destination}")
            else:
                items.append(line.product_id)
        return list(dict.fromkeys(items))


def _final(event: CustomerEventsIngested) -> bool:
    return any(e.type in FINAL and e.product_id for e in event.events)


def _member(order: Order) -> str | None:
    """The customer whose order it is (a guest's teaches nothing: it has no one to recommend to)."""
    kind, _, user_id = order.owner.partition(":")
    return user_id if kind == "user" and user_id else None


def build(infra: Infra, destination_of: Callable[[str], str | None]) -> Reco:
    """`destination_of`: a flight id's destination airport (None when unknown)."""
    store = SqliteRecoStore(infra.records_db)
    config = infra.config
    versioning = Versioning(SqliteModelRegistry(infra.records_db), infra.audit, config.canary,
                            config.learning.keep_files)
    service = RecoService(config.reco, store, infra.clock, infra.metrics, infra.bus.publish, infra.changes,
                          versioning, max_future_skew_s=config.ingest.max_future_skew_s)
    domain = Reco(store, service, destination_of)
    # Queued: ingest answers without waiting for the features (an fsync and the feature updates were most of its
    # p99); they learn within milliseconds, and contrail_queue_depth{queue="bus_reco_learning"} shows any lag.
    # Reco stores what it learns, so a full queue holds ingest back rather than lose accepted feedback; 256 batches
    # absorb bursts while bounding what waits in memory.
    # A batch with a purchase or a dismissal is the exception (learn_in_line). It already waits for the stars its
    # purchases earn, and a batch learned in line may overtake a customer's events still queued from an earlier one
    # (the store's order is the order they were learned in, which is the order a restart replays).
    infra.bus.subscribe_queued(CustomerEventsIngested, "reco_learning", domain.learn_from_events, capacity=256,
                               when_full="wait")
    infra.bus.subscribe(CustomerEventsIngested, domain.learn_in_line)
    infra.bus.subscribe(OrderPaid, domain.learn_from_order)
    infra.bus.subscribe(OrderChanged, domain.learn_from_change)
    if infra.config.reco.retrain_interval_s > 0:
        infra.supervisor.add_periodic("reco_retrain", infra.config.reco.retrain_interval_s, service.retrain)
    # The features saved now and then, so a start replays only what came after (one node: with several, a node
    # cannot tell which of the others' feedback it holds, and starts from the whole log).
    if infra.config.reco.checkpoint_interval_s > 0 and infra.changes is None:
        infra.supervisor.add_periodic("reco_checkpoint", infra.config.reco.checkpoint_interval_s, service.checkpoint)
    return domain
