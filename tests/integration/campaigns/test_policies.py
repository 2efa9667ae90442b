"""Campaigns' offer-selection policies against the real app: a local aiohttp decision service answers while it is
healthy; failures, timeouts, slow and nonsense answers fall back to the local policy, counted; the breaker opens,
half-opens on the clock and closes; policies learn from reward signals once per signal id, and survive a restart."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from aiohttp import web

from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative
from tests.conftest import make_config

ARMS = ["c1", "c2", "c3"]


class DecisionServer:
    """An OfferFit-like decision service that can answer, be slow, fail or answer nonsense."""

    def __init__(self) -> None:
        self.mode = "ok"            # ok, slow, fail, nonsense
        self.delay_s = 0.0
        self.pick = "c3"
        self.asked: list[dict] = []
        self.rewards: list[dict] = []
        self.catalogs: list[dict] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/recommendations", self.recommend)
        self.app.router.add_post("/v1/rewards", self.reward)
        self.app.router.add_put("/v1/catalog", self.catalog)

    async def recommend(self, request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer secret"
        self.asked.append(await request.json())
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if self.mode == "fail":
            return web.json_response({"error": "model unavailable"}, status=500)
        return web.json_response({"action": "not-an-arm" if self.mode == "nonsense" else self.pick})

    async def reward(self, request: web.Request) -> web.Response:
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if self.mode == "fail":
            return web.json_response({"error": "down"}, status=400)
        self.rewards.append(await request.json())
        return web.json_response({}, status=202)

    async def catalog(self, request: web.Request) -> web.Response:
        self.catalogs.append(await request.json())
        return web.Response(status=204)


async def start(aiohttp_client, config, clock):
    client = await aiohttp_client(create_app(config, clock=clock))
    platform = client.app[PLATFORM]
    keys = {}
    for name, role in (("ops", "admin"), ("partner", "partner"), ("exchange", "exchange")):
        _, key = await platform.api_keys.create(name, role)
        keys[name] = {"X-Api-Key": key}
    return client, platform, keys


async def live_campaign(platform, campaign_id="spring", state="live") -> None:
    creatives = [Creative(c, "banner", f"<b>{c}</b>", 300, 250) for c in ARMS]
    await platform.campaigns.create("test", Campaign(campaign_id, "Spring", "contrail.example", 4_000_000,
                                                     100_000_000, state=state, creatives=creatives,
                                                     offer_ids=["o1", "o2"]), audit=False)


async def configure(client, keys, campaign_id="spring", status=200, **body):
    body = {"kind": "thompson", "arms": "creatives", **body}
    resp = await client.put(f"/v1/admin/campaigns/{campaign_id}/policy", json=body, headers=keys["ops"])
    payload = await resp.json()
    assert resp.status == status, payload
    return payload


async def decide(client, keys, campaign_id="spring", status=200, **context):
    resp = await client.post(f"/v1/campaigns/{campaign_id}/decide", json={"user_id": "u1", "context": context},
                             headers=keys["partner"])
    payload = await resp.json()
    assert resp.status == status, payload
    return payload


async def signal(client, keys, signal_id, arm, signal_type="clicked", campaign_id="spring", **extra):
    body = {"offer_id": "off", "user_id": "u1", "signal_type": signal_type, "campaign_id": campaign_id,
            "arm": arm, "signal_id": signal_id, **extra}
    resp = await client.post("/v1/loyalty/reward-signal", json=body, headers=keys["partner"])
    payload = await resp.json()
    assert resp.status == 200, payload
    return payload


async def metric(client, name: str, **labels) -> float:
    text = await (await client.get("/metrics")).text()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}(?:{{{re.escape(wanted)}}})? ([0-9.e+-]+)$" if wanted else rf"^{name} ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
async def decision(aiohttp_server):
    server = DecisionServer()
    running = await aiohttp_server(server.app)
    server.url = str(running.make_url(""))
    return server


async def remote_app(aiohttp_client, tmp_path, clock, decision, **overrides):
    config = make_config(tmp_path, campaigns__decision_url=decision.url, campaigns__decision_api_key="secret",
                         **overrides)
    client, platform, keys = await start(aiohttp_client, config, clock)
    await live_campaign(platform)
    return client, platform, keys


async def test_the_remote_decides_while_healthy_and_the_breaker_opens_half_opens_and_closes(
        aiohttp_client, tmp_path, clock, decision):
    client, platform, keys = await remote_app(aiohttp_client, tmp_path, clock, decision)
    await configure(client, keys)
    for _ in range(2):
        assert await decide(client, keys, tier="Gold") == {"arm": "c3", "source": "remote", "policy": "thompson",
                                                            "fallback_reason": None}
    assert decision.asked[-1] == {"user_id": "u1", "context": {"tier": "Gold"}, "arms": ARMS}

    decision.mode = "fail"
    for _ in range(3):  # three failures open the breaker
        made = await decide(client, keys)
        assert made["source"] == "fallback" and made["fallback_reason"] == "error" and made["arm"] in ARMS
    assert await metric(client, "contrail_policy_breaker_state") == 2
    asked = len(decision.asked)
    made = await decide(client, keys)
    assert made["source"] == "fallback" and made["fallback_reason"] == "breaker_open"
    assert len(decision.asked) == asked  # open: the remote is not called

    decision.mode = "ok"
    clock.advance(29)
    assert (await decide(client, keys))["fallback_reason"] == "breaker_open"
    clock.advance(1)  # breaker_open_s = 30 on the injectable clock: half-open, one trial at a time
    assert (await decide(client, keys))["source"] == "remote"
    assert await metric(client, "contrail_policy_breaker_state") == 1
    assert (await decide(client, keys))["source"] == "remote"  # the second success closes it
    assert await metric(client, "contrail_policy_breaker_state") == 0
    view = await (await client.get("/v1/admin/campaigns/spring/policy", headers=keys["ops"])).json()
    assert view["decision_service"] == "closed"

    assert await metric(client, "contrail_policy_fallbacks_total", reason="error") == 3
    assert await metric(client, "contrail_policy_fallbacks_total", reason="breaker_open") == 2
    assert await metric(client, "contrail_policy_choices_total", source="remote") == 4
    assert await metric(client, "contrail_policy_choices_total", source="fallback") == 5
    assert await metric(client, "contrail_integration_calls_total", tool="decision", outcome="failed") == 3
    await platform.policies.close()


async def test_timeouts_slow_answers_and_nonsense_fall_back_without_waiting_past_the_deadline(
        aiohttp_client, tmp_path, clock, decision):
    client, platform, keys = await remote_app(aiohttp_client, tmp_path, clock, decision,
                                              campaigns__decision_deadline_ms=150, campaigns__breaker_slow_ms=50)
    await configure(client, keys)
    decision.mode, decision.delay_s = "slow", 0.08  # answers within the deadline, but slower than breaker_slow_ms
    made = await decide(client, keys)
    assert made["source"] == "fallback" and made["fallback_reason"] == "slow"
    decision.delay_s = 1.0
    started = time.perf_counter()
    made = await decide(client, keys)
    assert made["source"] == "fallback" and made["fallback_reason"] == "timeout"
    assert time.perf_counter() - started < 0.6  # the decision never waits for the slow service
    decision.mode = "nonsense"  # an arm the campaign does not have: a broken contract, the third failure
    made = await decide(client, keys)
    assert made["source"] == "fallback" and made["fallback_reason"] == "bad_answer" and made["arm"] in ARMS
    assert await metric(client, "contrail_policy_breaker_state") == 2
    for reason in ("slow", "timeout", "bad_answer"):
        assert await metric(client, "contrail_policy_fallbacks_total", reason=reason) == 1
    await platform.policies.close()


async def test_rewards_are_forwarded_in_the_background_and_the_catalog_synced_when_live(
        aiohttp_client, tmp_path, clock, decision):
    client, platform, keys = await remote_app(aiohttp_client, tmp_path, clock, decision)
    await configure(client, keys)
    await platform.policies.idle()
    assert decision.catalogs[-1]["items"] == [{"id": c, "campaign_id": "spring", "kind": "creative"} for c in ARMS]
    assert (await signal(client, keys, "s1", "c2", "redeemed"))["reward"] == 2.0
    await platform.policies.idle()
    assert decision.rewards == [{"user_id": "u1", "action": "c2", "reward": 2.0}]
    decision.mode = "fail"  # a failing forward is counted, never the caller's problem
    assert (await signal(client, keys, "s2", "c2"))["reward"] == 1.0
    await platform.policies.idle()
    assert platform.policies.forward_failures == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'contrail_policy_forward_failures_total{reason="failed"} 1.0' in metrics
    assert 'contrail_integration_calls_total{outcome="failed",tool="decision"}' in metrics
    view = await (await client.get("/v1/admin/campaigns/spring/policy", headers=keys["ops"])).json()
    assert {a["arm"]: a["pulls"] for a in view["posterior"]} == {"c1": 0, "c2": 2, "c3": 0}
    decision.mode, decision.delay_s = "slow", 30.0  # a stop does not wait for the service: the send is dropped
    assert (await signal(client, keys, "s3", "c2"))["reward"] == 1.0
    await platform.policies.close()
    assert platform.policies.forward_failures == 2
    assert 'contrail_policy_forward_failures_total{reason="dropped"} 1.0' in await (await client.get("/metrics")).text()


async def test_a_policy_learns_from_reward_signals_once_per_signal_id_and_survives_a_restart(
        aiohttp_client, tmp_path, clock):
    config = make_config(tmp_path)
    client, platform, keys = await start(aiohttp_client, config, clock)
    await live_campaign(platform)
    configured = await configure(client, keys, context=["tier"])
    assert configured["posterior"] == [{"arm": c, "mean": 0.5, "interval": configured["posterior"][i]["interval"],
                                        "pulls": 0, "reward_sum": 0.0, "in_campaign": True}
                                       for i, c in enumerate(ARMS)]
    made = await decide(client, keys, tier="Gold")
    assert made["source"] == "local" and made["arm"] in ARMS  # no decision service configured

    for i in range(6):
        await signal(client, keys, f"click-{i}", "c2", tier="Gold")
    for i in range(3):
        await signal(client, keys, f"ignore-{i}", "c1", "ignored", tier="Gold")
    again = await signal(client, keys, "click-0", "c2", tier="Gold")  # a retry: same answer, teaches nothing
    assert again == {"reward": 1.0}
    view = await (await client.get("/v1/admin/campaigns/spring/policy", headers=keys["ops"])).json()
    arms = {a["arm"]: a for a in view["posterior"]}
    assert arms["c2"]["pulls"] == 6 and arms["c1"]["pulls"] == 3 and arms["c3"]["pulls"] == 0
    assert arms["c2"]["mean"] > arms["c3"]["mean"] > arms["c1"]["mean"]
    assert arms["c2"]["interval"][0] < arms["c2"]["mean"] < arms["c2"]["interval"][1]
    assert [b["bucket"] for b in view["buckets"]] == ["tier=Gold"]
    assert {a["arm"]: a["pulls"] for a in view["buckets"][0]["arms"]} == {"c1": 3, "c2": 6, "c3": 0}
    assert await metric(client, "contrail_policy_rewards_total", outcome="learned") == 9
    assert await metric(client, "contrail_policy_rewards_total", outcome="repeat") == 1
    # An arm neither the policy nor the campaign has (a typo, another campaign's) is refused before it is logged.
    typo = await client.post("/v1/loyalty/reward-signal", headers=keys["partner"], json={
        "offer_id": "off", "user_id": "u1", "signal_type": "clicked", "campaign_id": "spring", "arm": "zz",
        "signal_id": "x-1"})
    assert typo.status == 400 and (await typo.json())["error"] == {
        "code": "invalid_argument", "message": "arm zz is not one of campaign spring's creatives",
        "details": {"field": "arm"}}
    picks = [(await decide(client, keys, tier="Gold"))["arm"] for _ in range(20)]
    assert picks.count("c2") >= 14  # Thompson exploits what it learned
    await client.close()

    client, platform, keys = await start(aiohttp_client, config, clock)  # the same files: a restart
    restarted = await (await client.get("/v1/admin/campaigns/spring/policy", headers=keys["ops"])).json()
    assert restarted["posterior"] == view["posterior"] and restarted["buckets"] == view["buckets"]
    await signal(client, keys, "click-1", "c2", tier="Gold")  # still remembered after the restart
    again = await (await client.get("/v1/admin/campaigns/spring/policy", headers=keys["ops"])).json()
    assert again["posterior"] == view["posterior"]
    # Configuring again keeps what it learned when kind and arms are unchanged; a new kind starts over.
    assert (await configure(client, keys, context=["tier"]))["posterior"] == view["posterior"]
    fresh = await configure(client, keys, kind="epsilon_greedy", epsilon=0.2)
    assert fresh["epsilon"] == 0.2 and all(a["pulls"] == 0 for a in fresh["posterior"])


async def test_bad_input_unknown_campaigns_missing_policies_and_campaigns_that_are_not_live(
        aiohttp_client, tmp_path, clock):
    client, platform, keys = await start(aiohttp_client, make_config(tmp_path), clock)
    await live_campaign(platform)
    await live_campaign(platform, "winter", state="paused")
    assert (await client.get("/v1/admin/campaigns/nope/policy", headers=keys["ops"])).status == 404
    await configure(client, keys, "nope", status=404)
    assert (await decide(client, keys, "nope", status=404))["error"]["code"] == "not_found"
    missing = await client.get("/v1/admin/campaigns/spring/policy", headers=keys["ops"])
    error = (await missing.json())["error"]
    assert missing.status == 409 and error["code"] == "no_policy" and "has no policy" in error["message"]
    assert (await decide(client, keys, status=409))["error"]["code"] == "no_policy"

    assert (await configure(client, keys, status=400, kind="greedy"))["error"]["details"] == {"field": "kind"}
    assert (await configure(client, keys, status=400, arms="banners"))["error"]["details"] == {"field": "arms"}
    assert (await configure(client, keys, status=400, epsilon=0.3))["error"]["details"] == {"field": "epsilon"}
    assert (await configure(client, keys, status=400, context=["Tier!"]))["error"]["details"]["field"] == \
        "context[0]"
    forbidden = await client.put("/v1/admin/campaigns/spring/policy", json={"kind": "uniform", "arms": "offers"},
                                 headers=keys["partner"])
    assert forbidden.status == 403

    await configure(client, keys, "winter")
    paused = await decide(client, keys, "winter", status=409)
    assert paused["error"]["details"] == {"state": "paused"}
    assert paused["error"]["message"] == \
        "cannot decide for campaign winter: it is paused (only live campaigns appear in offers)"

    await configure(client, keys, kind="uniform", arms="offers")
    assert (await decide(client, keys))["arm"] in ("o1", "o2")
    big = {f"k{i}": "v" for i in range(17)}
    resp = await client.post("/v1/campaigns/spring/decide", json={"user_id": "u1", "context": big},
                             headers=keys["partner"])
    assert resp.status == 400
    resp = await client.post("/v1/campaigns/spring/decide", json={"user_id": "u1", "context": {"d": "x" * 129}},
                             headers=keys["partner"])
    assert resp.status == 400
    assert (await client.post("/v1/campaigns/spring/decide", json={"user_id": "u1"},
                              headers=keys["exchange"])).status == 403
    no_id = await client.post("/v1/loyalty/reward-signal", headers=keys["partner"],
                              json={"offer_id": "o1", "user_id": "u1", "signal_type": "clicked",
                                    "campaign_id": "spring"})
    assert no_id.status == 400 and (await no_id.json())["error"]["details"] == {"field": "signal_id"}
    unknown = await client.post("/v1/loyalty/reward-signal", headers=keys["partner"], json={
        "offer_id": "o1", "user_id": "u1", "signal_type": "clicked", "campaign_id": "nope", "signal_id": "s-none"})
    assert unknown.status == 404 and (await unknown.json())["error"]["message"] == "no campaign nope"
    await live_campaign(platform, "autumn")
    await signal(client, keys, "s-autumn", "o1", campaign_id="autumn")  # no policy: logged, and no policy learns
    assert await metric(client, "contrail_policy_rewards_total", outcome="no_policy") == 1
