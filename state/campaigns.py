"""Advertising campaigns and their creatives, hot in memory, durable in SQLite."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MediaFormat = Literal["banner", "video", "audio", "native"]


class Creative(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: str
    format: MediaFormat
    markup: str
    w: int | None = None
    h: int | None = None
    mimes: list[str] = []
    # Imported from the team's digital asset management: which library, the asset's id there and its version (a
    # sync picks up newer versions).
    dam: str | None = None
    dam_id: str | None = None
    dam_version: str | None = None


class Targeting(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    countries: list[str] = []      # ISO-3166-1 alpha-3 as OpenRTB sends them; empty = anywhere
    device_types: list[int] = []   # OpenRTB devicetype codes; empty = any
    formats: list[MediaFormat] = []  # empty = any
    # Customers whose predicted lifetime value (retail currency) is in this band; None = open at that end.
    # A campaign with a band bids only on users with a known value whose personal data may be used.
    ltv_min: Annotated[float, msgspec.Meta(ge=0)] | None = None
    ltv_max: Annotated[float, msgspec.Meta(ge=0)] | None = None


class FrequencyCaps(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    minute: int | None = None
    hour: int | None = None
    day: int | None = None


class DspLineItem(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """The campaign's line item on an external DSP that Contrail routes to: the DSP's configured name (dsp.platforms)
    and the campaign id its bids carry (OpenRTB `cid`). Those bids, and their wins, count in the campaign's report."""
    platform: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    cid: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


# Where a campaign reaches people: "display" bids in auctions; the others are the activation channels
# (POST /v1/channels/activate). An approval rule may ask more approvers for some (campaigns.approval_rules).
ActivationChannel = Literal["in_store", "push", "in_app", "sms", "email", "web", "paid_media"]
CampaignChannel = Literal["display", ActivationChannel]


# The workflow's states (app/campaigns/workflow.py has the transitions); only a live campaign bids or activates.
CampaignState = Literal["draft", "in_review", "approved", "scheduled", "live", "paused", "completed", "archived",
                        "rejected"]
STATES: tuple[str, ...] = ("draft", "in_review", "approved", "scheduled", "live", "paused", "completed", "archived",
                           "rejected")


class Revision(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """Changes to a running (live or paused) campaign that wait for approval; the running version keeps serving
    until enough approvers accept them. A field left None is not changed."""
    submitted_by: str
    submitted_at: float
    rule: str
    approvals_required: int
    approvals: list[str] = []
    bid_cap_micros: int | None = None
    daily_budget_micros: int | None = None
    targeting: Targeting | None = None
    creatives: list[Creative] | None = None
    channels: list[str] | None = None
    editors: list[str] = []  # everyone whose changes it holds (submitted_by last): none of them may approve it


class Campaign(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: str
    name: str
    advertiser_domain: str
    bid_cap_micros: int            # highest CPM we pay, USD micros
    daily_budget_micros: int       # USD micros per UTC day
    state: CampaignState = "draft"
    categories: list[str] = []     # IAB content categories of the ads
    app_bundle: str | None = None  # the advertised app, checked against bapp
    deal_ids: list[str] = []       # PMP deals this campaign may bid on
    offer_ids: list[str] = []      # retail offers or products it promotes
    targeting: Targeting = Targeting()
    frequency_caps: FrequencyCaps = FrequencyCaps()
    creatives: list[Creative] = []
    created_at: float = 0.0
    # Value bidding: the share of the customer's predicted lifetime value this campaign bids as its CPM (see
    # app/bidding/processor.py ValuePricing); None = it bids the auction's price.
    value_share: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    # Where it reaches people (CampaignChannel; stored as text, so a campaign written before the names were
    # checked still loads). An approval rule may ask more approvers for some channels (campaigns.approval_rules).
    channels: list[str] = []
    starts_at: float | None = None  # when it goes live once approved (None: when scheduled)
    ends_at: float | None = None    # when it completes (None: it runs until paused or archived)
    created_by: str = ""            # the principal (scope) that created it, and the last to edit it (a system's
    edited_by: str = ""             # edit, such as the asset sync's, is no one's): neither may approve it
    approval_rule: str = ""         # the rule matched when it was last submitted
    approvals_required: int = 0
    approvals: list[str] = []       # who approved the version under review
    pending: Revision | None = None  # changes to the running version, under review
    dsp_line_items: list[DspLineItem] = []  # its line items on the DSPs Contrail routes to (report attribution)
    # Everyone who edited it before its approval (the version under review is theirs too): none of them may
    # approve it. Emptied by its approval; later changes list theirs in `pending.editors`.
    editors: list[str] = []


# The counters of one campaign-hour in the reports' hourly totals, in storage order (app/campaigns/reports.py).
REPORT_COUNTERS = ("bids", "wins", "impressions", "spend_micros", "clearing_micros", "losses", "clicks", "conversions",
                   "revenue_cents")


class HistoryEntry(msgspec.Struct, frozen=True, gc=False):
    """One step of a campaign's workflow: who moved it, when, from which state to which, and why."""
    at: float
    actor: str
    action: str      # create, submit, approve, reject, schedule, start, pause, resume, complete, archive, edit...
    from_state: str
    to_state: str
    comment: str = ""


class ReviewTask(msgspec.Struct, frozen=True, gc=False):
    """A campaign's review task: opened when it went to review; `status` opening (an attempt under way), open,
    in_progress, done, or failed (not opened yet: `error` says why, `attempts` how often it was tried); and, no
    longer synced, closed (its review ended in Contrail first) or given_up (never opened, its attempts used up).
    `synced_at`: when a sync last looked at it (`error`: what failed then)."""
    campaign_id: str
    opened_at: float
    tool: str
    task_id: str
    task_key: str
    url: str
    status: str
    synced_at: float
    error: str
    attempts: int


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Campaign).decode
