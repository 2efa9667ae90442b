"""DSP routing over REST: the fan-out bid endpoint, wins (API and notice URLs) and per-DSP status."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from aiohttp import web

from app.bidding.openrtb import BidRequest
from app.dsp.router import DspBidResponse, DspRouter
from app.dsp.status import DspStatus, DspStatusList
from app.dsp.wins import DspWins, WinResult
from app.errors import InvalidInput
from handlers.rest.common import endpoint, json_response

CALLERS = ("exchange", "partner", "admin")
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="The DSP's configured name")]
BidId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="The bid's id in Contrail's answer")]


class WinBody(msgspec.Struct, forbid_unknown_fields=True):
    platform: Name
    bid_id: BidId
    win_price: Annotated[float, msgspec.Meta(ge=0, description="The clearing CPM, bidding currency")]


class DspNotice(msgspec.Struct):
    """What a DSP bid's rewritten nurl / burl carries (the handler reads it; checked first)."""
    platform: Name
    bid: BidId
    price: Annotated[str, msgspec.Meta(description="The clearing CPM the exchange substituted for ${AUCTION_PRICE}")]


class DspApi:
    def __init__(self, router: DspRouter, wins: DspWins, status: DspStatus) -> None:
        self._router = router
        self._wins = wins
        self._status = status

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/dsp/bid", self.bid)
        router.add_post("/v1/dsp/win", self.win)
        router.add_get("/v1/dsp/notices/win", self.win_notice)
        router.add_get("/v1/dsp/notices/billing", self.billing_notice)
        router.add_get("/v1/dsp/status", self.status)

    @endpoint("OpenRTB 2.6 bid request fanned out to the configured DSPs (and Contrail's own bidder): the best bid "
              "per imp, `seat` naming the DSP. 200 bid, 204 no-bid, 400 invalid (no body)",
              tags=("dsp",), roles=CALLERS, raw_body=BidRequest, response=DspBidResponse, also=(204,),
              empty=(204, 400), headers={"x-openrtb-version": {"type": "string"}},
              descriptions={200: "The best bid per imp (with `dsp.debug` or `test: 1`, also a no-bid with `nbr` and "
                                 "the per-DSP report in `ext`)", 204: "No bid",
                            400: "An invalid OpenRTB request: no body, as OpenRTB answers"})
    async def bid(self, request: web.Request, principal) -> web.StreamResponse:
        started = time.perf_counter()
        raw = await request.read()
        headers = {"x-openrtb-version": request.headers.get("x-openrtb-version", "2.6")}
        answer = await self._router.route(raw, started)
        if answer.invalid is not None:
            return web.Response(status=400, headers=headers)
        if answer.body is None:
            return web.Response(status=204, headers=headers)
        return web.Response(body=answer.body, content_type="application/json", headers=headers)

    @endpoint("Record a DSP's win (and spend) for a bid of a /v1/dsp/bid answer; repeats change nothing",
              tags=("dsp",), roles=CALLERS, body=WinBody, response=WinResult, errors=(404,))
    async def win(self, request: web.Request, principal, body: WinBody) -> web.Response:
        return json_response(await self._wins.win(body.platform, body.bid_id, body.win_price, "api"))

    async def _notice(self, request: web.Request, source: str) -> web.Response:
        q = request.query
        platform, bid = q.get("platform"), q.get("bid")
        if not platform or not bid:
            raise InvalidInput("platform and bid are required")
        return json_response(await self._wins.win(platform, bid, q.get("price"), source))

    @endpoint("Win notice of a DSP bid (its rewritten nurl): records the win, then calls the DSP's own nurl",
              tags=("dsp",), response=WinResult, errors=(404,), params=DspNotice)
    async def win_notice(self, request: web.Request, principal) -> web.Response:
        return await self._notice(request, "nurl")

    @endpoint("Billing notice of a DSP bid (its rewritten burl): records the win, then calls the DSP's own burl",
              tags=("dsp",), response=WinResult, errors=(404,), params=DspNotice)
    async def billing_notice(self, request: web.Request, principal) -> web.Response:
        return await self._notice(request, "burl")

    @endpoint("Each DSP: enabled, healthy (breaker), calls, bids, today's wins and spend, p50/p99 latency",
              tags=("dsp",), roles=("admin", "partner"), response=DspStatusList)
    async def status(self, request: web.Request, principal) -> web.Response:
        return json_response(await self._status.status())
