"""Stored first responses for Idempotency-Key replays."""

from __future__ import annotations

import msgspec


class StoredResponse(msgspec.Struct, frozen=True, gc=False):
    scope: str
    key: str
    request_hash: str
    status: int
    content_type: str
    body: bytes
    created_at: float
    expires_at: float
