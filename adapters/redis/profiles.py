"""The bidder's L2 profile tier for several nodes, in Redis (the profile port).

A node on its own knows from memory which users have a stored profile, so most lookups need no I/O; several nodes
cannot (another node stores profiles all the time). Redis holds every profile written in the last
`bidding.profile_l2_ttl_s` — exactly the ones the bidder trusts (ProfileCache ignores older ones) — under
`profile:{user_id}`, expiring when the profile grows too old. So an L1 miss is one Redis GET, on any node, and
a profile one node stored is seen by all. PostgreSQL keeps every profile; Redis is loaded from it if it comes
back empty (`profiles_seeded`). Redis unreachable is a miss (the user is bid on as anyone unknown), counted,
never a failed bid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from adapters.redis.client import RedisClient
from adapters.sqlite.profiles import SqliteProfileStore, readable
from adapters.sqlite.statements import SqlDatabase
from state.ports import StorageUnavailable
from state.profiles import Profile, _encode

log = logging.getLogger("contrail.redis")


class RedisProfileStore(SqliteProfileStore):
    def __init__(self, db: SqlDatabase, client: RedisClient, ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(db)
        self._r = client
        self._ttl = ttl_s
        self._now = clock

    def _key(self, user_id: str) -> str:
        return self._r.key("profile", user_id)

    async def load(self) -> None:
        """Load the profiles young enough to trust into Redis, unless it holds them already."""
        marker = self._r.key("profiles_seeded")
        try:
            if await self._r.run("profiles", self._r.redis.exists(marker)):
                return
            now = self._now()
            rows = await self._db.fetchall("SELECT user_id, body FROM profiles WHERE updated_at > ?",
                                           (now - self._ttl,))
            await self._cache([p for user_id, body in rows if (p := readable(user_id, body)) is not None], now)
            await self._r.run("profiles", self._r.redis.set(marker, "1"))
        except StorageUnavailable as exc:
            log.warning("Redis is unavailable as the node starts: profiles are read as unknown until it is back",
                        extra={"error": str(exc)})

    async def _cache(self, profiles: list[Profile], now: float) -> None:
        for start in range(0, len(profiles), 1000):
            pipe = self._r.redis.pipeline(transaction=False)
            for p in profiles[start:start + 1000]:
                left = int((p.updated_at + self._ttl - now) * 1000)
                if left > 0:
                    pipe.set(self._key(p.user_id), _encode(p), px=left)
            await self._r.run("profiles", pipe.execute())

    async def get(self, user_id: str) -> Profile | None:
        try:
            raw = await self._r.run("profiles", self._r.redis.get(self._key(user_id)))
        except StorageUnavailable:  # counted by the client (contrail_redis_failed_commands)
            return None
        return readable(user_id, raw) if isinstance(raw, bytes) else None

    async def put(self, *profiles: Profile) -> None:
        """Stored in PostgreSQL (the record, acknowledged), then cached in Redis for every node."""
        await self._write(profiles)  # without the memory of ids, which several nodes cannot keep
        try:
            await self._cache(list(profiles), self._now())
        except StorageUnavailable:
            log.warning("profiles stored but not cached in Redis (unreachable): other nodes read them as unknown "
                        "until they are stored again", extra={"count": len(profiles)})
