"""Append-only audit log of admin actions."""

from __future__ import annotations

import msgspec


class AuditEntry(msgspec.Struct, frozen=True, gc=False):
    id: int
    at: float
    actor: str
    action: str
    target: str
    details: dict
