"""Locks by key, for read-modify-write sequences on one record (a member's stars, a flight) on this node."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLocks:
    """One holder at a time per key. A key's lock exists only while someone holds or waits for it, so what is kept
    is bounded by the changes in flight, whatever the number of keys."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # key -> (lock, [holders and waiters])

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = (asyncio.Lock(), [0])
        held[1][0] += 1
        try:
            async with held[0]:
                yield
        finally:
            held[1][0] -= 1
            if not held[1][0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
