"""The client Contrail ranks searches with on a remote ranking.RankingService (see app/retail/ranking.py for the
breaker and the fallback)."""

from __future__ import annotations

from ssl import SSLContext

from grpclib.client import Channel

from adapters.grpc.deadline import deadline_is_timeout
from app.retail.ranking import OfferSummary, SearchContext
from app.runtime.tracing import outbound
from handlers.rpc import ranking_grpc, ranking_pb2


def _features(o: OfferSummary) -> ranking_pb2.OfferFeatures:
    return ranking_pb2.OfferFeatures(offer_id=o.offer_id, total_price_nuc=o.total_cents / 100,
                                     product_codes=list(o.product_codes), discount_percentage=o.discount_percent)


_RANK = "ranking.RankingService/RankOffers"
_ATTRIBUTES = {"rpc.system": "grpc", "rpc.service": "ranking.RankingService", "rpc.method": "RankOffers"}


class RemoteRanker:
    """Calls a remote RankingService.RankOffers; answers probabilities in the order the offers were given."""

    def __init__(self, address: str, api_key: str = "", ssl: SSLContext | None = None) -> None:
        host, _, port = address.rpartition(":")
        self._channel = Channel(host, int(port), ssl=ssl)  # ssl: verified TLS (adapters.tls.grpc_client_ssl)
        self._stub = ranking_grpc.RankingServiceStub(self._channel)
        self._metadata = {"x-api-key": api_key} if api_key else {}

    async def __call__(self, ctx: SearchContext, offers: list[OfferSummary], timeout: float) -> list[float]:
        request = ranking_pb2.RankOffersRequest(
            user_context=ranking_pb2.UserContext(user_id=ctx.user_id, is_guest=ctx.is_guest,
                                                 session_id=ctx.session_id),
            search_context=ranking_pb2.SearchContext(
                origin=ctx.origin, destination=ctx.destination, departure_date=ctx.departure_date,
                passengers=ctx.passengers, cabin_class=ctx.cabin, user_segment=ctx.segment),
            offers=[_features(o) for o in offers])
        with deadline_is_timeout("remote ranker", timeout), outbound(_RANK, _ATTRIBUTES) as carried:
            reply = await self._stub.RankOffers(request, timeout=timeout,
                                                metadata={**self._metadata, **carried} or None)
        by_id = {r.offer_id: r.probability for r in reply.offers}
        missing = [o.offer_id for o in offers if o.offer_id not in by_id]
        if missing:
            raise ValueError(f"remote ranker left out {len(missing)} offer(s)")
        return [min(1.0, max(0.0, by_id[o.offer_id])) for o in offers]

    def close(self) -> None:
        self._channel.close()
