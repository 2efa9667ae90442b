"""SQLite storage of campaigns: the campaigns port's SQL."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.sqlite.statements import SqlDatabase, code_points, json_field
from state.campaigns import Campaign, HistoryEntry, _decode, _encode
from state.ports import ChangeFeed

_UPSERT = ("INSERT INTO campaigns(id, body, updated_at) VALUES (?,?,?) "
           "ON CONFLICT(id) DO UPDATE SET body=excluded.body, updated_at=excluded.updated_at")


class SqliteCampaignStore:
    """Every campaign but the archived ones is held in memory (the bidder, the scheduler and the reports read
    them on every pass); an archived campaign is the record of what ran, read from the table when asked for, so
    years of campaigns do not grow the process."""

    def __init__(self, db: SqlDatabase, changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._changes = changes  # several nodes: tell the others what changed
        self._by_id: dict[str, Campaign] = {}
        self.version = 0  # bumps on every change, so candidate indexes know to rebuild

    async def load(self) -> None:
        for (body,) in await self._db.fetchall("SELECT body FROM campaigns ORDER BY rowid"):
            self._hold(_decode(body))
        self.version += 1

    def _hold(self, campaign: Campaign) -> None:
        if campaign.state == "archived":
            self._by_id.pop(campaign.id, None)
        else:
            self._by_id[campaign.id] = campaign

    def get(self, campaign_id: str) -> Campaign | None:
        """A campaign that is not archived."""
        return self._by_id.get(campaign_id)

    def all(self) -> list[Campaign]:
        """Every campaign that is not archived."""
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    async def read(self, campaign_id: str) -> Campaign | None:
        """Any campaign, archived ones included."""
        held = self._by_id.get(campaign_id)
        if held is not None:
            return held
        row = await self._db.fetchone("SELECT body FROM campaigns WHERE id = ?", (campaign_id,))
        return _decode(row[0]) if row else None

    async def archived(self, after: str, limit: int) -> list[Campaign]:
        """Archived campaigns by id (code point order, as memory sorts them), the first `limit` after `after`. The
        state is read from each stored body: campaigns are few (thousands over years), so a scan of the table is
        cheaper to keep right than a column of its own."""
        key = code_points(self._db.dialect, "id")
        state = json_field(self._db.dialect, "body", "state")
        rows = await self._db.fetchall(f"SELECT body FROM campaigns WHERE {key} > ? AND {state} = 'archived' "
                                       f"ORDER BY {key} LIMIT ?", (after, limit))
        return [_decode(row[0]) for row in rows]

    async def put(self, campaign: Campaign, at: float, step: HistoryEntry | None = None) -> None:
        """Create or replace a campaign (durable before it is used); with `step`, the history entry of the change
        in the same transaction, so a state and its history never part."""
        statements: list[tuple[object, ...]] = [(_UPSERT, (campaign.id, _encode(campaign).decode(), at))]
        # Its DSP line items, owned while it is neither completed nor archived: one another campaign owns (another
        # node's write) is a WriteConflict naming it, and nothing of the change is written.
        statements.append(("DELETE FROM campaign_line_items WHERE campaign_id = ?", (campaign.id,)))
        if campaign.state not in ("completed", "archived"):
            statements += [("INSERT INTO campaign_line_items(platform, cid, campaign_id) VALUES (?,?,?) "
                            "ON CONFLICT (platform, cid) DO NOTHING", (item.platform, item.cid, campaign.id), 1,
                            f"dsp_line_item:{item.platform}:{item.cid}") for item in campaign.dsp_line_items]
        if step is not None:
            statements.append(("INSERT INTO campaign_history(campaign_id, at, actor, action, from_state, to_state, "
                               "comment) VALUES (?,?,?,?,?,?,?)", (campaign.id, step.at, step.actor, step.action,
                                                                   step.from_state, step.to_state, step.comment)))
        await self._db.write(statements)
        self._hold(campaign)
        self.version += 1
        if self._changes is not None:
            self._changes.changed("campaign", [campaign.id])

    async def refresh(self, campaign_ids: Sequence[str]) -> int:
        """Another node changed these campaigns (a step of the workflow, an edit): read them back."""
        marks = ",".join("?" * len(campaign_ids))
        rows = await self._db.fetchall(f"SELECT body FROM campaigns WHERE id IN ({marks})", list(campaign_ids))
        for (body,) in rows:
            self._hold(_decode(body))
        self.version += 1
        return len(rows)

    async def history(self, campaign_id: str, limit: int) -> list[HistoryEntry]:
        """The campaign's steps, oldest first (the last `limit`)."""
        rows = await self._db.fetchall(
            "SELECT at, actor, action, from_state, to_state, comment FROM (SELECT * FROM campaign_history "
            "WHERE campaign_id = ? ORDER BY id DESC LIMIT ?) AS newest ORDER BY id", (campaign_id, limit))
        return [HistoryEntry(*row) for row in rows]
