"""Profile lookup: L1 in memory (bounded LRU, TTL half of L2) -> L2 SQLite (TTL) -> default."""

from __future__ import annotations

from collections import OrderedDict

from state.clock import Clock
from state.profiles import Profile, ProfileStore


class ProfileCache:
    def __init__(self, store: ProfileStore, clock: Clock, *, l1_size: int, l2_ttl_s: float, metrics) -> None:
        self._store = store
        self._clock = clock
        self._l1: OrderedDict[str, tuple[float, Profile | None]] = OrderedDict()
        self._l1_size = l1_size
        self._l2_ttl = l2_ttl_s
        self._l1_ttl = l2_ttl_s / 2
        self._lookups = metrics.profile_lookups

    def __len__(self) -> int:
        return len(self._l1)

    async def get(self, user_id: str) -> Profile | None:
        """The user's profile, or None for the default profile."""
        now = self._clock.now()
        hit = self._l1.get(user_id)
        if hit is not None and now - hit[0] < self._l1_ttl:
            self._l1.move_to_end(user_id)
            self._lookups.labels("l1", "hit").inc()
            return hit[1]
        self._lookups.labels("l1", "miss").inc()
        profile = await self._store.get(user_id)
        if profile is not None and now - profile.updated_at >= self._l2_ttl:
            profile = None  # too old to trust
        self._lookups.labels("l2", "hit" if profile is not None else "miss").inc()
        self._remember(user_id, profile, now)
        return profile

    def _remember(self, user_id: str, profile: Profile | None, now: float) -> None:
        self._l1[user_id] = (now, profile)
        self._l1.move_to_end(user_id)
        while len(self._l1) > self._l1_size:
            self._l1.popitem(last=False)

    async def put(self, profile: Profile) -> None:
        """Write through both tiers."""
        await self._store.put(profile)
        self._remember(profile.user_id, profile, self._clock.now())
