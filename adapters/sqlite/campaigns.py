"""SQLite storage of campaigns: the campaigns port's SQL."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.sqlite.statements import SqlDatabase, code_points, json_field
from state.campaigns import Campaign, HistoryEntry, _decode, _encode
from state.ports import ChangeFeed, WriteConflict

_INSERT = "INSERT INTO campaigns(id, body, updated_at, revision) VALUES (?,?,?,1) ON CONFLICT(id) DO NOTHING"
_UPDATE = "UPDATE campaigns SET body = ?, updated_at = ?, revision = ? WHERE id = ? AND revision = ?"


class SqliteCampaignStore:
    """Every campaign but the archived ones is held in memory (the bidder, the scheduler and the reports read
    them on every pass); an archived campaign is the record of what ran, read from the table when asked for, so
    years of campaigns do not grow the process.

    Every write names the revision of the campaign it read (held beside it) and is refused, nothing written, when
    the stored one moved on: several nodes sharing the store then never undo each other's steps or take one twice.
    A refused write reads the campaign back, so the next attempt starts from what is stored."""

    def __init__(self, db: SqlDatabase, changes: ChangeFeed | None = None) -> None:
        self._db = db
        self._changes = changes  # several nodes: tell the others what changed
        self._by_id: dict[str, Campaign] = {}
        self._revisions: dict[str, int] = {}  # of the campaigns held
        self.version = 0  # bumps on every change, so candidate indexes know to rebuild

    async def load(self) -> None:
        for body, revision in await self._db.fetchall("SELECT body, revision FROM campaigns ORDER BY rowid"):
            self._hold(_decode(body), revision)
        self.version += 1

    def _hold(self, campaign: Campaign, revision: int) -> None:
        if campaign.state == "archived":
            self._by_id.pop(campaign.id, None)
            self._revisions.pop(campaign.id, None)
        else:
            self._by_id[campaign.id] = campaign
            self._revisions[campaign.id] = revision

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

    async def put(self, campaign: Campaign, at: float, steps: Sequence[HistoryEntry] = (), *,
                  new: bool = False) -> None:
        """Create (`new`) or replace a campaign (durable before it is used), with the history entries of the
        change in the same transaction, so a state and its history never part. A WriteConflict "campaign:<id>"
        when the stored campaign is not the revision this node holds (or, for a new one, exists): nothing is
        written, and the stored campaign is read back."""
        revision = None if new else self._revisions.get(campaign.id)
        if revision is None and not new:  # not held: archived (whose steps are refused before they get here)
            row = await self._db.fetchone("SELECT revision FROM campaigns WHERE id = ?", (campaign.id,))
            revision = int(row[0]) if row else None
        body, guard = _encode(campaign).decode(), f"campaign:{campaign.id}"
        statements: list[tuple[object, ...]] = [
            (_INSERT, (campaign.id, body, at), 1, guard) if revision is None else
            (_UPDATE, (body, at, revision + 1, campaign.id, revision), 1, guard)]
        # Its DSP line items, owned while it is neither completed nor archived: one another campaign owns (another
        # node's write) is a WriteConflict naming it, and nothing of the change is written.
        statements.append(("DELETE FROM campaign_line_items WHERE campaign_id = ?", (campaign.id,)))
        if campaign.state not in ("completed", "archived"):
            statements += [("INSERT INTO campaign_line_items(platform, cid, campaign_id) VALUES (?,?,?) "
                            "ON CONFLICT (platform, cid) DO NOTHING", (item.platform, item.cid, campaign.id), 1,
                            f"dsp_line_item:{item.platform}:{item.cid}") for item in campaign.dsp_line_items]
        statements += [("INSERT INTO campaign_history(campaign_id, at, actor, action, from_state, to_state, comment) "
                        "VALUES (?,?,?,?,?,?,?)", (campaign.id, step.at, step.actor, step.action, step.from_state,
                                                   step.to_state, step.comment)) for step in steps]
        try:
            await self._db.write(statements)
        except WriteConflict as exc:
            if exc.what == guard:
                await self.refresh([campaign.id])
            raise
        self._hold(campaign, 1 if revision is None else revision + 1)
        self.version += 1
        if self._changes is not None:
            self._changes.changed("campaign", [campaign.id])

    async def refresh(self, campaign_ids: Sequence[str]) -> int:
        """Another node changed these campaigns (a step of the workflow, an edit): read them back."""
        marks = ",".join("?" * len(campaign_ids))
        rows = await self._db.fetchall(f"SELECT body, revision FROM campaigns WHERE id IN ({marks})",
                                       list(campaign_ids))
        for body, revision in rows:
            self._hold(_decode(body), revision)
        self.version += 1
        return len(rows)

    async def history(self, campaign_id: str, limit: int) -> list[HistoryEntry]:
        """The campaign's steps, oldest first (the last `limit`)."""
        rows = await self._db.fetchall(
            "SELECT at, actor, action, from_state, to_state, comment FROM (SELECT * FROM campaign_history "
            "WHERE campaign_id = ? ORDER BY id DESC LIMIT ?) AS newest ORDER BY id", (campaign_id, limit))
        return [HistoryEntry(*row) for row in rows]
