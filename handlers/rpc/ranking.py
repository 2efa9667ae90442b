"""ranking.RankingService: served from the in-process acceptance model; and the client Contrail
uses to rank searches on a remote RankingService (see app/retail/ranking.py for the breaker)."""

from __future__ import annotations

import math

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from app.retail.ranking import OfferSummary, Ranker, SearchContext
from handlers.rpc import ranking_grpc, ranking_pb2
from handlers.rpc.server import recv_one

MAX_OFFERS = 100


def _context(user: ranking_pb2.UserContext, search: ranking_pb2.SearchContext) -> SearchContext:
    if not 1 <= search.passengers <= 50:
        raise GRPCError(Status.INVALID_ARGUMENT, "search_context.passengers must be 1 to 50")
    return SearchContext(user.user_id, user.is_guest, user.session_id, search.origin, search.destination,
                         search.departure_date, search.passengers, search.cabin_class or "economy",
                         search.user_segment or "economy")


def _summary(o: ranking_pb2.OfferFeatures) -> OfferSummary:
    if not math.isfinite(o.total_price_nuc) or not 0 <= o.total_price_nuc <= 1e7:
        raise GRPCError(Status.INVALID_ARGUMENT, f"offer {o.offer_id}: total_price_nuc must be 0 to 10,000,000")
    if not math.isfinite(o.discount_percentage) or not 0 <= o.discount_percentage <= 100:
        raise GRPCError(Status.INVALID_ARGUMENT, f"offer {o.offer_id}: discount_percentage must be 0 to 100")
    return OfferSummary(o.offer_id, round(o.total_price_nuc * 100), tuple(o.product_codes), o.discount_percentage)


def _features(o: OfferSummary) -> ranking_pb2.OfferFeatures:
    return ranking_pb2.OfferFeatures(offer_id=o.offer_id, total_price_nuc=o.total_cents / 100,
                                     product_codes=list(o.product_codes), discount_percentage=o.discount_percent)


class RankingService(ranking_grpc.RankingServiceBase):
    ROLES = ("partner", "admin")

    def __init__(self, ranker: Ranker) -> None:
        self._ranker = ranker

    async def PredictConversion(self, stream: Stream[ranking_pb2.PredictConversionRequest,
                                                     ranking_pb2.PredictConversionResponse]) -> None:
        request = await recv_one(stream)
        ctx = _context(request.user_context, request.search_context)
        [p] = self._ranker.local(ctx, [_summary(request.offer_features)])
        await stream.send_message(ranking_pb2.PredictConversionResponse(probability=p,
                                                                        model_version=self._ranker.model_version))

    async def RankOffers(self, stream: Stream[ranking_pb2.RankOffersRequest, ranking_pb2.RankOffersResponse]) -> None:
        request = await recv_one(stream)
        if len(request.offers) > MAX_OFFERS:
            raise GRPCError(Status.INVALID_ARGUMENT, f"at most {MAX_OFFERS} offers per call")
        ctx = _context(request.user_context, request.search_context)
        offers = [_summary(o) for o in request.offers]
        probabilities = self._ranker.local(ctx, offers) if offers else []
        order = sorted(range(len(offers)), key=lambda i: -probabilities[i])
        await stream.send_message(ranking_pb2.RankOffersResponse(
            offers=[ranking_pb2.RankedOffer(offer_id=offers[i].offer_id, probability=probabilities[i], rank=r)
                    for r, i in enumerate(order, 1)],
            model_version=self._ranker.model_version))


class RemoteRanker:
    """Calls a remote RankingService.RankOffers; answers probabilities in the order the offers were given."""

    def __init__(self, address: str, api_key: str = "") -> None:
        host, _, port = address.rpartition(":")
        self._channel = Channel(host, int(port))
        self._stub = ranking_grpc.RankingServiceStub(self._channel)
        self._metadata = {"x-api-key": api_key} if api_key else None

    async def __call__(self, ctx: SearchContext, offers: list[OfferSummary], timeout: float) -> list[float]:
        reply = await self._stub.RankOffers(ranking_pb2.RankOffersRequest(
            user_context=ranking_pb2.UserContext(user_id=ctx.user_id, is_guest=ctx.is_guest,
                                                 session_id=ctx.session_id),
            search_context=ranking_pb2.SearchContext(
                origin=ctx.origin, destination=ctx.destination, departure_date=ctx.departure_date,
                passengers=ctx.passengers, cabin_class=ctx.cabin, user_segment=ctx.segment),
            offers=[_features(o) for o in offers]), timeout=timeout, metadata=self._metadata)
        by_id = {r.offer_id: r.probability for r in reply.offers}
        missing = [o.offer_id for o in offers if o.offer_id not in by_id]
        if missing:
            raise ValueError(f"remote ranker left out {len(missing)} offer(s)")
        return [min(1.0, max(0.0, by_id[o.offer_id])) for o in offers]

    def close(self) -> None:
        self._channel.close()
