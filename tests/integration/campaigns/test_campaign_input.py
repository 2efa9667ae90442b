"""What a campaign may hold, against the real app: creating one, editing it (PATCH) and adding a creative refuse
malformed, oversized and out-of-range values with 400 naming the field, and write nothing; a creative's id is an arm
the offer-selection policy answers with and reward signals name, so it is 1-64 characters and unique in its
campaign. A campaign stored before these limits still loads, and its workflow still moves."""

from __future__ import annotations

import pytest

from app.main import PLATFORM, create_app
from state.campaigns import Campaign, Creative, FrequencyCaps, Targeting
from tests.conftest import make_config

CREATIVE = {"id": "c", "format": "banner", "markup": "<b>fly</b>", "w": 300, "h": 250}
# The audit's campaign: a repeated creative id, an empty one, negative sizes, device types no exchange sends and a
# cap past what a 64-bit integer holds.
AUDITED = {"id": "dup1", "name": "Dup", "advertiser_domain": "d.test", "bid_cap_micros": 1000,
           "daily_budget_micros": 1000,
           "creatives": [CREATIVE, {**CREATIVE, "markup": "other"}, {**CREATIVE, "id": ""},
                         {**CREATIVE, "id": "neg", "w": -300, "h": -250}],
           "targeting": {"device_types": [1180591620717411303424, -1]},
           "frequency_caps": {"day": 9223372036854775808}}


def campaign(**fields) -> dict:
    return {"id": "spring", "name": "Spring", "advertiser_domain": "contrail.example", "bid_cap_micros": 4_000_000,
            "daily_budget_micros": 100_000_000, "creatives": [CREATIVE], **fields}


@pytest.fixture
async def team(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    keys = {}
    for name, role in (("author", "admin"), ("ana", "admin"), ("partner", "partner")):
        _, key = await client.app[PLATFORM].api_keys.create(name, role)
        keys[name] = {"X-Api-Key": key}
    return client, keys


async def refused(resp, field: str) -> str:
    """The 400's message, which names `field`."""
    body = await resp.json()
    assert resp.status == 400, body
    message = body["error"]["message"]
    assert field in message, message
    return message


async def absent(client, keys, campaign_id: str) -> None:
    resp = await client.get(f"/v1/admin/campaigns/{campaign_id}", headers=keys["author"])
    assert resp.status == 404, await resp.text()


async def test_the_audited_campaign_is_refused_and_nothing_is_created(team):
    client, keys = team
    resp = await client.post("/v1/admin/campaigns", json=AUDITED, headers=keys["author"])
    assert resp.status == 400, await resp.text()
    await absent(client, keys, "dup1")
    listed = await (await client.get("/v1/admin/campaigns", headers=keys["author"])).json()
    assert listed["items"] == []


@pytest.mark.parametrize(("fields", "named"), [
    ({"creatives": [CREATIVE, {**CREATIVE, "markup": "other"}]}, "listed more than once: c"),
    ({"creatives": [{**CREATIVE, "id": ""}]}, "creatives[0].id"),
    ({"creatives": [{**CREATIVE, "id": "x" * 65}]}, "creatives[0].id"),
    ({"creatives": [{**CREATIVE, "id": "neg", "w": -300, "h": -250}]}, "creatives[0].w"),
    ({"creatives": [{**CREATIVE, "w": 0}]}, "creatives[0].w"),
    ({"creatives": [{**CREATIVE, "h": 2**63 - 1}]}, "creatives[0].h"),
    ({"creatives": [{**CREATIVE, "markup": ""}]}, "creatives[0].markup"),
    ({"creatives": [{**CREATIVE, "markup": "m" * 100_001}]}, "creatives[0].markup"),
    ({"creatives": [{**CREATIVE, "mimes": ["image/png"] * 50_000}]}, "creatives[0].mimes"),
    ({"creatives": [{**CREATIVE, "mimes": ["i" * 256]}]}, "creatives[0].mimes[0]"),
    ({"creatives": [CREATIVE] + [{**CREATIVE, "id": f"c{i}"} for i in range(1000)]}, "creatives"),
    ({"targeting": {"countries": ["USA"] * 100_000}}, "targeting.countries"),
    ({"targeting": {"countries": ["U" * 10_000]}}, "targeting.countries[0]"),
    ({"targeting": {"device_types": [1180591620717411303424]}}, "targeting.device_types[0]"),
    ({"targeting": {"device_types": [1, -1]}}, "targeting.device_types[1]"),
    ({"targeting": {"device_types": [0]}}, "targeting.device_types[0]"),
    ({"targeting": {"device_types": [9]}}, "targeting.device_types[0]"),
    ({"frequency_caps": {"day": 9223372036854775808}}, "frequency_caps.day"),
    ({"frequency_caps": {"hour": 1_000_001}}, "frequency_caps.hour"),
    ({"frequency_caps": {"minute": 0}}, "frequency_caps.minute"),
    ({"app_bundle": "b" * 1_000_000}, "app_bundle"),
    ({"app_bundle": ""}, "app_bundle"),
], ids=["repeated-id", "empty-id", "long-id", "negative-size", "zero-width", "huge-height", "no-markup",
        "huge-markup", "50k-mimes", "long-mime", "1001-creatives", "100k-countries", "10k-char-country",
        "huge-device-type", "negative-device-type", "device-type-0", "device-type-9", "cap-past-int64",
        "cap-past-a-million", "cap-0", "1mb-app-bundle", "empty-app-bundle"])
async def test_a_new_campaign_is_refused_naming_the_field_and_nothing_is_created(team, fields, named):
    client, keys = team
    resp = await client.post("/v1/admin/campaigns", json=campaign(**fields), headers=keys["author"])
    await refused(resp, named)
    await absent(client, keys, "spring")


async def test_the_limits_themselves_are_taken_and_a_creative_with_the_longest_id_can_be_rewarded(team):
    client, keys = team
    longest = "x" * 64
    creatives = [{**CREATIVE, "id": longest, "w": 10_000, "h": 1, "mimes": ["image/png"] * 64},
                 {**CREATIVE, "id": "c2", "w": 1, "h": 10_000}]
    body = campaign(creatives=creatives, app_bundle="b" * 255,
                    targeting={"countries": ["USA", "PT"] * 150, "device_types": [1, 2, 3, 4, 5, 6, 7, 8]},
                    frequency_caps={"minute": 1, "hour": 1_000_000, "day": 1_000_000})
    created = await client.post("/v1/admin/campaigns", json=body, headers=keys["author"])
    assert created.status == 201, await created.text()
    for who, action in (("author", "submit"), ("ana", "approve"), ("ana", "schedule")):
        resp = await client.post(f"/v1/admin/campaigns/spring/{action}", headers=keys[who])
        assert resp.status == 200, await resp.text()
    resp = await client.put("/v1/admin/campaigns/spring/policy", json={"kind": "thompson", "arms": "creatives"},
                            headers=keys["ana"])
    assert resp.status == 200, await resp.text()
    decided = await client.post("/v1/campaigns/spring/decide", json={"user_id": "u1"}, headers=keys["partner"])
    arm = (await decided.json())["arm"]
    assert arm in (longest, "c2")
    signal = {"offer_id": "o", "user_id": "u1", "signal_type": "clicked", "campaign_id": "spring", "arm": arm,
              "signal_id": "s1"}
    resp = await client.post("/v1/loyalty/reward-signal", json=signal, headers=keys["partner"])
    assert resp.status == 200, await resp.text()
    policy = await (await client.get("/v1/admin/campaigns/spring/policy", headers=keys["ana"])).json()
    assert {p["arm"]: p["pulls"] for p in policy["posterior"]}[arm] == 1


async def test_a_creative_added_later_obeys_the_same_limits(team):
    client, keys = team
    assert (await client.post("/v1/admin/campaigns", json=campaign(), headers=keys["author"])).status == 201
    url = "/v1/admin/campaigns/spring/creatives"
    await refused(await client.post(url, json={**CREATIVE, "id": ""}, headers=keys["author"]), "id")
    await refused(await client.post(url, json={**CREATIVE, "id": "big", "w": 2**63 - 1}, headers=keys["author"]),
                  "w")
    taken = await client.post(url, json=CREATIVE, headers=keys["author"])
    assert taken.status == 409, await taken.text()
    got = await (await client.get("/v1/admin/campaigns/spring", headers=keys["author"])).json()
    assert [c["id"] for c in got["creatives"]] == ["c"]


@pytest.mark.parametrize(("change", "named"), [
    ({"targeting": {"countries": ["USA"] * 100_000}}, "targeting.countries"),
    ({"targeting": {"countries": ["FRA", "U" * 10_000]}}, "targeting.countries[1]"),
    ({"targeting": {"device_types": [2, -1]}}, "targeting.device_types[1]"),
    ({"frequency_caps": {"day": 9223372036854775808}}, "frequency_caps.day"),
    ({"creatives": [CREATIVE, CREATIVE]}, "creatives"),  # not a field PATCH takes: creatives are added one by one
], ids=["100k-countries", "10k-char-country", "negative-device-type", "cap-past-int64", "creatives"])
async def test_an_edit_obeys_the_limits_of_a_new_campaign_and_a_refused_one_changes_nothing(team, change, named):
    client, keys = team
    body = campaign(targeting={"countries": ["USA"], "device_types": [4]}, frequency_caps={"day": 3})
    assert (await client.post("/v1/admin/campaigns", json=body, headers=keys["author"])).status == 201
    before = await (await client.get("/v1/admin/campaigns/spring", headers=keys["author"])).json()
    resp = await client.patch("/v1/admin/campaigns/spring", json={"name": "Renamed", **change}, headers=keys["ana"])
    await refused(resp, named)
    after = await (await client.get("/v1/admin/campaigns/spring", headers=keys["author"])).json()
    assert after == before
    history = await (await client.get("/v1/admin/campaigns/spring/history", headers=keys["author"])).json()
    assert [h["action"] for h in history["items"]] == ["create"]


async def test_an_edit_of_a_running_campaign_obeys_them_too_and_nothing_goes_under_review(team):
    client, keys = team
    assert (await client.post("/v1/admin/campaigns", json=campaign(), headers=keys["author"])).status == 201
    for who, action in (("author", "submit"), ("ana", "approve"), ("ana", "schedule")):
        assert (await client.post(f"/v1/admin/campaigns/spring/{action}", headers=keys[who])).status == 200
    huge = {"targeting": {"device_types": [1180591620717411303424]}}
    resp = await client.patch("/v1/admin/campaigns/spring", json=huge, headers=keys["author"])
    await refused(resp, "targeting.device_types[0]")
    added = await client.post("/v1/admin/campaigns/spring/creatives", json={**CREATIVE, "id": "", "markup": "x"},
                              headers=keys["author"])
    await refused(added, "id")
    got = await (await client.get("/v1/admin/campaigns/spring", headers=keys["author"])).json()
    assert got["state"] == "live" and got["pending"] is None


async def test_a_campaign_stored_before_the_limits_still_loads_and_its_workflow_moves(aiohttp_client, tmp_path, clock):
    """A campaign written while these were taken (by the API as it was): the server starts with it, shows it, and an
    admin can still pause and resume it; the limits refuse such input, they never stop a start."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock))
    legacy = Campaign("legacy", "Legacy", "contrail.example", 1_000_000, 10_000_000, state="live",
                      creatives=[Creative("c", "banner", "m", 300, 250), Creative("c", "banner", "other", 300, 250),
                                 Creative("", "banner", "m", 300, 250), Creative("neg", "banner", "m", -300, -250)],
                      targeting=Targeting(countries=["usa"] * 400, device_types=[1180591620717411303424, -1]),
                      frequency_caps=FrequencyCaps(day=9223372036854775808), app_bundle="b" * 10_000)
    await client.app[PLATFORM].campaign_store.put(legacy, clock.now())
    await client.close()

    again = await aiohttp_client(create_app(config, clock=clock))  # a restart reads it back from the store
    _, key = await again.app[PLATFORM].api_keys.create("ops", "admin")
    admin = {"X-Api-Key": key}
    got = await again.get("/v1/admin/campaigns/legacy", headers=admin)
    body = await got.json()
    assert got.status == 200, body
    assert [c["id"] for c in body["creatives"]] == ["c", "c", "", "neg"]
    assert body["frequency_caps"]["day"] == 9223372036854775808
    for action, state in (("pause", "paused"), ("resume", "live")):
        resp = await again.post(f"/v1/admin/campaigns/legacy/{action}", headers=admin)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["state"] == state
    # Its policy decides among the arms a reward signal can name, each once: never "" (nor "c" at twice the odds).
    resp = await again.put("/v1/admin/campaigns/legacy/policy", json={"kind": "uniform", "arms": "creatives"},
                           headers=admin)
    assert resp.status == 200, await resp.text()
    assert sorted(p["arm"] for p in (await resp.json())["posterior"]) == ["c", "neg"]
    _, key = await again.app[PLATFORM].api_keys.create("partner", "partner")
    for _ in range(10):
        decided = await again.post("/v1/campaigns/legacy/decide", json={"user_id": "u1"}, headers={"X-Api-Key": key})
        assert (await decided.json())["arm"] in ("c", "neg")
    # Adding a creative to it is judged on what it adds: another repeat of a taken id is refused, a new one waits
    # for approval beside the creatives it had.
    taken = await again.post("/v1/admin/campaigns/legacy/creatives", json={**CREATIVE, "id": "neg"}, headers=admin)
    assert taken.status == 409, await taken.text()
    added = await again.post("/v1/admin/campaigns/legacy/creatives", json={**CREATIVE, "id": "fresh"}, headers=admin)
    assert added.status == 201, await added.text()
    assert [c["id"] for c in (await added.json())["pending"]["creatives"]] == ["c", "c", "", "neg", "fresh"]
