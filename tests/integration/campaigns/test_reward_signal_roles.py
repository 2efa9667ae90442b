"""Who may teach a campaign's offer-selection policy, against the real app: a campaign's policy learns what its
decisions earned, and only partner systems and admins ask it to decide, so only they send reward signals naming a
campaign. A customer's signal naming one is 403 and teaches nothing, however many signal ids they make up; their
own signal without a campaign is logged for training as before, and partner and admin signals still teach once per
signal_id."""

from __future__ import annotations

import pytest

from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative
from tests.conftest import bearer, make_config

ALICE = ("alice@contrail.test", "alice-password-1")
BOB = ("bob@contrail.test", "bob-password-1")


@pytest.fixture
async def shop(aiohttp_client, tmp_path, clock):
    """A live campaign wf1 with a Thompson policy over its creatives cr1 and cr2; an admin, a partner system and
    two customers."""
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    platform = client.app[PLATFORM]
    keys = {}
    for name, role in (("ops", "admin"), ("partner", "partner")):
        _, key = await platform.api_keys.create(name, role)
        keys[name] = {"X-Api-Key": key}
    for name, (email, password) in (("alice", ALICE), ("bob", BOB)):
        keys[name] = await bearer(client, email, password, "customer")
        keys[f"{name}_id"] = (await platform.accounts.by_email(email)).id
    creatives = [Creative(c, "banner", f"<b>{c}</b>", 300, 250) for c in ("cr1", "cr2")]
    await platform.campaigns.create("test", Campaign("wf1", "Winter", "contrail.example", 4_000_000, 100_000_000,
                                                     state="live", creatives=creatives, offer_ids=["o1"]),
                                    audit=False)
    resp = await client.put("/v1/admin/campaigns/wf1/policy", json={"kind": "thompson", "arms": "creatives"},
                            headers=keys["ops"])
    assert resp.status == 200, await resp.text()
    return client, keys


def signal(user_id: str, signal_id: str, arm: str = "cr1", **extra) -> dict:
    return {"offer_id": arm, "user_id": user_id, "signal_type": "redeemed", "campaign_id": "wf1",
            "signal_id": signal_id, **extra}


async def pulls(client, keys) -> dict[str, tuple[int, float]]:
    policy = await (await client.get("/v1/admin/campaigns/wf1/policy", headers=keys["ops"])).json()
    return {p["arm"]: (p["pulls"], p["reward_sum"]) for p in policy["posterior"]}


async def test_a_customer_cannot_steer_a_campaigns_policy_with_signals_of_their_own(shop):
    client, keys = shop
    untouched = await pulls(client, keys)
    for n in range(5):  # each made-up signal id would have been another +2.0
        resp = await client.post("/v1/loyalty/reward-signal", json=signal(keys["alice_id"], f"anything-unique-{n}"),
                                 headers=keys["alice"])
        body = await resp.json()
        assert resp.status == 403, body
        assert "campaign_id" in body["error"]["message"] and "partner" in body["error"]["message"]
        assert body["error"]["details"] == {"field": "campaign_id"}
    # also after a decision for her, for the arm she was shown: the partner that asked reports what it earned
    decided = await client.post("/v1/campaigns/wf1/decide", json={"user_id": keys["alice_id"]},
                                headers=keys["partner"])
    arm = (await decided.json())["arm"]
    resp = await client.post("/v1/loyalty/reward-signal", json=signal(keys["alice_id"], "after-decide", arm=arm),
                             headers=keys["alice"])
    assert resp.status == 403, await resp.text()
    assert await pulls(client, keys) == untouched
    assert all(n == 0 for n, _ in untouched.values())


async def test_a_customer_still_sends_their_own_signals_without_a_campaign(shop):
    client, keys = shop
    body = {"offer_id": "cr1", "user_id": keys["alice_id"], "signal_type": "redeemed"}
    resp = await client.post("/v1/loyalty/reward-signal", json=body, headers=keys["alice"])
    assert resp.status == 200, await resp.text()
    assert (await resp.json()) == {"reward": 2.0}
    # and never another customer's, with or without a campaign (as before)
    for sent in (body, signal(keys["alice_id"], "for-alice")):
        resp = await client.post("/v1/loyalty/reward-signal", json=sent, headers=keys["bob"])
        assert resp.status == 403, await resp.text()
    assert all(n == 0 for n, _ in (await pulls(client, keys)).values())


async def test_partner_and_admin_signals_still_teach_once_per_signal_id(shop):
    client, keys = shop
    for _ in range(3):  # a partner's retries of one signal: learned once
        resp = await client.post("/v1/loyalty/reward-signal", json=signal(keys["alice_id"], "p-1"),
                                 headers=keys["partner"])
        assert resp.status == 200, await resp.text()
        assert (await resp.json()) == {"reward": 2.0}
    assert (await pulls(client, keys))["cr1"] == (1, 2.0)
    resp = await client.post("/v1/loyalty/reward-signal", json=signal("u-7", "a-1", arm="cr2", signal_type="clicked"),
                             headers=keys["ops"])
    assert resp.status == 200, await resp.text()
    assert await pulls(client, keys) == {"cr1": (1, 2.0), "cr2": (1, 1.0)}
