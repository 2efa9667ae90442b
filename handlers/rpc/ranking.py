"""ranking.RankingService: served from the in-process acceptance model (the client Contrail uses to rank on a
remote RankingService is adapters/grpc/ranker.py)."""

from __future__ import annotations

import math

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from app.retail.offers import CABINS
from app.retail.pricing import SEGMENTS, day_start
from app.retail.ranking import OfferSummary, Ranker, SearchContext
from handlers.rpc import ranking_grpc, ranking_pb2
from handlers.rpc.server import recv_one

MAX_OFFERS = 100


def _context(user: ranking_pb2.UserContext, search: ranking_pb2.SearchContext) -> SearchContext:
    """The search as the ranker sees it; what search refuses (REST /v1/offers/search) is refused here too."""
    if not 1 <= search.passengers <= 50:
        raise GRPCError(Status.INVALID_ARGUMENT, "search_context.passengers must be 1 to 50")
    if search.departure_date and day_start(search.departure_date) is None:
        raise GRPCError(Status.INVALID_ARGUMENT, "search_context.departure_date must be a YYYY-MM-DD calendar date")
    if search.cabin_class and search.cabin_class not in CABINS:
        raise GRPCError(Status.INVALID_ARGUMENT, f"search_context.cabin_class must be one of {', '.join(CABINS)}")
    if search.user_segment and search.user_segment not in SEGMENTS:
        raise GRPCError(Status.INVALID_ARGUMENT, f"search_context.user_segment must be one of {', '.join(SEGMENTS)}")
    return SearchContext(user.user_id, user.is_guest, user.session_id, search.origin, search.destination,
                         search.departure_date, search.passengers, search.cabin_class or "economy",
                         search.user_segment or "economy")


def _summary(o: ranking_pb2.OfferFeatures) -> OfferSummary:
    if not math.isfinite(o.total_price_nuc) or not 0 <= o.total_price_nuc <= 1e7:
        raise GRPCError(Status.INVALID_ARGUMENT, f"offer {o.offer_id}: total_price_nuc must be 0 to 10,000,000")
    if not math.isfinite(o.discount_percentage) or not 0 <= o.discount_percentage <= 100:
        raise GRPCError(Status.INVALID_ARGUMENT, f"offer {o.offer_id}: discount_percentage must be 0 to 100")
    return OfferSummary(o.offer_id, round(o.total_price_nuc * 100), tuple(o.product_codes), o.discount_percentage)


class RankingService(ranking_grpc.RankingServiceBase):
    ROLES = ("partner", "admin")

    def __init__(self, ranker: Ranker) -> None:
        self._ranker = ranker

    async def PredictConversion(self, stream: Stream[ranking_pb2.PredictConversionRequest,
                                                     ranking_pb2.PredictConversionResponse]) -> None:
        request = await recv_one(stream)
        ctx = _context(request.user_context, request.search_context)
        if not request.HasField("offer_features"):  # an absent offer would be scored as a free one
            raise GRPCError(Status.INVALID_ARGUMENT, "offer_features is required")
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
