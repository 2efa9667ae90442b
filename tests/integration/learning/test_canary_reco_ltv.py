"""Canaries of the recommendation and lifetime-value models in the real app: a new version serves a share of the
users (by their id: one user sees one version) beside the live one, both measured alike and shown in
GET /v1/admin/models; it is promoted at its period's end (the test clock moves) or rolled back as soon as a limit is
crossed; every decision is audited, and a restart resumes it."""

from __future__ import annotations

import asyncio

from app.ltv.service import Ask
from app.main import PLATFORM, create_app
from app.runtime.canary import Split
from tests.conftest import make_config
from tests.integration.learning.test_canary import FAST, _model, _until_decided
from tests.integration.ltv.helpers import shop_history
from tests.integration.reco.helpers import evaluation_gauges, ingest, recommend, staff
from tests.integration.reco.test_training import clustered_history

RECO = dict(reco__explore_items=0, reco__factors=8, reco__coview_window=1, reco__retrain_interval_s=0,
            canary__min_calls=10)
LTV = dict(ltv__refit_interval_s=0, ltv__refit_after_purchases=0, canary__min_calls=10)
USERS = [f"s{u}" for u in range(90)]


async def _app(aiohttp_client, tmp_path, clock, **overrides):
    client = await aiohttp_client(create_app(make_config(tmp_path, **{**FAST, **overrides}), clock=clock))
    _, key = await client.app[PLATFORM].api_keys.create("ops", "admin")
    return client, {"X-Api-Key": key}


async def _audit(platform) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in await platform.admin.audit_page(100, None)]


async def _lists(client, headers) -> dict[str, str]:
    """Each user's personalized list's model (the version that made it)."""
    return {u: (await recommend(client, headers, u, n=3))["model"] for u in USERS}


async def test_a_retrained_reco_model_goes_out_as_a_canary_to_a_share_of_users_and_is_promoted(
        aiohttp_client, tmp_path, clock):
    client, admin = await _app(aiohttp_client, tmp_path, clock, **RECO, canary__on_retrain="true",
                               canary__share=0.25)
    platform = client.app[PLATFORM]
    partner = await staff(client)
    await ingest(client, partner, clustered_history(clock.now()))
    trained = await (await client.post("/v1/admin/reco/train", headers=admin)).json()
    assert (trained["status"], trained["live"], trained["version"]) == ("canary", False, "als-1"), trained
    assert "as a canary" in trained["reason"] and trained["model"] == "seed"   # the seed still serves
    scored = trained["evaluation"]
    assert await evaluation_gauges(client) == {  # the seed serves, never evaluated; the canary is the candidate
        ("hr@10", "candidate"): scored["hr@10"], ("ndcg@10", "candidate"): scored["ndcg@10"]}

    first, again = await _lists(client, partner), await _lists(client, partner)
    assert first == again   # one user sees one version for the whole period
    canary_users = {u for u, model in first.items() if model.startswith("als-1:")}
    assert set(first.values()) - {"seed"} == {first[u] for u in canary_users}
    assert canary_users == {u for u in USERS if Split(None, "als-1", 0.25, 10).takes(u)}   # routed by the user id
    assert 0.12 < len(canary_users) / len(USERS) < 0.4   # about its 25%

    model = await _model(client, admin, "reco")
    assert (model["live"], model["serving"], model["canary"]["version"]) == ("seed", "seed", "als-1")
    arms = model["canary"]["comparison"]
    # Each user's list was made once (the second ask was served from the list cache), on their side.
    assert (arms["canary"]["calls"], arms["live"]["calls"]) == (len(canary_users), len(USERS) - len(canary_users))
    assert arms["canary"]["p95_ms"] > 0 and arms["live"]["p95_ms"] > 0 and arms["canary"]["errors"] == 0
    assert model["last_run"]["status"] == "canary" and model["last_run"]["version"] == "als-1"
    assert [(v["version"], v["status"]) for v in model["versions"]] == [("als-1", "canary"), ("seed", "live")]
    listed = await (await client.get("/v1/admin/models", headers=admin)).json()
    assert {"bidnet", "acceptance", "reco", "ltv"} <= {m["name"] for m in listed["models"]}

    clock.advance(3601)
    model = await _until_decided(client, admin, "reco")
    assert model["last_canary"]["decision"] == "promoted" and model["live"] == model["serving"] == "als-1"
    assert {m.split(":")[0] for m in (await _lists(client, partner)).values()} == {"als-1"}   # everyone now
    audit = await _audit(platform)
    assert ("model.canary.promote", "als-1") in audit and ("model.train", "als-1") in audit
    text = await (await client.get("/metrics")).text()
    assert 'contrail_model_canary_decisions_total{decision="promoted",model="reco"} 1.0' in text
    assert await evaluation_gauges(client) == {  # the canary's figures are the serving version's now
        (metric, model): scored[metric] for metric in ("hr@10", "ndcg@10") for model in ("serving", "candidate")}


async def test_an_admins_reco_canary_over_its_p95_limit_is_rolled_back_early_and_survives_a_restart(
        aiohttp_client, tmp_path, clock):
    # No list is made in under a microsecond: once 10 canary lists are timed, the canary is over its limit.
    client, admin = await _app(aiohttp_client, tmp_path, clock, **RECO, canary__max_p95_ms=0.001,
                               canary__share=0.5)
    partner = await staff(client)
    await ingest(client, partner, clustered_history(clock.now()))
    assert (await (await client.post("/v1/admin/models/reco/train", headers=admin)).json())["status"] == "promoted"
    started = await client.post("/v1/admin/models/reco/canary", json={"version": "seed"}, headers=admin)
    assert started.status == 201, await started.text()
    ends_at = (await started.json())["ends_at"]
    refused = await client.post("/v1/admin/models/reco/canary", json={"version": "seed"}, headers=admin)
    assert refused.status == 409
    await client.close()

    clock.advance(60)   # a restart serves the canary again, until the same end
    client, admin = await _app(aiohttp_client, tmp_path, clock, **RECO, canary__max_p95_ms=0.001,
                               canary__share=0.5)
    platform = client.app[PLATFORM]
    model = await _model(client, admin, "reco")
    assert (model["live"], model["canary"]["version"], model["canary"]["ends_at"]) == ("als-1", "seed", ends_at)
    lists = await _lists(client, await staff(client))
    assert {m.split(":")[0] for m in lists.values()} == {"als-1", "seed"}
    model = await _until_decided(client, admin, "reco")
    last = model["last_canary"]
    assert last["decision"] == "rolled_back" and "canary.max_p95_ms" in last["reason"]
    assert last["decided_at"] < last["ends_at"] and last["comparison"]["canary"]["calls"] >= 10
    assert model["live"] == model["serving"] == "als-1"
    assert {m.split(":")[0] for m in (await _lists(client, await staff(client))).values()} == {"als-1"}
    audit = await _audit(platform)
    assert ("model.canary.start", "seed") in audit and ("model.canary.rollback", "seed") in audit


async def _ltv_app(aiohttp_client, tmp_path, clock, **overrides):
    client, admin = await _app(aiohttp_client, tmp_path, clock, **{**LTV, **overrides})
    # A history whose second fit passes its holdout too (seed 3; with seed 7 it is kept out).
    counts = await shop_history(client.app[PLATFORM], clock, customers=200, seed=3)
    return client, admin, sorted(counts)


async def _values(client, admin, customers) -> dict[str, str]:
    """Each customer's predicted value's model version."""
    answers = {}
    for c in customers:
        resp = await client.get(f"/v1/customers/{c}/ltv", headers=admin)
        assert resp.status == 200, await resp.text()
        answers[c] = (await resp.json())["model_version"]
    return answers


async def test_a_refitted_ltv_model_goes_out_as_a_canary_to_a_share_of_customers_and_is_promoted(
        aiohttp_client, tmp_path, clock):
    client, admin, customers = await _ltv_app(aiohttp_client, tmp_path, clock, canary__on_retrain="true",
                                              canary__share=0.3)
    platform = client.app[PLATFORM]
    first = await (await client.post("/v1/admin/ltv/refit", headers=admin)).json()
    assert first["status"] == "live" and first["live"] is True   # the first model goes live: any beats none
    live = first["model"]
    clock.advance(86_400)
    second = await (await client.post("/v1/admin/ltv/refit", headers=admin)).json()
    assert second["status"] == "canary" and second["model"] == live, second
    candidate = second["candidate"]
    assert candidate != live and "as a canary" in second["reason"]

    seen, again = await _values(client, admin, customers), await _values(client, admin, customers)
    assert seen == again and set(seen.values()) == {live, candidate}   # one customer sees one version
    theirs = {c for c, v in seen.items() if v == candidate}
    assert theirs == {c for c in customers if Split(None, candidate, 0.3, 10).takes(c)}
    assert 0.18 < len(theirs) / len(customers) < 0.42   # about its 30%
    model = await _model(client, admin, "ltv")
    assert (model["live"], model["serving"], model["canary"]["version"]) == (live, live, candidate)
    arms = model["canary"]["comparison"]
    assert arms["canary"]["calls"] + arms["live"]["calls"] == 2 * len(customers)
    assert arms["canary"]["calls"] == 2 * len(theirs) and arms["canary"]["p95_ms"] > 0
    # Bids' values (the in-process batch) are routed alike.
    [answer] = await platform.ltv.predict([Ask(min(theirs))])
    assert answer.model_version == candidate

    clock.advance(3601)
    model = await _until_decided(client, admin, "ltv")
    assert model["last_canary"]["decision"] == "promoted" and model["live"] == model["serving"] == candidate
    assert set((await _values(client, admin, customers[:20])).values()) == {candidate}
    assert ("model.canary.promote", candidate) in await _audit(platform)


async def test_an_admins_ltv_canary_over_its_p95_limit_is_rolled_back_early(aiohttp_client, tmp_path, clock):
    client, admin, customers = await _ltv_app(aiohttp_client, tmp_path, clock, canary__max_p95_ms=0.001,
                                              canary__share=0.5)
    platform = client.app[PLATFORM]
    older = (await (await client.post("/v1/admin/ltv/refit", headers=admin)).json())["model"]
    clock.advance(86_400)
    newer = await (await client.post("/v1/admin/models/ltv/train", headers=admin)).json()
    assert newer["status"] == "promoted", newer
    back = await client.post("/v1/admin/models/ltv/rollback", headers=admin)
    assert back.status == 200 and (await back.json())["version"] == older
    started = await client.post("/v1/admin/models/ltv/canary", json={"version": newer["version"]}, headers=admin)
    assert started.status == 201, await started.text()

    await _values(client, admin, customers)
    model = await _until_decided(client, admin, "ltv")
    last = model["last_canary"]
    assert last["decision"] == "rolled_back" and "canary.max_p95_ms" in last["reason"]
    assert last["decided_at"] < last["ends_at"] and model["live"] == model["serving"] == older
    assert set((await _values(client, admin, customers[:20])).values()) == {older}
    assert next(v for v in model["versions"] if v["version"] == newer["version"])["status"] == "rolled_back"
    audit = await _audit(platform)
    assert ("model.canary.start", newer["version"]) in audit and ("model.canary.rollback", newer["version"]) in audit
    await asyncio.sleep(0)
