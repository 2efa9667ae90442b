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
    """An offer as its shopper sees it and as it is stored. How it was ranked (acceptance
    probability, margin, score) is the airline's business: that goes to the OfferGenerated event."""

    id: str
    owner: str                   # the principal scope that searched
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
    created_at: float
    expires_at: float
    departure_at: float
    discount_percent: float = 0.0  # saving against the items' list prices
    state: OfferState = "ACTIVE"


_decode = msgspec.json.Decoder(Offer).decode
encode_offer = msgspec.json.Encoder().encode  # an offer as stored, and as the API shows it


class SqliteOfferStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._offers: dict[str, Offer] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at, offer id): the sweep pops what is due

    async def load(self, now: float) -> None:
        """Offers that can still be accepted come back after a restart."""
        for (body,) in await self._db.fetchall(
                "SELECT body FROM offers WHERE state='ACTIVE' AND expires_at > ?", (now,)):
            self.remember(_decode(body))

    def get(self, offer_id: str) -> Offer | None:
        return self._offers.get(offer_id)

    async def fetch(self, offer_id: str) -> Offer | None:
        """An offer no longer held in memory (expired or finished), from SQLite."""
        row = await self._db.fetchone("SELECT body, state FROM offers WHERE id=?", (offer_id,))
        return msgspec.structs.replace(_decode(row[0]), state=row[1]) if row else None

    def __len__(self) -> int:
        return len(self._offers)

    @staticmethod
    def insert(*offers: Offer, bodies: Sequence[bytes]) -> Statement:
        """One statement for all of a search's offers (one step for SQLite, not one per offer);
        `bodies` are the offers as encode_offer gives them (the caller sends the same JSON out)."""
        rows = ",".join(["(?,?,?,?,?)"] * len(offers))
        return (f"INSERT INTO offers(id, owner, state, expires_at, body) VALUES {rows}",
                [v for o, body in zip(offers, bodies) for v in (o.id, o.owner, o.state, o.expires_at, body.decode())])

    @staticmethod
    def change_state(offer: Offer, expected: OfferState) -> Statement:
        """Only the state column changes; the body keeps the offer as it was made (state read from the column)."""
        return ("UPDATE offers SET state=? WHERE id=? AND state=?", (offer.state, offer.id, expected), 1)

    def remember(self, offer: Offer) -> None:
        if offer.id not in self._offers:
            heapq.heappush(self._expiry, (offer.expires_at, offer.id))
        self._offers[offer.id] = offer

    def due(self, now: float, limit: int = 1_000) -> list[Offer]:
        """Up to `limit` offers in memory whose expiry has come (each returned once)."""
        out = []
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
