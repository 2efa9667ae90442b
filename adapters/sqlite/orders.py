"""SQLite storage of orders: the orders port's SQL."""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from adapters.sqlite.statements import Insert, SqlDatabase, Statement
from app.runtime.lru import LRU
from state.changes import ChangeOffer, ChangeOfferState, OrderVersion, encode
from state.offers import Item
from state.orders import _DUE_AT, FINISHED, HOLDING, LIVE, Order, _decode, _encode, held_items

# Live orders are read back in batches of this many, so a start holds no fetch buffer of every row.
LOAD_BATCH = 2_000
# Finished orders read by id or barcode recently (a traveller looking at a past trip, a webhook repeated).
FINISHED_CACHED = 4_096
OrderPosition = tuple[float, str]  # (created_at, id): where an order sorts in a list, oldest first


class SqliteOrderStore:
    """Live orders in memory (state/orders.py LIVE) with the inventory they hold; finished ones and lists from SQL."""

    def __init__(self, db: SqlDatabase, finished_cached: int = FINISHED_CACHED) -> None:
        self._db = db
        self._orders: dict[str, Order] = {}
        self.held: Counter[str] = Counter()
        # Bumps whenever a flight's held inventory changes, so priced offers for it know to re-price.
        self.flight_versions: Counter[str] = Counter()
        # Order ids by state, so the sweeps look only at the orders that can need them.
        self._by_state: dict[str, dict[str, None]] = defaultdict(dict)
        # Per state in _DUE_AT, a heap of (due at, order id), so a sweep pops what is due rather
        # than scanning every order in the state each time; stale entries are skipped when popped.
        self._due: dict[str, list[tuple[float, str]]] = {state: [] for state in _DUE_AT}
        self.finished: LRU[str, Order] = LRU(finished_cached, "finished_orders")
        # Set while a load deferred past readiness (defer_load) has not finished: what needs the live orders
        # waits for it (loaded()).
        self._loading: asyncio.Event | None = None

    def defer_load(self) -> None:
        """The live orders will be loaded after the server is ready: until load() is done, loaded() waits."""
        if self._loading is None:
            self._loading = asyncio.Event()

    async def loaded(self) -> None:
        """Returns once the live orders are in memory: at once, unless a load deferred past readiness is under way
        (or failed and is retried)."""
        if self._loading is not None:
            await self._loading.wait()

    async def load(self) -> None:
        """The live orders and what they hold; finished ones stay in the store (restart time grows with live
        orders, not with history). Each state is read in keyset batches through its index."""
        try:
            await self._load_live()
        except BaseException:
            self._forget_live()  # a retry starts from nothing (its holds would count twice)
            raise
        if self._loading is not None:
            self._loading.set()  # what waited in loaded() goes on
            self._loading = None

    async def _load_live(self) -> None:
        # Orders of one offer's kind (a flight, a party size, a bundle) have equal items: kept once, as orders
        # made from one offer share its items in the live process.
        shared: dict[tuple[Item, ...], tuple[Item, ...]] = {}
        for state in sorted(LIVE):
            batch: asyncio.Future[list[tuple[Any, ...]]] | None = self._live_batch(state, (float("-inf"), ""))
            while batch is not None:
                rows = await batch
                # The next batch is read (SQLite lets go of the GIL) while this one is decoded.
                batch = self._live_batch(state, (rows[-1][0], rows[-1][1])) if len(rows) == LOAD_BATCH else None
                for _, _, body in rows:
                    order = _decode(body)
                    items = shared.setdefault(order.items, order.items)
                    if items is not order.items:
                        order = msgspec.structs.replace(order, items=items)
                    self.remember(order)
                    self.hold(held_items(order))

    def _forget_live(self) -> None:
        """Memory as before any load: no live order, nothing held."""
        self._orders.clear()
        self.held.clear()
        self.flight_versions.clear()
        self._by_state.clear()
        self._due = {state: [] for state in _DUE_AT}

    def _live_batch(self, state: str, after: OrderPosition) -> asyncio.Future[list[tuple[Any, ...]]]:
        return asyncio.ensure_future(self._db.fetchall(
            "SELECT created_at, id, body FROM orders WHERE state = ? AND (created_at, id) > (?, ?) "
            "ORDER BY created_at, id LIMIT ?", (state, after[0], after[1], LOAD_BATCH)))

    async def refresh(self, order_ids: Sequence[str]) -> int:
        """Another node changed these orders: read them back and hold what they hold now (several nodes)."""
        marks = ",".join("?" * len(order_ids))
        rows = await self._db.fetchall(f"SELECT body FROM orders WHERE id IN ({marks})", list(order_ids))
        for (body,) in rows:
            order = _decode(body)
            old = self._orders.get(order.id) or self.finished.peek(order.id)
            if old is not None and old.updated_at > order.updated_at:
                continue  # this node has a newer version than the notice's (it changed the order since)
            if order.id in self._orders:
                if old is not None and old.state in LIVE:
                    self.release(held_items(old))
                self.forget(order.id)
            if order.state in LIVE:
                self.remember(order)
                self.hold(held_items(order))
            else:
                self.finished.put(order.id, order)
        return len(rows)

    # ---- reads: live orders from memory ----
    def get(self, order_id: str) -> Order | None:
        """A live order (or one whose finishing change is being committed); None for finished ones."""
        return self._orders.get(order_id)

    def live(self) -> list[Order]:
        """Every order in memory."""
        return list(self._orders.values())

    def __len__(self) -> int:
        return len(self._orders)

    def in_state(self, *states: str) -> list[Order]:
        return [self._orders[i] for state in states for i in self._by_state.get(state, ())]

    # ---- reads: any order, from memory or the store ----
    async def fetch(self, order_id: str) -> Order | None:
        """The order as it stands: a live one from memory, a finished one from the cache or the store."""
        order = self._orders.get(order_id) or self.finished.get(order_id)
        if order is not None or len(order_id) > 64:
            return order
        row = await self._db.fetchone("SELECT body FROM orders WHERE id = ?", (order_id,))
        return self._stored(row[0]) if row else None

    async def fetch_by_barcode(self, code: str) -> Order | None:
        """The order a barcode belongs to, as long as it still has that barcode (a change replaces some). Always
        read through the store's index: a scan at the gate is rare next to what a dozen barcodes per live order
        would cost memory (and a start) to index here."""
        if len(code) > 64:
            return None
        row = await self._db.fetchone("SELECT o.body FROM order_barcodes b JOIN orders o ON o.id = b.order_id "
                                      "WHERE b.code = ?", (code,))
        if row is None:
            return None
        order = self._stored(row[0])
        return order if any(b.code == code for b in order.barcodes) else None

    def _stored(self, body: str) -> Order:
        order = _decode(body)
        live = self._orders.get(order.id)
        if live is not None:
            return live  # it was remembered while the store was read: memory is newer
        if order.state in FINISHED:
            self.finished.put(order.id, order)
        return order

    async def page(self, owner: str | None, state: str | None, after: OrderPosition | None,
                   limit: int) -> list[Order]:
        """Up to `limit` orders after `after`, oldest first: one owner's or everyone's (None), optionally in one
        state. A range read of an index (see migration 22) whatever the number of orders stored."""
        clauses: list[str] = []
        params: list[object] = []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if state is not None:
            # With an owner, their own index serves (few rows); `|| ''` keeps the planner off the state index,
            # which would walk every order in that state.
            clauses.append("state || '' = ?" if owner is not None else "state = ?")
            params.append(state)
        if after is not None:
            clauses.append("(created_at, id) > (?, ?)")
            params += [after[0], after[1]]
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = await self._db.fetchall(f"SELECT body FROM orders {where}ORDER BY created_at, id LIMIT ?",
                                       [*params, limit])
        get = self._orders.get
        return [get(order.id) or order for order in map(_decode, (r[0] for r in rows))]

    def due(self, state: str, before: float) -> list[Order]:
        """Orders in `state` (PROPOSED: by hold expiry; FULFILLED: by departure) due at or before `before`.

        Each is returned once; an order that re-enters the state is scheduled again (an undone
        change re-enters the state it came from)."""
        heap, out = self._due[state], {}
        get, key = self._orders.get, _DUE_AT[state]
        while heap and heap[0][0] <= before:
            at, order_id = heapq.heappop(heap)
            order = get(order_id)
            if order is not None and order.state == state and key(order) == at:
                out[order_id] = order  # once, though it may have been scheduled again on re-entering the state
        return list(out.values())

    # ---- inventory ----
    def hold(self, items: Sequence[Item]) -> None:
        for item in items:
            if item.resource is not None:
                self.held[item.resource] += item.quantity
                self.flight_versions[item.resource.rpartition("/")[0]] += 1

    def release(self, items: Sequence[Item]) -> None:
        for item in items:
            if item.resource is not None:
                self.held[item.resource] -= item.quantity
                if not self.held[item.resource]:
                    del self.held[item.resource]  # nothing held: departed flights' resources do not pile up
                self.flight_versions[item.resource.rpartition("/")[0]] += 1

    def forget_flights(self, flight_ids: Sequence[str]) -> None:
        for flight_id in flight_ids:
            self.flight_versions.pop(flight_id, None)

    # ---- memory changes (callers persist them with the statements below) ----
    def remember(self, order: Order) -> Order | None:
        """Put the new version in memory; returns the version it replaced."""
        old = self._orders.get(order.id)
        self._orders[order.id] = order
        if old is not None:
            self._by_state[old.state].pop(order.id, None)
        self._by_state[order.state][order.id] = None
        key = _DUE_AT.get(order.state)
        if old is None or old.state != order.state or (key is not None and key(old) != key(order)):
            self._schedule(order)
        return old

    def _schedule(self, order: Order) -> None:
        key = _DUE_AT.get(order.state)
        if key is not None:
            heapq.heappush(self._due[order.state], (key(order), order.id))

    def retire(self, order: Order) -> None:
        """A finished order whose change is committed leaves memory, and memory's inventory with it if it still
        counted there (ARCHIVED: its flight departed long ago); later reads go to the store."""
        if order.state not in FINISHED or self._orders.get(order.id) is not order:
            return
        if order.state in HOLDING:
            self.release(held_items(order))
        self.forget(order.id)
        self.finished.put(order.id, order)

    def forget(self, order_id: str) -> None:
        order = self._orders.pop(order_id, None)
        if order is not None:
            self._by_state[order.state].pop(order_id, None)

    async def seen_payment_event(self, event_id: str) -> bool:
        return await self._db.fetchone("SELECT 1 FROM payment_events WHERE id=?", (event_id,)) is not None


class SqliteOrderWrites:
    """An order's writes in a transaction (see uow.py); `touched` collects the orders written, for the other
    nodes to hear of once committed."""

    __slots__ = ("_statements", "_touched")

    def __init__(self, statements: list[Statement], touched: list[tuple[str, str]] | None = None) -> None:
        self._statements = statements
        self._touched = touched

    def _touch(self, order_id: str) -> None:
        if self._touched is not None:
            self._touched.append(("order", order_id))

    def insert(self, order: Order) -> None:
        self._touch(order.id)
        self._statements.append(Insert("orders", ("id", "owner", "state", "created_at", "body"),
                                       [(order.id, order.owner, order.state, order.created_at,
                                         _encode(order).decode())]))
        self._barcodes(order)

    def update(self, order: Order, expected: str) -> None:
        self._touch(order.id)
        self._statements.append(("UPDATE orders SET state=?, body=? WHERE id=? AND state=?",
                                 (order.state, _encode(order).decode(), order.id, expected), 1))
        self._barcodes(order)

    def _barcodes(self, order: Order) -> None:
        """Barcodes are found in the store once their order has left memory; a replaced one keeps its row but
        is no longer among its order's barcodes, which the lookup checks."""
        if order.barcodes:
            self._statements.append((f"INSERT OR IGNORE INTO order_barcodes(code, order_id) VALUES "
                                     f"{','.join(['(?,?)'] * len(order.barcodes))}",
                                     [v for b in order.barcodes for v in (b.code, order.id)]))

    def record_payment_event(self, event_id: str, payment_id: str, at: float) -> None:
        self._statements.append(("INSERT OR IGNORE INTO payment_events(id, payment_id, at) VALUES (?,?,?)",
                                 (event_id, payment_id, at)))

    def insert_change_offers(self, offers: Sequence[ChangeOffer]) -> None:
        """A change request's priced change offers."""
        self._statements.append(Insert("change_offers", _CHANGE_OFFER_COLUMNS,
                                       [(o.id, o.request_id, o.order_id, o.owner, o.state, o.created_at, o.expires_at,
                                         encode(o).decode()) for o in offers]))

    def change_offer_state(self, offer: ChangeOffer, expected: ChangeOfferState) -> None:
        """The change offer's new state, guarded on `expected` as update is."""
        self._statements.append(("UPDATE change_offers SET state=?, body=? WHERE id=? AND state=?",
                                 (offer.state, encode(offer).decode(), offer.id, expected), 1))

    def record_version(self, version: OrderVersion) -> None:
        """One version of an order, once (a version already recorded is kept as it is)."""
        self._statements.append(("INSERT OR IGNORE INTO order_versions(order_id, version, at, change_offer_id, body) "
                                 "VALUES (?,?,?,?,?)", (version.order.id, version.version, version.at,
                                                        version.change_offer_id, encode(version).decode())))


_CHANGE_OFFER_COLUMNS = ("id", "request_id", "order_id", "owner", "state", "created_at", "expires_at", "body")
