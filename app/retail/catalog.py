"""The catalog as the business sees it: flights, products, and what is left to sell."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec

from app.admin import AuditTrail
from app.auth import Principal
from app.errors import Conflict, InvalidInput, NotFound
from app.retail.pricing import fare_cents
from app.runtime.locks import KeyedLocks
from state.catalog import ANCILLARY_KINDS, Flight, Product
from state.ports import CatalogStore, OrderStore, WriteConflict


def seat_resource(flight_id: str, cabin: str) -> str:
    return f"{flight_id}/{cabin}"


def product_resource(flight_id: str, product_id: str) -> str:
    return f"{flight_id}/{product_id}"


class CatalogService:
    """Flights and products; each change an admin makes is recorded in the audit log once it is durable."""

    def __init__(self, store: CatalogStore, orders: OrderStore, audit: AuditTrail) -> None:
        self._store = store
        self._orders = orders
        self._audit = audit
        self._locks = KeyedLocks()  # by flight or product: see _changing

    # ---- flights ----
    def flight(self, flight_id: str) -> Flight:
        flight = self._store.flight(flight_id)
        if flight is None:
            raise NotFound(f"no flight {flight_id}")
        return flight

    def flights_on(self, origin: str, destination: str, date: str) -> list[Flight]:
        return [f for f in self._store.flights_on(origin, destination, date) if f.status == "scheduled"]

    def routes(self, now: float) -> list[tuple[str, str]]:
        """The (origin, destination) pairs with a scheduled flight still to depart, sorted."""
        return sorted({(f.origin, f.destination) for f in self._store.flights()
                       if f.status == "scheduled" and f.departure_at > now})

    async def flights_page(self, after: tuple[float, str] | None, limit: int) -> list[Flight]:
        """Flights by (departure, id) after a position, departed ones too (from the store)."""
        return await self._store.page(after, limit)

    async def flight_position(self, flight_id: str) -> tuple[float, str] | None:
        """Where a flight sorts in the pages (None for an unknown id)."""
        flight = await self._store.read_flight(flight_id)
        return (flight.departure_at, flight.id) if flight is not None else None

    def forget_departed(self, before: float) -> int:
        """Let go of the flights that departed before `before`, as their orders are archived: memory holds the
        flights still to fly and the latest departed, however many years of schedule the store keeps."""
        gone = self._store.forget_departed(before)
        # With them their inventory versions, and any a late release (another node's cancellation) brought back for
        # a flight let go of earlier: no offer is priced for them again.
        self._orders.forget_flights([f for f in self._orders.flight_versions if self._store.flight(f) is None])
        return gone

    async def put_flights(self, actor: Principal | str, flights: list[Flight], *, audit: bool = True) -> list[Flight]:
        """Create flights (409 when one exists): a flight.create entry each, unless `audit` is False (a bulk
        load that is no admin action, such as the demo data set)."""
        await self._write_flights(flights, replace=False)
        if audit:
            for flight in flights:
                await self._audit.record(actor, "flight.create", flight.id)
        return flights

    async def update_flight(self, actor: Principal | str, flight_id: str, **changes) -> Flight:
        async with self._changing(f"flight:{flight_id}"):
            current = await self._store.read_flight(flight_id, hold=True)  # a departed one too
            if current is None:
                raise NotFound(f"no flight {flight_id}")
            updated = msgspec.structs.replace(current, **{k: v for k, v in changes.items() if v is not None})
            await self._write_flights([updated], replace=True)
        await self._audit.record(actor, "flight.update", flight_id)
        return updated

    async def _write_flights(self, flights: list[Flight], *, replace: bool) -> None:
        # From the check to the store putting a replaced flight in memory there is no await: an accept is checked
        # either before (and counted in seats_held) or after (against the new cabins and status).
        for flight in flights:
            _check_flight(flight)
            old = self._store.flight(flight.id)
            if old is not None and not replace:
                raise Conflict(f"flight {flight.id} already exists")
            for cabin, held in self.seats_held(flight.id).items():
                if held and (cabin not in flight.cabins or flight.cabins[cabin].capacity < held):
                    raise Conflict(f"flight {flight.id} cabin {cabin} has {held} seats sold or held; "
                                   "capacity cannot go below that")
        try:
            await self._store.put_flights(flights)
        except WriteConflict as exc:
            raise _conflict(exc, new=not replace) from None

    # ---- products ----
    def product(self, product_id: str) -> Product:
        product = self._store.product(product_id)
        if product is None:
            raise NotFound(f"no product {product_id}")
        return product

    def products(self) -> list[Product]:
        return self._store.products()

    def find_product(self, product_id: str) -> Product | None:
        """An active product by id; None for an unknown or retired one (and for any other id, such as a
        recommended destination's)."""
        product = self._store.product(product_id)
        return product if product is not None and product.status == "active" else None

    def product_name(self, product_id: str) -> str | None:
        """An active product's name, for messages that mention it."""
        product = self.find_product(product_id)
        return product.name if product is not None else None

    def product_of_kind(self, kind: str) -> Product | None:
        """The active product sold for an ancillary kind (the first one created)."""
        return self._store.product_of_kind(kind)

    async def put_product(self, actor: Principal | str, product: Product, *, audit: bool = True) -> Product:
        """Create a product (409 when it exists): a product.create entry, unless `audit` is False (a bulk load
        that is no admin action, such as the demo data set)."""
        await self._write_product(product, replace=False)
        if audit:
            await self._audit.record(actor, "product.create", product.id)
        return product

    async def update_product(self, actor: Principal | str, product_id: str, **changes) -> Product:
        async with self._changing(f"product:{product_id}"):
            current = self.product(product_id)
            updated = msgspec.structs.replace(current, **{k: v for k, v in changes.items() if v is not None})
            await self._write_product(updated, replace=True)
        await self._audit.record(actor, "product.update", product_id)
        return updated

    async def _write_product(self, product: Product, *, replace: bool) -> None:
        if product.kind not in ANCILLARY_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(ANCILLARY_KINDS)} (flights are created as flights)")
        if product.price_cents < 0:
            raise InvalidInput("price_cents must not be negative")
        if product.capacity_per_flight is not None and product.capacity_per_flight < 0:
            raise InvalidInput("capacity_per_flight must not be negative")
        if self._store.product(product.id) is not None and not replace:
            raise Conflict(f"product {product.id} already exists")
        # As for flights: no await from this check to the store putting the new capacity in memory.
        if product.capacity_per_flight is not None:
            for flight_id, held in sorted(self.units_held(product.id).items()):
                if held > product.capacity_per_flight:
                    raise Conflict(f"product {product.id} has {held} units sold or held on flight {flight_id}; "
                                   "capacity_per_flight cannot go below that", {"flight_id": flight_id, "held": held})
        try:
            await self._store.put_product(product)
        except WriteConflict as exc:
            raise _conflict(exc, new=not replace) from None

    @contextlib.asynccontextmanager
    async def _changing(self, key: str) -> AsyncIterator[None]:
        """One change at a time per flight or product on this node, from reading it to its write: two changes never
        build on the same version (neither is lost), and no undo of a failed write drops another's change. A lock
        exists only while a change waits or runs."""
        async with self._locks.hold(key):
            yield

    def pricing_stamp(self, flight_id: str) -> tuple[int, int]:
        """Changes whenever anything a flight's prices depend on changes (except time to departure)."""
        return self._store.version, self._orders.flight_versions.get(flight_id, 0)

    # ---- inventory ----
    def seats_held(self, flight_id: str) -> dict[str, int]:
        flight = self._store.flight(flight_id)
        cabins = flight.cabins if flight else {}
        return {cabin: self._orders.held.get(seat_resource(flight_id, cabin), 0) for cabin in cabins}

    def units_held(self, product_id: str) -> dict[str, int]:
        """A limited product's units held by live orders, per flight that holds any."""
        held: dict[str, int] = {}
        for resource, n in self._orders.held.items():
            flight_id, _, name = resource.rpartition("/")
            if name == product_id and n:
                held[flight_id] = n
        return held

    def seats_left(self, flight: Flight, cabin: str) -> int:
        c = flight.cabins.get(cabin)
        return 0 if c is None else c.capacity - self._orders.held.get(seat_resource(flight.id, cabin), 0)

    def seats_left_by_cabin(self, flight: Flight) -> dict[str, int]:
        return {cabin: self.seats_left(flight, cabin) for cabin in flight.cabins}

    def fares_now(self, flight: Flight, now: float) -> dict[str, int]:
        """Per cabin, what a search would price one economy-segment passenger's fare at `now` (before taxes,
        the booking fee and any bundle)."""
        hours = (flight.departure_at - now) / 3600
        return {cabin: fare_cents(c.base_fare_cents, self.utilisation(flight, cabin), hours, "economy")
                for cabin, c in flight.cabins.items()}

    def utilisation(self, flight: Flight, cabin: str) -> float:
        c = flight.cabins.get(cabin)
        if c is None or c.capacity <= 0:
            return 1.0
        return self._orders.held.get(seat_resource(flight.id, cabin), 0) / c.capacity

    def capacity(self, resource: str) -> int:
        """Units a resource has for sale: a cabin's seats or a limited product's units per flight."""
        flight_id, _, name = resource.rpartition("/")
        flight = self._store.flight(flight_id)
        if flight is None:
            return 0
        if name in flight.cabins:
            return flight.cabins[name].capacity
        product = self._store.product(name)
        if product is None or product.capacity_per_flight is None:
            return 0
        return product.capacity_per_flight

    def available(self, resource: str) -> int:
        return self.capacity(resource) - self._orders.held.get(resource, 0)


def _conflict(exc: WriteConflict, *, new: bool) -> Conflict:
    """The store's guard refused the write, nothing written (several nodes): another node created or changed the
    flight or product first (this node has read it back), or the shared inventory holds more than a lowered
    capacity."""
    guard, _, what = exc.what.partition(":")
    if guard == "held":  # "<flight>/<cabin>", or "*/<product>" on any flight
        owner, _, name = what.rpartition("/")
        where = f"flight {owner} cabin {name}" if owner != "*" else f"product {name} on some flight"
        return Conflict(f"{where} has more sold or held (on another node) than the new capacity; "
                        "capacity cannot go below that")
    if new:
        return Conflict(f"{guard} {what} already exists")
    return Conflict(f"{guard} {what} changed meanwhile (on another node); try again")


def _check_flight(f: Flight) -> None:
    problems = []
    if not f.id or len(f.id) > 64:
        problems.append("id must be 1 to 64 characters")
    for name, code in (("origin", f.origin), ("destination", f.destination)):
        if len(code) != 3 or not code.isalpha() or not code.isupper():
            problems.append(f"{name} must be a 3-letter IATA airport code")
    if f.origin == f.destination:
        problems.append("origin and destination must differ")
    if f.arrival_at <= f.departure_at:
        problems.append("arrival_at must be after departure_at")
    if not f.cabins:
        problems.append("at least one cabin is needed")
    for name, cabin in f.cabins.items():
        if name not in ("economy", "premium", "business"):
            problems.append(f"cabin {name} must be economy, premium or business")
        if cabin.capacity < 0 or cabin.capacity > 1000:
            problems.append(f"cabin {name} capacity must be 0 to 1000")
        if cabin.base_fare_cents <= 0:
            problems.append(f"cabin {name} base_fare_cents must be positive")
    if problems:
        raise InvalidInput("; ".join(problems), {"problems": problems})
