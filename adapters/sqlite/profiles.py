"""SQLite storage of profiles: the profiles port's SQL."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec
import numpy as np

from adapters.sqlite.statements import SqlDatabase
from app.runtime.idset import IdSet, hashes
from state.profiles import Profile, _decode, _encode

log = logging.getLogger("contrail.profiles")
LOAD_PAGE = 10_000  # ids read per round trip at start


class SqliteProfileStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._ids = IdSet()  # which users have a stored profile: 8 bytes an id
        self._put_while_purging: set[str] | None = None
        # While load() reads the ids: each id written or deleted meanwhile, whether it has a profile now (the
        # latest change last), applied to what was read once it is all read. None when no load is under way.
        self._changed_while_loading: dict[str, bool] | None = None
        # Until a load has read every id (a server starts it after it is ready), each lookup reads the store.
        self.loading = True

    async def load(self) -> None:
        """Remember which users have a stored profile, so lookups for anyone else need no I/O. Keyset pages of
        ids: a million rows fetched at once held a list of tuples beside the set, and the heap kept its peak.
        A server runs this after it is ready (a million ids take about a second): meanwhile every lookup reads
        the store, and the profiles written or deleted are applied to what was read."""
        changed: dict[str, bool] = {}
        self._changed_while_loading = changed
        self.loading = True  # and so it stays if this load fails, until one succeeds
        try:
            pages: list[np.ndarray] = []  # each page's hashes (8 bytes an id), sorted once at the end
            after = ""
            while rows := await self._db.fetchall(
                    f"SELECT user_id FROM profiles WHERE user_id > ? ORDER BY user_id LIMIT {LOAD_PAGE}", (after,)):
                pages.append(hashes(row[0] for row in rows))
                after = rows[-1][0]
            ids = IdSet.of_hashes(pages)
            # A page read before a change was committed missed it: the changes, in order, say what holds now.
            for user_id, stored in changed.items():
                if stored:
                    ids.add(user_id)
                else:
                    ids.discard(user_id)
            self._ids = ids
            self.loading = False
        finally:
            self._changed_while_loading = None

    def __contains__(self, user_id: str) -> bool:
        return self.loading or user_id in self._ids

    async def get(self, user_id: str) -> Profile | None:
        if user_id not in self:
            return None
        row = await self._db.fetchone("SELECT body FROM profiles WHERE user_id=?", (user_id,))
        if row is None:
            return None
        return readable(user_id, row[0])

    async def put(self, *profiles: Profile) -> None:
        """Create or replace profiles, all in one commit."""
        await self._write(profiles)
        self._ids.update(p.user_id for p in profiles)
        self._changed(profiles, True)
        if self._put_while_purging is not None:
            self._put_while_purging.update(p.user_id for p in profiles)

    async def purge(self, before: float, limit: int) -> int:
        """Delete up to `limit` profiles last updated before `before` (past the TTL no lookup believes them), and
        forget their ids; how many went."""
        rows = await self._db.fetchall(
            "SELECT user_id FROM profiles WHERE updated_at < ? ORDER BY updated_at LIMIT ?", (before, limit))
        if not rows:
            return 0
        stale = [row[0] for row in rows]
        put: set[str] = set()
        self._put_while_purging = put
        try:
            # `updated_at < ?` again: a profile written since the read above stays.
            deleted, = await self._db.write([(
                f"DELETE FROM profiles WHERE user_id IN ({', '.join('?' * len(stale))}) AND updated_at < ?",
                (*stale, before))])
            kept = {row[0] for row in await self._db.fetchall(
                f"SELECT user_id FROM profiles WHERE user_id IN ({', '.join('?' * len(stale))})", stale)}
        finally:
            self._put_while_purging = None
        gone = [user for user in stale if user not in kept and user not in put]
        self._ids.difference_update(gone)
        self._changed(gone, False)
        return deleted

    async def forget(self, user_id: str) -> bool:
        """Delete a customer's bidding profile (erasure); whether there was one."""
        deleted, = await self._db.write([("DELETE FROM profiles WHERE user_id = ?", (user_id,))])
        self._ids.discard(user_id)
        self._changed((user_id,), False)
        return deleted > 0

    def _changed(self, users: Iterable[Profile | str], stored: bool) -> None:
        """Note, while load() runs, which users' profiles were just written (stored) or deleted."""
        changed = self._changed_while_loading
        if changed is not None:
            for user in users:
                user_id = user if isinstance(user, str) else user.user_id
                changed.pop(user_id, None)  # re-inserted: the latest change is applied last
                changed[user_id] = stored

    async def _write(self, profiles: tuple[Profile, ...]) -> None:
        await self._db.write([("INSERT INTO profiles(user_id, body, updated_at) VALUES (?,?,?) "
                               "ON CONFLICT(user_id) DO UPDATE SET body=excluded.body, updated_at=excluded.updated_at",
                               (p.user_id, _encode(p).decode(), p.updated_at)) for p in profiles])


def readable(user_id: str, body: str | bytes) -> Profile | None:
    """A stored profile, or None for one this version cannot read (written by another version or by hand): the
    user is bid on as anyone unknown, never refused."""
    try:
        return _decode(body)
    except msgspec.ValidationError as exc:
        log.warning("unreadable stored profile", extra={"user_id": user_id, "error": str(exc)})
        return None
