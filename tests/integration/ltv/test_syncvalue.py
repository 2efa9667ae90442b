"""The SyncValue service against the real app: purchases earned through loyalty teach the model; a refit is
evaluated on a time holdout and goes live; predictions over gRPC (unary, batch, stream) and REST carry bounds,
reasons and measured health; bad input gets INVALID_INPUT answers and clear errors; the model survives a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct

import numpy as np
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from app.ltv.service import Ask, Event
from app.main import GRPC, PLATFORM, create_app
from handlers.rpc import syncvalue_grpc
from handlers.rpc import syncvalue_pb2 as pb
from tests.conftest import bearer, make_config
from tests.integration.ltv.helpers import DAY, shop_history


@pytest.fixture
async def ltv(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, ltv__refit_interval_s=0, ltv__refit_after_purchases=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    counts = await shop_history(platform, clock)
    _, key = await platform.api_keys.create("ops", "admin")
    admin = {"X-Api-Key": key}
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    yield client, admin, syncvalue_grpc.SyncValueServiceStub(channel), {"x-api-key": key}, counts
    channel.close()


async def refit(client, admin) -> dict:
    resp = await client.post("/v1/admin/ltv/refit", headers=admin)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_refit_is_evaluated_on_the_holdout_then_serves_predictions_with_bounds_and_reasons(ltv):
    client, admin, stub, md, counts = ltv
    before = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="cust-1"), metadata=md)
    assert before.status == pb.MODEL_NOT_READY and "no model" in before.message

    fitted = await refit(client, admin)
    assert fitted["live"] is True, fitted
    assert fitted["model"].endswith("-1") and fitted["customers"] == len(counts)
    evaluation = fitted["evaluation"]
    assert evaluation["customers"] > 0 and evaluation["mae"] >= 0 and 0 <= evaluation["accuracy"] <= 1

    buyer = max(counts, key=counts.get)  # the most frequent buyer
    reply = await stub.PredictLTV(pb.LTVPredictionRequest(request_id="r1", customer_id=buyer, platform="meta",
                                                          current_cac=25.0), metadata=md)
    assert reply.status == pb.SUCCESS, reply.message
    assert reply.request_id == "r1" and reply.customer_id == buyer and reply.model_version == fitted["model"]
    assert 0 < reply.ltv_lower_bound <= reply.predicted_ltv <= reply.ltv_upper_bound
    assert 0 <= reply.confidence <= 1 and 0 <= reply.probability_alive <= 1 and reply.expected_purchases > 0
    assert reply.horizon_days == 365 and reply.currency == "USD" and reply.inference_time_us > 0
    assert math.isclose(reply.ltv_to_cac, reply.predicted_ltv / 25.0)
    names = [f.name for f in reply.top_features]
    assert names and len(set(names)) == len(names)
    assert abs(reply.top_features[0].importance) >= abs(reply.top_features[-1].importance)

    # The frequent buyer is worth more than a customer who bought once, and the reasons differ between them.
    once = min(counts, key=counts.get)
    single = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id=once), metadata=md)
    assert single.status == pb.SUCCESS and single.predicted_ltv < reply.predicted_ltv
    assert [(f.name, round(f.value, 6)) for f in single.top_features] != \
        [(f.name, round(f.value, 6)) for f in reply.top_features]

    again = await stub.PredictLTV(pb.LTVPredictionRequest(request_id="r2", customer_id=buyer, platform="meta",
                                                          current_cac=25.0), metadata=md)
    assert again.request_id == "r2" and again.predicted_ltv == reply.predicted_ltv  # remembered for the day
    assert list(again.top_features) == list(reply.top_features)

    # A shorter horizon is worth less; an unknown customer is a new customer's value, said so.
    short = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id=buyer, horizon_days=30), metadata=md)
    assert short.horizon_days == 30 and short.predicted_ltv < reply.predicted_ltv
    nobody = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="never-bought"), metadata=md)
    assert nobody.status == pb.NO_HISTORY and nobody.predicted_ltv >= 0

    health = await stub.GetModelHealth(pb.HealthRequest(), metadata=md)
    assert health.model_version == fitted["model"] and health.predictions_today >= 5
    assert math.isclose(health.current_accuracy, evaluation["accuracy"], rel_tol=1e-9)
    assert health.is_healthy == (health.current_accuracy >= health.target_accuracy)
    assert 0 < health.avg_latency_us and 0 < health.p95_latency_us <= health.p99_latency_us
    assert health.holdout_customers == evaluation["customers"] and health.trained_at_ms > 0
    text = await (await client.get("/metrics")).text()
    assert f'contrail_ltv_model_info{{version="{fitted["model"]}"}} 1.0' in text
    assert 'contrail_ltv_predictions_total{status="SUCCESS"}' in text
    assert 'contrail_ltv_evaluation{metric="mae"}' in text
    assert 'contrail_cache_entries{cache="ltv_predictions"}' in text
    assert 'contrail_ltv_seconds_count{call="one"}' in text


async def test_a_given_history_is_used_and_bad_input_gets_invalid_input_answers(ltv, clock):
    client, admin, stub, md, counts = ltv
    await refit(client, admin)
    now_ms = int(clock.now() * 1000)
    history = [pb.CustomerEvent(timestamp_ms=now_ms - d * 86_400_000, event_type="purchase", event_value=120.0)
               for d in (300, 200, 120, 60, 20, 5)]
    history.append(pb.CustomerEvent(timestamp_ms=now_ms - 1000, event_type="page_view"))  # not a purchase
    given = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="cust-0", event_history=history), metadata=md)
    own = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="cust-0"), metadata=md)
    assert given.status == pb.SUCCESS and given.predicted_ltv != own.predicted_ltv
    frequency = {f.name: f.value for f in given.top_features}.get("frequency")
    assert frequency is None or frequency == 5  # six purchases: five repeats

    # A frequent flyer: thousands of purchases, a flight most days. (The models' hypergeometric functions used to
    # overflow past a few hundred and answer NaN.) Worth far more than the six-purchase customer, with bounds.
    heavy = [pb.CustomerEvent(timestamp_ms=now_ms - d * 86_400_000, event_type="purchase", event_value=120.0)
             for d in range(1, 2001)]
    flyer = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="flyer", event_history=heavy), metadata=md)
    assert flyer.status == pb.SUCCESS, flyer
    assert math.isfinite(flyer.ltv_upper_bound) and flyer.ltv_lower_bound < flyer.predicted_ltv < flyer.ltv_upper_bound
    assert flyer.predicted_ltv > 20 * given.predicted_ltv and flyer.probability_alive > 0.99
    # Should a model still fail to value a history (a number that is not finite), the answer is the platform
    # heuristic, said to be one, never a NaN.
    model = client.app[PLATFORM].ltv.model
    real_predict = model.predict
    model.predict = lambda *a, **k: dataclasses.replace(real_predict(*a, **k), ltv=np.array([math.nan]))
    try:
        odd = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="odd", event_history=history[:3]),
                                    metadata=md)
    finally:
        del model.predict
    assert odd.status == pb.FALLBACK and "cannot value a history" in odd.message, odd
    assert odd.model_version == "heuristic" and math.isfinite(odd.predicted_ltv) and odd.predicted_ltv > 0

    bad = [(pb.LTVPredictionRequest(customer_id="c", event_history=[pb.CustomerEvent(
               timestamp_ms=now_ms + 7 * 86_400_000, event_type="purchase", event_value=10)]), "future"),
           (pb.LTVPredictionRequest(customer_id="c", event_history=[pb.CustomerEvent(
               timestamp_ms=now_ms, event_type="purchase", event_value=float("nan"))]), "event_value"),
           (pb.LTVPredictionRequest(customer_id="c", horizon_days=99_999), "horizon_days"),
           (pb.LTVPredictionRequest(), "customer_id"),
           (pb.LTVPredictionRequest(customer_id="c", current_cac=-1), "current_cac")]
    for request, word in bad:
        reply = await stub.PredictLTV(request, metadata=md)
        assert reply.status == pb.INVALID_INPUT and word in reply.message, (word, reply.message)

    with pytest.raises(GRPCError) as err:
        await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="c"))
    assert err.value.status == Status.UNAUTHENTICATED
    customer = await bearer(client, "val@example.com", "correct horse battery", "customer")
    with pytest.raises(GRPCError) as err:
        await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="c"),
                              metadata={"authorization": customer["Authorization"]})
    assert err.value.status == Status.PERMISSION_DENIED


async def test_a_batch_answers_every_customer_in_order_and_a_stream_survives_a_bad_message(ltv):
    client, admin, stub, md, counts = ltv
    await refit(client, admin)
    ids = sorted(counts) + ["unknown-a", "unknown-b"]
    requests = [pb.LTVPredictionRequest(request_id=str(k), customer_id=c) for k, c in enumerate(ids)]
    requests.insert(3, pb.LTVPredictionRequest(request_id="bad", customer_id="x", horizon_days=-5))
    batch = await stub.PredictLTVBatch(pb.LTVBatchRequest(requests=requests), metadata=md)
    assert [r.request_id for r in batch.responses] == [r.request_id for r in requests]
    assert batch.responses[3].status == pb.INVALID_INPUT
    singles = {c: (await stub.PredictLTV(pb.LTVPredictionRequest(customer_id=c), metadata=md)).predicted_ltv
               for c in ids[:5]}
    by_id = {r.customer_id: r for r in batch.responses if r.request_id != "bad"}
    assert all(math.isclose(by_id[c].predicted_ltv, v, rel_tol=1e-9) for c, v in singles.items())
    assert not by_id[ids[0]].top_features  # a batch explains only when asked (metadata explain=true)
    assert [r.status for r in batch.responses[-2:]] == [pb.NO_HISTORY, pb.NO_HISTORY]
    with pytest.raises(GRPCError) as err:
        await stub.PredictLTVBatch(pb.LTVBatchRequest(requests=[pb.LTVPredictionRequest(customer_id="c")] * 4_001),
                                   metadata=md)
    assert err.value.status == Status.INVALID_ARGUMENT and "at most 4000" in err.value.message
    # The largest batch, every answer explained, fits the reply size limit.
    largest = await stub.PredictLTVBatch(pb.LTVBatchRequest(requests=[
        pb.LTVPredictionRequest(customer_id=ids[n % len(ids)], metadata={"explain": "true"}) for n in range(4_000)]),
        metadata=md)
    assert len(largest.responses) == 4_000 and all(r.top_features for r in largest.responses)
    # A caller's deadline is kept: the largest batch cannot be explained in a millisecond. (Whichever side's timer
    # fires first, the server's answer or the client's own, the caller gets DEADLINE_EXCEEDED, and the server
    # goes on answering.)
    with pytest.raises((GRPCError, TimeoutError)) as late:
        await stub.PredictLTVBatch(pb.LTVBatchRequest(requests=[
            pb.LTVPredictionRequest(customer_id=f"late-{n}", metadata={"explain": "true"}) for n in range(4_000)]),
            metadata=md, timeout=0.001)
    assert not isinstance(late.value, GRPCError) or late.value.status == Status.DEADLINE_EXCEEDED
    assert (await stub.PredictLTV(pb.LTVPredictionRequest(customer_id=ids[0]), metadata=md)).status == pb.SUCCESS

    async with stub.PredictLTVStream.open(metadata=md) as stream:
        await stream.send_message(pb.LTVPredictionRequest(request_id="s1", customer_id=ids[0]))
        first = await stream.recv_message()
        payload = b"\x0a\xff\xff\xff\x0f"  # a field whose length runs past the message
        await stream._stream.send_data(struct.pack(">?I", False, len(payload)) + payload)
        broken = await stream.recv_message()
        await stream.send_message(pb.LTVPredictionRequest(request_id="s2", customer_id=ids[1]), end=True)
        last = await stream.recv_message()
    assert first.request_id == "s1" and first.status == pb.SUCCESS
    assert broken.status == pb.INVALID_INPUT and "malformed" in broken.message
    assert last.request_id == "s2" and last.status == pb.SUCCESS


async def test_concurrent_single_predictions_are_scored_together_and_answer_as_if_asked_alone(ltv, clock):
    client, admin, stub, md, counts = ltv
    await refit(client, admin)
    service = client.app[PLATFORM].ltv
    now_ms = int(clock.now() * 1000)
    given = [pb.CustomerEvent(timestamp_ms=int(now_ms - d * DAY * 1000), event_type="purchase", event_value=40.0 + d)
             for d in (300, 200, 90, 10)]
    customers = sorted(counts)[:12]
    requests = [pb.LTVPredictionRequest(request_id=str(k), customer_id=c, horizon_days=(90, 365, 0)[k % 3],
                                        metadata={"explain": "false"} if k % 4 == 3 else {})
                for k, c in enumerate(customers)]
    requests.append(pb.LTVPredictionRequest(request_id="given", customer_id="walk-in", event_history=given))
    requests.append(pb.LTVPredictionRequest(request_id="new", customer_id="never-bought"))
    shared_before = service._metrics.ltv_scored_together._default.sum
    calls_before = sum(service._metrics.ltv_scored_together._default.counts)
    together = await asyncio.gather(*(stub.PredictLTV(r, metadata=md) for r in requests))
    scored = service._metrics.ltv_scored_together._default.sum - shared_before
    calls = sum(service._metrics.ltv_scored_together._default.counts) - calls_before
    assert scored == len(requests) and calls < len(requests)  # they shared model calls
    service.predictions.clear()  # nothing remembered: each is scored again, alone
    for request, shared in zip(requests, together, strict=True):
        alone = await stub.PredictLTV(request, metadata=md)
        assert shared.request_id == request.request_id and shared.status == alone.status, shared.message
        for name in ("predicted_ltv", "ltv_lower_bound", "ltv_upper_bound", "confidence", "expected_purchases",
                     "probability_alive"):
            # The same numbers: each customer's interval sums run to their own length, whatever the batch.
            assert getattr(shared, name) == getattr(alone, name), name
        assert [f.name for f in shared.top_features] == [f.name for f in alone.top_features]
        assert all(math.isclose(a.importance, b.importance, rel_tol=1e-9, abs_tol=1e-9)
                   for a, b in zip(shared.top_features, alone.top_features, strict=True))
        assert shared.horizon_days == (request.horizon_days or alone.horizon_days)
    assert {r.status for r in together} == {pb.SUCCESS, pb.NO_HISTORY}
    assert not together[3].top_features and together[0].top_features


async def test_the_rest_twin_and_who_may_read_a_customers_value(ltv, clock):
    client, admin, stub, md, counts = ltv
    platform = client.app[PLATFORM]
    member = await bearer(client, "lena@example.com", "correct horse battery", "customer")
    me = platform.account_store.by_email("lena@example.com").id
    resp = await client.get(f"/v1/customers/{me}/ltv", headers=member)
    assert resp.status == 404 and "no model" in (await resp.json())["error"]["message"]
    assert (await client.get("/v1/admin/ltv/distribution", headers=admin)).status == 404
    await refit(client, admin)
    for n in range(3):
        await platform.loyalty.earn(me, 15_000, "web", f"lena-{n}")
        clock.advance(20 * DAY)
    member = await bearer(client, "lena@example.com", "correct horse battery", "customer")  # signs in again
    mine = await (await client.get(f"/v1/customers/{me}/ltv", headers=member)).json()
    assert mine.get("status") == "SUCCESS", mine
    assert mine["customer_id"] == me and mine["predicted_ltv"] > 0
    assert mine["ltv_lower_bound"] <= mine["predicted_ltv"] <= mine["ltv_upper_bound"] and mine["top_features"]
    assert (await client.get("/v1/customers/cust-1/ltv", headers=member)).status == 403
    assert (await client.get("/v1/customers/cust-1/ltv")).status == 401
    staff = await (await client.get("/v1/customers/cust-1/ltv", params={"horizon_days": "90"}, headers=admin)).json()
    grpc = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="cust-1", horizon_days=90), metadata=md)
    assert math.isclose(staff["predicted_ltv"], grpc.predicted_ltv, rel_tol=1e-9) and staff["horizon_days"] == 90
    resp = await client.get("/v1/customers/cust-1/ltv", params={"horizon_days": "5000"}, headers=admin)
    assert resp.status == 400 and "horizon_days" in (await resp.json())["error"]["message"]

    body = {"customer_id": "p1", "event_history": [
        {"timestamp_ms": int((clock.now() - d * DAY) * 1000), "event_type": "order", "event_value": 80.0}
        for d in (90, 40, 10)]}
    predicted = await (await client.post("/v1/ltv/predict", json=body, headers=admin)).json()
    assert predicted["status"] == "SUCCESS" and predicted["predicted_ltv"] > 0
    for bad, field in (({"customer_id": "p1", "event_history": [{"timestamp_ms": -1, "event_type": "order"}]},
                        "timestamp_ms"), ({"customer_id": "p1", "colour": "red"}, "colour"), ({}, "customer_id")):
        resp = await client.post("/v1/ltv/predict", json=bad, headers=admin)
        assert resp.status == 400 and field in (await resp.json())["error"]["message"], bad
    assert (await client.post("/v1/ltv/predict", json=body, headers=member)).status == 403
    health = await (await client.get("/v1/admin/ltv/model", headers=admin)).json()
    assert health["model_version"] == mine["model_version"] and health["predictions_today"] >= 3

    spread = await (await client.get("/v1/admin/ltv/distribution", headers=admin)).json()
    assert spread["customers"] == len(counts) + 1 and spread["model_version"] == health["model_version"]
    assert sum(b["customers"] for b in spread["bins"]) == spread["customers"] and spread["bins"][-1]["upper"] is None
    q = spread["quantiles"]
    assert q["p10"] <= q["p50"] <= q["p90"] <= q["p99"] and math.isclose(spread["mean"] * spread["customers"],
                                                                      spread["total"], rel_tol=1e-9)
    best = spread["top"][0]
    assert best["predicted_ltv"] >= spread["top"][-1]["predicted_ltv"] and best["predicted_ltv"] >= q["p99"] * 0.999
    one = await (await client.get(f"/v1/customers/{best['customer_id']}/ltv", headers=admin)).json()
    assert math.isclose(one["predicted_ltv"], best["predicted_ltv"], rel_tol=1e-6)
    assert (await client.get("/v1/admin/ltv/distribution", headers=member)).status == 403
    assert (await client.get("/v1/admin/ltv/model", headers=member)).status == 403
    assert (await client.post("/v1/admin/ltv/refit", headers=member)).status == 403
    assert (await client.post("/v1/admin/ltv/refit")).status == 401
    resp = await client.get("/v1/admin/ltv/distribution", params={"horizon_days": "-1"}, headers=admin)
    assert resp.status == 400 and "horizon_days" in (await resp.json())["error"]["message"]


async def test_a_refund_drops_the_purchase_and_the_model_survives_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, ltv__refit_interval_s=0, ltv__refit_after_purchases=0)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    await shop_history(platform, clock, customers=200)
    _, key = await platform.api_keys.create("ops", "admin")
    admin = {"X-Api-Key": key}
    fitted = await refit(client, admin)
    assert fitted["live"] is True, fitted
    await platform.loyalty.earn("refunded", 90_000, "web", "big-order")
    bought = await (await client.get("/v1/customers/refunded/ltv", headers=admin)).json()
    await platform.loyalty.reverse("big-order")
    refunded = await (await client.get("/v1/customers/refunded/ltv", headers=admin)).json()
    assert bought["status"] == "SUCCESS" and refunded["status"] == "NO_HISTORY"
    before = await (await client.get("/v1/customers/cust-3/ltv", headers=admin)).json()
    await client.close()

    again = await aiohttp_client(create_app(config, clock=clock))
    _, key = await again.app[PLATFORM].api_keys.create("ops2", "admin")
    after = await (await again.get("/v1/customers/cust-3/ltv", headers={"X-Api-Key": key})).json()
    for volatile in ("inference_time_us",):
        before.pop(volatile), after.pop(volatile)
    assert after == before
    await asyncio.sleep(0)


async def test_the_schedule_refits_when_due_and_not_again_until_its_interval(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, ltv__refit_interval_s=3600, ltv__refit_after_purchases=100)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    ltv = platform.ltv
    await platform.loyalty.earn("early", 5_000, "web", "first")  # too little data for a model
    await ltv.maybe_refit()
    fits = platform.metrics.ltv_fits
    assert fits.labels("kept_out").value == 1 and ltv.model is None
    await ltv.maybe_refit()
    assert fits.labels("kept_out").value == 1  # the failed attempt waits its interval too
    counts = await shop_history(platform, clock, customers=120)  # moves the clock on and adds purchases
    await ltv.maybe_refit()
    assert fits.labels("live").value == 1 and ltv.model is not None and ltv.purchases_since_fit == 0
    await ltv.maybe_refit()
    assert fits.labels("live").value == 1  # nothing new, interval not passed
    buyers = sorted(counts)
    await asyncio.gather(*(platform.loyalty.earn(buyers[n % len(buyers)], 2_000, "web", f"more-{n}")
                           for n in range(100)))
    await ltv.maybe_refit()
    assert fits.labels("live").value + fits.labels("kept_out").value == 3  # after 100 new purchases
    assert "ltv_refit" in platform.supervisor.states and "ltv_values" in platform.supervisor.states


async def test_a_purchase_another_node_stored_is_valued_once_its_change_notice_arrives(ltv, monkeypatch):
    client, admin, stub, md, counts = ltv
    platform = client.app[PLATFORM]
    await refit(client, admin)
    buyer = min(counts, key=counts.get)

    async def value() -> float:
        resp = await client.get(f"/v1/customers/{buyer}/ltv", headers=admin)
        assert resp.status == 200, await resp.text()
        return (await resp.json())["predicted_ltv"]
    before = await value()
    # As on a node that did not take the purchase: its own bus never says so, only the change notice does.
    monkeypatch.setattr(platform.ltv, "purchased", lambda customer_id: None)
    for n in range(3):
        await platform.loyalty.earn(buyer, 40_000, "web", f"on-the-other-node-{n}")
    await platform.bus.idle()
    assert await value() == before  # not told yet
    await platform.apply_change("member", [buyer])
    assert await value() > before


async def test_purchases_counted_towards_a_refit_are_still_counted_after_a_restart(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, ltv__refit_interval_s=0, ltv__refit_after_purchases=3)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    await shop_history(platform, clock, customers=120)
    await platform.ltv.maybe_refit()
    first = platform.ltv.version
    assert first.endswith("-1") and platform.ltv.purchases_since_fit == 0
    for n in range(2):
        await platform.loyalty.earn("cust-1", 4_000, "web", f"after-fit-{n}")
    await platform.bus.idle()
    await platform.ltv.maybe_refit()
    assert platform.ltv.version == first  # two of three: not due yet
    await client.close()

    again = await aiohttp_client(create_app(config, clock=clock))
    platform = again.app[PLATFORM]
    assert platform.ltv.version == first and platform.ltv.purchases_since_fit == 2
    fits = platform.metrics.ltv_fits

    def attempts() -> float:
        return sum(fits.labels(status).value for status in ("live", "kept_out", "canary", "recorded"))
    await platform.ltv.maybe_refit()
    assert attempts() == 0
    await platform.loyalty.earn("cust-2", 4_000, "web", "after-restart")
    await platform.bus.idle()
    await platform.ltv.maybe_refit()
    assert attempts() == 1 and platform.ltv.purchases_since_fit == 0  # the third purchase since the fit made it due


async def test_the_carriers_own_features_are_learned_from_and_a_given_history_stays_neutral(
        aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path, ltv__refit_interval_s=0,
                                                         ltv__refit_after_purchases=0), clock=clock))
    platform = client.app[PLATFORM]
    counts = await shop_history(platform, clock, customers=200)
    assert (await platform.ltv.refit())["live"] is True
    model = platform.ltv.model
    # The fit saw the digital share and the channel count of every customer (the model uses them only where they
    # lower its inner-split error); a restored model knows them too.
    assert model.population["digital_share"] == pytest.approx(
        sum(int(c.split("-")[1]) % 2 for c in counts) / len(counts), abs=0.05)
    assert model.population["channels"] == 1.0
    held = platform.ltv.histories.get("cust-1")
    assert held is None or held[4:] == (1.0, 1.0)
    await platform.ltv.customer("cust-1")
    assert platform.ltv.histories.get("cust-1")[4:] == (1.0, 1.0)  # cust-1 buys on the web only
    now_ms = int(clock.now() * 1000)
    events = tuple(Event(now_ms - d * 86_400_000, "purchase", 50.0) for d in (200, 90, 30))
    [given] = await platform.ltv.predict([Ask("someone", events=events)])
    assert given.status == "SUCCESS" and given.predicted_ltv > 0  # no channels given: the average customer's


async def test_paid_orders_and_ingested_purchases_are_the_history_a_customer_is_valued_on(ltv, clock):
    from tests.integration.reco.helpers import ingest, staff
    from tests.integration.retail.helpers import booked, customer, pay, seed_catalog
    client, admin, stub, md, counts = ltv
    platform = client.app[PLATFORM]
    await refit(client, admin)

    async def valued(customer_id: str) -> dict:
        await platform.bus.idle()  # loyalty earns from orders and ingest as their events arrive
        resp = await client.get(f"/v1/customers/{customer_id}/ltv", headers=admin)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    # Ingested purchases (a POS, a partner): the customer's value follows each one.
    assert (await valued("walker"))["status"] == "NO_HISTORY"
    partner = await staff(client)
    sale = {"source": "pos", "type": "purchase", "user_id": "walker", "amount_cents": 12_000}
    await ingest(client, partner, [{**sale, "transaction_id": "pos-1", "at": clock.now()}])
    once = await valued("walker")
    clock.advance(30 * DAY)
    await ingest(client, partner, [{**sale, "transaction_id": "pos-2", "at": clock.now()}])
    twice = await valued("walker")
    assert once["status"] == twice["status"] == "SUCCESS"
    assert twice["predicted_ltv"] > once["predicted_ltv"] > 0  # a repeat buyer is worth more than a one-off

    # A paid order: its buyer becomes a customer with a purchase.
    await seed_catalog(platform, clock)
    member = await customer(client, "olga")
    me = platform.account_store.by_email("olga@example.com").id
    assert (await valued(me))["status"] == "NO_HISTORY"
    order = await booked(client, member, clock)
    assert (await pay(client, member, order["id"])).status == 200
    paid = await valued(me)
    assert paid["status"] == "SUCCESS" and paid["predicted_ltv"] > 0


async def test_times_sent_in_seconds_are_refused_as_such(ltv, clock):
    client, admin, stub, md, counts = ltv
    await refit(client, admin)
    now_s = int(clock.now())
    in_seconds = [pb.CustomerEvent(timestamp_ms=now_s - d * 86_400, event_type="purchase", event_value=100.0)
                  for d in (300, 100, 10)]
    reply = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="p", event_history=in_seconds), metadata=md)
    assert reply.status == pb.INVALID_INPUT and reply.predicted_ltv == 0
    assert "event_history[0].timestamp_ms" in reply.message and "seconds, not milliseconds" in reply.message
    batch = await stub.PredictLTVBatch(pb.LTVBatchRequest(requests=[
        pb.LTVPredictionRequest(customer_id="p", event_history=in_seconds), pb.LTVPredictionRequest(customer_id="q",
        event_history=[pb.CustomerEvent(timestamp_ms=946_684_800_000, event_type="purchase", event_value=5.0)])]),
        metadata=md)
    assert [r.status for r in batch.responses] == [pb.INVALID_INPUT, pb.SUCCESS]  # 2000-01-01 itself is a time

    body = {"customer_id": "p", "event_history": [
        {"timestamp_ms": now_s - d * 86_400, "event_type": "purchase", "event_value": 100.0} for d in (300, 100, 10)]}
    resp = await client.post("/v1/ltv/predict", json=body, headers=admin)
    error = (await resp.json())["error"]
    assert resp.status == 400 and "seconds, not milliseconds" in error["message"]
    assert error["details"] == {"field": "event_history[0].timestamp_ms"}


async def test_a_cac_below_a_cent_is_no_cac_and_the_ratio_stays_finite(ltv):
    client, admin, stub, md, counts = ltv
    await refit(client, admin)
    for cac in (1e-310, 0.009):
        reply = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="cust-1", current_cac=cac), metadata=md)
        assert reply.status == pb.SUCCESS and reply.predicted_ltv > 0 and reply.ltv_to_cac == 0.0
        answer = await (await client.post("/v1/ltv/predict", json={"customer_id": "cust-1", "current_cac": cac},
                                          headers=admin)).json()
        assert answer["status"] == "SUCCESS" and answer["ltv_to_cac"] == 0.0
    reply = await stub.PredictLTV(pb.LTVPredictionRequest(customer_id="cust-1", current_cac=0.01), metadata=md)
    assert math.isclose(reply.ltv_to_cac, reply.predicted_ltv / 0.01)


async def stream_against_the_limit(stub, key: str) -> list[pb.LTVPredictionResponse]:
    """20 messages on one stream of a key allowed a burst of 5 requests, one a second: every one answered."""
    async with stub.PredictLTVStream.open(metadata={"x-api-key": key}) as stream:
        answers = []
        for n in range(20):
            await stream.send_message(pb.LTVPredictionRequest(request_id=str(n), customer_id=f"cust-{n}"))
            answers.append(await stream.recv_message())
        await stream.end()
    return answers


def check_limited(answers: list[pb.LTVPredictionResponse]) -> None:
    assert [a.request_id for a in answers] == [str(n) for n in range(20)]  # the stream stayed open throughout
    limited = [a for a in answers if "rate limited" in a.message]
    assert all(a.status == pb.INVALID_INPUT and "API key" in a.message for a in limited)
    # The stream's opening spent one token: at most 4 of the burst, and 1 a second, are left for its messages.
    assert 14 <= len(limited) <= 16 and all(a.status == pb.MODEL_NOT_READY for a in answers if a not in limited)


async def test_each_message_of_a_stream_spends_a_request_of_the_callers_rate_limit(aiohttp_client, tmp_path, clock):
    """The service as the app builds it, with the limiter every protocol checks, served through the same guard."""
    from grpclib.server import Server

    from handlers.rpc.server import Guard
    from handlers.rpc.syncvalue import SyncValueService
    config = make_config(tmp_path, ratelimit__principal_per_s=1, ratelimit__principal_burst=5)
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    server = Server([Guard(SyncValueService(platform.ltv, platform.limiter), platform.authenticator,
                           platform.limiter)])
    await server.start("127.0.0.1", 0)
    channel = Channel("127.0.0.1", server._server.sockets[0].getsockname()[1])
    try:
        _, key = await platform.api_keys.create("partner", "partner")
        check_limited(await stream_against_the_limit(syncvalue_grpc.SyncValueServiceStub(channel), key))
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def test_the_apps_stream_spends_a_request_of_the_callers_rate_limit_per_message(aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path, ratelimit__principal_per_s=1, ratelimit__principal_burst=5)
    client = await aiohttp_client(create_app(config, clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("partner", "partner")
    channel = Channel("127.0.0.1", client.app[GRPC].port)
    try:
        check_limited(await stream_against_the_limit(syncvalue_grpc.SyncValueServiceStub(channel), key))
    finally:
        channel.close()


async def test_a_partner_reads_any_customers_value_as_predict_gives_it_and_a_customer_only_their_own(ltv):
    """Partner systems value customers for bidding (POST /v1/ltv/predict, gRPC SyncValue), so a partner key reads any
    customer's value over GET /v1/customers/{id}/ltv too, the same value; a customer reads only their own."""
    client, admin, *_ = ltv
    assert (await refit(client, admin))["live"] is True
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("bidder", "partner")
    partner = {"X-Api-Key": key}

    resp = await client.get("/v1/customers/cust-1/ltv", headers=partner)
    assert resp.status == 200, await resp.text()
    read = await resp.json()
    predicted = await (await client.post("/v1/ltv/predict", json={"customer_id": "cust-1"}, headers=partner)).json()
    staff = await (await client.get("/v1/customers/cust-1/ltv", headers=admin)).json()
    assert read["customer_id"] == "cust-1" and read["status"] == predicted["status"] == "SUCCESS", read
    assert math.isclose(read["predicted_ltv"], predicted["predicted_ltv"], rel_tol=1e-9)
    assert math.isclose(read["predicted_ltv"], staff["predicted_ltv"], rel_tol=1e-9)
    resp = await client.get("/v1/customers/cust-1/ltv", params={"horizon_days": "90"}, headers=partner)
    assert resp.status == 200 and (await resp.json())["horizon_days"] == 90

    # A customer still reads only their own value; a key of another role reads none.
    member = await bearer(client, "lena@example.com", "correct horse battery", "customer")
    me = platform.account_store.by_email("lena@example.com").id
    assert (await client.get(f"/v1/customers/{me}/ltv", headers=member)).status == 200
    assert (await client.get("/v1/customers/cust-1/ltv", headers=member)).status == 403
    _, exchange = await platform.api_keys.create("adx", "exchange")
    assert (await client.get("/v1/customers/cust-1/ltv", headers={"X-Api-Key": exchange})).status == 403
    assert (await client.get("/v1/customers/cust-1/ltv")).status == 401
