"""SQLite storage of campaigns' offer-selection policies (to be completed)."""

from __future__ import annotations

from adapters.sqlite.db import Database


class SqlitePolicyStore:
    def __init__(self, db: Database) -> None:
        self._db = db
