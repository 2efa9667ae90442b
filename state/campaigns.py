"""Advertising campaigns and their creatives, hot in memory, durable in SQLite."""

from __future__ import annotations

import logging
import typing
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi

from state.text import whole

log = logging.getLogger("contrail.campaigns")

MediaFormat = Literal["banner", "video", "audio", "native"]

# Input limits. They are checked wherever a campaign, its targeting, its caps or a creative is decoded from a request
# (create, PATCH, POST .../creatives); a campaign stored before a limit was tightened still loads (`_decode`).
# A creative's id is an arm of the campaign's offer-selection policy, named by reward signals (`arm`, 1-128
# characters) and by the console's form (64): 1 to 64 characters, unique within the campaign (app/bidding/campaigns.py).
CreativeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_CREATIVES = 1_000      # creatives of one campaign (running, or under review)
MAX_MARKUP = 100_000       # characters of a creative's markup, as the console's form allows
MAX_PIXELS = 10_000        # a creative's width and height, as an asset import's w and h
# A size in pixels: at least 1, as the bidder reads OpenRTB sizes (app/bidding/openrtb.py Size).
Pixels = Annotated[int, msgspec.Meta(ge=1, le=MAX_PIXELS)]
Mime = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]  # RFC 6838: type and subtype, 127 each
# A country as OpenRTB's geo.country gives it (ISO-3166-1 alpha-3; alpha-2 is taken too): 2 or 3 capital letters.
Country = Annotated[str, msgspec.Meta(min_length=2, max_length=3, pattern=whole(r"[A-Z]{2,3}"))]
# OpenRTB 2.6 device types (AdCOM): 1 mobile/tablet, 2 PC, 3 connected TV, 4 phone, 5 tablet, 6 connected device,
# 7 set-top box, 8 out-of-home.
DeviceType = Annotated[int, msgspec.Meta(ge=1, le=8)]
# Impressions a user may see of the campaign per window: at least 1 (0 would never show it), at most a million (far
# past any real cap, and exact where several nodes count them: Redis's Lua numbers are doubles).
Cap = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class Creative(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    id: CreativeId
    format: MediaFormat
    markup: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MARKUP)]
    w: Pixels | None = None
    h: Pixels | None = None
    mimes: Annotated[list[Mime], msgspec.Meta(max_length=64)] = []
    # Imported from the team's digital asset management: which library, the asset's id there and its version (a
    # sync picks up newer versions).
    dam: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    dam_id: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    dam_version: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class Targeting(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    # ISO-3166-1 alpha-3 as OpenRTB sends them; empty = anywhere
    countries: Annotated[list[Country], msgspec.Meta(max_length=300)] = []
    device_types: Annotated[list[DeviceType], msgspec.Meta(max_length=8)] = []  # OpenRTB devicetype; empty = any
    formats: Annotated[list[MediaFormat], msgspec.Meta(max_length=4)] = []  # empty = any
    # Customers whose predicted lifetime value (retail currency) is in this band; None = open at that end.
    # A campaign with a band bids only on users with a known value whose personal data may be used.
    ltv_min: Annotated[float, msgspec.Meta(ge=0)] | None = None
    ltv_max: Annotated[float, msgspec.Meta(ge=0)] | None = None


class FrequencyCaps(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    minute: Cap | None = None
    hour: Cap | None = None
    day: Cap | None = None


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


def _unlimited(t: mi.Type, twins: dict[type, type]) -> Any:
    """The Python type that `t` describes, without its limits: a struct's twin (made once, in `twins`) has its fields
    and defaults with their limits left out."""
    if isinstance(t, mi.StructType):
        if t.cls not in twins:
            fields = [(f.name, _unlimited(f.type, twins),
                       msgspec.field(name=f.encode_name) if f.required else
                       msgspec.field(default=f.default, name=f.encode_name) if f.default is not msgspec.NODEFAULT else
                       msgspec.field(default_factory=f.default_factory, name=f.encode_name))
                      for f in t.fields]
            twins[t.cls] = msgspec.defstruct(f"Stored{t.cls.__name__}", fields, frozen=True,
                                             forbid_unknown_fields=t.forbid_unknown_fields)
        return twins[t.cls]
    if isinstance(t, mi.ListType):
        return list[_unlimited(t.item_type, twins)]  # type: ignore[misc]
    if isinstance(t, mi.UnionType):
        return typing.Union[tuple(_unlimited(u, twins) for u in t.types)]  # noqa: UP007
    if isinstance(t, mi.LiteralType):
        return Literal[t.values]
    return {mi.StrType: str, mi.IntType: int, mi.FloatType: float, mi.BoolType: bool,
            mi.NoneType: type(None)}[type(t)]


_TWINS: dict[type, type] = {}
_decode_unlimited = msgspec.json.Decoder(_unlimited(mi.type_info(Campaign), _TWINS)).decode
_REAL = {twin: real for real, twin in _TWINS.items()}


def _real(value: Any) -> Any:
    """A value decoded into the twins, made of the real structs (their constructors check no limits)."""
    real = _REAL.get(type(value))
    if real is not None:
        return real(**{name: _real(getattr(value, name)) for name in value.__struct_fields__})
    if isinstance(value, list):
        return [_real(v) for v in value]
    return value


_encode = msgspec.json.Encoder().encode
_decode_checked = msgspec.json.Decoder(Campaign).decode


def _decode(body: str | bytes) -> Campaign:
    """A stored campaign. One stored before an input limit was tightened (a creative without an id, 100,000
    countries...) still loads, as it was, with a warning: the limits refuse such input, they never stop a start.
    Its types are still checked: a row that is not a campaign at all raises."""
    try:
        return _decode_checked(body)
    except msgspec.ValidationError as exc:
        campaign: Campaign = _real(_decode_unlimited(body))
        log.warning("a campaign is stored with values its input limits now refuse; loaded as stored",
                    extra={"campaign_id": campaign.id, "error": str(exc)[:300]})
        return campaign
