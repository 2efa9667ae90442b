"""SQLite storage of the model registry (state.ports.ModelRegistry): one row per model version, its whole record
as JSON beside the columns the registry looks up by."""

from __future__ import annotations

import msgspec

from adapters.sqlite.statements import SqlDatabase, json_with
from state.models import CANARY, LIVE, ModelVersion

_decode = msgspec.json.Decoder(ModelVersion).decode
_encode = msgspec.json.encode
_UPSERT = ("INSERT INTO model_versions(model, sequence, status, body) VALUES (?,?,?,?) "
           "ON CONFLICT(model, sequence) DO UPDATE SET status = excluded.status, body = excluded.body")


class SqliteModelRegistry:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        # the record's JSON with some fields set (SQLite's json_set, PostgreSQL's jsonb_set)
        self._status_body = json_with(db.dialect, "body", [("status", "text")])
        self._path_body = json_with(db.dialect, "body", [("path", "text")])
        self._live_body = json_with(db.dialect, "body", [("status", "text"), ("activated_at", "double precision"),
                                                          ("note", "text")])

    async def versions(self, model: str, limit: int, before: int | None = None) -> list[ModelVersion]:
        rows = await self._db.fetchall(
            "SELECT body FROM model_versions WHERE model = ? AND sequence < ? ORDER BY sequence DESC LIMIT ?",
            (model, 2**62 if before is None else before, limit))
        return [_decode(r[0]) for r in rows]

    async def live(self, model: str) -> ModelVersion | None:
        row = await self._db.fetchone("SELECT body FROM model_versions WHERE model = ? AND status = ?", (model, LIVE))
        return _decode(row[0]) if row else None

    async def canary(self, model: str) -> ModelVersion | None:
        row = await self._db.fetchone("SELECT body FROM model_versions WHERE model = ? AND status = ?",
                                      (model, CANARY))
        return _decode(row[0]) if row else None

    async def get(self, model: str, sequence: int) -> ModelVersion | None:
        row = await self._db.fetchone("SELECT body FROM model_versions WHERE model = ? AND sequence = ?",
                                      (model, sequence))
        return _decode(row[0]) if row else None

    def _demote(self, model: str, status: str) -> tuple[str, tuple]:
        return (f"UPDATE model_versions SET status = ?, body = {self._status_body} WHERE model = ? AND status = ?",
                (status, status, model, LIVE))

    async def add(self, version: ModelVersion, demote_to: str = "") -> None:
        writes: list = []
        if version.status == LIVE:
            writes.append(self._demote(version.model, demote_to))
        writes.append((_UPSERT, (version.model, version.sequence, version.status, _encode(version).decode())))
        await self._db.write(writes)

    async def activate(self, model: str, sequence: int, at: float, demote_to: str, note: str) -> None:
        await self._db.write([
            self._demote(model, demote_to),
            (f"UPDATE model_versions SET status = ?, body = {self._live_body} WHERE model = ? AND sequence = ?",
             (LIVE, LIVE, at, note, model, sequence), 1)])

    async def pruned(self, model: str, sequence: int) -> None:
        await self._db.write([(f"UPDATE model_versions SET body = {self._path_body} WHERE model = ? AND sequence = ?",
                               ("", model, sequence))])

    async def next_sequence(self, model: str) -> int:
        row = await self._db.fetchone("SELECT MAX(sequence) FROM model_versions WHERE model = ?", (model,))
        return 0 if row is None or row[0] is None else int(row[0]) + 1
