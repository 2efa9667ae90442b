"""Offer ranking: rules, retraining from outcomes, the RankingService, and the remote ranker's breaker."""

import asyncio

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from app.main import GRPC, PLATFORM, create_app
from handlers.rpc import ranking_grpc, ranking_pb2
from tests.conftest import bearer, make_config
from tests.integration.retail.helpers import accept, pay, ranking_of, search, search_body, seed_catalog

PASSWORD = "correct horse battery"


async def _shop(aiohttp_client, tmp_path, clock, **overrides):
    client = await aiohttp_client(create_app(make_config(tmp_path, **overrides), clock=clock))
    await seed_catalog(client.app[PLATFORM], clock)
    return client, await bearer(client, "ranker@example.com", PASSWORD, "customer")


async def test_rules_rank_until_a_model_trained_on_paid_orders_beats_them(aiohttp_client, tmp_path, clock):
    client, headers = await _shop(aiohttp_client, tmp_path, clock, ranking__min_training_offers=40)
    resp = await client.post("/v1/offers/search", json=search_body(clock), headers=headers)
    body = await resp.json()
    assert body["ranked_by"] == "rules" and body["model_version"] == "rules"
    ranked = await ranking_of(client, body["offers"])
    by_bundle = {o["bundle"]: e["probability"] for o, e in zip(body["offers"], ranked, strict=True)}
    assert by_bundle == {"flight_only": 0.3, "comfort": 0.2, "premium": 0.08}
    platform = client.app[PLATFORM]
    assert not await platform.retrain_ranking_once()  # too few outcomes yet
    # Shoppers here pay only for the premium bundle (15 of the flight's 20 lounge places). They accept comfort as
    # well and never pay for it: the label is the paid order, so comfort must not be learnt as a winner.
    for _ in range(15):
        clock.advance(60)
        offers = await search(client, headers, clock)
        premium = next(o for o in offers if o["bundle"] == "premium")
        comfort = next(o for o in offers if o["bundle"] == "comfort")
        order = await (await accept(client, headers, premium["id"])).json()
        assert (await accept(client, headers, comfort["id"])).status == 201
        assert (await pay(client, headers, order["id"])).status == 200
    assert not await platform.retrain_ranking_once()  # their outcomes are not known yet
    clock.advance(platform.learning.acceptance.label_delay_s + 1)
    assert await platform.retrain_ranking_once()
    run = platform.learning.acceptance.last_run
    assert (run.rows, run.clicks, run.version) == (48, 15, "acceptance-1") and "30 accepted" in run.reason
    headers = await bearer(client, "ranker@example.com", PASSWORD, "customer")  # a new token: hours have passed
    body = await (await client.post("/v1/offers/search", json=search_body(clock), headers=headers)).json()
    assert body["ranked_by"] == "model" and body["model_version"] == "acceptance-1"
    ranked = await ranking_of(client, body["offers"])
    learnt = {o["bundle"]: e["probability"] for o, e in zip(body["offers"], ranked, strict=True)}
    assert learnt["premium"] > 0.5 > learnt["comfort"] and learnt["premium"] > learnt["flight_only"]


def _request(**offer) -> ranking_pb2.RankOffersRequest:
    return ranking_pb2.RankOffersRequest(
        user_context=ranking_pb2.UserContext(user_id="u1", is_guest=False, session_id="s1"),
        search_context=ranking_pb2.SearchContext(origin="LIS", destination="BCN", departure_date="2030-01-01",
                                                 passengers=1, cabin_class="economy", user_segment="economy"),
        offers=[ranking_pb2.OfferFeatures(offer_id="a", total_price_nuc=120.0, product_codes=["Flight"]),
                ranking_pb2.OfferFeatures(offer_id="b", total_price_nuc=300.0,
                                          product_codes=["Flight", "Seat", "Bag", "Meal"], **offer)])


async def test_ranking_service_over_grpc(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("partner", "partner")
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    stub = ranking_grpc.RankingServiceStub(channel)
    md = {"x-api-key": key}
    try:
        reply = await stub.RankOffers(_request(), metadata=md)
        assert [(r.offer_id, r.rank) for r in reply.offers] == [("a", 1), ("b", 2)]
        assert reply.offers[0].probability == pytest.approx(0.3) and reply.model_version == "rules"
        single = await stub.PredictConversion(ranking_pb2.PredictConversionRequest(
            user_context=_request().user_context, search_context=_request().search_context,
            offer_features=_request().offers[1]), metadata=md)
        assert single.probability == pytest.approx(0.2)
        with pytest.raises(GRPCError) as err:
            await stub.RankOffers(_request(discount_percentage=140), metadata=md)
        assert err.value.status == Status.INVALID_ARGUMENT and "discount_percentage" in err.value.message
        # What search refuses, ranking refuses: a date that is not on the calendar, a cabin or segment not sold.
        for field, value, needle in (("departure_date", "2026-02-30", "calendar date"),
                                     ("departure_date", "not-a-date", "calendar date"),
                                     ("departure_date", "2026-1-5", "calendar date"),
                                     ("cabin_class", "spaceship", "cabin_class must be one of economy"),
                                     ("user_segment", "vip", "user_segment must be one of")):
            request = _request()
            setattr(request.search_context, field, value)
            with pytest.raises(GRPCError) as err:
                await stub.PredictConversion(ranking_pb2.PredictConversionRequest(
                    user_context=request.user_context, search_context=request.search_context,
                    offer_features=request.offers[0]), metadata=md)
            assert err.value.status == Status.INVALID_ARGUMENT and needle in err.value.message, (field, value)
        with pytest.raises(GRPCError) as err:  # no offer: not scored as a free one
            await stub.PredictConversion(ranking_pb2.PredictConversionRequest(
                user_context=_request().user_context, search_context=_request().search_context), metadata=md)
        assert err.value.status == Status.INVALID_ARGUMENT and "offer_features is required" in err.value.message
        with pytest.raises(GRPCError) as err:
            await stub.RankOffers(_request())
        assert err.value.status == Status.UNAUTHENTICATED
    finally:
        channel.close()


class RemoteRanking(ranking_grpc.RankingServiceBase):
    """Another team's RankingService on loopback that the test can make fail or slow."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    async def PredictConversion(self, stream) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def RankOffers(self, stream) -> None:
        request = await stream.recv_message()
        self.calls += 1
        if self.mode == "fail":
            raise GRPCError(Status.UNAVAILABLE, "ranker down")
        if self.mode == "deadline":  # a server that noticed the deadline before the client's own timer fired
            raise GRPCError(Status.DEADLINE_EXCEEDED, "deadline exceeded")
        if self.mode == "slow":
            await asyncio.sleep(1.0)
        # Prefers the most expensive offer, unlike Contrail's own rules.
        ranked = sorted(request.offers, key=lambda o: -o.total_price_nuc)
        await stream.send_message(ranking_pb2.RankOffersResponse(offers=[
            ranking_pb2.RankedOffer(offer_id=o.offer_id, probability=0.9 - 0.1 * i, rank=i + 1)
            for i, o in enumerate(ranked)], model_version="remote-v7"))


@pytest.fixture
async def remote():
    service = RemoteRanking()
    server = Server([service])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    yield service, port
    server.close()
    await server.wait_closed()


async def _ranked_by(client, headers, clock) -> str:
    resp = await client.post("/v1/offers/search", json=search_body(clock), headers=headers)
    assert resp.status == 200
    return (await resp.json())["ranked_by"]


async def test_remote_ranker_with_circuit_breaker(aiohttp_client, tmp_path, clock, remote):
    service, port = remote
    client, headers = await _shop(aiohttp_client, tmp_path, clock, ranking__remote=f"127.0.0.1:{port}",
                                  ranking__remote_share=1.0, ranking__remote_deadline_ms=300)
    ranker = client.app[PLATFORM].ranker
    body = await (await client.post("/v1/offers/search", json=search_body(clock), headers=headers)).json()
    assert body["ranked_by"] == "remote"
    assert (await ranking_of(client, body["offers"]))[0]["probability"] == pytest.approx(0.9)

    service.mode = "fail"
    assert [await _ranked_by(client, headers, clock) for _ in range(3)] == ["rules"] * 3
    assert ranker.breaker.state == ranker.breaker.OPEN and service.calls == 4
    assert await _ranked_by(client, headers, clock) == "rules" and service.calls == 4  # open: not even tried

    service.mode = "ok"
    clock.advance(29)
    assert await _ranked_by(client, headers, clock) == "rules" and service.calls == 4
    clock.advance(2)  # half-open after 30 s: one trial call at a time, closed after 2 successes
    assert await _ranked_by(client, headers, clock) == "remote"
    assert ranker.breaker.state == ranker.breaker.HALF_OPEN
    assert await _ranked_by(client, headers, clock) == "remote"
    assert ranker.breaker.state == ranker.breaker.CLOSED

    service.mode = "slow"  # past the 300 ms deadline: a timeout, answered locally in time
    assert await _ranked_by(client, headers, clock) == "rules"
    metrics = (await (await client.get("/metrics")).text())
    assert 'contrail_ranking_fallbacks_total{reason="open"}' in metrics
    assert 'contrail_ranking_fallbacks_total{reason="timeout"} 1.0' in metrics
    assert "contrail_ranking_breaker_state 0.0" in metrics


async def test_a_slow_but_successful_remote_counts_against_the_breaker(aiohttp_client, tmp_path, clock, remote):
    service, port = remote
    service.mode = "slow"
    client, headers = await _shop(aiohttp_client, tmp_path, clock, ranking__remote=f"127.0.0.1:{port}",
                                  ranking__remote_share=1.0, ranking__remote_deadline_ms=3000,
                                  ranking__breaker_slow_ms=500)
    ranker = client.app[PLATFORM].ranker
    for _ in range(3):
        assert await _ranked_by(client, headers, clock) == "remote"  # the answer came, just too late
    assert ranker.breaker.state == ranker.breaker.OPEN
    assert await _ranked_by(client, headers, clock) == "rules"


async def test_a_deadline_the_remote_ranker_noticed_first_is_a_timeout(aiohttp_client, tmp_path, clock, remote):
    service, port = remote
    client, headers = await _shop(aiohttp_client, tmp_path, clock, ranking__remote=f"127.0.0.1:{port}",
                                  ranking__remote_share=1.0, ranking__remote_deadline_ms=300)
    service.mode = "deadline"
    assert await _ranked_by(client, headers, clock) == "rules"
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_ranking_fallbacks_total{reason="timeout"} 1.0' in metrics
    assert 'contrail_ranking_fallbacks_total{reason="error"}' not in metrics
