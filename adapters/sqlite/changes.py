"""SQLite storage of order changes: change offers (hot in memory while they can be confirmed) and order versions.
Their writes go through a transaction's orders facet (adapters/sqlite/orders.py), with the order they change."""

from __future__ import annotations

import heapq

import msgspec

from adapters.sqlite.db import Database
from state.changes import ChangeOffer, OrderVersion, decode_change_offer, decode_order_version


class SqliteChangeStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._offers: dict[str, ChangeOffer] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at, id): forget_due pops what is due

    def get(self, change_offer_id: str) -> ChangeOffer | None:
        return self._offers.get(change_offer_id)

    async def fetch(self, change_offer_id: str) -> ChangeOffer | None:
        """A change offer not in memory (after a restart, or expired), from SQLite."""
        row = await self._db.fetchone("SELECT state, body FROM change_offers WHERE id=?", (change_offer_id,))
        return _from_row(row) if row else None

    async def of_request(self, request_id: str) -> list[ChangeOffer]:
        """A change request's offers, in the order they were priced."""
        rows = await self._db.fetchall("SELECT state, body FROM change_offers WHERE request_id=? ORDER BY rowid",
                                       (request_id,))
        return [self._offers.get(o.id, o) for o in map(_from_row, rows)]

    async def versions(self, order_id: str) -> list[OrderVersion]:
        """The versions recorded of an order, oldest first (an order never changed has none)."""
        rows = await self._db.fetchall("SELECT body FROM order_versions WHERE order_id=? ORDER BY version",
                                       (order_id,))
        return [decode_order_version(body) for (body,) in rows]

    def remember(self, offer: ChangeOffer) -> None:
        if offer.id not in self._offers:
            heapq.heappush(self._expiry, (offer.expires_at, offer.id))
        self._offers[offer.id] = offer

    def forget(self, change_offer_id: str) -> None:
        self._offers.pop(change_offer_id, None)

    def forget_due(self, now: float) -> int:
        """Let go of the change offers whose expiry has come (confirming one reads it back from SQLite: 410)."""
        n = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, offer_id = heapq.heappop(self._expiry)
            n += self._offers.pop(offer_id, None) is not None
        return n

    def __len__(self) -> int:
        return len(self._offers)


def _from_row(row) -> ChangeOffer:
    state, body = row
    offer = decode_change_offer(body)
    return offer if offer.state == state else msgspec.structs.replace(offer, state=state)
