"""SQLite storage of the review tasks campaigns have in the team's task tool."""

from __future__ import annotations

import msgspec

from adapters.sqlite.statements import SqlDatabase, written
from state.campaigns import ReviewTask

_COLUMNS = "campaign_id, opened_at, tool, task_id, task_key, url, status, synced_at, error, attempts"


class SqliteTaskStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    async def put(self, task: ReviewTask) -> None:
        await self._db.write([(f"INSERT INTO campaign_tasks({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
                               "ON CONFLICT(campaign_id, opened_at) DO UPDATE SET tool=excluded.tool, "
                               "task_id=excluded.task_id, task_key=excluded.task_key, url=excluded.url, "
                               "status=excluded.status, synced_at=excluded.synced_at, error=excluded.error, "
                               "attempts=excluded.attempts", msgspec.structs.astuple(task))])

    async def claim(self, task: ReviewTask, now: float) -> bool:
        """Count an attempt at opening an unopened task (status opening), unless it was opened or another attempt
        was counted since `task` was read (a guarded write: another sync, maybe on another node, got there first)."""
        return await written(self._db, [("UPDATE campaign_tasks SET attempts = attempts + 1, synced_at = ?, "
                                         "status = 'opening', error = '' WHERE campaign_id = ? AND opened_at = ? "
                                         "AND task_id = '' AND attempts = ?",
                                         (now, task.campaign_id, task.opened_at, task.attempts), 1,
                                         f"task:{task.campaign_id}")])

    async def unfinished(self, limit: int) -> list[ReviewTask]:
        """Tasks a sync still has to look at (not done, closed or given up), the least recently synced first: a
        pass of `limit` takes the next ones along, however many wait, instead of the same oldest ones again."""
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM campaign_tasks "
                                       "WHERE status NOT IN ('done', 'closed', 'given_up') "
                                       "ORDER BY synced_at, opened_at, campaign_id LIMIT ?", (limit,))
        return [ReviewTask(*row) for row in rows]

    async def of_campaign(self, campaign_id: str) -> list[ReviewTask]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM campaign_tasks WHERE campaign_id = ? "
                                       "ORDER BY opened_at", (campaign_id,))
        return [ReviewTask(*row) for row in rows]
