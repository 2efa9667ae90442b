"""Builds the loyalty domain: the ledger's store and service; earns and reverses stars for paid and cancelled
orders (retail's events on the bus); expires stars on a schedule."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.sqlite.loyalty import SqliteLoyaltyStore
from app.infra import Infra
from app.loyalty.service import LoyaltyService
from app.retail.events import OrderCancelled, OrderPaid


@dataclass
class Loyalty:
    loyalty_store: SqliteLoyaltyStore
    loyalty: LoyaltyService

    async def earn_for_order(self, event: OrderPaid) -> None:
        """A customer's paid order earns stars (a guest's does not: guests have no loyalty account)."""
        order = event.order
        kind, _, user_id = order.owner.partition(":")
        if kind == "user":
            await self.loyalty.earn(user_id, order.total_cents, "web", f"order:{order.id}", is_digital=True)

    async def reverse_for_order(self, event: OrderCancelled) -> None:
        order = event.order
        if order.owner.startswith("user:") and order.payment is not None and order.payment.status == "approved":
            await self.loyalty.reverse(f"order:{order.id}")


def build(infra: Infra) -> Loyalty:
    store = SqliteLoyaltyStore(infra.records_db)
    domain = Loyalty(store, LoyaltyService(infra.config.loyalty, store, infra.clock, infra.event_log.log_event,
                                           infra.audit, infra.uow, infra.bus.publish))
    infra.bus.subscribe(OrderPaid, domain.earn_for_order)
    infra.bus.subscribe(OrderCancelled, domain.reverse_for_order)
    infra.supervisor.add_periodic("loyalty_expiry", infra.config.loyalty.expiry_interval_s, domain.loyalty.expire_due)
    return domain
