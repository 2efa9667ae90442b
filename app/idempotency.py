"""Idempotency-Key handling: replay the first response, refuse a different body with 409."""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

import msgspec

from app.errors import Conflict, InvalidInput
from app.runtime.clock import Clock
from state.idempotency import StoredResponse
from state.ports import IdempotencyStore

MAX_KEY_LENGTH = 255


class Replay(msgspec.Struct, frozen=True):
    status: int
    content_type: str
    body: bytes


class IdempotencyService:
    def __init__(self, store: IdempotencyStore, clock: Clock, ttl_s: int, secret: str) -> None:
        self._store = store
        # Bodies can hold passwords (a signed-in caller may register or sign in with a key): their stored
        # fingerprint is keyed with the node's secret, so a copy of the database offers no fast guessing.
        self._key = hashlib.sha256(b"idempotency fingerprint:" + secret.encode()).digest()
        self._clock = clock
        self._ttl = ttl_s
        self._in_flight: set[tuple[str, str]] = set()

    def fingerprint(self, method: str, path: str, body: bytes) -> str:
        return hmac.new(self._key, method.encode() + b" " + path.encode() + b"\n" + body, hashlib.sha256).hexdigest()

    def begin(self, scope: str, key: str, fingerprint: str) -> Replay | Literal["new"]:
        """Either the stored response to replay, or "new" (and the key is now in flight)."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        stored = self._store.get(scope, key, self._clock.now())
        if stored is not None:
            if stored.request_hash != fingerprint:
                raise Conflict("Idempotency-Key was already used with a different request",
                               code="idempotency_key_reused")
            return Replay(stored.status, stored.content_type, stored.body)
        if (scope, key) in self._in_flight:
            raise Conflict("a request with this Idempotency-Key is still in progress",
                           code="idempotency_key_in_flight")
        self._in_flight.add((scope, key))
        return "new"

    async def finish(self, scope: str, key: str, fingerprint: str, status: int, content_type: str,
                     body: bytes) -> None:
        """Store the first response durably (before it is sent), then release the key."""
        try:
            if status < 500:
                now = self._clock.now()
                await self._store.put(StoredResponse(scope, key, fingerprint, status, content_type, body,
                                                     now, now + self._ttl))
        finally:
            self._in_flight.discard((scope, key))

    def abandon(self, scope: str, key: str) -> None:
        self._in_flight.discard((scope, key))

    async def purge_expired(self) -> int:
        return await self._store.purge_expired(self._clock.now())
