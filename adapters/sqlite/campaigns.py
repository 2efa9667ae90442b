"""SQLite storage of campaigns: the campaigns port's SQL."""

from __future__ import annotations

from adapters.sqlite.db import Database
from state.campaigns import Campaign, _decode, _encode


class SqliteCampaignStore:
    def __init__(self, db: Database) -> None:
        self._db = db
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

    async def put(self, campaign: Campaign, at: float) -> None:
        """Create or replace a campaign (durable before it is used)."""
        await self._db.write([("INSERT INTO campaigns(id, body, updated_at) VALUES (?,?,?) "
                               "ON CONFLICT(id) DO UPDATE SET body=excluded.body, updated_at=excluded.updated_at",
                               (campaign.id, _encode(campaign).decode(), at))])
        self._by_id[campaign.id] = campaign
        self.version += 1
