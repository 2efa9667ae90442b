"""Orders, the inventory they hold, their payments and barcodes. Live orders hot in memory, all durable in SQLite.

An order is live while it can still change (LIVE: held, being paid, paid or fulfilled until it is archived,
archive_after_days after its flight departs); live orders are kept in memory. A finished order (EXPIRED,
CANCELLED, ARCHIVED) never changes again: it leaves memory once its last change is committed and is read from
the store when asked for.

Inventory is never stored as a counter: the units held per resource are the sum over live
orders' items, rebuilt from the live orders on start. So after any crash the seats held
equal the seats of live orders exactly, by construction.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from state.offers import Conditions, Item

OrderState = Literal["PROPOSED", "PAYMENT_PENDING", "PAID", "FULFILLED", "ARCHIVED", "EXPIRED", "CANCELLED"]
HOLDING = frozenset({"PROPOSED", "PAYMENT_PENDING", "PAID", "FULFILLED", "ARCHIVED"})  # states that keep inventory
# Kept in memory, their items counted in memory's inventory. An ARCHIVED order's flight departed days ago and can
# no longer be sold, so it leaves memory (and memory's count) though the shared inventory table still counts it.
LIVE = frozenset({"PROPOSED", "PAYMENT_PENDING", "PAID", "FULFILLED"})
FINISHED = frozenset({"EXPIRED", "CANCELLED", "ARCHIVED"})  # never change again: read from the store on demand
# The time that makes an order in these states due for the sweep: its hold ends, its flight departs.
_DUE_AT = {"PROPOSED": lambda order: order.hold_expires_at, "FULFILLED": lambda order: order.departure_at}


class Payment(msgspec.Struct, frozen=True, gc=False):
    id: str
    status: Literal["pending", "approved", "declined"]
    amount_cents: int
    currency: str
    card_last4: str
    started_at: float
    updated_at: float
    reason: str | None = None


class Barcode(msgspec.Struct, frozen=True, gc=False):
    code: str
    passenger: int               # 1-based
    kind: str
    product_id: str
    consumed_at: float | None = None


class CancellationQuote(msgspec.Struct, frozen=True, gc=False):
    """A refund quote for the order as it stood when quoted: refund = paid − change fees − penalty.

    It is for that version of the order and what had been paid for it: once the order moves on (paid, changed),
    the quote ends (its `expires_at` is cut to that moment) and a confirm is refused (409, ask for a new quote).
    A quote stored before `order_version` was recorded (0) is never confirmable."""
    id: str
    refund_cents: int
    currency: str
    created_at: float
    expires_at: float
    order_version: int = 0       # the order's version it was made for
    paid_cents: int = 0          # what had been paid for the order, net of refunds, when quoted
    change_fees_cents: int = 0   # change penalties paid for the order's changes: kept
    penalty_cents: int = 0       # the fare's refund penalty on the rest (all of it for a non-refundable fare)


class PendingChange(msgspec.Struct, frozen=True, gc=False):
    """A change being paid for (state/changes.py): the order keeps its itinerary and also holds what the change
    adds until the payment settles; approved, the change is applied; declined, the order returns as it was."""
    change_offer_id: str
    added: tuple[Item, ...]          # held beside the order's items while the payment is pending
    previous_state: OrderState
    previous_payment: Payment | None = None


class Order(msgspec.Struct, frozen=True, gc=False):
    id: str
    owner: str
    offer_id: str
    flight_id: str
    cabin: str
    passengers: int
    items: tuple[Item, ...]
    total_cents: int
    currency: str
    conditions: Conditions
    departure_at: float
    created_at: float
    updated_at: float
    hold_expires_at: float
    state: OrderState = "PROPOSED"
    payment: Payment | None = None
    payments_failed: int = 0
    barcodes: tuple[Barcode, ...] = ()
    quote: CancellationQuote | None = None
    refund_cents: int | None = None
    pending_change: PendingChange | None = None
    version: int = 1             # bumped by each confirmed change (state/changes.py); the history keeps each one
    # The price `conditions` were set for (the offer's total): their refund penalty is that share of what the order
    # is worth now. None on orders accepted before it was recorded: a version-1 order's own total, else unknown.
    offer_total_cents: int | None = None
    change_fees_cents: int = 0   # the change penalties its confirmed changes charged: kept on cancellation


_decode = msgspec.json.Decoder(Order).decode
_encode = msgspec.json.Encoder().encode


def held_items(order: Order) -> tuple[Item, ...]:
    """What a live order holds: its items, and what a change being paid for adds."""
    return order.items + order.pending_change.added if order.pending_change is not None else order.items
