"""SQL storage of suppressions: the suppressions port's SQL.

A row is found by the keyed hash of its identifier (adapters/pii.py) and its body is sealed, so the database
holds no email or phone number in the clear. An erased person's entries keep only the hash: they are still never
contacted, and nobody can read back whom the entry was for.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.pii import PiiCipher, is_lookup_hash
from adapters.sqlite.statements import SqlDatabase
from state.ports import ChangeFeed
from state.suppressions import Suppression, _decode, _encode

BODY = "suppressions.body"


class SqliteSuppressionStore:
    def __init__(self, db: SqlDatabase, pii: PiiCipher, changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._pii = pii
        self._changes = changes  # several nodes: tell the others (a change names "channel/<hash of identifier>")
        self._entries: dict[tuple[str, str], Suppression] = {}
        self._by_hash: dict[str, str] = {}  # hash -> the identifier its entries are held under
        self._anonymous: set[str] = set()   # erased people's hashes, which their entries are held under

    def hashed(self, identifier: str) -> str:
        return identifier if is_lookup_hash(identifier) else self._pii.lookup(identifier)

    def _hold(self, s: Suppression) -> None:
        self._entries[(s.identifier, s.channel)] = s
        self._by_hash[self.hashed(s.identifier)] = s.identifier
        if is_lookup_hash(s.identifier):
            self._anonymous.add(s.identifier)

    async def load(self) -> None:
        for (body,) in await self._db.fetchall("SELECT body FROM suppressions ORDER BY rowid"):
            self._hold(_decode(self._pii.open(body, BODY)))

    def get(self, identifier: str, channel: str) -> Suppression | None:
        entry = self._entries.get((identifier, channel))
        if entry is None and self._anonymous:  # an erased person's entry is held under its hash
            hashed = self._pii.lookup(identifier)
            if hashed in self._anonymous:
                entry = self._entries.get((hashed, channel))
        return entry

    def all(self) -> list[Suppression]:
        return sorted(self._entries.values(), key=lambda s: (s.identifier, s.channel))

    async def put(self, entries: list[Suppression]) -> None:
        await self._db.write([("INSERT INTO suppressions(identifier, channel, body) VALUES (?,?,?) "
                               "ON CONFLICT(identifier, channel) DO UPDATE SET body=excluded.body",
                               (self.hashed(s.identifier), s.channel, self._pii.seal(_encode(s).decode(), BODY)))
                              for s in entries])
        for s in entries:
            self._hold(s)
        self._tell([(s.identifier, s.channel) for s in entries])

    async def remove(self, keys: list[tuple[str, str]]) -> int:
        present = [k for k in keys if k in self._entries]
        if present:
            await self._db.write([("DELETE FROM suppressions WHERE identifier=? AND channel=?",
                                   (self.hashed(identifier), channel)) for identifier, channel in present])
            for k in present:
                self._entries.pop(k, None)
            self._tell(present)
        return len(present)

    async def anonymise(self, identifiers: Sequence[str]) -> int:
        """Keep these identifiers' entries under their hash alone (erasure): the number of entries rewritten."""
        hashes = {self.hashed(i) for i in identifiers if i}
        entries = [s for s in self._entries.values() if self.hashed(s.identifier) in hashes
                   and not is_lookup_hash(s.identifier)]
        if not entries:
            return 0
        kept = [Suppression(self.hashed(s.identifier), s.channel, s.reason, s.created_at, s.expires_at)
                for s in entries]
        await self._db.write([("UPDATE suppressions SET body=? WHERE identifier=? AND channel=?",
                               (self._pii.seal(_encode(s).decode(), BODY), s.identifier, s.channel)) for s in kept])
        for old, new in zip(entries, kept, strict=True):
            self._entries.pop((old.identifier, old.channel), None)
            self._hold(new)
        self._tell([(s.identifier, s.channel) for s in kept])
        return len(kept)

    def _tell(self, keys: list[tuple[str, str]]) -> None:
        if self._changes is not None and keys:
            self._changes.changed("suppression", [f"{channel}/{self.hashed(identifier)}"
                                                  for identifier, channel in keys])

    async def refresh(self, names: Sequence[str]) -> None:
        """Another node added, lifted or anonymised these suppressions ("channel/hash"): read them back."""
        for name in names:
            channel, _, hashed = name.partition("/")
            hashed = self.hashed(hashed)  # a node of the version before names the identifier itself
            row = await self._db.fetchone("SELECT body FROM suppressions WHERE identifier=? AND channel=?",
                                          (hashed, channel))
            held = self._by_hash.get(hashed)
            if held is not None:
                self._entries.pop((held, channel), None)
            if row is not None:
                self._hold(_decode(self._pii.open(row[0], BODY)))
