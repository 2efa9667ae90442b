"""SQLite storage of idempotency: the idempotency port's SQL."""

from __future__ import annotations

import heapq

from adapters.pii import PiiCipher
from adapters.sqlite.statements import SqlDatabase
from state.idempotency import StoredResponse

BODY = "idempotency.body"  # sealed: a stored response may hold the caller's personal data (an email, a phone)


class SqliteIdempotencyStore:
    """Responses by (scope, key), hot in memory, durable in SQLite until they expire."""

    def __init__(self, db: SqlDatabase, pii: PiiCipher) -> None:
        self._db = db
        self._pii = pii
        self._records: dict[tuple[str, str], StoredResponse] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []  # heap: the purge pops what is due

    async def load(self, now: float) -> None:
        rows = await self._db.fetchall(
            "SELECT scope, key, request_hash, status, content_type, body, created_at, expires_at"
            " FROM idempotency WHERE expires_at > ?", (now,))
        for row in rows:
            scope, key, request_hash, status, content_type, body, created_at, expires_at = row
            record = StoredResponse(scope, key, request_hash, status, content_type, self._pii.open_bytes(body, BODY),
                                    created_at, expires_at)
            self._records[(record.scope, record.key)] = record
        self._expiry = [(r.expires_at, k) for k, r in self._records.items()]
        heapq.heapify(self._expiry)

    def get(self, scope: str, key: str, now: float) -> StoredResponse | None:
        record = self._records.get((scope, key))
        if record is None or record.expires_at <= now:
            return None
        return record

    async def put(self, record: StoredResponse) -> None:
        await self._db.write([(
            "INSERT INTO idempotency(scope, key, request_hash, status, content_type, body, created_at, expires_at) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(scope, key) DO UPDATE SET request_hash=excluded.request_hash, "
            "status=excluded.status, content_type=excluded.content_type, body=excluded.body, "
            "created_at=excluded.created_at, expires_at=excluded.expires_at",
            (record.scope, record.key, record.request_hash, record.status, record.content_type,
             self._pii.seal_bytes(record.body, BODY), record.created_at, record.expires_at),
        )])
        self._records[(record.scope, record.key)] = record
        heapq.heappush(self._expiry, (record.expires_at, (record.scope, record.key)))

    async def claim(self, scope: str, key: str, request_hash: str, now: float, until: float) -> bool:
        """Mark a key in flight (status 0) for every node until `until`, unless a live record holds it: whether
        this caller has it."""
        counts = await self._db.write([(
            "INSERT INTO idempotency(scope, key, request_hash, status, content_type, body, created_at, expires_at) "
            "VALUES (?,?,?,0,'',?,?,?) ON CONFLICT(scope, key) DO UPDATE SET request_hash=excluded.request_hash, "
            "status=0, content_type='', body=excluded.body, created_at=excluded.created_at, "
            "expires_at=excluded.expires_at WHERE idempotency.expires_at <= excluded.created_at",
            (scope, key, request_hash, b"", now, until))])
        return counts[0] == 1

    async def fetch(self, scope: str, key: str, now: float) -> StoredResponse | None:
        """The live record of a key as stored (another node's; status 0: still in flight there)."""
        row = await self._db.fetchone(
            "SELECT scope, key, request_hash, status, content_type, body, created_at, expires_at FROM idempotency "
            "WHERE scope = ? AND key = ? AND expires_at > ?", (scope, key, now))
        if row is None:
            return None
        scope_, key_, request_hash, status, content_type, body, created_at, expires_at = row
        record = StoredResponse(scope_, key_, request_hash, status, content_type, self._pii.open_bytes(body, BODY),
                                created_at, expires_at)
        if record.status:
            self._records[(scope, key)] = record
            heapq.heappush(self._expiry, (record.expires_at, (scope, key)))
        return record

    async def release(self, scope: str, key: str) -> None:
        """Drop a claim whose request ended without a response to keep."""
        await self._db.write([("DELETE FROM idempotency WHERE scope = ? AND key = ? AND status = 0", (scope, key))])

    async def forget_scope(self, scope: str) -> int:
        """Delete every stored response of one caller (erasure); how many were held here."""
        keys = [k for k in self._records if k[0] == scope]
        await self._db.write([("DELETE FROM idempotency WHERE scope = ?", (scope,))])
        for k in keys:
            del self._records[k]
        return len(keys)

    async def purge_expired(self, now: float) -> int:
        """Forget responses past their expiry; return how many."""
        purged = 0
        while self._expiry and self._expiry[0][0] <= now:
            at, key = heapq.heappop(self._expiry)
            record = self._records.get(key)
            if record is not None and record.expires_at == at:  # not replaced by a later response since
                del self._records[key]
                purged += 1
        await self._db.write([("DELETE FROM idempotency WHERE expires_at <= ?", (now,))])
        return purged
