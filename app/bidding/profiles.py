"""Profile lookup: L1 in memory (bounded LRU, TTL half of L2) -> L2 SQLite (TTL) -> default."""

from __future__ import annotations

import enum
from typing import Final, Literal

import msgspec
import numpy as np

from app.errors import RuleViolation
from app.runtime.clock import Clock
from app.runtime.lru import LRU
from ml import features
from state.ports import ProfileStore
from state.profiles import Profile


class CachedProfile(msgspec.Struct, frozen=True, gc=False):
    """A profile as the bidder uses it: float32 arrays, about 0.6 KiB instead of 3 KiB of lists.
    The L1 tier holds up to `bidding.profile_l1_size` of them, so the GC does not track them."""

    user_id: str
    interests: np.ndarray | None
    segments: tuple[int, ...]
    loyalty: np.ndarray | None
    last_seen: float | None

    @classmethod
    def of(cls, profile: Profile) -> CachedProfile:
        """Stored numbers made safe to score: non-finite ones become 0 (the edge refuses them, but
        a row may predate that check)."""
        return cls(profile.user_id, _finite(profile.interests), tuple(profile.segments), _finite(profile.loyalty),
                   profile.last_seen)


def _finite(values: list[float]) -> np.ndarray | None:
    if not values:
        return None
    return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def check_shapes(**vectors: list[float]) -> None:
    """Each vector is empty or whole (RuleViolation naming the field): the bidder's feature blocks
    have fixed widths."""
    for name, values in vectors.items():
        width = features.WIDTHS[name]
        if len(values) not in (0, width):
            raise RuleViolation(f"{name} must hold exactly {width} numbers (or none); got {len(values)}",
                                {"field": name, "expected_length": width, "length": len(values)})


class _Miss(enum.Enum):
    MISS = "MISS"


MISS: Final = _Miss.MISS  # ProfileCache.cached(): not in L1, or too old there


class ProfileCache:
    def __init__(self, store: ProfileStore, clock: Clock, *, l1_size: int, l2_ttl_s: float, metrics) -> None:
        self._store = store
        self._clock = clock
        self.l1: LRU[str, tuple[float, CachedProfile | None]] = LRU(l1_size, "profiles_l1")
        self._l2_ttl = l2_ttl_s
        self._l1_ttl = l2_ttl_s / 2
        lookups = metrics.profile_lookups
        self._count = {(tier, result): lookups.labels(tier, result)
                       for tier in ("l1", "l2") for result in ("hit", "miss")}

    def cached(self, user_id: str) -> CachedProfile | None | Literal[_Miss.MISS]:
        """The user's fresh L1 entry (a profile, or None for the default profile), else MISS: the bidder
        needs no coroutine for the usual case."""
        hit = self.l1.get(user_id)
        if hit is not None and self._clock.now() - hit[0] < self._l1_ttl:
            self._count["l1", "hit"].inc()
            return hit[1]
        return MISS

    async def get(self, user_id: str) -> CachedProfile | None:
        """The user's profile, or None for the default profile."""
        hit = self.cached(user_id)
        if hit is not MISS:
            return hit
        now = self._clock.now()
        self._count["l1", "miss"].inc()
        profile = await self._store.get(user_id)
        if profile is not None and now - profile.updated_at >= self._l2_ttl:
            profile = None  # too old to trust
        self._count["l2", "hit" if profile is not None else "miss"].inc()
        cached = CachedProfile.of(profile) if profile is not None else None
        self._remember(user_id, cached, now)
        return cached

    def _remember(self, user_id: str, profile: CachedProfile | None, now: float) -> None:
        self.l1.put(user_id, (now, profile))

    async def forget(self, user_id: str) -> bool:
        """Delete a customer's profile, stored and cached (erasure)."""
        self.l1.pop(user_id)
        return await self._store.forget(user_id)

    async def put(self, *profiles: Profile) -> None:
        """Write through both tiers (several profiles: one commit)."""
        await self._store.put(*profiles)
        now = self._clock.now()
        for profile in profiles:
            self._remember(profile.user_id, CachedProfile.of(profile), now)
