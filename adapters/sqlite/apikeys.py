"""SQLite storage of apikeys: the apikeys port's SQL."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from adapters.sqlite.statements import Insert, SqlDatabase
from state.apikeys import ApiKey
from state.ports import ChangeFeed

COLUMNS = "id, name, role, key_hash, created_at, revoked_at, created_by"  # ApiKey's fields, in order


class SqliteApiKeyStore:
    """Hot index of the live API keys by hash, written through to SQLite; revoked keys are read from the store only
    (the admin listing), so memory holds the keys that work, not every key ever made."""

    def __init__(self, db: SqlDatabase, changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._changes = changes  # several nodes: a key revoked on one stops working on all
        self._by_id: dict[str, ApiKey] = {}
        self._by_hash: dict[str, ApiKey] = {}

    async def load(self) -> None:
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at")
        for row in rows:
            self._index(ApiKey(*row))

    def _index(self, key: ApiKey) -> None:
        """Hold a live key; a revoked one is let go."""
        if key.revoked_at is not None:
            self._by_id.pop(key.id, None)
            self._by_hash.pop(key.key_hash, None)
            return
        self._by_id[key.id] = key
        self._by_hash[key.key_hash] = key

    def by_hash(self, key_hash: str) -> ApiKey | None:
        return self._by_hash.get(key_hash)

    async def fetch_by_hash(self, key_hash: str) -> ApiKey | None:
        """Read a key another process (the CLI) may have added since start, and index it."""
        row = await self._db.fetchone(
            f"SELECT {COLUMNS} FROM api_keys WHERE key_hash=?", (key_hash,))
        if row is None:
            return None
        key = ApiKey(*row)
        self._index(key)
        return key

    def live(self) -> list[ApiKey]:
        """The keys that work, oldest first."""
        return list(self._by_id.values())

    async def page(self, after: tuple[float, str] | None, limit: int) -> list[ApiKey]:
        """Every key, revoked ones too, in (created_at, id) order after that position."""
        if after is None:
            rows = await self._db.fetchall(f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id LIMIT ?",
                                           (limit,))
        else:
            rows = await self._db.fetchall(
                f"SELECT {COLUMNS} FROM api_keys WHERE created_at > ? OR (created_at = ? AND id > ?) "
                "ORDER BY created_at, id LIMIT ?", (after[0], after[0], after[1], limit))
        return [ApiKey(*row) for row in rows]

    async def add(self, key: ApiKey) -> None:
        """Persist a new key, then make it usable."""
        await self._db.write([Insert("api_keys", ("id", "name", "role", "key_hash", "created_at", "revoked_at",
                                                  "created_by"),
                                     [(key.id, key.name, key.role, key.key_hash, key.created_at, key.revoked_at,
                                       key.created_by)])])
        self._index(key)

    async def revoke(self, key_id: str, at: float) -> ApiKey | None:
        """Mark a key revoked; it stops authenticating at once (a key revoked already: as it is stored)."""
        key = self._by_id.get(key_id)
        if key is None:
            row = await self._db.fetchone(f"SELECT {COLUMNS} FROM api_keys WHERE id=?", (key_id,))
            return ApiKey(*row) if row is not None else None
        revoked = msgspec.structs.replace(key, revoked_at=at)
        self._index(revoked)
        try:
            await self._db.write([("UPDATE api_keys SET revoked_at=? WHERE id=?", (at, key_id))])
        except BaseException:
            self._index(key)
            raise
        if self._changes is not None:
            self._changes.changed("api_key", [key_id])
        return revoked

    async def refresh(self, key_ids: Sequence[str]) -> list[str]:
        """Another node changed these keys (revoked them): read them back; the ids of those revoked."""
        marks = ",".join("?" * len(key_ids))
        revoked = []
        for row in await self._db.fetchall(
                f"SELECT {COLUMNS} FROM api_keys WHERE id IN ({marks})",
                list(key_ids)):
            key = ApiKey(*row)
            self._index(key)
            if key.revoked_at is not None:
                revoked.append(key.id)
        return revoked
