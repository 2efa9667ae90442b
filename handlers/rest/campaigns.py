"""Campaign management over REST: campaigns, their workflow steps and approvals, history and today's spend."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app.bidding.campaigns import CampaignService, CampaignSpend
from app.campaigns.integrations import AssetImport, ReviewTasks
from app.campaigns.reports import CampaignReport, CampaignReports, CampaignsReport, parse_time
from app.campaigns.workflow import CampaignWorkflow
from app.errors import InvalidInput
from app.runtime.clock import Clock
from handlers.rest.common import Cursor, decode_cursor, encode_cursor, endpoint, json_response, optional_body
from state.campaigns import (
    MAX_CREATIVES,
    Campaign,
    CampaignChannel,
    CampaignState,
    Creative,
    DspLineItem,
    FrequencyCaps,
    HistoryEntry,
    ReviewTask,
    Targeting,
)
from state.integrations import AssetSync
from state.text import whole

ADMIN = ("admin",)
Micros = Annotated[int, msgspec.Meta(gt=0, le=10**12)]
Time = Annotated[float, msgspec.Meta(ge=0, le=1e11, description="Epoch seconds")]
Comment = Annotated[str, msgspec.Meta(max_length=2000)]
Channels = Annotated[list[CampaignChannel], msgspec.Meta(max_length=8)]
# Lists an auction request is matched against: bounded like every list a campaign keeps in memory.
Names = Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]], msgspec.Meta(max_length=1_000)]
# Its line items on the DSPs Contrail routes to: their bids and wins count in its report.
LineItems = Annotated[list[DspLineItem], msgspec.Meta(max_length=100)]


class NewCampaign(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    advertiser_domain: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    bid_cap_micros: Micros
    daily_budget_micros: Micros
    id: Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_\-]{1,64}"))] | None = None
    categories: Names = []
    app_bundle: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None  # OpenRTB app.bundle
    deal_ids: Names = []
    offer_ids: Names = []
    targeting: Targeting = Targeting()
    frequency_caps: FrequencyCaps = FrequencyCaps()
    # Each id once (400 naming the repeats: app/bidding/campaigns.py), as POST .../creatives refuses one taken (409).
    creatives: Annotated[list[Creative], msgspec.Meta(max_length=MAX_CREATIVES)] = []
    # Bid what the customer is worth: this share of their predicted lifetime value (null: the auction's price).
    value_share: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    channels: Channels = []
    starts_at: Time | None = None
    ends_at: Time | None = None
    dsp_line_items: LineItems = []


class CampaignPatch(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change (absent: unchanged). Budget, targeting, creatives and channels of an approved campaign
    wait for approval (campaigns.reapprove_fields) while the approved version keeps running."""
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    bid_cap_micros: Micros | msgspec.UnsetType = msgspec.UNSET
    daily_budget_micros: Micros | msgspec.UnsetType = msgspec.UNSET
    value_share: Annotated[float, msgspec.Meta(ge=0, le=1)] | msgspec.UnsetType = msgspec.UNSET  # 0: no value bids
    targeting: Targeting | msgspec.UnsetType = msgspec.UNSET
    frequency_caps: FrequencyCaps | msgspec.UnsetType = msgspec.UNSET
    channels: Channels | msgspec.UnsetType = msgspec.UNSET
    starts_at: Time | None | msgspec.UnsetType = msgspec.UNSET  # null: no start of its own
    ends_at: Time | None | msgspec.UnsetType = msgspec.UNSET    # null: runs until paused or archived
    dsp_line_items: LineItems | msgspec.UnsetType = msgspec.UNSET  # the whole list ([]: none)
    comment: Comment = ""


class CampaignDetail(Campaign, frozen=True):
    """A campaign with the link to its newest review task in the team's task tool (null: none was opened)."""
    review_task: ReviewTask | None = None


class StepBody(msgspec.Struct, forbid_unknown_fields=True):
    comment: Comment = ""


class ScheduleBody(msgspec.Struct, forbid_unknown_fields=True):
    comment: Comment = ""
    starts_at: Time | None = None  # default: the campaign's own start, else now
    ends_at: Time | None = None


class ImportBody(msgspec.Struct, forbid_unknown_fields=True):
    """Assets to import as creatives: by id, a folder's, or a search's (at least one)."""
    asset_ids: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=500)]],
                         msgspec.Meta(max_length=50)] = []
    folder: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    format: Literal["banner", "video", "native"] = "banner"
    w: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None  # a banner's size, when the asset's metadata
    h: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None  # does not give it


class Tasks(msgspec.Struct):
    campaign_id: str
    items: list[ReviewTask]


class CampaignList(msgspec.Struct):
    items: list[Campaign]
    next_cursor: str | None = None  # the `after` of the next page; null on the last


class CampaignListQuery(msgspec.Struct, forbid_unknown_fields=True):
    state: CampaignState | None = None  # only campaigns in this state
    # false: leave archived campaigns out (they are read from the store; those not archived are in memory)
    archived: bool = True
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000
    after: Cursor | None = None


class SpendReport(msgspec.Struct):
    day: str                    # the UTC day the figures are for (budgets and pacing run by UTC day)
    items: list[CampaignSpend]


class History(msgspec.Struct):
    campaign_id: str
    items: list[HistoryEntry]


class RangeQuery(msgspec.Struct, forbid_unknown_fields=True):
    from_: str | None = msgspec.field(default=None, name="from")  # epoch seconds or ISO 8601; default: 7 days ago
    to: str | None = None                                         # default: now


class ReportQuery(RangeQuery, forbid_unknown_fields=True):
    granularity: Literal["hour", "day"] = "day"


class CampaignsApi:
    def __init__(self, campaigns: CampaignService, workflow: CampaignWorkflow, reports: CampaignReports,
                 tasks: ReviewTasks, assets: AssetImport, clock: Clock) -> None:
        self._campaigns = campaigns
        self._workflow = workflow
        self._reports = reports
        self._tasks = tasks
        self._assets = assets
        self._clock = clock

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/admin/campaigns", self.create_campaign)
        router.add_get("/v1/admin/campaigns", self.list_campaigns)
        router.add_get("/v1/admin/spend", self.spend)
        router.add_get("/v1/admin/approvals", self.approvals)
        router.add_get("/v1/admin/campaigns/report", self.report_all)  # before {campaign_id}, which would match it
        router.add_get("/v1/admin/campaigns/{campaign_id}", self.get_campaign)
        router.add_patch("/v1/admin/campaigns/{campaign_id}", self.patch_campaign)
        router.add_post("/v1/admin/campaigns/{campaign_id}/creatives", self.add_creative)
        router.add_get("/v1/admin/campaigns/{campaign_id}/history", self.history)
        router.add_get("/v1/admin/campaigns/{campaign_id}/report", self.report)
        router.add_get("/v1/admin/campaigns/{campaign_id}/tasks", self.tasks)
        router.add_get("/v1/admin/campaigns/{campaign_id}/assets", self.asset_sync)
        router.add_post("/v1/admin/campaigns/{campaign_id}/creatives/import", self.import_creatives)
        for action in ("submit", "approve", "reject", "pause", "resume", "archive"):
            router.add_post(f"/v1/admin/campaigns/{{campaign_id}}/{action}", getattr(self, action))
        router.add_post("/v1/admin/campaigns/{campaign_id}/schedule", self.schedule)

    @endpoint("Create a campaign; it starts in draft", tags=("campaigns",), roles=ADMIN, body=NewCampaign,
              response=Campaign, status=201, errors=(409,))
    async def create_campaign(self, request: web.Request, principal, body: NewCampaign) -> web.Response:
        fields = msgspec.structs.asdict(body)
        fields["id"] = body.id or self._campaigns.new_id()
        campaign = await self._workflow.create(principal, Campaign(**fields))
        return json_response(campaign, status=201)

    @endpoint("List campaigns by id, a page at a time (optionally those in one state)", tags=("campaigns",),
              roles=ADMIN, query=CampaignListQuery, response=CampaignList)
    async def list_campaigns(self, request: web.Request, principal, query: CampaignListQuery) -> web.Response:
        cursor = decode_cursor(query.after)
        after = str(cursor.get("id", "")) if cursor else ""
        # Keyset by id: a campaign that changes state between pages does not lose the client its place.
        if query.state == "archived" and not query.archived:
            raise InvalidInput("state=archived and archived=false ask for nothing: leave one out",
                               {"field": "archived"})
        campaigns = await self._campaigns.page(after, query.limit + 1, query.state, archived=query.archived)
        page = campaigns[:query.limit]
        more = len(campaigns) > query.limit
        return json_response(CampaignList(page, encode_cursor({"id": page[-1].id}) if more else None))

    @endpoint("What waits for an approver: campaigns in review and approved campaigns with changes under review",
              tags=("campaigns",), roles=ADMIN, response=CampaignList)
    async def approvals(self, request: web.Request, principal) -> web.Response:
        return json_response(CampaignList(self._workflow.approval_queue()))

    @endpoint("Today's spend per campaign: budget used, pacing, win rate and average clearing price",
              tags=("campaigns",), roles=ADMIN, response=SpendReport)
    async def spend(self, request: web.Request, principal) -> web.Response:
        day, lines = await self._campaigns.spend_today(self._clock.now())
        return json_response(SpendReport(day, lines))

    @endpoint("Get a campaign, with its workflow state and its newest review task (the task tool's key, link and "
              "status as last synced)", tags=("campaigns",), roles=ADMIN, response=CampaignDetail, errors=(404,))
    async def get_campaign(self, request: web.Request, principal) -> web.Response:
        campaign = await self._campaigns.read(request.match_info["campaign_id"])
        task = await self._tasks.newest(campaign.id)
        return json_response(CampaignDetail(**msgspec.structs.asdict(campaign), review_task=task))

    @endpoint("Edit a campaign: at once in draft (a rejected one goes back to draft); for an approved campaign, "
              "budget, targeting, creatives and channels go under review while the approved version runs; 0 as "
              "value_share stops value bidding", tags=("campaigns",), roles=ADMIN, body=CampaignPatch,
              response=Campaign, errors=(404, 409))
    async def patch_campaign(self, request: web.Request, principal, body: CampaignPatch) -> web.Response:
        changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET and k != "comment"}
        if changes.get("value_share") == 0:
            changes["value_share"] = None
        campaign = await self._workflow.edit(principal, request.match_info["campaign_id"], changes, body.comment)
        return json_response(campaign)

    @endpoint("Add a creative to a campaign (under review for an approved campaign)", tags=("campaigns",),
              roles=ADMIN, body=Creative, response=Campaign, status=201, errors=(404, 409))
    async def add_creative(self, request: web.Request, principal, body: Creative) -> web.Response:
        campaign = await self._workflow.add_creative(principal, request.match_info["campaign_id"], body)
        return json_response(campaign, status=201)

    @endpoint("A campaign's workflow steps, oldest first: who, when, from which state to which, and the comment",
              tags=("campaigns",), roles=ADMIN, response=History, errors=(404,))
    async def history(self, request: web.Request, principal) -> web.Response:
        campaign_id = request.match_info["campaign_id"]
        return json_response(History(campaign_id, await self._workflow.history(campaign_id)))

    @endpoint("Every campaign's bids, wins, impressions, spend, clicks and conversions over a range, with today's "
              "budget and pacing, and the bidder's no-bid reasons", tags=("campaigns",), roles=ADMIN,
              query=RangeQuery, response=CampaignsReport)  # a bad range is 400 naming the parameter
    async def report_all(self, request: web.Request, principal, query: RangeQuery) -> web.Response:
        return json_response(await self._reports.campaigns(parse_time(query.from_, "from"),
                                                           parse_time(query.to, "to")))

    @endpoint("A campaign's report by hour or day: bids, wins, win rate, impressions, spend, average clearing "
              "price, losses, clicks, conversions and revenue; today's budget used and pacing line; the bidder's "
              "no-bid reasons", tags=("campaigns",), roles=ADMIN, query=ReportQuery, response=CampaignReport,
              errors=(404,))  # a bad range is 400 naming the parameter
    async def report(self, request: web.Request, principal, query: ReportQuery) -> web.Response:
        return json_response(await self._reports.campaign(
            request.match_info["campaign_id"], parse_time(query.from_, "from"), parse_time(query.to, "to"),
            query.granularity))

    @endpoint("The review tasks opened for the campaign in the team's task tool (integrations.task_tool), with their "
              "status as last synced, or why one could not be opened yet", tags=("campaigns",), roles=ADMIN,
              response=Tasks, errors=(404,))
    async def tasks(self, request: web.Request, principal) -> web.Response:
        campaign_id = request.match_info["campaign_id"]
        return json_response(Tasks(campaign_id, await self._tasks.of_campaign(campaign_id)))

    @endpoint("How the campaign's imported creatives last synced with the asset library (integrations.dam): when, and "
              "each creative whose asset could not be read, why, since when and how many syncs in a row; they keep "
              "their last version meanwhile", tags=("campaigns",), roles=ADMIN, response=AssetSync, errors=(404,))
    async def asset_sync(self, request: web.Request, principal) -> web.Response:
        return json_response(await self._assets.status(request.match_info["campaign_id"]))

    @endpoint("Import creatives from the digital asset management (integrations.dam) with each asset's id and "
              "version; under review for an approved campaign", tags=("campaigns",), roles=ADMIN, body=ImportBody,
              response=Campaign, errors=(404, 409, 422, 503))
    async def import_creatives(self, request: web.Request, principal, body: ImportBody) -> web.Response:
        return json_response(await self._assets.import_assets(principal, request.match_info["campaign_id"],
                                                              body.asset_ids, body.folder, body.query, body.format,
                                                              body.w, body.h))

    async def _step(self, request: web.Request, principal, action: str) -> web.Response:
        body: StepBody = optional_body(await request.read(), StepBody)
        step = getattr(self._workflow, action)
        return json_response(await step(principal, request.match_info["campaign_id"], body.comment))

    @endpoint("Submit a draft (or rejected) campaign for approval: the approval rule is matched now",
              tags=("campaigns",), roles=ADMIN, raw_body=StepBody, response=Campaign, errors=(404, 409, 422))
    async def submit(self, request: web.Request, principal) -> web.Response:
        return await self._step(request, principal, "submit")

    @endpoint("Approve a campaign in review (or its changes under review); the last approval needed approves. "
              "Whoever created or last edited it cannot", tags=("campaigns",), roles=ADMIN, raw_body=StepBody,
              response=Campaign, errors=(404, 409))
    async def approve(self, request: web.Request, principal) -> web.Response:
        return await self._step(request, principal, "approve")

    @endpoint("Reject a campaign in review (or drop its changes under review)", tags=("campaigns",), roles=ADMIN,
              raw_body=StepBody, response=Campaign, errors=(404, 409))
    async def reject(self, request: web.Request, principal) -> web.Response:
        return await self._step(request, principal, "reject")

    @endpoint("Schedule an approved campaign to go live at starts_at (default: its own start, else now)",
              tags=("campaigns",), roles=ADMIN, raw_body=ScheduleBody, response=Campaign, errors=(404, 409, 422))
    async def schedule(self, request: web.Request, principal) -> web.Response:
        body: ScheduleBody = optional_body(await request.read(), ScheduleBody)
        return json_response(await self._workflow.schedule(principal, request.match_info["campaign_id"],
                                                           body.starts_at, body.ends_at, body.comment))

    @endpoint("Pause a live campaign: it stops bidding at once", tags=("campaigns",), roles=ADMIN,
              raw_body=StepBody, response=Campaign, errors=(404, 409))
    async def pause(self, request: web.Request, principal) -> web.Response:
        return await self._step(request, principal, "pause")

    @endpoint("Resume a paused campaign", tags=("campaigns",), roles=ADMIN, raw_body=StepBody, response=Campaign,
              errors=(404, 409))
    async def resume(self, request: web.Request, principal) -> web.Response:
        return await self._step(request, principal, "resume")

    @endpoint("Archive a completed campaign", tags=("campaigns",), roles=ADMIN, raw_body=StepBody,
              response=Campaign, errors=(404, 409))
    async def archive(self, request: web.Request, principal) -> web.Response:
        return await self._step(request, principal, "archive")
