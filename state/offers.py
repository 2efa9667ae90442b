"""Offers: priced bundles a customer may accept until they expire. Hot in memory, durable in SQLite."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import msgspec

from state.catalog import ProductKind

OfferState = Literal["ACTIVE", "ACCEPTED", "EXPIRED", "CANCELLED"]


class Item(msgspec.Struct, frozen=True, gc=False):
    """One line of an offer or order: a product for some passengers."""

    kind: ProductKind
    product_id: str              # the flight id for kind Flight
    name: str
    quantity: int
    unit_price_cents: int        # after any bundle discount
    discount_percent: int
    total_cents: int
    resource: str | None = None  # the inventory it holds ("<flight>/<cabin>", "<flight>/<product>"), if limited


class Conditions(msgspec.Struct, frozen=True, gc=False):
    refundable: bool
    refund_penalty_cents: int
    changeable: bool
    change_penalty_cents: int


class Offer(msgspec.Struct, frozen=True, gc=False):
    """An offer as its shopper sees it. How it was ranked (acceptance probability, margin,
    score) is the airline's business: that goes to the OfferGenerated event.

    The offer's own fields come first: the rest is its draft's, the same for every offer
    made from one priced bundle (see SharedDraft)."""

    id: str
    owner: str                   # the principal scope that searched
    state: OfferState
    created_at: float
    expires_at: float
    flight_id: str
    cabin: str
    passengers: int
    segment: str
    bundle: str                  # flight_only, comfort, premium, or the rule bundle's name
    items: tuple[Item, ...]     # tuples (not lists) of untracked records stay out of GC passes
    taxes_cents: int
    booking_fee_cents: int
    total_cents: int
    currency: str
    conditions: Conditions
    departure_at: float
    discount_percent: float = 0.0  # saving against the items' list prices


_decode = msgspec.json.Decoder(Offer).decode
_encode = msgspec.json.Encoder().encode


class SharedDraft:
    """A priced bundle, encoded and written once, shared by every offer made from it.

    Searches show the same few bundles over and over: an offer's row holds only its own
    fields and its draft's id (about 150 bytes instead of 1.5 KB, so a group commit of
    searches writes a tenth of the pages)."""

    __slots__ = ("id", "body", "written", "__weakref__")

    def __init__(self, draft: Offer) -> None:
        self.id = draft.id
        self.body = _encode(draft)  # the draft's JSON, as offer_drafts holds it
        self.written = False  # in offer_drafts: set once the first offers made from it are committed


# An offer's row holds its own fields; its body is its draft's, or (for offers stored before
# drafts were shared) its own.
_SELECT = ("SELECT o.id, o.owner, o.state, o.created_at, o.expires_at, coalesce(o.body, d.body) "
           "FROM offers o LEFT JOIN offer_drafts d ON d.id = o.draft_id")


def _decode_draft(body: str | bytes) -> Offer:
    """A draft's body (or an offer's own, stored before drafts were shared), decoded once for all its offers."""
    return _decode(body)


def _from_row(row) -> Offer:
    offer_id, owner, state, created_at, expires_at, body = row
    return msgspec.structs.replace(_decode(body), id=offer_id, owner=owner, state=state, created_at=created_at,
                                   expires_at=expires_at)


def held_by(items: Sequence[Item]) -> Counter[str]:
    """The inventory some items hold, units per resource."""
    held: Counter[str] = Counter()
    for item in items:
        if item.resource is not None:
            held[item.resource] += item.quantity
    return held
