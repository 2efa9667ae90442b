"""SQLite storage of recommendations: items and the interaction log (the reco port's SQL).

Interactions live in the system of record, apart from the analytics event log and its retention:
the real-time features and the models are rebuilt from them, the features from their latest checkpoint
(reco_checkpoint, one row) and the interactions stored after it.
"""

from __future__ import annotations

from adapters.sqlite.statements import Insert, SqlDatabase
from state.reco import Interaction, RecoItem, SavedModel, decode_item, decode_model, encode_item, encode_model

_NEWEST = 2**63 - 1  # above every id: the first page of a read newest first


class SqliteRecoStore:
    KEEP_MODELS = 3

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def items(self) -> list[RecoItem]:
        return [decode_item(r[0]) for r in await self._db.fetchall("SELECT body FROM reco_items ORDER BY rowid")]

    async def items_named(self, item_ids: list[str]) -> list[RecoItem]:
        """The stored items of these ids (those stored; in no particular order)."""
        out: list[RecoItem] = []
        for start in range(0, len(item_ids), 500):  # within any database's limit on a statement's parameters
            chunk = item_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._db.fetchall(f"SELECT body FROM reco_items WHERE item_id IN ({marks})", tuple(chunk))
            out += [decode_item(r[0]) for r in rows]
        return out

    async def put_items(self, items: list[RecoItem]) -> None:
        await self._db.write([("INSERT INTO reco_items(item_id, body) VALUES (?,?) "
                               "ON CONFLICT(item_id) DO UPDATE SET body=excluded.body",
                               (i.item_id, encode_item(i))) for i in items])

    async def add_interactions(self, rows: list[Interaction]) -> None:
        """Durable against kill -9, not a power cut (no fsync of their own): feedback is replayable history, and
        an fsync per ingest batch would be most of its latency."""
        if rows:
            await self._db.write([Insert("reco_interactions", ("user_id", "item_id", "kind", "weight", "at"),
                                         [(r.user_id, r.item_id, r.kind, r.weight, r.at) for r in rows])],
                                 power_safe=False)

    async def interactions(self) -> list[Interaction]:
        """Every interaction in arrival order (the start and training read pages: interactions_after, _before)."""
        rows = await self._db.fetchall("SELECT user_id, item_id, kind, weight, at FROM reco_interactions ORDER BY id")
        return [Interaction(*r) for r in rows]

    async def interactions_after(self, after_id: int, limit: int) -> tuple[int, list[tuple[int, Interaction]]]:
        """Up to `limit` interactions stored after `after_id`, in arrival order, each with its id, and the last id (a
        page of the rebuild at start: the whole log fetched at once sat in memory beside the features built from it)."""
        rows = await self._db.fetchall("SELECT id, user_id, item_id, kind, weight, at FROM reco_interactions "
                                       "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return (rows[-1][0] if rows else after_id), [(r[0], Interaction(*r[1:])) for r in rows]

    async def interactions_before(self, before_id: int | None, limit: int) -> tuple[int | None, list[Interaction]]:
        """Up to `limit` interactions stored before `before_id` (None: the newest), in arrival order, and the first
        one's id (a page of a training's window, read newest first)."""
        rows = await self._db.fetchall("SELECT id, user_id, item_id, kind, weight, at FROM reco_interactions "
                                       "WHERE id < ? ORDER BY id DESC LIMIT ?",
                                       (_NEWEST if before_id is None else before_id, limit))
        return (rows[-1][0] if rows else before_id), [Interaction(*r[1:]) for r in reversed(rows)]

    async def interactions_since(self, after_id: int) -> tuple[int, int | None]:
        """How many interactions are stored after `after_id`, and the newest one's id (None: none)."""
        row = await self._db.fetchone("SELECT count(*), max(id) FROM reco_interactions WHERE id > ?", (after_id,))
        return (int(row[0]), None if row[1] is None else int(row[1])) if row else (0, None)

    async def save_checkpoint(self, covered: int, taken_at: float, body: bytes) -> None:
        """The features' checkpoint, covering the interactions up to id `covered`, in place of the last one. Without
        an fsync of its own, like the interactions: a checkpoint lost is replayed from the log."""
        await self._db.write([("INSERT INTO reco_checkpoint(id, covered, taken_at, body) VALUES (1,?,?,?) "
                               "ON CONFLICT(id) DO UPDATE SET covered=excluded.covered, taken_at=excluded.taken_at, "
                               "body=excluded.body", (covered, taken_at, body))], power_safe=False)

    async def latest_checkpoint(self) -> tuple[int, float, bytes] | None:
        """(covered, taken_at, body) of the features' checkpoint, if one was stored."""
        row = await self._db.fetchone("SELECT covered, taken_at, body FROM reco_checkpoint WHERE id = 1")
        return (int(row[0]), float(row[1]), bytes(row[2])) if row else None

    # A user's history, ever or (`before_id`) as it stood before the interaction with that id: a start replaying the
    # log restores a user the memory forgot as they were at the event it replays.

    async def user_interactions(self, user_id: str, limit: int, before_id: int | None = None) -> list[Interaction]:
        """A user's latest `limit` interactions, oldest first (a user the memory had forgotten)."""
        rows = await self._db.fetchall("SELECT user_id, item_id, kind, weight, at FROM reco_interactions "
                                       "WHERE user_id=? AND id < ? ORDER BY id DESC LIMIT ?",
                                       (user_id, _NEWEST if before_id is None else before_id, limit))
        return [Interaction(*r) for r in reversed(rows)]

    async def known_users(self, user_ids: list[str], before_id: int | None = None) -> list[str]:
        """Which of these users have any stored interaction (one query per 500 ids)."""
        known: list[str] = []
        for lo in range(0, len(user_ids), 500):
            chunk = user_ids[lo:lo + 500]
            rows = await self._db.fetchall("SELECT DISTINCT user_id FROM reco_interactions WHERE user_id IN "
                                           f"({','.join('?' * len(chunk))}) AND id < ?",
                                           [*chunk, _NEWEST if before_id is None else before_id])
            known += [r[0] for r in rows]
        return known

    async def user_final_items(self, user_id: str, before_id: int | None = None) -> list[str]:
        """Items the user bought or dismissed, ever (never recommended back): by the event's kind, whatever weight
        the configuration gives it."""
        rows = await self._db.fetchall("SELECT DISTINCT item_id FROM reco_interactions WHERE user_id=? AND id < ? "
                                       "AND kind IN ('purchase', 'dismiss')",
                                       (user_id, _NEWEST if before_id is None else before_id))
        return [r[0] for r in rows]

    async def user_dismissed_items(self, user_id: str) -> list[str]:
        """Items the user dismissed, ever: kept out even when bought items may come back."""
        rows = await self._db.fetchall("SELECT DISTINCT item_id FROM reco_interactions "
                                       "WHERE user_id=? AND kind = 'dismiss'", (user_id,))
        return [r[0] for r in rows]

    async def user_items(self, user_id: str, before_id: int | None = None) -> list[str]:
        rows = await self._db.fetchall("SELECT DISTINCT item_id FROM reco_interactions WHERE user_id=? AND id < ?",
                                       (user_id, _NEWEST if before_id is None else before_id))
        return [r[0] for r in rows]

    async def save_model(self, model: SavedModel) -> None:
        await self._db.write([("INSERT INTO reco_models(sequence, trained_at, body) VALUES (?,?,?) "
                               "ON CONFLICT(sequence) DO UPDATE SET trained_at=excluded.trained_at, body=excluded.body",
                               (model.sequence, model.trained_at, encode_model(model))),
                              ("DELETE FROM reco_models WHERE sequence <= ?", (model.sequence - self.KEEP_MODELS,))])

    async def add_model(self, model: SavedModel) -> None:
        """A version kept for the model registry: none older is deleted here (the registry's budget decides)."""
        await self._db.write([("INSERT INTO reco_models(sequence, trained_at, body) VALUES (?,?,?) "
                               "ON CONFLICT(sequence) DO UPDATE SET trained_at=excluded.trained_at, body=excluded.body",
                               (model.sequence, model.trained_at, encode_model(model)))])

    async def model(self, sequence: int) -> SavedModel | None:
        row = await self._db.fetchone("SELECT body FROM reco_models WHERE sequence = ?", (sequence,))
        return decode_model(row[0]) if row else None

    async def drop_model(self, sequence: int) -> None:
        await self._db.write([("DELETE FROM reco_models WHERE sequence = ?", (sequence,))])

    async def latest_model(self) -> SavedModel | None:
        row = await self._db.fetchone("SELECT body FROM reco_models ORDER BY sequence DESC LIMIT 1")
        return decode_model(row[0]) if row else None
