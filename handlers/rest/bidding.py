"""OpenRTB bidding over REST, notices, profiles, inference providers (campaigns: handlers/rest/campaigns.py)."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from aiohttp import web

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
from state.profiles import Profile

EXCHANGE = ("exchange", "admin")
ADMIN = ("admin",)


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


class ClickNotice(msgspec.Struct):
    """What a click notice URL carries (the handler reads it; checked first)."""
    bid: BidId


class LossNotice(msgspec.Struct):
    """What a loss notice URL carries (the handler reads it; checked first)."""
    bid: BidId
    reason: Annotated[str, msgspec.Meta(description="The OpenRTB loss reason code (${AUCTION_LOSS})")] | None = None
    price: Price | None = None


def _notice(kind: str):
    """The declaration of a win, billing, loss or click notice endpoint."""
    if kind == "click":
        return endpoint("Click notice for a bid (called by the ad's click tracker); repeats change nothing; a click "
                        "on a bid recorded as lost is 409", tags=("bidding",), response=NoticeResult,
                        errors=(404, 409), params=ClickNotice)
    return endpoint(f"{kind.capitalize()} notice for a bid (the URL in the bid's "
                    f"{ {'win': 'nurl', 'billing': 'burl', 'loss': 'lurl'}[kind]}); repeats change nothing",
                    tags=("bidding",), response=NoticeResult, errors=(404,),
                    params=LossNotice if kind == "loss" else PricedNotice)


def _bid_id(request: web.Request) -> str:
    bid_id = request.query.get("bid")
    if not bid_id:
        raise InvalidInput("bid is required")
    return bid_id


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


class BiddingApi:
    """OpenRTB bids over REST, their notices, profiles, the inference providers and the model.

    `nobid_body` is `bidding.nobid_body`: a no-bid answered 200 with its nbr reason instead of 204.
    `agent_id` (`{node_id}-rest`) goes in the `x-agent-id` header of every bid answer: a 204 or a 400 has no
    body to carry it, and the OpenRTB body stays as the exchange's contract has it.
    """

    def __init__(self, bid_gateway: BidGateway, notices: NoticeService,
                 profiles: ProfileCache, model: ModelHolder, providers: dict[str, Provider], batcher: Batcher,
                 clock: Clock, *, nobid_body: bool, agent_id: str = "") -> None:
        self._gateway = bid_gateway
        self._agent_id = agent_id  # `{node_id}-rest`, in the x-agent-id header of every bid answer
        self._notices = notices
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
        router.add_get("/v1/notices/click", self.click_notice)
        router.add_put("/v1/profiles/{user_id}", self.put_profile)
        router.add_get("/v1/inference/providers", self.providers)

    @endpoint("OpenRTB 2.6 bid request (exchange API key). 200 bid, 204 no-bid, 400 invalid (no body)",
              tags=("bidding",), roles=EXCHANGE, raw_body=BidRequest, response=BidResponse, also=(204,),
              empty=(204, 400), headers={"x-openrtb-version": {"type": "string"},
                                         "x-agent-id": {"type": "string"}},
              descriptions={200: "A bid (or, with bidding.nobid_body, a no-bid with its nbr reason)", 204: "No bid",
                            400: "An invalid OpenRTB request: no body, as OpenRTB answers (a body that cannot be "
                                 "read at all, or the credentials, get the JSON error)"},
              request_headers=[{"name": "x-openrtb-version", "in": "header", "required": False,
                                "schema": {"type": "string"}, "description": "Echoed back; 2.6 when absent"}])
    async def bid(self, request: web.Request, principal) -> web.StreamResponse:
        started = time.perf_counter()
        raw = await request.read()
        version = request.headers.get("x-openrtb-version", "2.6")
        headers = {"x-openrtb-version": version, "x-agent-id": self._agent_id}
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

    @_notice("click")
    async def click_notice(self, request: web.Request, principal) -> web.Response:
        bid_id = _bid_id(request)
        return json_response(await self._notices.click(bid_id))

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
