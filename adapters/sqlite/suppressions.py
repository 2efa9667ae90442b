"""SQLite storage of suppressions: the suppressions port's SQL."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.sqlite.statements import SqlDatabase
from state.ports import ChangeFeed
from state.suppressions import Suppression, _decode, _encode


class SqliteSuppressionStore:
    def __init__(self, db: SqlDatabase, changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._changes = changes  # several nodes: tell the others (a change names "channel/identifier")
        self._entries: dict[tuple[str, str], Suppression] = {}

    async def load(self) -> None:
        for (body,) in await self._db.fetchall("SELECT body FROM suppressions ORDER BY rowid"):
            s = _decode(body)
            self._entries[(s.identifier, s.channel)] = s

    def get(self, identifier: str, channel: str) -> Suppression | None:
        return self._entries.get((identifier, channel))

    def all(self) -> list[Suppression]:
        return sorted(self._entries.values(), key=lambda s: (s.identifier, s.channel))

    async def put(self, entries: list[Suppression]) -> None:
        await self._db.write([("INSERT INTO suppressions(identifier, channel, body) VALUES (?,?,?) "
                               "ON CONFLICT(identifier, channel) DO UPDATE SET body=excluded.body",
                               (s.identifier, s.channel, _encode(s).decode())) for s in entries])
        for s in entries:
            self._entries[(s.identifier, s.channel)] = s
        self._tell([(s.identifier, s.channel) for s in entries])

    async def remove(self, keys: list[tuple[str, str]]) -> int:
        present = [k for k in keys if k in self._entries]
        if present:
            await self._db.write([("DELETE FROM suppressions WHERE identifier=? AND channel=?", k) for k in present])
            for k in present:
                self._entries.pop(k, None)
            self._tell(present)
        return len(present)

    def _tell(self, keys: list[tuple[str, str]]) -> None:
        if self._changes is not None and keys:
            self._changes.changed("suppression", [f"{channel}/{identifier}" for identifier, channel in keys])

    async def refresh(self, names: Sequence[str]) -> None:
        """Another node added or lifted these suppressions ("channel/identifier"): read them back."""
        for name in names:
            channel, _, identifier = name.partition("/")
            row = await self._db.fetchone("SELECT body FROM suppressions WHERE identifier=? AND channel=?",
                                          (identifier, channel))
            if row is None:
                self._entries.pop((identifier, channel), None)
            else:
                self._entries[(identifier, channel)] = _decode(row[0])
