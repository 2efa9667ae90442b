"""API keys for exchanges and partners: stored as hashes, indexed in memory."""

from __future__ import annotations

import msgspec


class ApiKey(msgspec.Struct, frozen=True, gc=False):
    id: str
    name: str
    role: str
    key_hash: str
    created_at: float
    revoked_at: float | None = None
    created_by: str = ""  # the person (Principal.person) who made it through the API; empty: the CLI
