"""The analytics event log: a separate SQLite file written in large batches."""

from __future__ import annotations

import msgspec


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    id: int
    at: float
    type: str
    payload: msgspec.Raw
