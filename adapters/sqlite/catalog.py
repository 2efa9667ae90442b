"""SQLite storage of catalog: the catalog port's SQL."""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from adapters.sqlite.statements import SqlDatabase, Statement
from adapters.sqlite.uow import product_default
from app.persist import commit_or_undo
from state.catalog import (
    Flight,
    Product,
    _encode,
    _flight_json,
    _product_json,
)
from state.ports import ChangeFeed, WriteConflict

# Each write is guarded on what this node read: a new row on there being none, a replaced one on its stored body
# (so two nodes changing one flight or product cannot both build on the same version).
_NEW_FLIGHT = "INSERT INTO flights(id, departure_at, body) VALUES (?,?,?) ON CONFLICT(id) DO NOTHING"
_SET_FLIGHT = "UPDATE flights SET departure_at = ?, body = ? WHERE id = ? AND body = ?"
_NEW_PRODUCT = "INSERT INTO products(id, body) VALUES (?,?) ON CONFLICT(id) DO NOTHING"
_SET_PRODUCT = "UPDATE products SET body = ? WHERE id = ? AND body = ?"
# A capacity lowered must not pass below what the shared inventory holds (several nodes, adapters/sqlite/uow.py;
# one node leaves that table empty and checks its memory): these touch no row unless one holds more (expect 0).
_HELD_OVER = "UPDATE inventory SET held = held WHERE resource = ? AND held > ?"
# Several nodes: a cabin's changed capacity goes into its shared inventory row with the flight (one row written,
# or none when it holds more), so a node that has not yet heard of the change holds seats against it. The row's
# lock orders this against the holds of the same seats.
_CABIN_CAPACITY = ("INSERT INTO inventory(resource, held, capacity) VALUES (?, 0, CAST(? AS BIGINT)) "
                   "ON CONFLICT(resource) DO UPDATE SET capacity = excluded.capacity "
                   "WHERE inventory.held <= excluded.capacity")
# A limited product's: into its own row, which a flight where none is held yet takes its first row's capacity from
# (adapters/sqlite/uow.py), and into the rows of the flights that hold it (before _HELD_OVER_ANY, so that check sees
# the holds these rows' locks waited for).
_PRODUCT_DEFAULT = ("INSERT INTO inventory(resource, held, capacity) VALUES (?, 0, CAST(? AS BIGINT)) "
                    "ON CONFLICT(resource) DO UPDATE SET capacity = excluded.capacity")
_PRODUCT_CAPACITY = ("UPDATE inventory SET capacity = CAST(? AS BIGINT) "
                     "WHERE substr(resource, length(resource) - ? + 1) = ?")
_HELD_OVER_ANY = ("UPDATE inventory SET held = held "
                  "WHERE substr(resource, length(resource) - ? + 1) = ? AND held > ?")


class SqliteCatalogStore:
    """Flights by id and by (origin, destination, date); products by id. Hot in memory: every product, and the
    flights that depart after the horizon `load` and `forget_departed` set (older ones are read from the store)."""

    def __init__(self, db: SqlDatabase, changes: ChangeFeed | None = None, shared_inventory: bool = False) -> None:
        self._db = db
        self._changes = changes  # several nodes: tell the others what changed
        self._shared = shared_inventory  # several nodes hold seats in the database (adapters/sqlite/uow.py)
        self._flights: dict[str, Flight] = {}
        self._by_route_day: dict[tuple[str, str, str], list[Flight]] = defaultdict(list)
        self._products: dict[str, Product] = {}
        self._by_kind: dict[str, Product] | None = None  # rebuilt after any product change
        # (departure, id) of each flight held, so forgetting the departed pops them rather than scanning every
        # flight; an entry whose flight has moved or gone is skipped when popped.
        self._departures: list[tuple[float, str]] = []
        self._horizon = -math.inf  # flights departing before this are not loaded
        self.version = 0  # bumps on every catalog change

    def __len__(self) -> int:
        return len(self._flights)

    async def load(self, departed_after: float = -math.inf) -> None:
        """Every product, and the flights departing at or after `departed_after` (a restart holds what the live
        process held after its last forget_departed)."""
        self._horizon = departed_after
        for (body,) in await self._db.fetchall(
                "SELECT body FROM flights WHERE departure_at >= ? ORDER BY departure_at, id", (departed_after,)):
            self._index(_flight_json.decode(body))
        for (body,) in await self._db.fetchall("SELECT body FROM products ORDER BY rowid"):
            product = _product_json.decode(body)
            self._products[product.id] = product
        self._by_kind = None
        self.version += 1

    async def refresh(self, kind: str, ids: Sequence[str]) -> int:
        """Another node changed these flights or products: read them back."""
        marks = ",".join("?" * len(ids))
        table = "flights" if kind == "flight" else "products"
        rows = await self._db.fetchall(f"SELECT body FROM {table} WHERE id IN ({marks})", list(ids))
        for (body,) in rows:
            if kind == "flight":
                flight = _flight_json.decode(body)
                if flight.id in self._flights or flight.departure_at >= self._horizon:  # not one let go of
                    self._index(flight)
            else:
                product = _product_json.decode(body)
                self._products[product.id] = product
        self._by_kind = None
        self.version += 1
        return len(rows)

    def _index(self, flight: Flight) -> None:
        old = self._unindex(flight.id)
        self._flights[flight.id] = flight
        day = self._by_route_day[(flight.origin, flight.destination, flight.departure_date)]
        day.append(flight)
        day.sort(key=lambda f: f.departure_at)
        if old is None or old.departure_at != flight.departure_at:
            heapq.heappush(self._departures, (flight.departure_at, flight.id))

    def _unindex(self, flight_id: str) -> Flight | None:
        old = self._flights.pop(flight_id, None)
        if old is not None:
            key = (old.origin, old.destination, old.departure_date)
            day = self._by_route_day[key]
            day.remove(old)
            if not day:
                del self._by_route_day[key]
        return old

    def forget_departed(self, before: float) -> int:
        """Let go of the flights that departed before `before` (they stay in the store: read_flight, page); from
        now on a restart does not load them either. Returns how many."""
        self._horizon = max(self._horizon, before)
        gone = 0
        while self._departures and self._departures[0][0] < before:
            departure_at, flight_id = heapq.heappop(self._departures)
            flight = self._flights.get(flight_id)
            if flight is not None and flight.departure_at == departure_at:
                self._unindex(flight_id)
                gone += 1
        if gone:
            self.version += 1
        return gone

    def flight(self, flight_id: str) -> Flight | None:
        """A flight held in memory (None for one departed before the horizon: read_flight)."""
        return self._flights.get(flight_id)

    async def read_flight(self, flight_id: str, *, hold: bool = False) -> Flight | None:
        """A flight, from memory or else from the store. `hold`: one read from the store is held in memory until
        the next forget_departed, so that a change to it (an admin's) goes the way every change goes."""
        flight = self._flights.get(flight_id)
        if flight is not None:
            return flight
        row = await self._db.fetchone("SELECT body FROM flights WHERE id = ?", (flight_id,))
        if row is None:
            return None
        flight = self._flights.get(flight_id)  # read meanwhile (another read, a change)
        if flight is None:
            flight = _flight_json.decode(row[0])
            if hold:
                self._index(flight)
        return flight

    async def page(self, after: tuple[float, str] | None, limit: int) -> list[Flight]:
        """Flights in (departure, id) order after a position, from the store: departed ones too."""
        low = after or (-math.inf, "")
        rows = await self._db.fetchall(
            "SELECT body FROM flights WHERE (departure_at, id) > (?, ?) ORDER BY departure_at, id LIMIT ?",
            (low[0], low[1], limit))
        return [_flight_json.decode(body) for (body,) in rows]

    def flights_on(self, origin: str, destination: str, date: str) -> list[Flight]:
        return list(self._by_route_day.get((origin, destination, date), ()))

    def flights(self) -> list[Flight]:
        return sorted(self._flights.values(), key=lambda f: f.departure_at)

    def product(self, product_id: str) -> Product | None:
        return self._products.get(product_id)

    def products(self) -> list[Product]:
        return list(self._products.values())

    def product_of_kind(self, kind: str) -> Product | None:
        """The active product sold for a kind: the first one created."""
        if self._by_kind is None:
            self._by_kind = {}
            for p in self._products.values():
                if p.status == "active":
                    self._by_kind.setdefault(p.kind, p)
        return self._by_kind.get(kind)

    async def put_flights(self, flights: list[Flight]) -> None:
        """Create or replace flights, each write guarded: a new flight's row must not exist yet, a replaced one's
        must still be the flight this node holds, and no shared inventory (several nodes) may hold more of a
        cabin than its new capacity. Else WriteConflict ("flight:<id>", "held:<resource>"), nothing written, and a
        flight another node changed is read back.

        A replacement is in memory before this first suspends, so a caller that checked it against what is held
        without an await has its cabins and status bind the next accept; it is put back if the write fails. A new
        flight is in memory only once durable (never sold before it is stored)."""
        olds = [self._flights.get(f.id) for f in flights]
        replaced = [(f, old) for f, old in zip(flights, olds, strict=True) if old is not None]
        for f, _ in replaced:
            self._index(f)
        if replaced:
            self.version += 1

        def undo() -> None:
            for f, old in replaced:
                if self._flights.get(f.id) is f:  # not read back from the store meanwhile
                    self._index(old)
            self.version += 1

        def statements(stored: dict[str, str]) -> list[Statement]:
            out: list[Statement] = []
            for f, old in zip(flights, olds, strict=True):
                body = _encode(f).decode()
                if old is None:
                    out.append((_NEW_FLIGHT, (f.id, f.departure_at, body), 1, f"flight:{f.id}"))
                    continue
                out.append((_SET_FLIGHT, (f.departure_at, body, f.id, stored.get(f.id) or _encode(old).decode()),
                            1, f"flight:{f.id}"))
                for cabin in {**old.cabins, **f.cabins}:
                    was = old.cabins[cabin].capacity if cabin in old.cabins else 0
                    now = f.cabins[cabin].capacity if cabin in f.cabins else 0
                    resource = f"{f.id}/{cabin}"
                    if self._shared and now != was:
                        out.append((_CABIN_CAPACITY, (resource, now), 1, f"held:{resource}"))
                    elif now < was:
                        out.append((_HELD_OVER, (resource, now), 0, f"held:{resource}"))
            return out

        try:
            await commit_or_undo(self._write_guarded("flights", _flight_json.decode, statements,
                                                     {f.id: old for f, old in replaced}), undo)
        except WriteConflict as exc:
            kind, _, record_id = exc.what.partition(":")
            if kind == "flight":
                await self.refresh("flight", [record_id])
            raise
        for f, old in zip(flights, olds, strict=True):
            if self._flights.get(f.id) == old:  # new, or the version it replaced read back meanwhile
                self._index(f)
        self.version += 1
        if self._changes is not None:
            self._changes.changed("flight", [f.id for f in flights])

    async def put_product(self, product: Product) -> None:
        """Create or replace a product, guarded as put_flights is ("product:<id>"; "held:<resource>" when a flight
        in the shared inventory holds more units than a lowered `capacity_per_flight`). A replacement is in memory
        before this first suspends, and put back if the write fails; a new product only once durable."""
        old = self._products.get(product.id)
        if old is not None:
            self._hold_product(product)

        def undo() -> None:
            if old is not None and self._products.get(product.id) is product:
                self._hold_product(old)

        def statements(stored: dict[str, str]) -> list[Statement]:
            body, guard = _encode(product).decode(), f"product:{product.id}"
            if old is None:
                return [(_NEW_PRODUCT, (product.id, body), 1, guard)]
            out: list[Statement] = [
                (_SET_PRODUCT, (body, product.id, stored.get(product.id) or _encode(old).decode()), 1, guard)]
            cap, suffix = product.capacity_per_flight, f"/{product.id}"
            if self._shared and cap != old.capacity_per_flight:
                out.append((_PRODUCT_DEFAULT, (product_default(product.id), cap)))
                out.append((_PRODUCT_CAPACITY, (cap, len(suffix), suffix)))
            if cap is not None and (old.capacity_per_flight is None or cap < old.capacity_per_flight):
                out.append((_HELD_OVER_ANY, (len(suffix), suffix, cap), 0, f"held:*{suffix}"))
            return out

        try:
            await commit_or_undo(self._write_guarded("products", _product_json.decode, statements,
                                                     {} if old is None else {product.id: old}), undo)
        except WriteConflict as exc:
            if exc.what == f"product:{product.id}":
                await self.refresh("product", [product.id])
            raise
        if self._products.get(product.id) == old:  # new, or the version it replaced read back meanwhile
            self._hold_product(product)
        if self._changes is not None:
            self._changes.changed("product", [product.id])

    def _hold_product(self, product: Product) -> None:
        self._products[product.id] = product
        self._by_kind = None
        self.version += 1

    async def _write_guarded(self, table: str, decode: Callable[[str], object],
                             statements: Callable[[dict[str, str]], list[Statement]],
                             read: Mapping[str, object]) -> None:
        """Write `statements(stored)`, each row replaced guarded on its body as stored: the record this node `read`
        (by id) as this code encodes it, or its text in `stored`. A row stored in other words (by another version
        of the code: a field it lacked, another order) that decodes to the record read is that record: the write
        is guarded on its stored text once more."""
        stored: dict[str, str] = {}
        while True:
            try:
                await self._db.write(statements(stored))
                return
            except WriteConflict as exc:
                guard, _, record_id = exc.what.partition(":")
                if guard == "held" or record_id not in read or record_id in stored:
                    raise
                row = await self._db.fetchone(f"SELECT body FROM {table} WHERE id = ?", (record_id,))
                if row is None or decode(row[0]) != read[record_id]:
                    raise  # another node changed it
                stored[record_id] = row[0]
