"""SQLite storage of offers: the offers port's SQL."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import msgspec

from adapters.sqlite.statements import Insert, SqlDatabase, Statement
from state.offers import (
    _SELECT,
    Offer,
    OfferState,
    SharedDraft,
    _decode_draft,
    _from_row,
)

LOAD_PAGE = 5_000  # rows a load page holds: enough per round trip, a small buffer
# The ACTIVE offers not yet expired, by (expiry, id): keyset pages over the offers_live index.
_LOAD = ("SELECT o.id, o.owner, o.created_at, o.expires_at, o.draft_id, o.body FROM offers o "
         "WHERE o.state='ACTIVE' AND (o.expires_at, o.id) > (?, ?) ORDER BY o.expires_at, o.id")


class SqliteOfferStore:
    """The offers that can still be accepted, in memory (at most `max_in_memory`); the rest in SQLite.

    What an offer holds beyond its own id, owner and times (items, prices, conditions) is its draft's,
    shared by every offer made from that priced bundle, live and after a restart alike. Offers wait for
    their expiry in buckets of one second, a list of ids each (8 bytes an offer rather than a heap entry's
    64). Over the bound, the offers expiring soonest leave memory first and are read back on access."""

    def __init__(self, db: SqlDatabase, max_in_memory: int = 1_000_000, on_evict=None) -> None:
        self._db = db
        self._offers: dict[str, Offer] = {}
        self._buckets: dict[int, list[str]] = {}  # expiry second -> ids of the offers expiring in it
        self._seconds: list[int] = []  # heap of the buckets' seconds: the sweep pops what is due
        self._max = max_in_memory
        self._on_evict = on_evict  # called with how many offers left memory for the bound

    async def load(self, now: float, page: int = LOAD_PAGE) -> None:
        """Offers that can still be accepted come back after a restart, a page at a time in expiry order
        (no fetch buffer of every row), each draft decoded once and shared as the live process shares it."""
        drafts: dict[str, Offer] = {}
        shared: dict = {}  # owners and times repeat across a search's offers: one object each, as when live
        after: tuple[float, str] = (now, "")
        while rows := await self._db.fetchall(f"{_LOAD} LIMIT {page}", after):
            missing = list({r[4] for r in rows if r[4] is not None and r[4] not in drafts})
            for i in range(0, len(missing), 500):
                chunk = missing[i:i + 500]
                for draft_id, body in await self._db.fetchall(
                        f"SELECT id, body FROM offer_drafts WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                    drafts[draft_id] = _decode_draft(body)
            for offer_id, owner, created_at, expires_at, draft_id, body in rows:
                draft = drafts[draft_id] if draft_id is not None else _decode_draft(body)
                self.remember(msgspec.structs.replace(
                    draft, id=offer_id, owner=shared.setdefault(owner, owner), state="ACTIVE",
                    created_at=shared.setdefault(created_at, created_at),
                    expires_at=shared.setdefault(expires_at, expires_at)))
            after = rows[-1][3], rows[-1][0]
            if len(shared) > 100_000:  # sharing is among one search's offers, which load together
                shared.clear()

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
        """An offer no longer held in memory (expired, finished or over the bound), from SQLite."""
        row = await self._db.fetchone(f"{_SELECT} WHERE o.id=?", (offer_id,))
        return _from_row(row) if row else None

    def readmit(self, offer: Offer) -> Offer:
        """An ACTIVE offer read back from SQLite after it left memory for the bound, held again so that it
        can be accepted; the one in memory when a concurrent read got there first (or it changed since)."""
        held = self._offers.get(offer.id)
        if held is not None:
            return held
        self.remember(offer)
        return offer

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
            if len(self._offers) >= self._max:  # a hundredth at a time: the bound is checked per offer
                self._evict(len(self._offers) - self._max + 1 + self._max // 100)
            second = int(offer.expires_at)
            bucket = self._buckets.get(second)
            if bucket is None:
                bucket = self._buckets[second] = []
                heapq.heappush(self._seconds, second)
            bucket.append(offer.id)
        self._offers[offer.id] = offer

    def _evict(self, count: int) -> None:
        """Let go of up to `count` ACTIVE offers, those expiring soonest first: SQLite holds each as memory does.
        Accepted and cancelled ones stay until they expire (few: one per accept), so an accept racing with one
        finds it here rather than reading a row whose change is still being committed."""
        evicted = 0
        for second in sorted(self._seconds):  # once per max // 100 new offers: the sort is cheap
            bucket = self._buckets[second]
            kept: list[str] = []
            while bucket and evicted < count:
                offer_id = bucket.pop()
                offer = self._offers.get(offer_id)
                if offer is None:
                    continue
                if offer.state == "ACTIVE":
                    del self._offers[offer_id]
                    evicted += 1
                else:
                    kept.append(offer_id)
            bucket += kept  # an emptied bucket stays until due() reaches its second
            if evicted >= count:
                break
        if evicted and self._on_evict is not None:
            self._on_evict(evicted)

    def due(self, now: float, limit: int = 1_000) -> list[Offer]:
        """Up to `limit` offers in memory whose expiry has come (each returned once)."""
        out: list[Offer] = []
        seen: set[str] = set()  # an id left memory and came back: its bucket may list it twice
        while self._seconds and len(out) < limit and self._seconds[0] <= now:
            second = self._seconds[0]
            bucket = self._buckets[second]
            whole = second + 1 <= now  # every offer in the bucket is due
            kept: list[str] = []
            while bucket and len(out) < limit:
                offer_id = bucket.pop()
                offer = self._offers.get(offer_id)
                if offer is None or offer_id in seen:
                    continue
                if whole or offer.expires_at <= now:
                    seen.add(offer_id)
                    out.append(offer)
                else:
                    kept.append(offer_id)
            bucket += kept
            if not bucket:
                heapq.heappop(self._seconds)
                del self._buckets[second]
            elif not whole:
                break  # the rest of this second is still to come
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
