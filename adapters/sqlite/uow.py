"""The unit of work on SQLite: a domain operation's writes, collected and committed as one transaction."""

from __future__ import annotations

import asyncio

from adapters.sqlite.db import Database
from adapters.sqlite.loyalty import SqliteLedgerWrites
from adapters.sqlite.offers import SqliteOfferWrites
from adapters.sqlite.orders import SqliteOrderWrites
from adapters.sqlite.statements import Statement


class SqliteTransaction:
    """Writes on the system of record, in the order they are made; one group-commit step when committed."""

    __slots__ = ("_db", "statements")

    def __init__(self, db: Database) -> None:
        self._db = db
        self.statements: list[Statement] = []

    @property
    def orders(self) -> SqliteOrderWrites:
        return SqliteOrderWrites(self.statements)

    @property
    def offers(self) -> SqliteOfferWrites:
        return SqliteOfferWrites(self.statements)

    @property
    def loyalty(self) -> SqliteLedgerWrites:
        return SqliteLedgerWrites(self.statements)

    def commit(self, *, power_safe: bool = True) -> asyncio.Future[list[int]]:
        """Queue the writes for the next group commit; the future resolves once they are on disk (or fails,
        with nothing of them written)."""
        return self._db.submit(self.statements, power_safe=power_safe)


class SqliteUnitOfWork:
    def __init__(self, db: Database) -> None:
        self._db = db

    def begin(self) -> SqliteTransaction:
        return SqliteTransaction(self._db)
