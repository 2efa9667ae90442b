"""The unit of work: a domain operation's writes, collected and committed as one transaction, on the embedded
SQLite database or on PostgreSQL shared by several nodes (the same statements; see adapters/postgres/db.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from adapters.pii import PiiCipher
from adapters.sqlite.loyalty import SqliteLedgerWrites
from adapters.sqlite.offers import SqliteOfferWrites
from adapters.sqlite.orders import SqliteOrderWrites
from adapters.sqlite.statements import SqlDatabase, Statement
from state.offers import Item, held_by
from state.ports import ChangeFeed

# Raise a resource's units held unless that passes its capacity (a new row only when the units fit): one
# conditional statement, which two nodes cannot both pass at the last seat. The guard's row count is 1 or 0. The
# capacity is the row's where a change wrote one (adapters/sqlite/catalog.py), which a node that has not heard of
# the change yet may not know; a new row of a product takes the product's own row ("*/<product>", written by a
# change of its capacity) when there is one; else this node's capacity.
_HOLD = ("INSERT INTO inventory(resource, held, capacity) SELECT ?, CAST(? AS BIGINT), d.capacity "
         "FROM (SELECT (SELECT capacity FROM inventory WHERE resource = ?) AS capacity) AS d "
         "WHERE CAST(? AS BIGINT) <= COALESCE(d.capacity, ?) "
         "ON CONFLICT(resource) DO UPDATE SET held = inventory.held + excluded.held "
         "WHERE inventory.held + excluded.held <= COALESCE(inventory.capacity, ?)")
_RELEASE = "UPDATE inventory SET held = held - ? WHERE resource = ?"


def product_default(product_id: str) -> str:
    """The shared inventory row that holds a limited product's capacity for the flights with no row of it yet."""
    return f"*/{product_id}"


class SqliteInventoryWrites:
    """Inventory held, in the database several nodes share (`shared`): each hold guarded by the capacity. On one
    node's own database nothing is written: the memory the domain checked without an await is the inventory."""

    __slots__ = ("_statements", "_shared")

    def __init__(self, statements: list[Statement], shared: bool = False) -> None:
        self._statements = statements
        self._shared = shared

    def hold(self, items: Sequence[Item], capacity: Callable[[str], int]) -> None:
        if not self._shared:
            return
        defaults = {i.resource: i.resource if i.kind == "Flight" else product_default(i.product_id) for i in items}
        for resource, units in held_by(items).items():
            cap = capacity(resource)
            self._statements.append((_HOLD, (resource, units, defaults[resource], units, cap, cap), 1,
                                     f"inventory:{resource}"))

    def release(self, items: Sequence[Item]) -> None:
        if not self._shared:
            return
        for resource, units in held_by(items).items():
            self._statements.append((_RELEASE, (units, resource)))


class SqliteTransaction:
    """Writes on the system of record, in the order they are made; one group-commit step when committed."""

    __slots__ = ("_db", "_shared", "_changes", "_pii", "statements", "touched")

    def __init__(self, db: SqlDatabase, pii: PiiCipher, shared_inventory: bool = False,
                 changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._pii = pii
        self._shared = shared_inventory
        self._changes = changes
        self.statements: list[Statement] = []
        self.touched: list[tuple[str, str]] | None = [] if changes is not None else None

    @property
    def orders(self) -> SqliteOrderWrites:
        return SqliteOrderWrites(self.statements, self.touched)

    @property
    def offers(self) -> SqliteOfferWrites:
        return SqliteOfferWrites(self.statements, self.touched)

    @property
    def loyalty(self) -> SqliteLedgerWrites:
        return SqliteLedgerWrites(self.statements, self.touched, self._pii)

    @property
    def inventory(self) -> SqliteInventoryWrites:
        return SqliteInventoryWrites(self.statements, self._shared)

    def commit(self, *, power_safe: bool = True) -> asyncio.Future[list[int]]:
        """Queue the writes for the next group commit; the future resolves once they are on disk (or fails,
        with nothing of them written)."""
        done = self._db.submit(self.statements, power_safe=power_safe)
        if self.touched:
            done.add_done_callback(self._tell)
        return done

    def _tell(self, done: asyncio.Future[list[int]]) -> None:
        """Committed: the other nodes hear which records changed (several nodes)."""
        if done.cancelled() or done.exception() is not None or self._changes is None or not self.touched:
            return
        by_kind: dict[str, list[str]] = {}
        for kind, record_id in self.touched:
            by_kind.setdefault(kind, []).append(record_id)
        for kind, ids in by_kind.items():
            self._changes.changed(kind, list(dict.fromkeys(ids)))


class SqliteUnitOfWork:
    """`shared_inventory`: several nodes share the database (PostgreSQL), so holds are guarded there too;
    `changes`: and they hear of the orders and offers each commits; `pii`: seals members' contact details."""

    def __init__(self, db: SqlDatabase, pii: PiiCipher, shared_inventory: bool = False,
                 changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._pii = pii
        self._shared = shared_inventory
        self._changes = changes

    def begin(self) -> SqliteTransaction:
        return SqliteTransaction(self._db, self._pii, self._shared, self._changes)
