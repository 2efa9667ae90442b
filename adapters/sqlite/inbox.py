"""SQLite storage of inbox: the inbox port's SQL."""

from __future__ import annotations

from adapters.sqlite.statements import Insert, SqlDatabase
from state.inbox import InAppMessage, _decode, _encode


class SqliteInboxStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def add(self, message: InAppMessage) -> None:
        await self._db.write([Insert("inbox", ("id", "user_id", "at", "body"),
                                     [(message.id, message.user_id, message.at, _encode(message).decode())])])

    async def newest(self, user_id: str, limit: int, before: float | None) -> list[InAppMessage]:
        rows = await self._db.fetchall(
            "SELECT body FROM inbox WHERE user_id=? AND at < ? ORDER BY at DESC, id DESC LIMIT ?",
            (user_id, before if before is not None else float("inf"), limit))
        return [_decode(r[0]) for r in rows]

    async def forget(self, user_id: str) -> int:
        """Delete a customer's in-app messages (erasure); how many there were."""
        deleted, = await self._db.write([("DELETE FROM inbox WHERE user_id = ?", (user_id,))])
        return deleted
