"""SQL storage of suppressions: the suppressions port's SQL.

A row is found by the keyed hash of its identifier (adapters/pii.py) and its body is sealed, so the database
holds no email or phone number in the clear. An erased person's entries keep only the hash: they are still never
contacted, and nobody can read back whom the entry was for.

Every send checks the list, so memory keeps what recent checks found, entry or none, for each (hash, channel)
looked up (an LRU of `capacity`); nothing is read at start. A check that misses reads one row by primary key. A
change here updates the cached answer once committed; one announced by another node drops it, so the next check
reads the store. Lists read keyset pages of the primary key.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.pii import PiiCipher, is_lookup_hash
from adapters.sqlite.statements import SqlDatabase, Statement
from app.runtime.lru import LRU
from state.ports import ChangeFeed
from state.suppressions import Suppression, _decode, _encode

BODY = "suppressions.body"
CACHED = 200_000  # (hash, channel) answers held: channels.suppression_cache_entries


class SqliteSuppressionStore:
    def __init__(self, db: SqlDatabase, pii: PiiCipher, changes: ChangeFeed | None = None,
                 capacity: int = CACHED) -> None:
        self._db = db
        self._pii = pii
        self._changes = changes  # several nodes: tell the others (a change names "channel/<hash of identifier>")
        # (hash of identifier, channel) -> the entry, or None for none: what the store held when last read here.
        self.cache: LRU[tuple[str, str], Suppression | None] = LRU(capacity, "suppressions")
        # Bumped at every change seen here (ours once committed, another node's when announced): a read that
        # started before one is answered but not cached, so it cannot put back what the change replaced.
        self._generation = 0

    def hashed(self, identifier: str) -> str:
        return identifier if is_lookup_hash(identifier) else self._pii.lookup(identifier)

    def _keys(self, identifier: str) -> tuple[str, ...]:
        """The stored keys an identifier's rows may have: its hash, and itself for a row written before
        identifiers were hashed (until the re-encryption pass reaches it)."""
        hashed = self.hashed(identifier)
        return (hashed,) if hashed == identifier else (hashed, identifier)

    def _open(self, body: str) -> Suppression:
        return _decode(self._pii.open(body, BODY))

    async def load(self) -> None:
        """Nothing to read: entries are read when a check asks for them."""

    async def get(self, identifier: str, channel: str) -> Suppression | None:
        """The entry for this identifier (plain, or an erased person's hash) on exactly this channel, or None."""
        key = (self.hashed(identifier), channel)
        if key in self.cache:
            return self.cache.get(key)
        generation = self._generation
        keys = self._keys(identifier)
        rows = await self._db.fetchall(
            f"SELECT identifier, body FROM suppressions WHERE channel = ? AND identifier IN "
            f"({', '.join('?' * len(keys))})", (channel, *keys))
        # The hashed row before one written before identifiers were hashed.
        entry = self._open(min(rows, key=lambda r: r[0] != key[0])[1]) if rows else None
        if generation == self._generation:
            self.cache.put(key, entry)
        return entry

    async def page(self, after: tuple[str, str] | None, limit: int, identifier: str | None = None,
                   channel: str | None = None) -> list[Suppression]:
        """Up to `limit` entries in the store's order (the identifier's hash, then the channel) after `after`
        (an entry's identifier, plain or hashed, and channel); only an identifier's or a channel's when given.
        An identifier matches the entries held under it: an erased person's, held under the hash, only by the hash.
        """
        where: list[str] = []
        params: list[object] = []
        if identifier is not None:  # a few rows at most (one per channel): read whole, then limited
            keys = self._keys(identifier)
            where.append(f"identifier IN ({', '.join('?' * len(keys))})")
            params.extend(keys)
        if channel is not None:
            where.append("channel = ?")
            params.append(channel)
        if after is not None:
            where.append("(identifier, channel) > (?, ?)")
            params.extend((self.hashed(after[0]), after[1]))
        rows = await self._db.fetchall(
            f"SELECT body FROM suppressions {'WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY identifier, channel{'' if identifier is not None else ' LIMIT ?'}",
            params if identifier is not None else (*params, limit))
        entries = [self._open(body) for (body,) in rows]
        if identifier is not None:
            entries = [s for s in entries if s.identifier == identifier][:limit]
        return entries

    async def put(self, entries: list[Suppression]) -> None:
        await self._db.write([("INSERT INTO suppressions(identifier, channel, body) VALUES (?,?,?) "
                               "ON CONFLICT(identifier, channel) DO UPDATE SET body=excluded.body",
                               (self.hashed(s.identifier), s.channel, self._pii.seal(_encode(s).decode(), BODY)))
                              for s in entries])
        self._generation += 1
        for s in entries:
            self.cache.put((self.hashed(s.identifier), s.channel), s)
        self._tell([(s.identifier, s.channel) for s in entries])

    async def remove(self, keys: list[tuple[str, str]]) -> int:
        """Lift these (identifier, channel) entries: how many there were."""
        statements = [("DELETE FROM suppressions WHERE identifier IN (?, ?) AND channel = ?",
                       (self.hashed(identifier), identifier, channel)) for identifier, channel in keys]
        if not statements:
            return 0
        counts = await self._db.write(statements)
        self._generation += 1
        for identifier, channel in keys:
            self.cache.put((self.hashed(identifier), channel), None)
        present = [k for k, n in zip(keys, counts, strict=True) if n]
        self._tell(present)
        return len(present)

    async def anonymise(self, identifiers: Sequence[str]) -> int:
        """Keep these identifiers' entries under their hash alone (erasure): the number of entries rewritten."""
        keys = sorted({k for i in identifiers if i and not is_lookup_hash(i) for k in self._keys(i.strip().lower())})
        if not keys:
            return 0
        rows = await self._db.fetchall(
            f"SELECT identifier, channel, body FROM suppressions WHERE identifier IN ({', '.join('?' * len(keys))})",
            keys)
        kept: list[Suppression] = []
        statements: list[Statement] = []
        for stored, channel, body in rows:
            s = self._open(body)
            if is_lookup_hash(s.identifier):
                continue  # anonymised already
            new = Suppression(self.hashed(s.identifier), s.channel, s.reason, s.created_at, s.expires_at)
            # Deleted and written again under the hash: a row written before identifiers were hashed moves there.
            statements += [("DELETE FROM suppressions WHERE identifier = ? AND channel = ?", (stored, channel)),
                           ("INSERT INTO suppressions(identifier, channel, body) VALUES (?,?,?) "
                            "ON CONFLICT(identifier, channel) DO UPDATE SET body=excluded.body",
                            (new.identifier, channel, self._pii.seal(_encode(new).decode(), BODY)))]
            kept.append(new)
        if not kept:
            return 0
        await self._db.write(statements)
        self._generation += 1
        for s in kept:
            self.cache.put((s.identifier, s.channel), s)
        self._tell([(s.identifier, s.channel) for s in kept])
        return len(kept)

    def _tell(self, keys: list[tuple[str, str]]) -> None:
        if self._changes is not None and keys:
            self._changes.changed("suppression", [f"{channel}/{self.hashed(identifier)}"
                                                  for identifier, channel in keys])

    async def refresh(self, names: Sequence[str]) -> None:
        """Another node added, lifted or anonymised these suppressions ("channel/hash"): the next check reads them."""
        self._generation += 1
        for name in names:
            channel, _, hashed = name.partition("/")
            self.cache.pop((self.hashed(hashed), channel))  # a node of the version before names the identifier
