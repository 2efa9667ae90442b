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


def _is_channel(channel: str) -> TypeGuard[SuppressedChannel]:
    return channel in CHANNELS


def normalise(identifier: str) -> str:
    return identifier.strip().lower()


class SuppressionService:
    def __init__(self, store: SuppressionStore, clock: Clock, audit: AuditTrail) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def is_suppressed(self, identifiers: list[str | None], channel: str) -> Suppression | None:
        """The entry that forbids contacting any of these identifiers on `channel` now, if one does."""
        now = self._clock.now()
        for identifier in identifiers:
            if not identifier:
                continue
            key = normalise(identifier)
            for ch in (channel, "all"):
                entry = self._store.get(key, ch)
                if entry is not None and (entry.expires_at is None or entry.expires_at > now):
                    return entry
        return None

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

    def list(self, identifier: str | None = None, channel: str | None = None) -> list[Suppression]:
        return [s for s in self._store.all()
                if (identifier is None or s.identifier == normalise(identifier))
                and (channel is None or s.channel == channel)]

    async def purge_expired(self) -> int:
        now = self._clock.now()
        return await self._store.remove([(s.identifier, s.channel) for s in self._store.all()
                                         if s.expires_at is not None and s.expires_at <= now])
