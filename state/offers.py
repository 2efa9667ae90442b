"""Offers: priced bundles a customer may accept until they expire. Hot in memory, durable in SQLite."""

from __future__ import annotations

import heapq
from typing import Awaitable, Literal, Sequence

import msgspec

from state.catalog import ProductKind
from state.db import Database, Statement

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


class OfferHead(msgspec.Struct, frozen=True, gc=False):
    """An offer's own fields, in the order (and so the JSON) they open an Offer with."""

    id: str
    owner: str
    state: OfferState
    created_at: float
    expires_at: float


_decode = msgspec.json.Decoder(Offer).decode
_encode = msgspec.json.Encoder().encode


def head_of(offer: Offer) -> OfferHead:
    return OfferHead(offer.id, offer.owner, offer.state, offer.created_at, offer.expires_at)


class SharedDraft:
    """A priced bundle, encoded and written once, shared by every offer made from it.

    Searches show the same few bundles over and over: an offer's row holds only its own
    fields and its draft's id (about 150 bytes instead of 1.5 KB, so a group commit of
    searches writes a tenth of the pages), and its JSON is its own head followed by the
    rest of the draft's JSON: the offer's JSON, without encoding its items again."""

    __slots__ = ("id", "_head", "_rest", "written", "__weakref__")

    def __init__(self, draft: Offer) -> None:
        self.id = draft.id
        body = _encode(draft)
        self._head = _encode(head_of(draft))[:-1]
        assert body.startswith(self._head + b","), "Offer must open with OfferHead's fields"
        self._rest = body[len(self._head):]
        self.written = False  # in offer_drafts: set once the first offers made from it are committed

    @property
    def body(self) -> bytes:
        """The draft's JSON, as offer_drafts holds it."""
        return self._head + self._rest

    def offer_json(self, offer: Offer) -> bytes:
        """An offer made from this draft, as JSON (the same bytes as encoding the offer)."""
        return _encode(head_of(offer))[:-1] + self._rest


# An offer's row holds its own fields; its body is its draft's, or (for offers stored before
# drafts were shared) its own.
_SELECT = ("SELECT o.id, o.owner, o.state, o.created_at, o.expires_at, coalesce(o.body, d.body) "
           "FROM offers o LEFT JOIN offer_drafts d ON d.id = o.draft_id")


def _from_row(row) -> Offer:
    offer_id, owner, state, created_at, expires_at, body = row
    return msgspec.structs.replace(_decode(body), id=offer_id, owner=owner, state=state, created_at=created_at,
                                   expires_at=expires_at)


class SqliteOfferStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._offers: dict[str, Offer] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at, offer id): the sweep pops what is due

    async def load(self, now: float) -> None:
        """Offers that can still be accepted come back after a restart."""
        for row in await self._db.fetchall(f"{_SELECT} WHERE o.state='ACTIVE' AND o.expires_at > ?", (now,)):
            self.remember(_from_row(row))

    def get(self, offer_id: str) -> Offer | None:
        return self._offers.get(offer_id)

    async def fetch(self, offer_id: str) -> Offer | None:
        """An offer no longer held in memory (expired or finished), from SQLite."""
        row = await self._db.fetchone(f"{_SELECT} WHERE o.id=?", (offer_id,))
        return _from_row(row) if row else None

    def __len__(self) -> int:
        return len(self._offers)

    @staticmethod
    def insert(offers: Sequence[Offer], drafts: Sequence[SharedDraft]) -> list[Statement]:
        """A search's offers, `drafts[i]` the one offers[i] was made from: the drafts not yet written,
        then every offer's row in one statement (one step for SQLite, not one per offer). Mark the
        drafts written once these are committed."""
        statements: list[Statement] = []
        new = {d.id: d for d in drafts if not d.written}
        if new:  # a draft two searches write at once is written by the first
            stored_at = offers[0].created_at
            statements.append((f"INSERT OR IGNORE INTO offer_drafts(id, stored_at, body) VALUES "
                               f"{','.join(['(?,?,?)'] * len(new))}",
                               [v for d in new.values() for v in (d.id, stored_at, d.body.decode())]))
        rows = ",".join(["(?,?,?,?,?,?)"] * len(offers))
        statements.append((f"INSERT INTO offers(id, owner, state, created_at, expires_at, draft_id) VALUES {rows}",
                           [v for o, d in zip(offers, drafts)
                            for v in (o.id, o.owner, o.state, o.created_at, o.expires_at, d.id)]))
        return statements

    @staticmethod
    def purge(expired_before: float, limit: int) -> Statement:
        """Delete up to `limit` offers, whatever their state, that expired before `expired_before`."""
        return ("DELETE FROM offers WHERE id IN (SELECT id FROM offers WHERE state IN "
                "('ACTIVE', 'EXPIRED', 'ACCEPTED', 'CANCELLED') AND expires_at < ? LIMIT ?)",
                (expired_before, limit))

    async def unused_drafts(self, stored_before: float, limit: int) -> list[str]:
        """Up to `limit` drafts stored before `stored_before` that no offer is made from."""
        rows = await self._db.fetchall(
            "SELECT id FROM offer_drafts d WHERE stored_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM offers o WHERE o.draft_id = d.id) LIMIT ?", (stored_before, limit))
        return [r[0] for r in rows]

    @staticmethod
    def drop_drafts(draft_ids: Sequence[str]) -> Statement:
        """Delete these drafts, unless an offer has been made from one since (that one stays)."""
        marks = ",".join("?" * len(draft_ids))
        return (f"DELETE FROM offer_drafts WHERE id IN ({marks}) AND NOT EXISTS "
                "(SELECT 1 FROM offers o WHERE o.draft_id = offer_drafts.id)", list(draft_ids))

    @staticmethod
    def change_state(offer: Offer, expected: OfferState) -> Statement:
        """Only the state column changes (an offer's state is read from the column)."""
        return ("UPDATE offers SET state=? WHERE id=? AND state=?", (offer.state, offer.id, expected), 1)

    def remember(self, offer: Offer) -> None:
        if offer.id not in self._offers:
            heapq.heappush(self._expiry, (offer.expires_at, offer.id))
        self._offers[offer.id] = offer

    def due(self, now: float, limit: int = 1_000) -> list[Offer]:
        """Up to `limit` offers in memory whose expiry has come (each returned once)."""
        out: list[Offer] = []
        while self._expiry and self._expiry[0][0] <= now and len(out) < limit:
            _, offer_id = heapq.heappop(self._expiry)
            offer = self._offers.get(offer_id)
            if offer is not None:
                out.append(offer)
        return out

    def forget(self, offer_id: str) -> None:
        self._offers.pop(offer_id, None)

    def write(self, statements: list[Statement], *, power_safe: bool = True) -> Awaitable[list[int]]:
        return self._db.submit(statements, power_safe=power_safe)
