"""Activations counted per customer per UTC day, so the daily cap holds across restarts."""

from __future__ import annotations

from adapters.sqlite.statements import SqlDatabase


class SqliteActivationCountStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def counts(self, day: str) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT user_id, count FROM activation_counts WHERE day=?", (day,))
        return {user_id: count for user_id, count in rows}

    async def add_one(self, user_id: str, day: str) -> None:
        await self._db.write([("INSERT INTO activation_counts(user_id, day, count) VALUES (?,?,1) "
                               "ON CONFLICT(user_id, day) DO UPDATE SET count = activation_counts.count + 1",
                               (user_id, day))])
