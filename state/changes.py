"""Order changes: a change request's priced change offers, and the versions an order went through.

A change offer prices one way to change a paid order (another flight, services added or removed) against
the order's version when it was asked for; confirming it makes the order's next version. Hot in memory
while it can be confirmed, durable in SQLite (change_offers); versions in order_versions.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from state.offers import Item
from state.orders import Order

ChangeOfferState = Literal["ACTIVE", "CONFIRMED", "EXPIRED"]


class ChangeOffer(msgspec.Struct, frozen=True, gc=False):
    """One priced way to change an order. Amounts are signed: `total_cents` > 0 is owed by the traveller,
    < 0 is refunded to them."""

    id: str
    request_id: str
    order_id: str
    owner: str
    order_version: int            # the order's version it was priced against; confirm needs it unchanged
    state: ChangeOfferState
    created_at: float
    expires_at: float
    flight_id: str                # the order's flight after the change (the same when only services change)
    cabin: str
    departure_at: float
    items: tuple[Item, ...]       # every item of the order after the change
    added: tuple[Item, ...]       # items the change adds (a new flight, its carried ancillaries, new services)
    removed: tuple[Item, ...]     # items of the order it replaces or removes
    fare_difference_cents: int    # new flight fare − old flight fare (0 without a flight change)
    services_cents: int           # services added − services refunded
    penalty_cents: int            # the change penalty of the order's conditions (flight changes only)
    taxes_cents: int              # taxes on the difference
    forfeited_cents: int          # a non-refundable order's negative difference, not refunded
    total_cents: int              # difference + taxes + penalty: to pay (> 0) or refund (< 0)
    currency: str


class ChangeRequest(msgspec.Struct, frozen=True, gc=False):
    """A request to change an order, and the 1 to 5 change offers it was answered with."""

    id: str
    order_id: str
    created_at: float
    expires_at: float
    change_offers: tuple[ChangeOffer, ...]


class OrderVersion(msgspec.Struct, frozen=True, gc=False):
    """An order as it stood in one version; `change_offer_id` is the change that made it (None: as booked)."""

    version: int
    at: float
    change_offer_id: str | None
    order: Order


decode_change_offer = msgspec.json.Decoder(ChangeOffer).decode
decode_order_version = msgspec.json.Decoder(OrderVersion).decode
encode = msgspec.json.Encoder().encode
