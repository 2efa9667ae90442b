"""Which demo data sets are loaded, so seeding is idempotent."""

from adapters.sqlite.statements import SqlDatabase


class SqliteDemoMarkerStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def is_loaded(self, name: str) -> bool:
        return await self._db.fetchone("SELECT 1 FROM demo_data WHERE name=?", (name,)) is not None

    async def mark_loaded(self, name: str, at: float) -> None:
        await self._db.write([("INSERT OR IGNORE INTO demo_data(name, loaded_at) VALUES (?,?)", (name, at))])
