"""SQLite storage of eventlog: the eventlog port's SQL."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from adapters.sqlite.statements import Insert, SqlDatabase, used_bytes
from state.eventlog import StoredEvent

APPEND_LOCK = 0x436F6E7472 + 1  # pg_advisory_xact_lock's key for appends (the migrations' lock is the one before)


class SqliteEventLogStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def append_batch(self, rows: Sequence[tuple[float, str, str]]) -> int:
        """Write (at, type, payload_json) rows in one transaction."""
        insert = Insert("events", ("at", "type", "payload"), rows)
        if self._db.dialect != "postgres":  # one writer: ids are committed in the order they are given
            written, = await self._db.write([insert])
            return written
        # Nodes sharing PostgreSQL append at once, and an identity is taken at the insert, not at the commit: a
        # reader going by id (the reports' roll-up, a stream resuming, an export) that saw id 101 committed
        # before 100 would never read 100. Appends take turns until their commit, so ids become visible in order.
        _, written = await self._db.write([("SELECT pg_advisory_xact_lock(?)", (APPEND_LOCK,)), insert])
        return written

    async def purge(self, before: float, limit: int) -> int:
        """Delete those of the oldest `limit` events (by id, the order they were written in) that
        happened before `before`; returns how many went."""
        deleted, = await self._db.write([
            ("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?) AND at < ?",
             (limit, before))], power_safe=False)
        return deleted

    async def purge_oldest(self, limit: int) -> int:
        """Delete the oldest `limit` events (by id), whatever their age (the size budget); how many went."""
        deleted, = await self._db.write([
            ("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)", (limit,))],
            power_safe=False)
        return deleted

    async def used_bytes(self) -> int:
        """What the events take on disk (statements.used_bytes: 0 on PostgreSQL)."""
        return await used_bytes(self._db)

    async def anonymise(self, user_id: str, chunk: int = 1_000) -> int:
        """Replace a customer's id in the events that name it (as `user_id`, or as an order's `owner`) with
        "erased" (erasure): the counts and amounts stay for the reports, nothing leads back to the person. The
        events rewritten."""
        owner = f"user:{user_id}"
        # LIKE narrows the scan (its wildcards in an id only widen it); the decoded fields decide.
        rows = await self._db.fetchall("SELECT id, payload FROM events WHERE payload LIKE ?", (f"%{user_id}%",))
        statements: list = []
        for event_id, payload in rows:
            try:
                doc = msgspec.json.decode(payload)
            except msgspec.DecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            changed = False
            for field, mine, erased in (("user_id", user_id, "erased"), ("owner", owner, "user:erased")):
                if doc.get(field) == mine:
                    doc[field], changed = erased, True
            if changed:
                statements.append(("UPDATE events SET payload = ? WHERE id = ?",
                                   (msgspec.json.encode(doc).decode(), event_id)))
        for start in range(0, len(statements), chunk):
            await self._db.write(statements[start:start + chunk])
        return len(statements)

    async def query(self, type_: str | None, since: float | None, after_id: int, limit: int) -> list[StoredEvent]:
        """Oldest first from `since`, continuing after `after_id`."""
        # A cursor's id is whatever integer its client wrote into it; SQLite's integers are 64-bit.
        clauses: list[str] = ["id > ?"]
        params: list[int | float | str] = [min(max(after_id, -1), 2**62)]
        if type_:
            clauses.append("type = ?")
            params.append(type_)
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        rows = await self._db.fetchall(
            f"SELECT id, at, type, payload FROM events WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            (*params, limit))
        return [StoredEvent(r[0], r[1], r[2], msgspec.Raw(r[3].encode())) for r in rows]

    async def payload_page(self, type_: str, before_id: int, limit: int) -> list[tuple[int, str]]:
        """(id, payload) of the newest `limit` events of one type written before id `before_id`, newest first."""
        rows = await self._db.fetchall("SELECT id, payload FROM events WHERE type = ? AND id < ? ORDER BY id DESC "
                                       "LIMIT ?", (type_, min(before_id, 2**62), limit))
        return [(int(r[0]), r[1]) for r in rows]

    async def recent_payloads(self, type_: str, limit: int) -> list[str]:
        """The newest `limit` payloads (JSON text) of one event type, oldest first."""
        rows = await self._db.fetchall(
            "SELECT payload FROM (SELECT id, payload FROM events WHERE type = ? ORDER BY id DESC LIMIT ?) AS newest "
            "ORDER BY id",
            (type_, limit))
        return [r[0] for r in rows]
