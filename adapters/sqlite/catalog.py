"""SQLite storage of catalog: the catalog port's SQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from adapters.sqlite.statements import SqlDatabase
from state.catalog import (
    Flight,
    Product,
    _encode,
    _flight_json,
    _product_json,
)
from state.ports import ChangeFeed


class SqliteCatalogStore:
    """Flights by id and by (origin, destination, date); products by id. Hot in memory."""

    def __init__(self, db: SqlDatabase, changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._changes = changes  # several nodes: tell the others what changed
        self._flights: dict[str, Flight] = {}
        self._by_route_day: dict[tuple[str, str, str], list[Flight]] = defaultdict(list)
        self._products: dict[str, Product] = {}
        self._by_kind: dict[str, Product] | None = None  # rebuilt after any product change
        self.version = 0  # bumps on every catalog change

    async def load(self) -> None:
        for (body,) in await self._db.fetchall("SELECT body FROM flights ORDER BY departure_at"):
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
                self._index(_flight_json.decode(body))
            else:
                product = _product_json.decode(body)
                self._products[product.id] = product
        self._by_kind = None
        self.version += 1
        return len(rows)

    def _index(self, flight: Flight) -> None:
        old = self._flights.get(flight.id)
        if old is not None:
            self._by_route_day[(old.origin, old.destination, old.departure_date)].remove(old)
        self._flights[flight.id] = flight
        day = self._by_route_day[(flight.origin, flight.destination, flight.departure_date)]
        day.append(flight)
        day.sort(key=lambda f: f.departure_at)

    def flight(self, flight_id: str) -> Flight | None:
        return self._flights.get(flight_id)

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
        """Create or replace flights (durable before they are sold)."""
        await self._db.write([(
            "INSERT INTO flights(id, departure_at, body) VALUES (?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET departure_at=excluded.departure_at, body=excluded.body",
            (f.id, f.departure_at, _encode(f).decode())) for f in flights])
        for f in flights:
            self._index(f)
        self.version += 1
        if self._changes is not None:
            self._changes.changed("flight", [f.id for f in flights])

    async def put_product(self, product: Product) -> None:
        await self._db.write([("INSERT INTO products(id, body) VALUES (?,?) "
                               "ON CONFLICT(id) DO UPDATE SET body=excluded.body",
                               (product.id, _encode(product).decode()))])
        self._products[product.id] = product
        self._by_kind = None
        self.version += 1
        if self._changes is not None:
            self._changes.changed("product", [product.id])
