"""SQLite storage of campaigns: the campaigns port's SQL."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.sqlite.statements import SqlDatabase
from state.campaigns import Campaign, HistoryEntry, _decode, _encode
from state.ports import ChangeFeed

_UPSERT = ("INSERT INTO campaigns(id, body, updated_at) VALUES (?,?,?) "
           "ON CONFLICT(id) DO UPDATE SET body=excluded.body, updated_at=excluded.updated_at")


class SqliteCampaignStore:
    def __init__(self, db: SqlDatabase, changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._changes = changes  # several nodes: tell the others what changed
        self._by_id: dict[str, Campaign] = {}
        self.version = 0  # bumps on every change, so candidate indexes know to rebuild

    async def load(self) -> None:
        for (body,) in await self._db.fetchall("SELECT body FROM campaigns ORDER BY rowid"):
            campaign = _decode(body)
            self._by_id[campaign.id] = campaign
        self.version += 1

    def get(self, campaign_id: str) -> Campaign | None:
        return self._by_id.get(campaign_id)

    def all(self) -> list[Campaign]:
        return list(self._by_id.values())

    async def put(self, campaign: Campaign, at: float, step: HistoryEntry | None = None) -> None:
        """Create or replace a campaign (durable before it is used); with `step`, the history entry of the change
        in the same transaction, so a state and its history never part."""
        statements: list[tuple[str, tuple[object, ...]]] = [(_UPSERT, (campaign.id, _encode(campaign).decode(), at))]
        if step is not None:
            statements.append(("INSERT INTO campaign_history(campaign_id, at, actor, action, from_state, to_state, "
                               "comment) VALUES (?,?,?,?,?,?,?)", (campaign.id, step.at, step.actor, step.action,
                                                                   step.from_state, step.to_state, step.comment)))
        await self._db.write(statements)
        self._by_id[campaign.id] = campaign
        self.version += 1
        if self._changes is not None:
            self._changes.changed("campaign", [campaign.id])

    async def refresh(self, campaign_ids: Sequence[str]) -> int:
        """Another node changed these campaigns (a step of the workflow, an edit): read them back."""
        marks = ",".join("?" * len(campaign_ids))
        rows = await self._db.fetchall(f"SELECT body FROM campaigns WHERE id IN ({marks})", list(campaign_ids))
        for (body,) in rows:
            campaign = _decode(body)
            self._by_id[campaign.id] = campaign
        self.version += 1
        return len(rows)

    async def history(self, campaign_id: str, limit: int) -> list[HistoryEntry]:
        """The campaign's steps, oldest first (the last `limit`)."""
        rows = await self._db.fetchall(
            "SELECT at, actor, action, from_state, to_state, comment FROM (SELECT * FROM campaign_history "
            "WHERE campaign_id = ? ORDER BY id DESC LIMIT ?) AS newest ORDER BY id", (campaign_id, limit))
        return [HistoryEntry(*row) for row in rows]
