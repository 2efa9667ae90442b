"""SQLite storage of offers: the offers port's SQL."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from adapters.sqlite.statements import Insert, SqlDatabase, Statement
from state.offers import (
    _SELECT,
    Offer,
    OfferState,
    SharedDraft,
    _from_row,
)


class SqliteOfferStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._offers: dict[str, Offer] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at, offer id): the sweep pops what is due

    async def load(self, now: float) -> None:
        """Offers that can still be accepted come back after a restart."""
        for row in await self._db.fetchall(f"{_SELECT} WHERE o.state='ACTIVE' AND o.expires_at > ?", (now,)):
            self.remember(_from_row(row))

    async def refresh(self, offer_ids: Sequence[str]) -> int:
        """Another node changed these offers (accepted one): forget the ones no longer ACTIVE."""
        marks = ",".join("?" * len(offer_ids))
        rows = await self._db.fetchall(f"{_SELECT} WHERE o.id IN ({marks})", list(offer_ids))
        for row in rows:
            offer = _from_row(row)
            if offer.state != "ACTIVE" and offer.id in self._offers:
                self._offers[offer.id] = offer
        return len(rows)

    def get(self, offer_id: str) -> Offer | None:
        return self._offers.get(offer_id)

    async def fetch(self, offer_id: str) -> Offer | None:
        """An offer no longer held in memory (expired or finished), from SQLite."""
        row = await self._db.fetchone(f"{_SELECT} WHERE o.id=?", (offer_id,))
        return _from_row(row) if row else None

    def __len__(self) -> int:
        return len(self._offers)

    async def purge(self, expired_before: float, limit: int) -> int:
        """Delete up to `limit` offers, whatever their state, that expired before `expired_before`."""
        deleted, = await self._db.write([(
            "DELETE FROM offers WHERE id IN (SELECT id FROM offers WHERE state IN "
            "('ACTIVE', 'EXPIRED', 'ACCEPTED', 'CANCELLED') AND expires_at < ? LIMIT ?)", (expired_before, limit))])
        return deleted

    async def unused_drafts(self, stored_before: float, limit: int) -> list[str]:
        """Up to `limit` drafts stored before `stored_before` that no offer is made from."""
        rows = await self._db.fetchall(
            "SELECT id FROM offer_drafts d WHERE stored_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM offers o WHERE o.draft_id = d.id) LIMIT ?", (stored_before, limit))
        return [r[0] for r in rows]

    async def drop_drafts(self, draft_ids: Sequence[str]) -> int:
        """Delete these drafts, unless an offer has been made from one since (that one stays). The delete is
        queued before the first await, so offers another search queued earlier are committed first."""
        marks = ",".join("?" * len(draft_ids))
        dropped, = await self._db.submit([(f"DELETE FROM offer_drafts WHERE id IN ({marks}) AND NOT EXISTS "
                                           "(SELECT 1 FROM offers o WHERE o.draft_id = offer_drafts.id)",
                                           list(draft_ids))])
        return dropped

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


class SqliteOfferWrites:
    """Offers' writes in a transaction (see uow.py)."""

    __slots__ = ("_statements", "_touched")

    def __init__(self, statements: list[Statement], touched: list[tuple[str, str]] | None = None) -> None:
        self._statements = statements
        self._touched = touched  # offers whose state changed, for the other nodes (a new one is its node's alone)

    def insert(self, offers: Sequence[Offer], drafts: Sequence[SharedDraft]) -> None:
        """A search's offers, `drafts[i]` the one offers[i] was made from: the drafts not yet written, then
        every offer's row (merged with other searches' offers into one statement). The caller marks the drafts
        written once this is committed."""
        new = {d.id: d for d in drafts if not d.written}
        if new:  # a draft two searches write at once is written by the first
            stored_at = offers[0].created_at
            self._statements.append((f"INSERT OR IGNORE INTO offer_drafts(id, stored_at, body) VALUES "
                                     f"{','.join(['(?,?,?)'] * len(new))}",
                                     [v for d in new.values() for v in (d.id, stored_at, d.body.decode())]))
        self._statements.append(Insert("offers", _OFFER_COLUMNS,
                                       [(o.id, o.owner, o.state, o.created_at, o.expires_at, d.id)
                                        for o, d in zip(offers, drafts, strict=True)]))

    def change_state(self, offer: Offer, expected: OfferState) -> None:
        """Only the state column changes (an offer's state is read from the column)."""
        if self._touched is not None:
            self._touched.append(("offer", offer.id))
        self._statements.append(("UPDATE offers SET state=? WHERE id=? AND state=?",
                                 (offer.state, offer.id, expected), 1))


_OFFER_COLUMNS = ("id", "owner", "state", "created_at", "expires_at", "draft_id")
