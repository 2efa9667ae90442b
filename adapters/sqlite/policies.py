"""SQLite storage of campaigns' offer-selection policies (app/campaigns/policies.py PolicyStore): one row per
campaign holding the policy's whole state, and the ids of the reward signals already learned from.

A learned reward is one transaction: the signal's id is inserted (a guarded INSERT that must add one row: an id
already there makes it change none, and the whole write rolls back) together with the policy's new state, written
only over the state it was learned from (a guarded UPDATE). So a repeated signal can never teach a policy twice,
even when two copies race, and two nodes learning at once never write over each other's rewards."""

from __future__ import annotations

from adapters.sqlite.statements import SqlDatabase, written

_SAVE = ("INSERT INTO campaign_policies(campaign_id, body, updated_at) VALUES (?,?,?) "
         "ON CONFLICT(campaign_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at")


class SqlitePolicyStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def load_all(self) -> list[tuple[str, bytes]]:
        """Every campaign's policy: (campaign id, body)."""
        rows = await self._db.fetchall("SELECT campaign_id, body FROM campaign_policies ORDER BY campaign_id")
        return [(str(r[0]), bytes(r[1])) for r in rows]

    async def load_one(self, campaign_id: str) -> bytes | None:
        """One campaign's policy (an archived campaign's, which is not held in memory)."""
        row = await self._db.fetchone("SELECT body FROM campaign_policies WHERE campaign_id = ?", (campaign_id,))
        return None if row is None else bytes(row[0])

    async def save(self, campaign_id: str, body: bytes, at: float) -> None:
        """Create or replace one campaign's policy."""
        await self._db.write([(_SAVE, (campaign_id, body, at))])

    async def seen(self, signal_id: str) -> bool:
        """Has a reward with this signal id been learned (and not yet forgotten)?"""
        return await self._db.fetchone("SELECT 1 FROM policy_rewards WHERE signal_id = ?", (signal_id,)) is not None

    async def learn(self, campaign_id: str, body: bytes, signal_id: str, at: float, previous: bytes) -> bool:
        """Remember `signal_id` and store the policy's new state, atomically, if the stored state is still
        `previous` (the one the new state was learned from: another node may have learned since). False (and
        nothing written) when the signal id was already remembered or the stored state moved on."""
        return await written(self._db, [
            ("INSERT INTO policy_rewards(signal_id, campaign_id, at) VALUES (?,?,?) "
             "ON CONFLICT(signal_id) DO NOTHING", (signal_id, campaign_id, at), 1),
            ("UPDATE campaign_policies SET body = ?, updated_at = ? WHERE campaign_id = ? AND body = ?",
             (body, at, campaign_id, previous), 1),
        ])

    async def remember(self, user_id: str, campaign_id: str, arm: str, context: str, at: float) -> None:
        """The customer's latest decision for the campaign (`context`: its JSON), replacing the one before."""
        await self._db.write([("INSERT INTO policy_decisions(user_id, campaign_id, arm, context, at) "
                               "VALUES (?,?,?,?,?) ON CONFLICT(user_id, campaign_id) DO UPDATE SET arm = excluded.arm, "
                               "context = excluded.context, at = excluded.at",
                               (user_id, campaign_id, arm, context, at))])

    async def decisions(self, user_ids: list[str], since: float) -> list[tuple[str, str, str, float]]:
        """(campaign id, arm, context JSON, at) of these customers' decisions made at `since` or later."""
        marks = ",".join("?" * len(user_ids))
        rows = await self._db.fetchall(f"SELECT campaign_id, arm, context, at FROM policy_decisions WHERE user_id IN "
                                       f"({marks}) AND at >= ? ORDER BY at", (*user_ids, since))
        return [(str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]

    async def forget_decisions(self, user_id: str) -> None:
        await self._db.write([("DELETE FROM policy_decisions WHERE user_id = ?", (user_id,))])

    async def purge_decisions(self, before: float) -> int:
        deleted, = await self._db.write([("DELETE FROM policy_decisions WHERE at < ?", (before,))])
        return deleted

    async def purge_signals(self, before: float, limit: int = 5_000) -> int:
        """Forget up to `limit` signal ids remembered before `before`; how many were forgotten."""
        deleted, = await self._db.write([
            ("DELETE FROM policy_rewards WHERE rowid IN (SELECT rowid FROM policy_rewards WHERE at < ? LIMIT ?)",
             (before, limit))])
        return deleted
