"""OpenRTB bidding over REST, notices, campaigns, profiles, inference providers."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app import keys
from app.bidding.openrtb import BidRequest, BidResponse
from app.bidding.profiles import check_shapes
from app.errors import InvalidInput
from handlers.rest.common import endpoint, json_response
from state.campaigns import Campaign, Creative, FrequencyCaps, Targeting
from state.profiles import Profile

EXCHANGE = ("exchange", "admin")
ADMIN = ("admin",)
Micros = Annotated[int, msgspec.Meta(gt=0, le=10**12)]


@endpoint("OpenRTB 2.6 bid request (exchange API key). 200 bid, 204 no-bid, 400 invalid (no body)",
          tags=("bidding",), roles=EXCHANGE, raw_body=BidRequest, response=BidResponse, also=(204,),
          empty=(204, 400), headers={"x-openrtb-version": {"type": "string"}},
          descriptions={200: "A bid (or, with bidding.nobid_body, a no-bid with its nbr reason)", 204: "No bid",
                        400: "An invalid OpenRTB request: no body, as OpenRTB answers (a body that cannot be "
                             "read at all, or the credentials, get the JSON error)"},
          request_headers=[{"name": "x-openrtb-version", "in": "header", "required": False,
                            "schema": {"type": "string"}, "description": "Echoed back; 2.6 when absent"}])
async def bid(request: web.Request, principal) -> web.StreamResponse:
    started = time.perf_counter()
    raw = await request.read()
    version = request.headers.get("x-openrtb-version", "2.6")
    headers = {"x-openrtb-version": version}
    answer = await request.app[keys.BID_GATEWAY].answer(raw, "rest", started)
    if answer.invalid is not None:
        return web.Response(status=400, headers=headers)
    body = answer.body(nbr_body=request.app[keys.CONFIG].bidding.nobid_body)
    if body is None:
        return web.Response(status=204, headers=headers)
    response = web.Response(body=body, content_type="application/json", headers=headers)
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression(web.ContentCoding.gzip)
    return response


class NoticeResult(msgspec.Struct):
    bid_id: str
    recorded: bool
    charged: bool


BidId = Annotated[str, msgspec.Meta(min_length=1, description="The bid's id, as in the notice URL")]
Price = Annotated[str, msgspec.Meta(description="The clearing CPM the exchange substituted for ${AUCTION_PRICE}")]


class PricedNotice(msgspec.Struct):
    """What a win or billing notice URL carries (the handler reads it; checked first)."""
    bid: BidId
    price: Price


class LossNotice(msgspec.Struct):
    """What a loss notice URL carries (the handler reads it; checked first)."""
    bid: BidId
    reason: Annotated[str, msgspec.Meta(description="The OpenRTB loss reason code (${AUCTION_LOSS})")] | None = None
    price: Price | None = None


def _notice(kind: str):
    @endpoint(f"{kind.capitalize()} notice for a bid (the URL in the bid's "
              f"{ {'win': 'nurl', 'billing': 'burl', 'loss': 'lurl'}[kind]}); repeats change nothing",
              tags=("bidding",), response=NoticeResult, errors=(404,),
              params=LossNotice if kind == "loss" else PricedNotice)
    async def handler(request: web.Request, principal) -> web.Response:
        q = request.query
        bid_id = q.get("bid")
        if not bid_id:
            raise InvalidInput("bid is required")
        notices = request.app[keys.NOTICES]
        if kind == "win":
            result = await notices.win(bid_id, q.get("price"))
        elif kind == "billing":
            result = await notices.billing(bid_id, q.get("price"))
        else:
            result = await notices.loss(bid_id, q.get("reason"), q.get("price"))
        return json_response(result)
    handler.__name__ = f"{kind}_notice"
    return handler


class NewCampaign(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    advertiser_domain: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    bid_cap_micros: Micros
    daily_budget_micros: Micros
    id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}$")] | None = None
    status: Literal["active", "paused"] = "active"
    categories: list[str] = []
    app_bundle: str | None = None
    deal_ids: list[str] = []
    offer_ids: list[str] = []
    targeting: Targeting = Targeting()
    frequency_caps: FrequencyCaps = FrequencyCaps()
    creatives: list[Creative] = []


class CampaignPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["active", "paused"] | None = None
    bid_cap_micros: Micros | None = None
    daily_budget_micros: Micros | None = None


class CampaignList(msgspec.Struct):
    items: list[Campaign]


@endpoint("Create a campaign", tags=("campaigns",), roles=ADMIN, body=NewCampaign, response=Campaign, status=201,
          errors=(409,))
async def create_campaign(request: web.Request, principal, body: NewCampaign) -> web.Response:
    service = request.app[keys.CAMPAIGNS]
    fields = msgspec.structs.asdict(body)
    fields["id"] = body.id or service.new_id()
    campaign = await service.create(Campaign(**fields))
    await request.app[keys.ADMIN].record(principal, "campaign.create", campaign.id, name=campaign.name)
    return json_response(campaign, status=201)


@endpoint("List campaigns", tags=("campaigns",), roles=ADMIN, response=CampaignList)
async def list_campaigns(request: web.Request, principal) -> web.Response:
    return json_response(CampaignList(request.app[keys.CAMPAIGNS].list()))


@endpoint("Get a campaign", tags=("campaigns",), roles=ADMIN, response=Campaign, errors=(404,))
async def get_campaign(request: web.Request, principal) -> web.Response:
    return json_response(request.app[keys.CAMPAIGNS].get(request.match_info["campaign_id"]))


@endpoint("Pause, resume or re-budget a campaign", tags=("campaigns",), roles=ADMIN, body=CampaignPatch,
          response=Campaign, errors=(404,))
async def patch_campaign(request: web.Request, principal, body: CampaignPatch) -> web.Response:
    campaign_id = request.match_info["campaign_id"]
    campaign = await request.app[keys.CAMPAIGNS].update(campaign_id, **msgspec.structs.asdict(body))
    await request.app[keys.ADMIN].record(principal, "campaign.update", campaign_id,
                                         **{k: v for k, v in msgspec.structs.asdict(body).items() if v is not None})
    return json_response(campaign)


@endpoint("Add a creative to a campaign", tags=("campaigns",), roles=ADMIN, body=Creative, response=Campaign,
          status=201, errors=(404, 409))
async def add_creative(request: web.Request, principal, body: Creative) -> web.Response:
    campaign_id = request.match_info["campaign_id"]
    campaign = await request.app[keys.CAMPAIGNS].add_creative(campaign_id, body)
    await request.app[keys.ADMIN].record(principal, "creative.create", f"{campaign_id}/{body.id}")
    return json_response(campaign, status=201)


class ProfileBody(msgspec.Struct, forbid_unknown_fields=True):
    interests: Annotated[list[Annotated[float, msgspec.Meta(ge=0, le=1)]], msgspec.Meta(max_length=64)] = []
    segments: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=63)]], msgspec.Meta(max_length=64)] = []
    loyalty: Annotated[list[Annotated[float, msgspec.Meta(ge=0, le=100)]], msgspec.Meta(max_length=8)] = []
    last_seen: Annotated[float, msgspec.Meta(ge=0)] | None = None


@endpoint("Write a bidding profile through both cache tiers", tags=("bidding",), roles=("partner", "admin"),
          body=ProfileBody, response=Profile, errors=(422,))
async def put_profile(request: web.Request, principal, body: ProfileBody) -> web.Response:
    user_id = request.match_info["user_id"]
    if len(user_id) > 200:
        raise InvalidInput("user_id is longer than 200 characters")
    check_shapes(interests=body.interests, loyalty=body.loyalty)
    profile = Profile(user_id, body.interests, body.segments, body.loyalty, body.last_seen,
                      request.app[keys.CLOCK].now())
    await request.app[keys.PROFILES].put(profile)
    return json_response(profile)


class ProviderView(msgspec.Struct):
    name: str
    precision: str
    max_batch: int
    active: bool
    calls: int
    rows: int
    device_batches: int
    modeled_us: float


class ProvidersView(msgspec.Struct):
    model_version: str
    batches: int
    overloaded: int
    timeouts: int
    providers: list[ProviderView]


@endpoint("Inference providers with their counters", tags=("bidding",), roles=("admin", "partner"),
          response=ProvidersView)
async def providers(request: web.Request, principal) -> web.Response:
    platform = request.app[keys.PLATFORM_SERVICES]
    active = platform.batcher.provider.name
    views = [ProviderView(p.name, p.precision, p.max_batch, p.name == active, p.stats.calls, p.stats.rows,
                          p.stats.device_batches, round(p.stats.modeled_us, 1)) for p in platform.providers.values()]
    b = platform.batcher
    return json_response(ProvidersView(platform.model.current.version, b.batches, b.overloaded, b.timeouts, views))


class ReloadBody(msgspec.Struct, forbid_unknown_fields=True):
    path: str | None = None


class ReloadResult(msgspec.Struct):
    version: str


@endpoint("Reload the scoring model (atomic swap; in-flight scoring is unaffected)", tags=("bidding",),
          roles=ADMIN, body=ReloadBody, response=ReloadResult)
async def reload_model(request: web.Request, principal, body: ReloadBody) -> web.Response:
    net = await request.app[keys.PLATFORM_SERVICES].model.reload(body.path)
    await request.app[keys.ADMIN].record(principal, "model.reload", net.version, path=body.path)
    return json_response(ReloadResult(net.version))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/bid", bid)
    for kind in ("win", "billing", "loss"):
        app.router.add_get(f"/v1/notices/{kind}", _notice(kind))
    app.router.add_post("/v1/admin/campaigns", create_campaign)
    app.router.add_get("/v1/admin/campaigns", list_campaigns)
    app.router.add_get("/v1/admin/campaigns/{campaign_id}", get_campaign)
    app.router.add_patch("/v1/admin/campaigns/{campaign_id}", patch_campaign)
    app.router.add_post("/v1/admin/campaigns/{campaign_id}/creatives", add_creative)
    app.router.add_put("/v1/profiles/{user_id}", put_profile)
    app.router.add_get("/v1/inference/providers", providers)
    app.router.add_post("/v1/admin/model/reload", reload_model)
