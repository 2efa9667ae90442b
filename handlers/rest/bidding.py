"""OpenRTB bidding over REST, notices, campaigns, profiles, inference providers."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app.bidding.campaigns import CLEAR, CampaignService, CampaignSpend
from app.bidding.gateway import BidGateway
from app.bidding.models import ModelHolder
from app.bidding.notices import NoticeService
from app.bidding.openrtb import BidRequest, BidResponse
from app.bidding.profiles import ProfileCache, check_shapes
from app.errors import InvalidInput
from app.runtime.clock import Clock
from handlers.rest.common import endpoint, json_response
from ml.batcher import Batcher
from ml.providers import Provider
from state.campaigns import Campaign, Creative, FrequencyCaps, Targeting
from state.profiles import Profile

EXCHANGE = ("exchange", "admin")
ADMIN = ("admin",)
Micros = Annotated[int, msgspec.Meta(gt=0, le=10**12)]


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
    """The declaration of a win, billing or loss notice endpoint."""
    return endpoint(f"{kind.capitalize()} notice for a bid (the URL in the bid's "
                    f"{ {'win': 'nurl', 'billing': 'burl', 'loss': 'lurl'}[kind]}); repeats change nothing",
                    tags=("bidding",), response=NoticeResult, errors=(404,),
                    params=LossNotice if kind == "loss" else PricedNotice)


def _bid_id(request: web.Request) -> str:
    bid_id = request.query.get("bid")
    if not bid_id:
        raise InvalidInput("bid is required")
    return bid_id


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
    # Bid what the customer is worth: this share of their predicted lifetime value (null: the auction's price).
    value_share: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None


class CampaignPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["active", "paused"] | None = None
    bid_cap_micros: Micros | None = None
    daily_budget_micros: Micros | None = None
    value_share: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None  # 0: stop bidding on value


class CampaignList(msgspec.Struct):
    items: list[Campaign]


class SpendReport(msgspec.Struct):
    day: str                    # the UTC day the figures are for (budgets and pacing run by UTC day)
    items: list[CampaignSpend]


class ProfileBody(msgspec.Struct, forbid_unknown_fields=True):
    interests: Annotated[list[Annotated[float, msgspec.Meta(ge=0, le=1)]], msgspec.Meta(max_length=64)] = []
    segments: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=63)]], msgspec.Meta(max_length=64)] = []
    loyalty: Annotated[list[Annotated[float, msgspec.Meta(ge=0, le=100)]], msgspec.Meta(max_length=8)] = []
    last_seen: Annotated[float, msgspec.Meta(ge=0)] | None = None


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


class ReloadBody(msgspec.Struct, forbid_unknown_fields=True):
    path: str | None = None


class ReloadResult(msgspec.Struct):
    version: str


class BiddingApi:
    """OpenRTB bids over REST, their notices, campaigns, profiles, the inference providers and the model.

    `nobid_body` is `bidding.nobid_body`: a no-bid answered 200 with its nbr reason instead of 204.
    """

    def __init__(self, bid_gateway: BidGateway, notices: NoticeService, campaigns: CampaignService,
                 profiles: ProfileCache, model: ModelHolder, providers: dict[str, Provider], batcher: Batcher,
                 clock: Clock, *, nobid_body: bool) -> None:
        self._gateway = bid_gateway
        self._notices = notices
        self._campaigns = campaigns
        self._profiles = profiles
        self._model = model
        self._providers = providers
        self._batcher = batcher
        self._clock = clock
        self._nobid_body = nobid_body

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/bid", self.bid)
        router.add_get("/v1/notices/win", self.win_notice)
        router.add_get("/v1/notices/billing", self.billing_notice)
        router.add_get("/v1/notices/loss", self.loss_notice)
        router.add_post("/v1/admin/campaigns", self.create_campaign)
        router.add_get("/v1/admin/campaigns", self.list_campaigns)
        router.add_get("/v1/admin/spend", self.spend)
        router.add_get("/v1/admin/campaigns/{campaign_id}", self.get_campaign)
        router.add_patch("/v1/admin/campaigns/{campaign_id}", self.patch_campaign)
        router.add_post("/v1/admin/campaigns/{campaign_id}/creatives", self.add_creative)
        router.add_put("/v1/profiles/{user_id}", self.put_profile)
        router.add_get("/v1/inference/providers", self.providers)
        router.add_post("/v1/admin/model/reload", self.reload_model)

    @endpoint("OpenRTB 2.6 bid request (exchange API key). 200 bid, 204 no-bid, 400 invalid (no body)",
              tags=("bidding",), roles=EXCHANGE, raw_body=BidRequest, response=BidResponse, also=(204,),
              empty=(204, 400), headers={"x-openrtb-version": {"type": "string"}},
              descriptions={200: "A bid (or, with bidding.nobid_body, a no-bid with its nbr reason)", 204: "No bid",
                            400: "An invalid OpenRTB request: no body, as OpenRTB answers (a body that cannot be "
                                 "read at all, or the credentials, get the JSON error)"},
              request_headers=[{"name": "x-openrtb-version", "in": "header", "required": False,
                                "schema": {"type": "string"}, "description": "Echoed back; 2.6 when absent"}])
    async def bid(self, request: web.Request, principal) -> web.StreamResponse:
        started = time.perf_counter()
        raw = await request.read()
        version = request.headers.get("x-openrtb-version", "2.6")
        headers = {"x-openrtb-version": version}
        answer = await self._gateway.answer(raw, "rest", started)
        if answer.invalid is not None:
            return web.Response(status=400, headers=headers)
        body = answer.body(nbr_body=self._nobid_body)
        if body is None:
            return web.Response(status=204, headers=headers)
        response = web.Response(body=body, content_type="application/json", headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    @_notice("win")
    async def win_notice(self, request: web.Request, principal) -> web.Response:
        bid_id = _bid_id(request)
        return json_response(await self._notices.win(bid_id, request.query.get("price")))

    @_notice("billing")
    async def billing_notice(self, request: web.Request, principal) -> web.Response:
        bid_id = _bid_id(request)
        return json_response(await self._notices.billing(bid_id, request.query.get("price")))

    @_notice("loss")
    async def loss_notice(self, request: web.Request, principal) -> web.Response:
        bid_id = _bid_id(request)
        q = request.query
        return json_response(await self._notices.loss(bid_id, q.get("reason"), q.get("price")))

    @endpoint("Create a campaign", tags=("campaigns",), roles=ADMIN, body=NewCampaign, response=Campaign,
              status=201, errors=(409,))
    async def create_campaign(self, request: web.Request, principal, body: NewCampaign) -> web.Response:
        fields = msgspec.structs.asdict(body)
        fields["id"] = body.id or self._campaigns.new_id()
        campaign = await self._campaigns.create(principal, Campaign(**fields))
        return json_response(campaign, status=201)

    @endpoint("List campaigns", tags=("campaigns",), roles=ADMIN, response=CampaignList)
    async def list_campaigns(self, request: web.Request, principal) -> web.Response:
        return json_response(CampaignList(self._campaigns.list()))

    @endpoint("Today's spend per campaign: budget used, pacing, win rate and average clearing price",
              tags=("campaigns",), roles=ADMIN, response=SpendReport)
    async def spend(self, request: web.Request, principal) -> web.Response:
        day, lines = await self._campaigns.spend_today(self._clock.now())
        return json_response(SpendReport(day, lines))

    @endpoint("Get a campaign", tags=("campaigns",), roles=ADMIN, response=Campaign, errors=(404,))
    async def get_campaign(self, request: web.Request, principal) -> web.Response:
        return json_response(self._campaigns.get(request.match_info["campaign_id"]))

    @endpoint("Pause, resume, re-budget a campaign or change its value share (0 stops value bidding)",
              tags=("campaigns",), roles=ADMIN, body=CampaignPatch,
              response=Campaign, errors=(404,))
    async def patch_campaign(self, request: web.Request, principal, body: CampaignPatch) -> web.Response:
        changes = msgspec.structs.asdict(body)
        if changes["value_share"] == 0:
            changes["value_share"] = CLEAR
        campaign = await self._campaigns.update(principal, request.match_info["campaign_id"], **changes)
        return json_response(campaign)

    @endpoint("Add a creative to a campaign", tags=("campaigns",), roles=ADMIN, body=Creative, response=Campaign,
              status=201, errors=(404, 409))
    async def add_creative(self, request: web.Request, principal, body: Creative) -> web.Response:
        campaign = await self._campaigns.add_creative(principal, request.match_info["campaign_id"], body)
        return json_response(campaign, status=201)

    @endpoint("Write a bidding profile through both cache tiers", tags=("bidding",), roles=("partner", "admin"),
              body=ProfileBody, response=Profile, errors=(422,))
    async def put_profile(self, request: web.Request, principal, body: ProfileBody) -> web.Response:
        user_id = request.match_info["user_id"]
        if len(user_id) > 200:
            raise InvalidInput("user_id is longer than 200 characters")
        check_shapes(interests=body.interests, loyalty=body.loyalty)
        profile = Profile(user_id, body.interests, body.segments, body.loyalty, body.last_seen, self._clock.now())
        await self._profiles.put(profile)
        return json_response(profile)

    @endpoint("Inference providers with their counters", tags=("bidding",), roles=("admin", "partner"),
              response=ProvidersView)
    async def providers(self, request: web.Request, principal) -> web.Response:
        b = self._batcher
        active = b.provider.name
        views = [ProviderView(p.name, p.precision, p.max_batch, p.name == active, p.stats.calls, p.stats.rows,
                              p.stats.device_batches, round(p.stats.modeled_us, 1))
                 for p in self._providers.values()]
        return json_response(ProvidersView(self._model.current.version, b.batches, b.overloaded, b.timeouts, views))

    @endpoint("Reload the scoring model (atomic swap; in-flight scoring is unaffected)", tags=("bidding",),
              roles=ADMIN, body=ReloadBody, response=ReloadResult)
    async def reload_model(self, request: web.Request, principal, body: ReloadBody) -> web.Response:
        net = await self._model.reload(principal, body.path)
        return json_response(ReloadResult(net.version))
