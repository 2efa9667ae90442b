"""Idempotency-Key handling: replay the first response, refuse a different body with 409."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Literal

import msgspec

from app.errors import Conflict, InvalidInput
from app.runtime.clock import Clock
from state.idempotency import StoredResponse
from state.ports import IdempotencyStore

MAX_KEY_LENGTH = 255
log = logging.getLogger("contrail.idempotency")


class Replay(msgspec.Struct, frozen=True):
    status: int
    content_type: str
    body: bytes


class IdempotencyService:
    def __init__(self, store: IdempotencyStore, clock: Clock, ttl_s: int, secret: str, *, shared: bool = False,
                 claim_s: float = 120.0) -> None:
        self._store = store
        # Several nodes share the store: a key is claimed there before its request runs, so a retry that lands on
        # another node replays the answer (or waits for it) instead of running again. A claim left by a node that
        # died mid-request lapses after `claim_s`.
        self._shared = shared
        self._claim_s = claim_s
        self._releases: set[asyncio.Task] = set()
        # Bodies can hold passwords (a signed-in caller may register or sign in with a key): their stored
        # fingerprint is keyed with the node's secret, so a copy of the database offers no fast guessing.
        self._key = hashlib.sha256(b"idempotency fingerprint:" + secret.encode()).digest()
        self._clock = clock
        self._ttl = ttl_s
        self._in_flight: set[tuple[str, str]] = set()

    def fingerprint(self, method: str, path: str, body: bytes) -> str:
        return hmac.new(self._key, method.encode() + b" " + path.encode() + b"\n" + body, hashlib.sha256).hexdigest()

    async def begin(self, scope: str, key: str, fingerprint: str) -> Replay | Literal["new"]:
        """Either the stored response to replay, or "new" (and the key is now in flight)."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        now = self._clock.now()
        stored = self._store.get(scope, key, now)
        if stored is None and not self._shared and not self._store.complete:
            stored = await self._store.fetch(scope, key, now)  # memory no longer holds every live response
        if stored is not None:
            return _replay(stored, fingerprint)
        if (scope, key) in self._in_flight:
            raise _in_flight()
        self._in_flight.add((scope, key))
        if self._shared:
            try:
                claimed = await self._store.claim(scope, key, fingerprint, now, now + self._claim_s)
                stored = None if claimed else await self._store.fetch(scope, key, now)
            except BaseException:
                self._in_flight.discard((scope, key))
                raise
            if not claimed:
                self._in_flight.discard((scope, key))
                if stored is None or not stored.status:
                    raise _in_flight()  # running on another node (or its claim ended just now)
                return _replay(stored, fingerprint)
        return "new"

    async def finish(self, scope: str, key: str, fingerprint: str, status: int, content_type: str,
                     body: bytes) -> None:
        """Store the first response durably (before it is sent), then release the key."""
        if status >= 500:
            self.abandon(scope, key)
            return
        try:
            now = self._clock.now()
            await self._store.put(StoredResponse(scope, key, fingerprint, status, content_type, body,
                                                 now, now + self._ttl))
        finally:
            self._in_flight.discard((scope, key))

    def abandon(self, scope: str, key: str) -> None:
        """The request ended without a response to keep: the key is free again (on every node)."""
        self._in_flight.discard((scope, key))
        if self._shared:  # in the background: this may run as the request is being cancelled
            task = asyncio.ensure_future(self._store.release(scope, key))
            self._releases.add(task)
            task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not release an idempotency claim (it lapses by itself)",
                        extra={"error": str(task.exception())})

    async def purge_expired(self) -> int:
        return await self._store.purge_expired(self._clock.now())


def _replay(stored: StoredResponse, fingerprint: str) -> Replay:
    if stored.request_hash != fingerprint:
        raise Conflict("Idempotency-Key was already used with a different request", code="idempotency_key_reused")
    return Replay(stored.status, stored.content_type, stored.body)


def _in_flight() -> Conflict:
    return Conflict("a request with this Idempotency-Key is still in progress", code="idempotency_key_in_flight")
