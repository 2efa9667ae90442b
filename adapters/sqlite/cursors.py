"""SQLite storage of a named job's place (rollup_cursors): how far an exporter has got, kept across restarts."""

from __future__ import annotations

from adapters.sqlite.statements import SqlDatabase


class SqliteCursorStore:
    """One integer per name: an event id for the roll-up, an hour (epoch seconds) for an exporter."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def get(self, name: str) -> int | None:
        row = await self._db.fetchone("SELECT last_id FROM rollup_cursors WHERE name = ?", (name,))
        return int(row[0]) if row else None

    async def put(self, name: str, value: int) -> None:
        await self._db.write([("INSERT INTO rollup_cursors(name, last_id) VALUES (?,?) ON CONFLICT(name) "
                               "DO UPDATE SET last_id = excluded.last_id", (name, value))])
