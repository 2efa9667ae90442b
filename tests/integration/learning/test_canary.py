"""Canary model versions in the real app: a recorded version serves a share of the traffic beside the live one, both
are measured alike and shown in GET /v1/admin/models, and the periodic judgement promotes the canary at its period's
end (the test clock moves) or rolls it back as soon as a limit is crossed; every decision is audited, a restart
resumes a canary, and the endpoints refuse what they cannot do."""

import asyncio
import time

import msgspec
import numpy as np

from app.main import PLATFORM
from ml.model import make_default
from tests.conftest import make_config
from tests.integration.bidding.helpers import _client, banner_request, post_bid
from tests.integration.learning import test_acceptance as acceptance_loop
from tests.integration.retail.helpers import search_body, seed_catalog

# The latency limit is wide: a busy test machine can take tens of ms per scoring pass, and the promotion test is
# about the period; the rollback test sets its own limit that every pass crosses.
FAST = dict(ratelimit__ip_per_s=100_000, ratelimit__ip_burst=100_000, ratelimit__principal_per_s=100_000,
            ratelimit__principal_burst=100_000, canary__check_interval_s=0.05, canary__duration_s=3600,
            canary__min_calls=20, canary__max_p95_ms=500)


async def _bid_app(aiohttp_client, tmp_path, clock, campaigns=None, **overrides):
    client = await _client(aiohttp_client, tmp_path, clock, campaigns, **{**FAST, **overrides})
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    return client, {"X-Api-Key": key}


async def _recorded_bidnet(client, admin, tmp_path) -> str:
    """A second bidnet version that is recorded but not live: an admin's file reloaded, then rolled back."""
    path = tmp_path / "candidate.npz"
    make_default("bidnet-candidate", seed=11).save(path)
    assert (await client.post("/v1/admin/model/reload", json={"path": str(path)}, headers=admin)).status == 200
    back = await client.post("/v1/admin/models/bidnet/rollback", headers=admin)
    assert back.status == 200 and (await back.json())["version"] == "default-v1"
    return "bidnet-candidate"


async def _bids(client, n):
    for i in range(n):
        resp = await post_bid(client, banner_request(f"r{i}", user_id=f"u{i % 50}"))
        assert resp.status in (200, 204)


async def _model(client, admin, name):
    return await (await client.get(f"/v1/admin/models/{name}", headers=admin)).json()


async def _until_decided(client, admin, name, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        model = await _model(client, admin, name)
        if model["canary"] is None:
            return model
        await asyncio.sleep(0.05)
    raise AssertionError(f"the canary of {name} was not decided within {seconds} s")


async def test_a_canary_serves_its_share_and_is_promoted_when_it_holds_for_its_period(aiohttp_client, tmp_path,
                                                                                       clock):
    client, admin = await _bid_app(aiohttp_client, tmp_path, clock)
    platform = client.app[PLATFORM]
    version = await _recorded_bidnet(client, admin, tmp_path)
    started = await client.post("/v1/admin/models/bidnet/canary", json={"version": version}, headers=admin)
    assert started.status == 201
    body = await started.json()
    assert (body["version"], body["share"], body["decision"]) == (version, 0.1, "")
    assert body["ends_at"] == body["started_at"] + 3600
    assert body["limits"] == {"max_p95_ms": 500, "max_error_rate": 0.01, "min_calls": 20}  # this server's [canary]

    await _bids(client, 600)
    model = await _model(client, admin, "bidnet")
    canary = model["canary"]
    arms = canary["comparison"]
    total = arms["canary"]["calls"] + arms["live"]["calls"]
    assert total >= 600 and 0.05 < arms["canary"]["calls"] / total < 0.17   # about its 10%
    assert arms["canary"]["p95_ms"] > 0 and arms["live"]["p95_ms"] > 0 and arms["canary"]["errors"] == 0
    assert model["live"] == model["serving"] == "default-v1"
    assert [(v["version"], v["status"]) for v in model["versions"][:2]] == [(version, "canary"),
                                                                            ("default-v1", "live")]

    await asyncio.sleep(0.2)   # checks run meanwhile: within the limits and before its end, nothing changes
    assert (await _model(client, admin, "bidnet"))["canary"] is not None
    clock.advance(3601)
    model = await _until_decided(client, admin, "bidnet")
    assert model["live"] == model["serving"] == version and platform.model.current.version == version
    last = model["last_canary"]
    assert last["decision"] == "promoted" and "held for its period" in last["reason"]
    assert last["comparison"]["canary"]["calls"] == arms["canary"]["calls"]
    assert platform.batcher.scorer is None   # no canary: the batcher's plain path
    audit = [(e.action, e.target) for e in await platform.admin.audit_page(50, None)]
    assert ("model.canary.start", version) in audit and ("model.canary.promote", version) in audit
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_model_canary_decisions_total{decision="promoted",model="bidnet"} 1.0' in metrics


async def test_a_canary_ending_while_the_model_is_read_never_shows_it_decided_with_the_old_version_live(
        aiohttp_client, tmp_path, clock):
    client, admin = await _bid_app(aiohttp_client, tmp_path, clock)
    learner = client.app[PLATFORM].learning.learners["bidnet"]
    version = await _recorded_bidnet(client, admin, tmp_path)
    assert (await client.post("/v1/admin/models/bidnet/canary", json={"version": version}, headers=admin)).status == 201
    read_live = learner.live
    ended = []

    async def live_then_promoted():   # the canary is promoted after the view read the registry's live version
        found = await read_live()
        if not ended:
            ended.append(await learner.end_canary("ops", promote=True))
        return found

    learner.live = live_then_promoted
    model = await _model(client, admin, "bidnet")
    assert ended and model["canary"] is None and model["last_canary"]["decision"] == "promoted"
    assert model["live"] == model["serving"] == version


async def test_a_slow_canary_is_rolled_back_before_its_end_and_the_live_version_keeps_serving(aiohttp_client,
                                                                                              tmp_path, clock):
    # No scoring pass takes under a microsecond: every canary batch crosses this limit.
    client, admin = await _bid_app(aiohttp_client, tmp_path, clock, canary__max_p95_ms=0.001, canary__share=0.5)
    platform = client.app[PLATFORM]
    version = await _recorded_bidnet(client, admin, tmp_path)
    assert (await client.post("/v1/admin/models/bidnet/canary", json={"version": version},
                              headers=admin)).status == 201
    await _bids(client, 200)
    model = await _until_decided(client, admin, "bidnet")
    last = model["last_canary"]
    assert last["decision"] == "rolled_back" and "canary.max_p95_ms" in last["reason"]
    assert last["decided_at"] < last["ends_at"]
    assert model["live"] == model["serving"] == "default-v1" and platform.model.current.version == "default-v1"
    assert next(v for v in model["versions"] if v["version"] == version)["status"] == "rolled_back"
    await _bids(client, 20)   # bids go on, on the live version alone
    audit = [(e.action, e.target) for e in await platform.admin.audit_page(50, None)]
    assert ("model.canary.rollback", version) in audit


async def test_the_canary_endpoints_refuse_what_they_cannot_do(aiohttp_client, tmp_path, clock):
    client, admin = await _bid_app(aiohttp_client, tmp_path, clock)
    version = await _recorded_bidnet(client, admin, tmp_path)
    url = "/v1/admin/models/bidnet/canary"
    for target, body, status, words in (
            ("/v1/admin/models/nosuch/canary", {"version": version}, 404, "no model named"),
            (url, {"version": "bidnet-99"}, 404, "no version"),
            (url, {"version": "default-v1"}, 409, "already live"),
            (url, {}, 400, "version"), (url, {"version": 3}, 400, "version"),
            (url, {"version": version, "share": 0.5}, 400, "share"),
            (url + "/promote", None, 409, "no canary running"), (url + "/abort", None, 409, "no canary running")):
        resp = await client.post(target, json=body, headers=admin)
        assert resp.status == status, (target, body, await resp.text())
        assert words in (await resp.json())["error"]["message"]
    assert (await client.post(url, data=b"{not json", headers=admin)).status == 400
    assert (await client.post(url, json={"version": version})).status == 401
    assert (await client.post(url, json={"version": version}, headers=admin)).status == 201
    again = await client.post(url, json={"version": version}, headers=admin)
    assert again.status == 409 and "already has a canary running" in (await again.json())["error"]["message"]


async def test_a_restart_resumes_the_canary_until_its_end_and_an_admin_can_abort_it(aiohttp_client, tmp_path, clock):
    client, admin = await _bid_app(aiohttp_client, tmp_path, clock)
    version = await _recorded_bidnet(client, admin, tmp_path)
    started = await (await client.post("/v1/admin/models/bidnet/canary", json={"version": version},
                                       headers=admin)).json()
    await client.close()

    clock.advance(600)
    restarted, admin = await _bid_app(aiohttp_client, tmp_path, clock, campaigns=[])
    platform = restarted.app[PLATFORM]
    model = await _model(restarted, admin, "bidnet")
    assert model["canary"]["version"] == version and model["canary"]["ends_at"] == started["ends_at"]
    assert model["live"] == "default-v1" and platform.batcher.scorer is not None
    await _bids(restarted, 100)
    assert (await _model(restarted, admin, "bidnet"))["canary"]["comparison"]["canary"]["calls"] > 0

    aborted = await restarted.post("/v1/admin/models/bidnet/canary/abort", headers=admin)
    assert aborted.status == 200 and (await aborted.json())["status"] == "rolled_back"
    model = await _model(restarted, admin, "bidnet")
    assert model["canary"] is None and model["last_canary"]["decision"] == "aborted"
    assert model["live"] == model["serving"] == "default-v1" and platform.batcher.scorer is None
    audit = [e.action for e in await platform.admin.audit_page(50, None)]
    assert "model.canary.abort" in audit


async def test_a_retrained_ranking_model_goes_out_as_a_canary_to_a_share_of_travellers(aiohttp_client, tmp_path,
                                                                                       clock):
    from app.main import create_app
    config = make_config(tmp_path, **{**acceptance_loop.LEARNING, **FAST, "canary__on_retrain": "true",
                                      "canary__share": 0.5, "canary__min_calls": 10})
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    _, key = await platform.api_keys.create("ops", "admin")
    admin = {"X-Api-Key": key}
    await acceptance_loop._log_simulated(platform, seed=7, searches=800)
    run = await (await client.post("/v1/admin/models/acceptance/train", headers=admin)).json()
    assert run["status"] == "canary" and "as a canary" in run["reason"], run["reason"]
    assert platform.ranker.model_version == "rules"   # the live version is still the rules

    await seed_catalog(platform, clock)
    sides = set()
    for _ in range(30):   # 30 travellers, each searching twice: one traveller sees one version
        token = (await (await client.post("/v1/auth/guest")).json())["access_token"]
        seen = []
        for _ in range(2):
            resp = await client.post("/v1/offers/search", json=search_body(clock),
                                     headers={"Authorization": f"Bearer {token}"})
            assert resp.status == 200, await resp.text()
            seen.append(tuple(sorted(o["id"] for o in (await resp.json())["offers"])))
        await platform.event_log.flush()
        generated = [msgspec.json.decode(p) for p in await platform.event_log.recent_payloads("OfferGenerated", 100)]
        probabilities = {g["offer_id"]: round(g["probability"], 9) for g in generated}
        first, second = ([probabilities[i] for i in ids] for ids in seen)
        assert sorted(first) == sorted(second)
        sides.add(tuple(sorted(first)))
    assert len(sides) == 2   # both versions ranked some travellers' searches
    arms = (await _model(client, admin, "acceptance"))["canary"]["comparison"]
    assert arms["canary"]["calls"] + arms["live"]["calls"] == 60 and arms["canary"]["calls"] % 2 == 0

    clock.advance(3601)
    model = await _until_decided(client, admin, "acceptance")
    assert model["last_canary"]["decision"] == "promoted"
    assert model["live"] == "acceptance-1" and platform.ranker.model_version == "acceptance-1"
    assert np.isfinite(platform.ranker.model.weights).all()
