"""SQLite storage of order changes: change offers and order versions.
Their writes go through a transaction's orders facet (adapters/sqlite/orders.py), with the order they change."""

from __future__ import annotations

import msgspec

from adapters.sqlite.statements import SqlDatabase
from state.changes import ChangeOffer, OrderVersion, decode_change_offer, decode_order_version


class SqliteChangeStore:
    """Change offers are read from SQLite when they are confirmed: none is kept in memory, so a burst of change
    requests costs disk (purged after retail.offer_retention_days), not memory."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def fetch(self, change_offer_id: str) -> ChangeOffer | None:
        row = await self._db.fetchone("SELECT state, body FROM change_offers WHERE id=?", (change_offer_id,))
        return _from_row(row) if row else None

    async def of_request(self, request_id: str) -> list[ChangeOffer]:
        """A change request's offers, in the order they were priced."""
        rows = await self._db.fetchall("SELECT state, body FROM change_offers WHERE request_id=? ORDER BY rowid",
                                       (request_id,))
        return [_from_row(row) for row in rows]

    async def versions(self, order_id: str) -> list[OrderVersion]:
        """The versions recorded of an order, oldest first (an order never changed has none)."""
        rows = await self._db.fetchall("SELECT body FROM order_versions WHERE order_id=? ORDER BY version",
                                       (order_id,))
        return [decode_order_version(body) for (body,) in rows]

    async def purge(self, expired_before: float, limit: int) -> int:
        """Delete up to `limit` change offers never confirmed that expired before `expired_before` (a confirmed
        one stays: the order's history names it)."""
        deleted, = await self._db.write([(
            "DELETE FROM change_offers WHERE id IN (SELECT id FROM change_offers WHERE expires_at < ? "
            "AND state != 'CONFIRMED' LIMIT ?)", (expired_before, limit))])
        return deleted


def _from_row(row) -> ChangeOffer:
    state, body = row
    offer = decode_change_offer(body)
    return offer if offer.state == state else msgspec.structs.replace(offer, state=state)
