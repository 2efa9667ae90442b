"""Pricing order changes (app/retail/changes.py): what one change request's offers share, and one change offer.

- a new flight (one slice: `remove` the order's flight, `add` a route, day and cabin) is priced as a search prices
  its fare (app/retail/pricing.py, the original offer's segment); the order's ancillaries move to it at the price
  paid;
- services added are priced at today's catalog price per passenger; services removed are worth what was paid;
- fare difference = new fare − old fare; services = added − removed (refunded only when the order is refundable);
  taxes = `retail.tax_percent` of the two (signed); penalty = the order's `conditions.change_penalty_cents` for a
  flight change (none for services); total = difference + services + taxes + penalty: > 0 owed, < 0 refunded. A
  non-refundable order forfeits a negative difference (`forfeited_cents`) and still pays the penalty.

Pure: the caller gives the flight's fare and checks inventory (OrderChangeService._short).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import msgspec

from app.retail.catalog import product_resource, seat_resource
from app.retail.pricing import percent_of
from state.catalog import Flight, Product
from state.changes import ChangeOffer
from state.offers import Item, held_by
from state.orders import Order

ItemKey = tuple[str, str, str | None]


def item_key(item: Item) -> ItemKey:
    return item.kind, item.product_id, item.resource


def _signed_percent(amount: int, percent: float) -> int:
    return percent_of(amount, percent) if amount >= 0 else -percent_of(-amount, percent)


@dataclass(frozen=True, slots=True)
class ChangeBasis:
    """What every change offer of one request shares: the order, the services it keeps, adds and removes."""

    order: Order
    flight_item: Item                  # the order's flight
    kept: tuple[Item, ...]             # the order's services that stay
    added_products: tuple[Product, ...]
    services_cents: int                # added − refunded, the same on every flight
    keys: frozenset[ItemKey]           # the order's items
    held: Counter[str]                 # what the order holds, per resource

    @classmethod
    def of(cls, order: Order, removed_services: list[Item], added_products: list[Product]) -> ChangeBasis:
        gone = {item_key(i) for i in removed_services}
        refunded = sum(i.total_cents for i in removed_services) if order.conditions.refundable else 0
        added = sum(p.price_cents for p in added_products) * order.passengers
        return cls(order, next(i for i in order.items if i.kind == "Flight"),
                   tuple(i for i in order.items if i.kind != "Flight" and item_key(i) not in gone),
                   tuple(added_products), added - refunded, frozenset(map(item_key, order.items)),
                   held_by(order.items))


def change_offer(basis: ChangeBasis, target: tuple[Flight, str, int] | None, tax_percent: float, now: float,
                 ttl_s: float) -> ChangeOffer:
    """The change offer onto `target` (flight, cabin, one passenger's fare now; None: the order's own flight),
    with no id yet."""
    order, pax = basis.order, basis.order.passengers
    kept = basis.kept
    if target is None:
        flight_id, cabin, departure_at = order.flight_id, order.cabin, order.departure_at
        flight_item, fare_difference, penalty = basis.flight_item, 0, 0
    else:
        flight, cabin, fare = target
        flight_id, departure_at = flight.id, flight.departure_at
        flight_item = Item("Flight", flight.id, f"{flight.number} {flight.origin}-{flight.destination} {cabin}",
                           pax, fare, 0, fare * pax, seat_resource(flight.id, cabin))
        # the ancillaries move to the new flight at the price paid
        kept = tuple(msgspec.structs.replace(i, resource=product_resource(flight.id, i.product_id))
                     if i.resource is not None else i for i in kept)
        fare_difference = flight_item.total_cents - basis.flight_item.total_cents
        penalty = order.conditions.change_penalty_cents
    added_services = tuple(Item(p.kind, p.id, p.name, pax, p.price_cents, 0, p.price_cents * pax,
                                product_resource(flight_id, p.id) if p.capacity_per_flight is not None else None)
                           for p in basis.added_products)
    items = (flight_item, *kept, *added_services)
    new_keys = {item_key(i) for i in items}
    added = tuple(i for i in items if item_key(i) not in basis.keys)
    removed = tuple(i for i in order.items if item_key(i) not in new_keys)
    difference = fare_difference + basis.services_cents
    taxes = _signed_percent(difference, tax_percent)
    forfeited = -(difference + taxes) if difference + taxes < 0 and not order.conditions.refundable else 0
    return ChangeOffer(id="", request_id="", order_id=order.id, owner=order.owner, order_version=order.version,
                       state="ACTIVE", created_at=now, expires_at=now + ttl_s, flight_id=flight_id, cabin=cabin,
                       departure_at=departure_at, items=items, added=added, removed=removed,
                       fare_difference_cents=fare_difference, services_cents=basis.services_cents,
                       penalty_cents=penalty, taxes_cents=taxes, forfeited_cents=forfeited,
                       total_cents=difference + taxes + forfeited + penalty, currency=order.currency)
