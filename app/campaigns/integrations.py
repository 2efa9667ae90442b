"""Keeping the campaign team's tools in step: a review task in Jira or Asana for every campaign (or change) sent for
approval, its status synced back; creatives imported from the digital asset management, refreshed when the asset
changes there.

Nothing here blocks the workflow: a task is opened in the background after the step is durable, a failure is kept
on the task (`error`, `attempts`) and counted in `contrail_integration_calls`, and the next sync tries again. A review
whose task was never stored (the process was killed between the step and the background opening) is found by the
sync, which opens its task then. A task is followed until it is done, its review ends in Contrail (closed) or its
attempts to open it are used up (given_up).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from app.bidding.campaigns import CampaignService
from app.campaigns.events import CampaignChanged
from app.campaigns.ports import AssetLibrary, TaskTracker
from app.campaigns.workflow import RUNNING, CampaignWorkflow
from app.errors import InvalidInput, NotFound, RuleViolation, Unavailable
from app.runtime.clock import Clock
from state.campaigns import Campaign, Creative, ReviewTask
from state.integrations import Asset, AssetProblem, AssetSync, IntegrationError, TaskLink, changed_since
from state.ports import TaskStore

log = logging.getLogger("contrail.campaigns")

MAX_ATTEMPTS = 10       # a task that could not be opened is tried again at each sync, this many times in all
OPENING = "opening"       # a task's status while an attempt to open it is under way (here or on another node)
OPENING_GRACE_S = 300.0   # ... an attempt older than this was cut short (its process killed): the next sync retries
# Statuses the sync leaves for good (the store's `unfinished` skips them, with done): Contrail never closes the
# tool's issues, so without them every finished review would be polled forever and crowd out the new ones.
CLOSED = "closed"         # the review it was opened for ended in Contrail before the task was done
GIVEN_UP = "given_up"     # never opened: MAX_ATTEMPTS attempts failed (`error` says why the last one did)
SYNC_BATCH = 500        # tasks synced per pass, the least recently synced first
# A review whose task was never stored: a process killed after the step was durable and before its background opening
# stored the task. The sync looks for them among the campaigns awaiting approval, this many per pass (the oldest
# first; one found to have its task is not read again while it waits), and opens the task of a review at least
# UNSTORED_GRACE_S old: a younger one's opening may still be on its way to the store, here or on another node.
MISSING_BATCH = 100
UNSTORED_GRACE_S = 5.0
STEPS_READ = 1000       # the newest workflow steps read to tell when a campaign went to review
ASSET_SYNC = "dam-sync"   # the asset sync's name in the history and audit of the edits it makes
MAX_IMPORT = 50         # assets imported by one call
REVIEW_ACTIONS = frozenset({"submit", "revise"})


class ReviewTasks:
    """Opens a review task when a campaign (or a change to it) goes for approval; syncs task status back."""

    def __init__(self, tracker: TaskTracker | None, tool: str, store: TaskStore, campaigns: CampaignService,
                 clock: Clock, console_url: str = "") -> None:
        self._tracker = tracker
        self._tool = tool
        self._store = store
        self._campaigns = campaigns
        self._clock = clock
        self._console_url = console_url
        self._opening: set[asyncio.Task[None]] = set()  # bounded by the reviews in flight
        # Campaigns whose task an `on_change` is opening (how many): the sync does not take them for unstored ones.
        self._storing: dict[str, int] = {}
        # Per campaign awaiting approval, the copy of it (that very object: any step replaces it) whose review was
        # found to have its task: bounded by the campaigns awaiting approval.
        self._has_task: dict[str, Campaign] = {}

    @property
    def enabled(self) -> bool:
        return self._tracker is not None

    def on_change(self, event: CampaignChanged) -> None:
        """A bus subscriber: a step into review opens a task, in the background. (A rejected campaign submitted
        again takes two steps, rejected -> draft -> in_review, both "submit": the second one is the review's.)"""
        if self._tracker is None or event.action not in REVIEW_ACTIONS or \
                (event.action == "submit" and event.to_state != "in_review"):
            return
        campaign_id = event.campaign_id
        self._storing[campaign_id] = self._storing.get(campaign_id, 0) + 1
        task = asyncio.ensure_future(self._first_open(ReviewTask(campaign_id, event.at, self._tool, "", "", "",
                                                                 OPENING, self._clock.now(), "", 1)))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)
        task.add_done_callback(lambda _: self._stored(campaign_id))

    def _stored(self, campaign_id: str) -> None:
        """An `on_change` opening is over (its task stored, or the store failed: the sync then finds the review)."""
        left = self._storing.pop(campaign_id, 1) - 1
        if left:
            self._storing[campaign_id] = left

    async def _first_open(self, task: ReviewTask) -> None:
        """The task is stored first, its first attempt counted and under way, so a process killed during the tool's
        call leaves it for a sync to open once the attempt is old enough (at worst opened twice then, never lost),
        and a sync meanwhile, here or on another node, leaves it alone. (A process killed before it is stored leaves
        the review without a task: the sync finds it, `_open_unstored`.)"""
        await self._store.put(task)
        await self._open(task)

    async def idle(self) -> None:
        """Wait for the tasks being opened (tests, shutdown)."""
        while self._opening:
            await asyncio.gather(*list(self._opening), return_exceptions=True)

    async def close(self, wait_s: float | None = None) -> None:
        """Let the tasks being opened finish (at most `wait_s`: the rest are cancelled and opened again by the
        next start's sync), then close the tracker's session."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle(), wait_s)
        if self._tracker is not None:
            await self._tracker.close()

    async def _open(self, task: ReviewTask) -> None:
        """One attempt at opening `task`, already counted in its `attempts` and stored as under way."""
        assert self._tracker is not None
        campaign = self._campaigns.get(task.campaign_id)
        try:
            link = await self._tracker.create(*self._describe(campaign))
        except asyncio.CancelledError:  # a stop that could not wait: kept unopened, the next start's sync opens it
            await self._store.put(msgspec.structs.replace(task, status="failed", synced_at=self._clock.now(),
                                                          error="cut short by a stop"))
            raise
        except IntegrationError as exc:
            await self._store.put(msgspec.structs.replace(task, status="failed", synced_at=self._clock.now(),
                                                          error=str(exc)[:500]))
            return
        await self._store.put(msgspec.structs.replace(task, task_id=link.id, task_key=link.key, url=link.url,
                                                      status="open", synced_at=self._clock.now(), error=""))

    def _describe(self, c: Campaign) -> tuple[str, str, list[str]]:
        changes = "" if c.pending is None else "Changes under review: " + ", ".join(
            k for k, v in msgspec.structs.asdict(c.pending).items()
            if v is not None and k not in ("submitted_by", "submitted_at", "rule", "approvals_required",
                                           "approvals", "editors")) + ".\n"
        where = f"\nReview it in Contrail: {self._console_url}#/campaigns?id={c.id}" if self._console_url else ""
        text = (f"Campaign {c.id} ({c.name}) waits for approval: rule {c.approval_rule or c.pending and c.pending.rule}"
                f", {c.approvals_required} approver(s).\n{changes}Daily budget {c.daily_budget_micros / 1e6:.2f} USD, "
                f"bid cap {c.bid_cap_micros / 1e6:.2f} USD CPM, channels {', '.join(c.channels) or 'display'}.{where}")
        return f"Approve campaign: {c.name}", text, ["contrail", "campaign-review"]

    async def sync(self) -> int:
        """Open the tasks that failed to open (up to MAX_ATTEMPTS), and read back the status of the open ones, the
        least recently synced first; close those whose review has ended in Contrail; then open the tasks of the
        reviews that have none stored (`_open_unstored`). Returns how many tasks were looked at or opened. Never
        raises for a tool's failure."""
        if self._tracker is None:
            return 0
        looked = await self._sync_stored()
        return looked + await self._open_unstored()

    async def _sync_stored(self) -> int:
        assert self._tracker is not None
        looked = 0
        newest: dict[str, float] = {}  # per campaign under review, when its newest task was opened
        for task in await self._store.unfinished(SYNC_BATCH):
            looked += 1
            now = self._clock.now()
            if not task.task_id and task.status == OPENING and now - task.synced_at < OPENING_GRACE_S:
                continue  # an attempt is under way, here or on another node
            if await self._review_over(task, newest):
                await self._store.put(msgspec.structs.replace(task, status=CLOSED, synced_at=now))
                continue
            if not task.task_id:
                if task.attempts >= MAX_ATTEMPTS:
                    await self._store.put(msgspec.structs.replace(task, status=GIVEN_UP, synced_at=now))
                # (a campaign this node has not heard of yet is opened by a later sync)
                elif self._campaigns.exists(task.campaign_id) and \
                        await self._store.claim(task, now):  # no other sync counted one since it was read
                    await self._open(msgspec.structs.replace(task, attempts=task.attempts + 1, synced_at=now,
                                                             status=OPENING, error=""))
                continue
            try:
                status = await self._tracker.status(TaskLink(task.tool, task.task_id, task.task_key, task.url))
            except IntegrationError as exc:  # looked at all the same: it goes to the back of the line
                await self._store.put(msgspec.structs.replace(task, synced_at=now, error=str(exc)[:500]))
                continue
            await self._store.put(msgspec.structs.replace(task, status=status.state, synced_at=self._clock.now(),
                                                          error=""))
        return looked

    async def _open_unstored(self) -> int:
        """Open a task for each review that has none stored: a campaign awaiting approval with no task opened since
        its review began (its step into review, or the newest change put under review). Those found to have theirs
        are not read again while that copy of the campaign stands. Returns how many were opened.

        Never two for one review: a review younger than UNSTORED_GRACE_S, or whose task this process is storing, is
        left to its own opening. A task once stored is the stored tasks' business (`_sync_stored`), even if it was
        never opened, so this never opens a review's task a second time; and the background opening stores the task
        before it calls the tool, so a review with no task stored has no issue in the tool either."""
        awaiting = [c for c in self._campaigns.list() if _awaiting(c)]
        waiting = {c.id for c in awaiting}
        self._has_task = {k: c for k, c in self._has_task.items() if k in waiting}
        unread = sorted((c for c in awaiting if self._has_task.get(c.id) is not c and c.id not in self._storing),
                        key=lambda c: (c.pending.submitted_at if c.pending is not None else c.created_at, c.id))
        opened = 0
        for campaign in unread[:MISSING_BATCH]:
            began = await self._review_began(campaign)
            tasks = await self._store.of_campaign(campaign.id)
            if any(began is None or t.opened_at >= began for t in tasks):
                self._has_task[campaign.id] = campaign
                continue
            if began is not None and self._clock.now() - began < UNSTORED_GRACE_S:
                continue  # its opening may be on its way to the store: the next pass looks again
            try:  # this node's copy may lag a step another node took: the store says for sure
                stored = await self._campaigns.read(campaign.id)
            except NotFound:
                continue
            # (Nothing awaited between the last look at `_storing` and the task stored: no opening slips between.)
            if not _awaiting(stored) or await self._review_began(stored) != began or campaign.id in self._storing:
                continue  # it moved on meanwhile, or went for review again: the next pass looks at it as it is then
            now = self._clock.now()
            task = ReviewTask(campaign.id, now, self._tool, "", "", "", OPENING, now, "", 1)
            log.warning("review task never stored: opening it", extra={"campaign": campaign.id})
            await self._store.put(task)
            self._has_task[campaign.id] = campaign
            opened += 1
            await self._open(task)
        return opened

    async def _review_began(self, campaign: Campaign) -> float | None:
        """When the campaign's review began: its changes' submission, or its newest step into review (None: no step
        into review is recorded, as for a campaign loaded in review)."""
        if campaign.pending is not None:
            return campaign.pending.submitted_at
        # CampaignService reads no history itself: its store's, as the workflow's `history` does.
        steps = await self._campaigns._store.history(campaign.id, STEPS_READ)
        return next((s.at for s in reversed(steps) if s.to_state == "in_review" and s.from_state != "in_review"),
                    None)

    async def _review_over(self, task: ReviewTask, newest: dict[str, float]) -> bool:
        """Whether the review `task` was opened for has ended in Contrail: its campaign is no longer waiting for
        approval (approved, rejected, its changes approved or dropped, archived, deleted), or a newer review task
        of it stands for what waits now. `newest` caches, per campaign, its newest task's opening."""
        campaign_id = task.campaign_id
        if not _awaiting(self._campaigns.get(campaign_id) if self._campaigns.exists(campaign_id) else None):
            try:  # this node's copy may lag a step another node took: the store says for sure
                stored = await self._campaigns.read(campaign_id)
            except NotFound:
                return True
            if not _awaiting(stored):
                return True
        if campaign_id not in newest:
            tasks = await self._store.of_campaign(campaign_id)  # oldest first
            newest[campaign_id] = tasks[-1].opened_at if tasks else task.opened_at
        return task.opened_at < newest[campaign_id]

    async def of_campaign(self, campaign_id: str) -> list[ReviewTask]:
        await self._campaigns.read(campaign_id)  # 404 for an unknown campaign
        return await self._store.of_campaign(campaign_id)

    async def newest(self, campaign_id: str) -> ReviewTask | None:
        """The newest review task of a campaign the caller has read, whatever its status (None: none was opened)."""
        tasks = await self._store.of_campaign(campaign_id)  # oldest first
        return tasks[-1] if tasks else None


class AssetImport:
    """Creatives from the digital asset management, keeping the asset's id and version; a sync refreshes them."""

    def __init__(self, library: AssetLibrary | None, dam: str, workflow: CampaignWorkflow,
                 campaigns: CampaignService, clock: Clock, folder: str = "") -> None:
        """`folder` (integrations.dam_folder): the team's folder. An import that names no asset, folder or query
        takes it, and each sync lists it once for its assets' versions instead of asking for each asset."""
        self._library = library
        self._dam = dam
        self._workflow = workflow
        self._campaigns = campaigns
        self._clock = clock
        self._folder = folder
        # What the latest sync of each campaign could not read, per asset: at most the imported creatives of the
        # campaigns still open.
        self._failing: dict[str, dict[str, AssetProblem]] = {}
        self._last_sync_at: float | None = None
        self._folder_error: str | None = None

    async def status(self, campaign_id: str) -> AssetSync:
        """How the campaign's imported creatives last synced (what a failing asset library left stale, and why)."""
        await self._campaigns.read(campaign_id)  # 404 for an unknown campaign
        return AssetSync(campaign_id, self._dam or None, self._last_sync_at, self._folder_error,
                         list(self._failing.get(campaign_id, {}).values()))

    @property
    def failing(self) -> int:
        """Imported creatives whose asset the last sync could not read."""
        return sum(len(problems) for problems in self._failing.values())

    async def import_assets(self, actor: Any, campaign_id: str, asset_ids: list[str], folder: str | None,
                            query: str | None, fmt: str, w: int | None, h: int | None) -> Campaign:
        """Add the assets (by id, a folder's or a search's) as creatives; for an approved campaign they go under
        review like any other change of creatives."""
        if not (asset_ids or folder or query):
            if not self._folder:
                raise InvalidInput("give asset_ids, a folder or a query", {"field": "asset_ids"})
            folder = self._folder
        if self._library is None:
            raise RuleViolation("no digital asset management is configured (integrations.dam)")
        campaign = await self._campaigns.read(campaign_id)
        try:
            assets = [await self._library.metadata(a) for a in asset_ids]
            if folder:
                assets += await self._library.list_folder(folder)
            if query:
                assets += await self._library.search(query)
        except IntegrationError as exc:
            raise Unavailable(f"the asset library failed: {exc}") from None
        if not assets:
            raise InvalidInput("no asset found to import", {"field": "asset_ids"})
        if len(assets) > MAX_IMPORT:
            raise InvalidInput(f"at most {MAX_IMPORT} assets at once; {len(assets)} found", {"field": "folder"})
        base = _creatives(campaign)
        known = {c.dam_id for c in base if c.dam == self._dam}
        new = [_creative(a, fmt, w, h) for a in assets if a.id not in known]
        if not new:
            return campaign

        def added(current: Campaign) -> dict[str, Any]:  # on the campaign as it is when the edit is taken
            now_base = _creatives(current)
            now_known = {c.dam_id for c in now_base if c.dam == self._dam}
            return {"creatives": [*now_base, *(c for c in new if c.dam_id not in now_known)]}
        return await self._workflow.edit(actor, campaign_id, added,
                                         f"{len(new)} creative(s) imported from {self._dam}")

    async def close(self) -> None:
        if self._library is not None:
            await self._library.close()

    async def sync(self) -> int:
        """Refresh every imported creative whose asset has a newer version; returns how many changed. A campaign's
        failures are replaced as the sync reads it (one it does not reach keeps its own)."""
        if self._library is None:
            return 0
        now = self._clock.now()
        self._last_sync_at, self._folder_error = now, None
        listed: dict[str, Asset] = {}
        if self._folder:
            try:
                listed = {a.id: a for a in await self._library.list_folder(self._folder)}
            except IntegrationError as exc:  # each asset is then asked for on its own
                log.warning("asset folder listing failed", extra={"folder": self._folder, "error": str(exc)})
                self._folder_error = str(exc)
        changed = 0
        for campaign in self._campaigns.list():
            if campaign.state in ("in_review", "completed", "archived"):
                continue  # not editable now: the next sync after the step
            base = _creatives(campaign)
            fresh: list[Creative] = []
            before, problems = self._failing.get(campaign.id, {}), {}
            mine = {c.dam_id: c.dam_version or "" for c in base if c.dam == self._dam and c.dam_id}
            # Of the assets the folder listed, only those whose version moved are fetched again.
            moved = {a.id for a in changed_since((listed[i] for i in mine if i in listed), mine)}
            for creative in base:
                if creative.dam == self._dam and (dam_id := creative.dam_id):
                    if dam_id in listed and dam_id not in moved:
                        fresh.append(creative)
                        continue
                    try:
                        asset = await self._library.metadata(dam_id)
                        if asset.version != creative.dam_version:
                            creative = _creative(asset, creative.format, creative.w, creative.h, creative.id)
                            changed += 1
                    except (IntegrationError, InvalidInput) as exc:  # unread, or a new version past the limits
                        error = exc.message if isinstance(exc, InvalidInput) else str(exc)
                        log.warning("asset sync failed", extra={"asset": dam_id, "error": error})
                        last = before.get(dam_id)
                        problems[dam_id] = AssetProblem(creative.id, dam_id, error, last.since if last else now,
                                                        last.failures + 1 if last else 1)
                fresh.append(creative)
            if problems:
                self._failing[campaign.id] = problems
            else:
                self._failing.pop(campaign.id, None)
            if fresh != base:
                refreshed = {c.id: c for c, old in zip(fresh, base, strict=True) if c != old}
                # A system's edit: it leaves who last edited the campaign, and a rejected one's state, as they were.
                await self._workflow.edit(ASSET_SYNC, campaign.id, _replacing(refreshed),
                                          f"newer asset versions from {self._dam}", system=True)
        # Completed, archived and deleted campaigns are never read again: theirs go.
        kept = {c.id for c in self._campaigns.list() if c.state not in ("completed", "archived")}
        self._failing = {c: problems for c, problems in self._failing.items() if c in kept}
        return changed


def _awaiting(campaign: Campaign | None) -> bool:
    """Whether the campaign (None: not known) waits for approval: in review, or running with changes under review."""
    return campaign is not None and (campaign.state == "in_review" or
                                     (campaign.state in RUNNING and campaign.pending is not None))


def _replacing(refreshed: dict[str, Creative]) -> Callable[[Campaign], dict[str, Any]]:
    """An edit putting the refreshed creatives in place of theirs on the campaign as it is when the edit is taken (a
    creative added meanwhile is kept)."""
    return lambda current: {"creatives": [refreshed.get(c.id, c) for c in _creatives(current)]}


def _creatives(campaign: Campaign) -> list[Creative]:
    """The creatives an edit starts from: those under review when changes wait for approval, else the running ones."""
    pending = campaign.pending
    return pending.creatives if pending is not None and pending.creatives is not None else campaign.creatives


def _creative(asset: Asset, fmt: str, w: int | None, h: int | None, creative_id: str | None = None) -> Creative:
    meta = asset.metadata
    width = w or _int(meta.get("width") or meta.get("tiff:ImageWidth") or meta.get("exif:PixelXDimension"))
    height = h or _int(meta.get("height") or meta.get("tiff:ImageLength") or meta.get("exif:PixelYDimension"))
    name = html.escape(asset.name, quote=True)
    src = html.escape(asset.url, quote=True)
    if fmt == "video":
        markup = f'<VAST version="4.2"><Ad id="{name}"><InLine><AdTitle>{name}</AdTitle><Creatives><Creative>' \
                 f'<Linear><MediaFiles><MediaFile type="{asset.mime}"><![CDATA[{asset.url}]]></MediaFile>' \
                 '</MediaFiles></Linear></Creative></Creatives></InLine></Ad></VAST>'
    else:
        markup = f'<img src="{src}" alt="{name}"' + (f' width="{width}" height="{height}"' if width and height
                                                      else "") + ">"
    if fmt == "banner" and not (width and height):
        raise InvalidInput(f"asset {asset.id} has no size in its metadata: give w and h for banners",
                           {"field": "w"})
    fields = {"id": creative_id or f"{asset.dam}-{asset.id}"[:64], "format": fmt, "markup": markup, "w": width,
              "h": height, "mimes": [asset.mime] if asset.mime else [], "dam": asset.dam, "dam_id": asset.id,
              "dam_version": asset.version}
    try:  # through the limits a creative sent by a person meets (a library's metadata is no more trusted)
        return msgspec.convert(fields, Creative)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"asset {asset.id[:200]} cannot be a creative: {exc}", {"field": "asset_ids"}) from None


def _int(value: object) -> int | None:
    try:
        number = int(float(str(value)))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
