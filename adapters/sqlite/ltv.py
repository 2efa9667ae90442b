"""SQLite storage of lifetime value: purchases read from the loyalty ledger, and the fitted models.

Every purchase a customer makes earns loyalty stars once, whatever its channel (a paid order, an ingested
purchase, a point-of-sale earn), so the ledger is the record of purchases; a refund is its reverse entry. This
reads it and never writes it.
"""

from __future__ import annotations

from adapters.sqlite.statements import SqlDatabase, json_field, json_true
from state.ltv import Purchase, SavedLtvModel, decode_model, encode_model


def _purchases(dialect: str, customer: str) -> str:
    def field(path: str, sql_type: str) -> str:
        return json_field(dialect, "e.body", path, sql_type)
    return f"""
    SELECT e.user_id, {field('at', 'double precision')}, {field('details.amount_cents', 'bigint')},
           {field('details.channel', 'text')}
    FROM loyalty_ledger e
    WHERE e.kind = 'earn' AND {json_true(dialect, 'e.body', 'qualifying')}
      AND {field('details.amount_cents', 'bigint')} > 0 {customer}
      AND NOT EXISTS (SELECT 1 FROM loyalty_ledger r WHERE r.kind = 'reverse' AND r.transaction_id = e.transaction_id)
      AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.user_id AND a.role = 'erased')
    ORDER BY e.id"""


class SqliteLtvStore:
    KEEP_MODELS = 3

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def purchases(self) -> list[Purchase]:
        return [Purchase(*r) for r in await self._db.fetchall(_purchases(self._db.dialect, ""))]

    async def customer_purchases(self, customer_id: str) -> list[Purchase]:
        rows = await self._db.fetchall(_purchases(self._db.dialect, "AND e.user_id = ?"), (customer_id,))
        return [Purchase(*r) for r in rows]

    async def purchase_count(self) -> int:
        row = await self._db.fetchone(f"SELECT COUNT(*) FROM ({_purchases(self._db.dialect, '')}) AS p")
        return int(row[0]) if row else 0

    async def save_model(self, model: SavedLtvModel) -> None:
        await self._db.write([("INSERT INTO ltv_models(sequence, trained_at, body) VALUES (?,?,?) "
                               "ON CONFLICT(sequence) DO UPDATE SET trained_at=excluded.trained_at, body=excluded.body",
                               (model.sequence, model.trained_at, encode_model(model))),
                              ("DELETE FROM ltv_models WHERE sequence <= ?", (model.sequence - self.KEEP_MODELS,))])

    async def add_model(self, model: SavedLtvModel) -> None:
        """A version kept for the model registry: none older is deleted here (the registry's budget decides)."""
        await self._db.write([("INSERT INTO ltv_models(sequence, trained_at, body) VALUES (?,?,?) "
                               "ON CONFLICT(sequence) DO UPDATE SET trained_at=excluded.trained_at, body=excluded.body",
                               (model.sequence, model.trained_at, encode_model(model)))])

    async def model(self, sequence: int) -> SavedLtvModel | None:
        row = await self._db.fetchone("SELECT body FROM ltv_models WHERE sequence = ?", (sequence,))
        return decode_model(row[0]) if row else None

    async def drop_model(self, sequence: int) -> None:
        await self._db.write([("DELETE FROM ltv_models WHERE sequence = ?", (sequence,))])

    async def latest_model(self) -> SavedLtvModel | None:
        row = await self._db.fetchone("SELECT body FROM ltv_models ORDER BY sequence DESC LIMIT 1")
        return decode_model(row[0]) if row else None
