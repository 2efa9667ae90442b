"""Who must not be contacted: checked before every send, filled by people and by bounces and complaints."""

from __future__ import annotations

from typing import TypeGuard

from app.admin import AuditTrail
from app.auth import Principal
from app.errors import InvalidInput
from app.runtime.clock import Clock
from state.ports import SuppressionStore
from state.suppressions import SuppressedChannel, Suppression

CHANNELS: tuple[SuppressedChannel, ...] = ("email", "sms", "push", "all")
PURGE_PAGE = 1_000  # entries read at a time by purge_expired


def _is_channel(channel: str) -> TypeGuard[SuppressedChannel]:
    return channel in CHANNELS


def normalise(identifier: str) -> str:
    return identifier.strip().lower()


class SuppressionService:
    def __init__(self, store: SuppressionStore, clock: Clock, audit: AuditTrail) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    async def is_suppressed(self, identifiers: list[str | None], channel: str) -> Suppression | None:
        """The entry that forbids contacting any of these identifiers on `channel` now, if one does (each lookup is
        answered from memory, or read from the store when memory does not hold it)."""
        now = self._clock.now()
        for identifier in identifiers:
            if not identifier:
                continue
            key = normalise(identifier)
            for ch in (channel, "all"):
                entry = await self._store.get(key, ch)
                if entry is not None and (entry.expires_at is None or entry.expires_at > now):
                    return entry
        return None

    async def entry(self, identifier: str, channel: str) -> Suppression | None:
        """The entry for this identifier on exactly this channel, expired or not."""
        return await self._store.get(normalise(identifier), channel)

    async def suppress(self, actor: Principal | str, entries: list[tuple[str, str, str, float | None]]
                       ) -> list[Suppression]:
        """add() on someone's say-so (an admin): recorded in the audit log."""
        added = await self.add(entries)
        await self._audit.record(actor, "suppression.add", f"{len(added)} entries")
        return added

    async def lift(self, actor: Principal | str, keys: list[tuple[str, str]]) -> int:
        """remove() on someone's say-so (an admin): recorded in the audit log."""
        removed = await self.remove(keys)
        await self._audit.record(actor, "suppression.remove", f"{removed} entries")
        return removed

    async def add(self, entries: list[tuple[str, str, str, float | None]]) -> list[Suppression]:
        """Add or refresh (identifier, channel, reason, expires_at) entries, all or none.

        Not audited: the platform's own suppressions (bounces, complaints, unsubscribes) come here;
        a person's go through suppress()."""
        now = self._clock.now()
        rows = []
        for n, (identifier, channel, reason, expires_at) in enumerate(entries):
            if not _is_channel(channel):
                raise InvalidInput(f"entries[{n}].channel must be one of {', '.join(CHANNELS)}")
            if not identifier.strip() or len(identifier) > 254:
                raise InvalidInput(f"entries[{n}].identifier must be 1 to 254 characters")
            if expires_at is not None and expires_at <= now:
                raise InvalidInput(f"entries[{n}].expires_at is in the past")
            rows.append(Suppression(normalise(identifier), channel, reason, now, expires_at))
        await self._store.put(rows)
        return rows

    async def remove(self, keys: list[tuple[str, str]]) -> int:
        """Lift (identifier, channel) entries; not audited (a person's go through lift())."""
        return await self._store.remove([(normalise(i), c) for i, c in keys])

    async def page(self, after: tuple[str, str] | None, limit: int, identifier: str | None = None,
                   channel: str | None = None) -> list[Suppression]:
        """Up to `limit` entries after the entry `after` (identifier, channel), in the store's order (the keyed
        hash of the identifier, then the channel): an identifier's or a channel's only when given."""
        return await self._store.page(after, limit, normalise(identifier) if identifier is not None else None,
                                      channel)

    async def purge_expired(self) -> int:
        """Remove the entries expired by now, reading the list a page at a time: how many."""
        now = self._clock.now()
        removed = 0
        after: tuple[str, str] | None = None
        while True:
            page = await self._store.page(after, PURGE_PAGE)
            if not page:
                return removed
            after = (page[-1].identifier, page[-1].channel)
            expired: list[tuple[str, str]] = [(s.identifier, s.channel) for s in page
                                              if s.expires_at is not None and s.expires_at <= now]
            if expired:
                removed += await self._store.remove(expired)
            if len(page) < PURGE_PAGE:
                return removed
