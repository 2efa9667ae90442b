"""SQLite storage of idempotency: the idempotency port's SQL."""

from __future__ import annotations

from adapters.pii import PiiCipher
from adapters.sqlite.statements import SqlDatabase
from app.runtime.lru import LRU
from state.idempotency import StoredResponse

BODY = "idempotency.body"  # sealed: a stored response may hold the caller's personal data (an email, a phone)
_COLUMNS = "scope, key, request_hash, status, content_type, body, created_at, expires_at"
LOAD_PAGE = 5_000


class SqliteIdempotencyStore:
    """Responses by (scope, key), durable until they expire; the latest `max_in_memory` held in memory (an LRU
    of whole responses). While memory holds every live record, it answers alone; once it does not (a record was
    evicted, or a start found more than it holds), a miss reads the store (`complete` is False)."""

    def __init__(self, db: SqlDatabase, pii: PiiCipher, max_in_memory: int = 100_000) -> None:
        self._db = db
        self._pii = pii
        self._records: LRU[tuple[str, str], StoredResponse] = LRU(max_in_memory, "idempotency")
        self.complete = True

    @property
    def records(self) -> LRU[tuple[str, str], StoredResponse]:
        return self._records

    def _record(self, row: tuple) -> StoredResponse:
        scope, key, request_hash, status, content_type, body, created_at, expires_at = row
        return StoredResponse(scope, key, request_hash, status, content_type, self._pii.open_bytes(body, BODY),
                              created_at, expires_at)

    async def load(self, now: float) -> None:
        """The newest live records, up to what memory holds, in keyset pages (newest first)."""
        capacity = self._records.capacity
        newest: list[StoredResponse] = []
        after: tuple[float, str, str] | None = None
        while len(newest) <= capacity:
            bound = "" if after is None else " AND (expires_at, scope, key) < (?, ?, ?)"
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM idempotency WHERE expires_at > ? AND status != 0{bound} "
                "ORDER BY expires_at DESC, scope DESC, key DESC LIMIT ?",
                (now, *(after or ()), min(LOAD_PAGE, capacity + 1 - len(newest))))
            if not rows:
                break
            newest += [self._record(row) for row in rows]
            after = (rows[-1][7], rows[-1][0], rows[-1][1])
        self.complete = len(newest) <= capacity
        for record in reversed(newest[:capacity]):  # the newest ends up the most recently used
            self._records.put((record.scope, record.key), record)

    def get(self, scope: str, key: str, now: float) -> StoredResponse | None:
        """From memory only (when `complete` is False, None may mean "not held": fetch reads the store)."""
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
        self._hold(record)

    def _hold(self, record: StoredResponse) -> None:
        self._records.put((record.scope, record.key), record)
        if self._records.evictions:
            self.complete = False

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
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM idempotency WHERE scope = ? AND key = ? AND "
                                      "expires_at > ?", (scope, key, now))
        if row is None:
            return None
        record = self._record(row)
        if record.status:
            self._hold(record)
        return record

    async def release(self, scope: str, key: str) -> None:
        """Drop a claim whose request ended without a response to keep."""
        await self._db.write([("DELETE FROM idempotency WHERE scope = ? AND key = ? AND status = 0", (scope, key))])

    async def forget_scope(self, scope: str) -> int:
        """Delete every stored response of one caller (erasure); how many there were."""
        deleted, = await self._db.write([("DELETE FROM idempotency WHERE scope = ?", (scope,))])
        for k, _ in self._records.items():
            if k[0] == scope:
                self._records.pop(k)
        return deleted

    async def purge_expired(self, now: float) -> int:
        """Delete responses past their expiry, stored and held; how many were stored."""
        for k, record in self._records.items():  # at most max_in_memory, every few minutes
            if record.expires_at <= now:
                self._records.pop(k)
        deleted, = await self._db.write([("DELETE FROM idempotency WHERE expires_at <= ?", (now,))])
        return deleted
