"""Builds the loyalty domain: the ledger's store and service; earns and reverses stars for paid and cancelled
orders (retail's events on the bus); expires stars on a schedule."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.sqlite.loyalty import SqliteLoyaltyStore
from app.errors import NotFound
from app.infra import Infra
from app.loyalty.service import LoyaltyService
from app.retail.events import OrderCancelled, OrderChanged, OrderPaid
from state.orders import Order


@dataclass
class Loyalty:
    loyalty_store: SqliteLoyaltyStore
    loyalty: LoyaltyService

    async def earn_for_order(self, event: OrderPaid) -> None:
        """A customer's paid order earns stars (a guest's does not: guests have no loyalty account)."""
        order = event.order
        kind, _, user_id = order.owner.partition(":")
        if kind == "user":
            await self._earn(user_id, order)

    async def reverse_for_order(self, event: OrderCancelled) -> None:
        order = event.order
        if order.owner.startswith("user:") and order.payment is not None and order.payment.status == "approved":
            await self._reverse_standing_earn(order, "refund")

    async def earn_for_change(self, event: OrderChanged) -> None:
        """A changed order's stars follow what it now costs: the earn standing for it is reversed and its new total
        earned, each once (a replay of either changes nothing). A change that moved no money leaves the stars
        alone and earns nothing."""
        order, previous = event.order, event.previous
        kind, _, user_id = order.owner.partition(":")
        if kind != "user" or event.change_offer.total_cents == 0:
            return
        await self._reverse_standing_earn(previous, "order_changed")
        await self._earn(user_id, order)

    async def _earn(self, user_id: str, order: Order) -> None:
        await self.loyalty.earn(user_id, order.total_cents, "web", earn_id(order.id, order.version), is_digital=True)

    async def _reverse_standing_earn(self, order: Order, reason: str) -> None:
        """Reverse the earn that stands for this version of the order: the newest version's that earned. A change
        that moved no money earned nothing, so the earn before it still stands; a reversal already made (the earn
        of a version whose own earn then failed) is returned, not made twice."""
        for version in range(order.version, 0, -1):
            try:
                await self.loyalty.reverse(earn_id(order.id, version), reason)
                return
            except NotFound:
                continue  # this version earned nothing


def earn_id(order_id: str, version: int) -> str:
    """The earn transaction of an order's version: the first payment's, then one per confirmed change that moved
    money."""
    return f"order:{order_id}" if version <= 1 else f"order:{order_id}:v{version}"


def build(infra: Infra) -> Loyalty:
    store = SqliteLoyaltyStore(infra.records_db, infra.personal_data)
    domain = Loyalty(store, LoyaltyService(infra.config.loyalty, store, infra.clock, infra.event_log.log_event,
                                           infra.audit, infra.uow, infra.bus.publish,
                                           log_kept=infra.event_log.log_kept))
    metrics = infra.metrics
    metrics.caches.register(domain.loyalty.earned)
    metrics.caches.register(domain.loyalty.reversals)
    metrics.caches.register(domain.loyalty.accounts)
    metrics.caches.register(domain.loyalty.details)
    metrics.watch_queue("loyalty_members", domain.loyalty.members_known)
    infra.bus.subscribe(OrderPaid, domain.earn_for_order)
    infra.bus.subscribe(OrderCancelled, domain.reverse_for_order)
    infra.bus.subscribe(OrderChanged, domain.earn_for_change)
    infra.supervisor.add_periodic("loyalty_expiry", infra.config.loyalty.expiry_interval_s, domain.loyalty.expire_due)
    return domain
