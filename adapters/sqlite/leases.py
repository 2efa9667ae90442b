"""Turns at work only one node may do at a time (a sync with an outside tool): a lease per name in the system of
record, the same SQL on SQLite and PostgreSQL."""

from __future__ import annotations

from adapters.sqlite.statements import SqlDatabase, written

# Taken when free, lapsed, or already this holder's; 0 rows otherwise (the guard below refuses the write).
_HOLD = ("INSERT INTO task_leases(name, holder, until) VALUES (?,?,?) ON CONFLICT(name) DO UPDATE SET "
         "holder = excluded.holder, until = excluded.until WHERE task_leases.holder = excluded.holder "
         "OR task_leases.until < ?")


class SqliteLeases:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def hold(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        """Take or renew the lease `name` until now + ttl_s; False while another holder's has not lapsed."""
        return await written(self._db, [(_HOLD, (name, holder, now + ttl_s, now), 1, f"lease:{name}")])
