"""SQLite storage of audit: the audit port's SQL."""

from __future__ import annotations

import msgspec

from adapters.sqlite.statements import Insert, SqlDatabase
from state.audit import AuditEntry


class SqliteAuditStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def append(self, at: float, actor: str, action: str, target: str, details: dict) -> None:
        await self._db.write([Insert("audit_log", ("at", "actor", "action", "target", "details"),
                                     [(at, actor, action, target, msgspec.json.encode(details).decode())])])

    async def page(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        """Newest first; `before_id` continues a previous page."""
        # A cursor's id is whatever integer its client wrote into it; SQLite's integers are 64-bit.
        before = 2**62 if before_id is None else min(max(before_id, 0), 2**62)
        rows = await self._db.fetchall(
            "SELECT id, at, actor, action, target, details FROM audit_log WHERE id < ?"
            " ORDER BY id DESC LIMIT ?", (before, limit))
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], msgspec.json.decode(r[5])) for r in rows]
